"""The experiment harness: everything that turns the ``bssn`` library into the paper's runs.

It is not installed: it runs from the repository root, beside ``models``, ``data``,
``configs`` and the ``hydra_plugins`` sweeper, which it uses.

- ``training``: Hydra configs, the training loop (single process or DDP), checkpoints, logs;
- ``metrics``: IS/FID (and friends) by protocol name, on torch-fidelity's extractor;
- ``results``: Table 1 and the analysis figures, read back from run directories;
- ``atomic``: the one way files are written, so a kill never leaves half a file.
"""
