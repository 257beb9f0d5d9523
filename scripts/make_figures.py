"""Redraw the paper's analysis figures (docs/figures.md) from run logs alone.

The figure code lives in ``harness/results/figures.py``; this is its command line.
"""

from harness.results.figures import main

if __name__ == "__main__":
    main()
