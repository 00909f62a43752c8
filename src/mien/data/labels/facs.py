"""FACS Action Unit names, codes and intensities (numpy only; torch tensors are accepted where noted, torch is
never imported here).

* :func:`au_column_name` — the one parser of AU column names (``AU1``/``au01``/``AU_1`` → ``AU01``), shared by
  ``mien prepare --au-labels`` and the AU datasets.
* :func:`normalize_intensity` — FACS intensity 0–5 → [0, 1] (divided by :data:`FACS_MAX`).
* :func:`parse_facs_codes` — CK+ ``"AU:intensity"`` code strings.
* :func:`sided_groups`, :func:`merge_sided`, :func:`output_au_names`, :func:`flip_permutation` — left/right AU
  columns (``AU12L``/``AU12R``, ``AU12_L``, ``L12``).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence

import numpy as np

__all__ = [
    "FACS_MAX",
    "au_column_name",
    "au_number",
    "flip_permutation",
    "merge_sided",
    "normalize_intensity",
    "output_au_names",
    "parse_facs_codes",
    "sided_groups",
]

FACS_MAX = 5.0
"""Largest FACS intensity (E); intensities are divided by it to give targets in [0, 1]."""

_AU_COL = re.compile(r"^AU_?0*(\d+)(_?[LR])?$", re.IGNORECASE)
_SIDE_RE = [re.compile(r"^(?P<base>.+?)_?(?P<side>[LR])$"), re.compile(r"^(?P<side>[LR])(?P<base>\d+)$")]


def au_column_name(column: str) -> str | None:
    """FACS name of a label column: ``AU1``/``au01``/``AU_1`` → ``AU01``; sided ``AU12L``/``AU12_R`` →
    ``AU12L``/``AU12R``; None when ``column`` is not an AU column."""
    m = _AU_COL.match(column.strip())
    if not m:
        return None
    side = (m.group(2) or "").lstrip("_").upper()
    return f"AU{int(m.group(1)):02d}{side}"


def au_number(name: str) -> int | None:
    """The first integer in an AU name (``"AU12L"`` → 12), None when there is none."""
    m = re.search(r"(\d+)", name)
    return int(m.group(1)) if m else None


def normalize_intensity(values, fmax: float = FACS_MAX) -> np.ndarray:
    """FACS intensities 0–``fmax`` -> float32 [0, 1] (NaN kept).

    Raises:
        ValueError: a finite value is outside [0, fmax].
    """
    v = np.asarray(values, np.float32)
    fin = v[np.isfinite(v)]
    if fin.size and (fin.min() < 0 or fin.max() > fmax):
        raise ValueError(f"intensities must lie in [0, {fmax}], got [{fin.min()}, {fin.max()}]")
    return v / np.float32(fmax)


def parse_facs_codes(codes: str) -> dict[int, int]:
    """``"9:4 17:2 25:0"`` -> ``{9: 4, 17: 2, 25: 0}`` (AU number -> CK+ intensity code, 0 = not coded).

    A bare ``"12"`` is read as intensity code 0. Raises ValueError on a malformed token.
    """
    out: dict[int, int] = {}
    for tok in str(codes or "").split():
        au, _, k = tok.partition(":")
        try:
            out[int(float(au))] = int(float(k)) if k else 0
        except ValueError as e:
            raise ValueError(f"bad FACS code {tok!r} in {codes!r}") from e
    return out


def sided_groups(names: Sequence[str]) -> tuple[list[str], list[list[int]]]:
    """Group left/right columns: ``["AU01", "AU12L", "AU12R"]`` -> ``(["AU01", "AU12"], [[0], [1, 2]])``.

    Recognised sided names: ``<base>L``/``<base>R``, ``<base>_L``/``<base>_R``, ``L<n>``/``R<n>`` (base ``AU<n>``,
    zero-padded to 2 digits). A side without its partner still forms a group of one.
    """
    merged: list[str] = []
    groups: list[list[int]] = []
    for i, n in enumerate(names):
        base = n
        for rx in _SIDE_RE:
            m = rx.match(n)
            if m and au_number(m.group("base")) is not None:
                base = m.group("base")
                if base.isdigit():
                    base = f"AU{int(base):02d}"
                break
        if base in merged:
            groups[merged.index(base)].append(i)
        else:
            merged.append(base)
            groups.append([i])
    return merged, groups


def merge_sided(x, groups: Sequence[Sequence[int]]):
    """Max over each group of columns: (N, A_in) -> (N, len(groups)); numpy (NaN-aware: NaN only where every
    column of the group is NaN) or a torch tensor (plain max)."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        return torch.stack([x[:, list(g)].amax(1) for g in groups], 1)
    x = np.asarray(x, np.float32)
    out = np.full((len(x), len(groups)), np.nan, np.float32)
    for j, g in enumerate(groups):
        col = x[:, list(g)]
        ok = np.isfinite(col).any(1)
        out[ok, j] = np.nanmax(col[ok], 1)
    return out


def output_au_names(au_names: Sequence[str], merge_sides: bool = False) -> list[str]:
    """The model's output names for a data config: ``au_names`` or their side-merged names."""
    return sided_groups(au_names)[0] if merge_sides else list(au_names)


def flip_permutation(names: Sequence[str]) -> list[int] | None:
    """Column permutation that swaps left/right AU columns (``AU12L`` <-> ``AU12R``) under a horizontal image
    flip; None when no column is sided."""
    perm = list(range(len(names)))
    for g in sided_groups(names)[1]:
        if len(g) == 2:
            perm[g[0]], perm[g[1]] = g[1], g[0]
    return None if perm == list(range(len(names))) else perm
