"""Cells of a grid that train the same network, so that each is trained once.

``ssn`` at scale 1 is ``sn`` and ``bssn`` at scale 1 is ``bsn``: the scale multiplies the
normalized weight (Sec. 3, Sec. 5), and a factor 1.0 changes no bit (tests/test_sweeps.py
trains both and compares). The authors' code trains SN once, as the 1.0 cell of its SSN
grid; here the sweeper launches the ``sn``/``bsn`` run and the Table 1 code reads it back as
the 1.0 cell of ``ssn``/``bssn`` (docs/reference_differences.md).
"""

from __future__ import annotations

#: scaled mode -> the mode it equals at scale 1.
SAME_AT_SCALE_ONE = {"ssn": "sn", "bssn": "bsn"}


def canonical(norm: str, scale: float) -> tuple[str, float]:
    """The (norm, scale) that is trained for this cell: sn/bsn for ssn/bssn at scale 1."""
    if float(scale) == 1.0 and norm in SAME_AT_SCALE_ONE:
        return SAME_AT_SCALE_ONE[norm], 1.0
    return norm, float(scale)


def equivalents(norm: str, scale: float) -> list[tuple[str, float]]:
    """The other cells that train the same network as (norm, scale) (none, or one)."""
    if float(scale) != 1.0:
        return []
    if norm in SAME_AT_SCALE_ONE:
        return [(SAME_AT_SCALE_ONE[norm], 1.0)]
    return [(scaled, 1.0) for scaled, plain in SAME_AT_SCALE_ONE.items() if plain == norm]
