"""Table 1 from run directories: read runs, aggregate over seeds, compare with the paper.

- ``runs``: one finished or unfinished run read from its ``config.yaml`` and ``metrics.jsonl``;
- ``paper``: the paper's Table 1 numbers and the training setting they belong to (docs/training.md
  and docs/table1.md);
- ``table1``: mean and standard error over seeds, the best scale per metric, what is missing;
- ``render``: the table as Markdown, LaTeX and CSV.

``scripts/make_table1.py`` is the command line.
"""

from .runs import Run, find_runs, read_run
from .table1 import METRICS, Table, build_table, expected_from_preset

__all__ = [
    "METRICS",
    "Run",
    "Table",
    "build_table",
    "expected_from_preset",
    "find_runs",
    "read_run",
]
