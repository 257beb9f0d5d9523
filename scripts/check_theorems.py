"""Monte Carlo checks of Thm. 2 (SN ~ LeCun) and Thm. 3 (BSN ~ Xavier), docs/normalization.md.

The figure code lives in ``harness/results/theorems.py``; this is its command line.
"""

import sys

from harness.results.theorems import main

if __name__ == "__main__":
    sys.exit(main())
