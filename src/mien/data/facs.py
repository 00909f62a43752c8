"""FACS Action Unit names (no torch import): the one parser of AU column names that ``mien prepare --au-labels``
and the AU data modules share."""

from __future__ import annotations

import re

_AU_COL = re.compile(r"^AU_?0*(\d+)(_?[LR])?$", re.IGNORECASE)


def au_column_name(column: str) -> str | None:
    """FACS name of a label column: ``AU1``/``au01``/``AU_1`` → ``AU01``; sided ``AU12L``/``AU12_R`` →
    ``AU12L``/``AU12R``; None when ``column`` is not an AU column."""
    m = _AU_COL.match(column.strip())
    if not m:
        return None
    side = (m.group(2) or "").lstrip("_").upper()
    return f"AU{int(m.group(1)):02d}{side}"


__all__ = ["au_column_name"]
