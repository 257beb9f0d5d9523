"""Hydra plugins of this project: the ``grids`` sweeper (``hydra/sweeper=grids``) and the
launchers ``bssn_slurm`` (``launcher=slurm``) and ``bssn_local`` (``launcher=local_packed``),
which pack several runs per GPU (``packing.py``)."""
