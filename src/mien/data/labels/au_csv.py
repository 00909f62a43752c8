"""Per-frame FACS Action Unit labels from CSV files (DISFA style), for ``mien prepare --au-labels``.

:func:`read_au_labels` reads one CSV or a folder of per-video CSVs into :class:`AULabels` tables;
:func:`match_au_labels` pairs them with source videos; :meth:`AULabels.lookup` gives the labels of the source
frames a clip shows.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mien.data import store
from mien.data.labels.facs import au_column_name
from mien.errors import InputError

AU_NOT_CODED = 9.0
"""DISFA's "not coded" value (read as NaN, like a blank or NaN cell)."""
AU_MAX = 5.0


def _au_sort_key(name: str) -> tuple[int, str]:
    return int(re.match(r"AU(\d+)", name).group(1)), name


@dataclass
class AULabels:
    """Per-frame FACS Action Unit labels of one source video (one table of :func:`read_au_labels`).

    Attributes:
        names: A FACS names (``AU01``, ``AU02``, …; sided ``AU12L``), shared by every video of a labels source.
        frame: (N,) int64 0-based source frame indices, sorted (when labelled by ``frame``), else None.
        time_sec: (N,) float64 presentation times in seconds, sorted (when labelled by ``time_sec``), else None.
        values: (N, A) float32 FACS intensities 0–5 (or 0/1 occurrence) with NaN = not coded.
        source: the CSV the rows came from.
    """

    names: list[str]
    frame: np.ndarray | None
    time_sec: np.ndarray | None
    values: np.ndarray
    source: str

    def lookup(self, src_index: np.ndarray, src_t: np.ndarray, tolerance: float) -> np.ndarray:
        """Labels of the source frames shown by clip frames.

        Args:
            src_index: (T,) int source frame indices shown (decoding = presentation order, 0-based).
            src_t: (T,) float their presentation times (s).
            tolerance: ``time_sec`` labels: largest |label time − frame time| accepted (s); half a source frame.

        Returns:
            (T, A) float32 FACS values, NaN where the frame has no label row (or the AU is not coded).
        """
        out = np.full((len(src_index), len(self.names)), np.nan, np.float32)
        if not len(self.values):
            return out
        if self.frame is not None:
            pos = np.clip(np.searchsorted(self.frame, src_index), 0, len(self.frame) - 1)
            ok = self.frame[pos] == np.asarray(src_index)
        else:
            t = np.asarray(src_t, np.float64)
            right = np.clip(np.searchsorted(self.time_sec, t), 0, len(self.time_sec) - 1)
            left = np.clip(right - 1, 0, len(self.time_sec) - 1)
            pos = np.where(np.abs(self.time_sec[left] - t) <= np.abs(self.time_sec[right] - t), left, right)
            ok = np.abs(self.time_sec[pos] - t) <= tolerance + 1e-6
        out[ok] = self.values[pos[ok]]
        return out


def _read_label_csv(fs, path: str, by_folder: bool) -> tuple[dict[str, dict], list[str], bytes]:
    """One labels CSV → ({video id: {"rows": [(frame | time, {name: value})], "kind"}}, AU names, raw bytes)."""
    import io

    with fs.open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(path, "AU labels CSV is not UTF-8 text") from None
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header:
        raise InputError(path, "AU labels CSV is empty (expected a header with video, frame|time_sec, AU1, …)")
    header = [h.strip() for h in header]
    lower = [h.lower() for h in header]
    cols = {}
    for i, h in enumerate(header):
        n = au_column_name(h)
        if n is not None:
            if n in cols:
                raise InputError(path, f"AU labels CSV has two columns for {n} ({header[cols[n]]}, {h})")
            cols[n] = i
    if not cols:
        raise InputError(path, "AU labels CSV has no AU column (AU1, AU01, AU12L, …)")
    if "frame" in lower:
        kind, kcol = "frame", lower.index("frame")
    elif "time_sec" in lower:
        kind, kcol = "time_sec", lower.index("time_sec")
    else:
        raise InputError(path, "AU labels CSV needs a frame (0-based source frame) or time_sec column")
    vcol = None
    if not by_folder:
        if "video" not in lower:
            raise InputError(path, "AU labels CSV needs a video column (file stem or path of the source video)")
        vcol = lower.index("video")
    stem = Path(path).stem
    videos: dict[str, dict] = {}
    seen: set = set()
    for n, row in enumerate(reader, start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) < len(header):
            row = row + [""] * (len(header) - len(row))
        vid = stem if vcol is None else row[vcol].strip()
        if not vid:
            raise InputError(path, f"line {n}: empty video")
        key = row[kcol].strip()
        try:
            pos = float(key)
        except ValueError:
            raise InputError(path, f"line {n}: {header[kcol]} {key!r} is not a number") from None
        if kind == "frame":
            if not np.isfinite(pos) or pos < 0 or pos != int(pos):
                raise InputError(path, f"line {n}: frame {key!r} is not a 0-based frame index")
            pos = int(pos)
        elif not np.isfinite(pos) or pos < 0:
            raise InputError(path, f"line {n}: time_sec {key!r} is not a time >= 0")
        if (vid, pos) in seen:
            raise InputError(path, f"line {n}: {kind} {key} of video {vid} is labelled twice")
        seen.add((vid, pos))
        vals = {}
        for name, i in cols.items():
            cell = row[i].strip()
            if cell == "" or cell.lower() in ("nan", "na", "n/a"):
                continue
            try:
                v = float(cell)
            except ValueError:
                raise InputError(path, f"line {n}: {header[i]} value {cell!r} is not a number") from None
            if v == AU_NOT_CODED:
                continue
            if not (0.0 <= v <= AU_MAX):
                raise InputError(path, f"line {n}: {header[i]} value {cell} is outside 0-5 "
                                       "(FACS intensity; blank, NaN or 9 = not coded)")
            vals[name] = v
        videos.setdefault(vid, {"kind": kind, "rows": []})["rows"].append((pos, vals))
    if not videos:
        raise InputError(path, "AU labels CSV has no label rows")
    return videos, list(cols), raw


