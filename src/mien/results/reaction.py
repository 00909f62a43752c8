"""``ReactionResult``: N generated listener reactions to one speaker clip, in the REACT 25-attribute layout.

The 25 attributes per frame, in the order the REACT 2023/2024 challenges define (their ``Emotion/*.csv``):
15 AU occurrences (:data:`mien.metrics.react.REACT_AUS`, FACS names ``AU01`` …; [0, 1]), valence and arousal
([−1, 1]), 8 expression probabilities (:data:`~mien.metrics.react.REACT_EXPRESSIONS`, summing to 1) — the one
definition is :data:`mien.metrics.react.REACT_ATTRIBUTES`. Parquet layout (one row per
reaction × frame): ``reaction`` int32 (0 … n−1), ``frame`` int64, ``t_sec`` float64, then the 25 float32 columns
of :data:`REACT_ATTRIBUTES`; the footer (schema metadata key ``mien``) holds ``meta`` as JSON.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mien.metrics.react import REACT_ATTRIBUTES, REACT_AUS, REACT_EXPRESSIONS

__all__ = ["REACT_ATTRIBUTES", "REACT_AUS", "REACT_EXPRESSIONS", "ReactionResult", "read_reactions"]

_META_KEY = b"mien"
FORMAT = "mien-reactions"


@dataclass
class ReactionResult:
    """Generated listener reactions.

    Attributes:
        reactions: (n, T, 25) float32 in the layout of :data:`REACT_ATTRIBUTES` (AUs [0, 1], valence/arousal
            [−1, 1], expression probabilities).
        fps: frames per second of the frame axis (the speaker clip's).
        speaker: (T, 25) float32 attributes of the speaker (NaN where mien's models give none), or None.
        meta: JSON-serialisable provenance (speaker source, model, sampling options).
    """

    reactions: np.ndarray
    fps: float
    speaker: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        r = np.asarray(self.reactions, dtype=np.float32)
        if r.ndim != 3 or r.shape[-1] != len(REACT_ATTRIBUTES):
            raise ValueError(f"reactions must be (n, T, 25), got {r.shape}")
        self.reactions = r
        if self.speaker is not None:
            s = np.asarray(self.speaker, dtype=np.float32)
            if s.shape != r.shape[1:]:
                raise ValueError(f"speaker {s.shape} must be (T, 25) = {r.shape[1:]}")
            self.speaker = s
        if not self.fps > 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")

    @property
    def n(self) -> int:
        """Number of reactions."""
        return self.reactions.shape[0]

    def __len__(self) -> int:
        return self.reactions.shape[1]

    def to_pandas(self):
        """Long table: one row per reaction × frame (``reaction``, ``frame``, ``t_sec`` + 25 named columns)."""
        import pandas as pd

        n, t, _ = self.reactions.shape
        cols: dict[str, np.ndarray] = {
            "reaction": np.repeat(np.arange(n, dtype=np.int32), t),
            "frame": np.tile(np.arange(t, dtype=np.int64), n),
            "t_sec": np.tile(np.arange(t, dtype=np.float64) / self.fps, n),
        }
        flat = self.reactions.reshape(n * t, -1)
        cols.update({name: flat[:, i] for i, name in enumerate(REACT_ATTRIBUTES)})
        return pd.DataFrame(cols)

    def to_parquet(self, path: str | os.PathLike) -> None:
        """Write atomically (zstd); :func:`read_reactions` gives back the same result."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from mien.io.atomic import atomic_output

        table = pa.Table.from_pandas(self.to_pandas(), preserve_index=False)
        meta = {"format": FORMAT, "fps": self.fps, "meta": self.meta,
                "speaker": None if self.speaker is None else np.where(np.isnan(self.speaker), None,
                                                                      self.speaker).tolist()}
        table = table.replace_schema_metadata({_META_KEY: json.dumps(meta, default=_json_default).encode()})
        with atomic_output(path) as tmp:
            pq.write_table(table, tmp, compression="zstd")


def _json_default(o: Any):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def read_reactions(path: str | os.PathLike) -> ReactionResult:
    """Read a file written by :meth:`ReactionResult.to_parquet`.

    Raises:
        mien.errors.InputError: missing file, not Parquet, or not a mien reactions file.
    """
    from mien.errors import InputError
    from mien.results.files import read_parquet_table

    table = read_parquet_table(path)
    raw = (table.schema.metadata or {}).get(_META_KEY)
    meta = json.loads(raw) if raw else {}
    if meta.get("format") != FORMAT or not set(REACT_ATTRIBUTES) <= set(table.column_names):
        raise InputError(path, "not a mien reactions file (written by `mien react`)")
    df = table.to_pandas()
    n, t = int(df["reaction"].max()) + 1, int(df["frame"].max()) + 1
    if len(df) != n * t:
        raise InputError(path, f"{len(df)} rows, expected reactions × frames = {n} × {t}")
    df = df.sort_values(["reaction", "frame"], kind="stable")
    reactions = df[list(REACT_ATTRIBUTES)].to_numpy(np.float32).reshape(n, t, -1)
    spk = meta.get("speaker")
    speaker = None if spk is None else np.array([[np.nan if v is None else v for v in row] for row in spk],
                                                np.float32)
    return ReactionResult(reactions, float(meta["fps"]), speaker, meta.get("meta", {}))
