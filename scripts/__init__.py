"""Thin command lines, run as ``python -m scripts.NAME`` from the repository root.

``python -m scripts.NAME`` imports this package first: importing the harness here sets
OpenMP's wait policy before a script imports torch (harness/threads.py).
"""

import harness  # noqa: F401