def read_au_labels(path: str) -> tuple[dict[str, AULabels], str]:
    """Read DISFA-style per-frame AU labels.

    ``path`` is one CSV with a ``video`` column (the source video's file stem, file name or path/URI), or a
    folder (local or fsspec URL) of ``<video stem>.csv`` files (the CSV stem names the video; a ``video`` column
    is then ignored). Each row labels one source frame: ``frame`` (0-based index in presentation order; used
    when both are present) or ``time_sec`` (presentation time, s), and AU columns ``AU1``/``AU01``/``AU12L``/…
    (case-insensitive, renamed to FACS names ``AU01``, ``AU12L``) holding FACS intensities 0–5 or 0/1 occurrence;
    blank, NaN or 9 = not coded. Other columns are ignored. The AU names are the union over all CSVs, sorted by
    AU number (columns a CSV lacks are NaN).

    Returns:
        ({video id: :class:`AULabels`}, SHA-256 of the CSV bytes).

    Raises:
        InputError: one line naming the file and the reason (missing file, no AU / frame / video column,
            non-numeric cell, value outside 0–5, a frame labelled twice, no rows).
    """
    import hashlib

    fs, p = store.get_fs(path)
    if not fs.exists(p):
        raise InputError(path, "AU labels file or folder not found")
    if fs.isdir(p):
        files = sorted(f for f in fs.ls(p, detail=False) if f.lower().endswith(".csv"))
        if not files:
            raise InputError(path, "AU labels folder holds no .csv file")
        by_folder = True
    else:
        files, by_folder = [p], False
    h = hashlib.sha256()
    tables: dict[str, tuple[dict, str]] = {}
    names: set[str] = set()
    for f in files:
        videos, cols, raw = _read_label_csv(fs, f, by_folder)
        h.update(f.rsplit("/", 1)[-1].encode() + b"\0" + raw)
        names.update(cols)
        for vid, t in videos.items():
            if vid in tables:
                raise InputError(f, f"video {vid} is also labelled in {tables[vid][1]}")
            tables[vid] = (t, f)
    order = sorted(names, key=_au_sort_key)
    col = {n: j for j, n in enumerate(order)}
    out = {}
    for vid, (t, f) in tables.items():
        rows = sorted(t["rows"], key=lambda r: r[0])
        vals = np.full((len(rows), len(order)), np.nan, np.float32)
        for i, (_, d) in enumerate(rows):
            for n, v in d.items():
                vals[i, col[n]] = v
        keys = np.array([r[0] for r in rows])
        out[vid] = AULabels(order, keys.astype(np.int64) if t["kind"] == "frame" else None,
                            keys.astype(np.float64) if t["kind"] == "time_sec" else None, vals, f)
    return out, h.hexdigest()


def match_au_labels(sources: list[str], labels: dict[str, AULabels], path: str) -> dict[str, AULabels | None]:
    """{source: its labels or None}: a label video id matches a source's URI, path, file name or stem; else the
    id's own stem matches the source's stem (must be unique).

    Raises:
        InputError: a source's stem matches several label video ids.
    """
    by_stem: dict[str, list[str]] = {}
    for vid in labels:
        by_stem.setdefault(Path(vid.split("://")[-1]).stem, []).append(vid)
    out: dict[str, AULabels | None] = {}
    for s in sources:
        base = s.split("://")[-1]
        stem = Path(base).stem
        hit = next((c for c in (s, base, os.path.basename(base), stem) if c in labels), None)
        if hit is None:
            cands = by_stem.get(stem, [])
            if len(cands) > 1:
                raise InputError(path, f"video {s} matches several labelled videos ({', '.join(sorted(cands))}); "
                                       "use full paths in the video column")
            hit = cands[0] if cands else None
        out[s] = labels[hit] if hit is not None else None
    return out
