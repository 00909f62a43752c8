"""``AnalysisResult``: the per-(frame, face) record of mien's analysis, with its schema and units."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SCHEMA_VERSION = "1.0"


@dataclass(frozen=True)
class ColumnSpec:
    """One per-row column of :class:`AnalysisResult`.

    Attributes:
        name: column name (snake_case, unit suffix where it has one).
        dtype: numpy dtype name.
        shape: per-row trailing shape; ``None`` entries take their size from the data (landmark count).
        unit: unit of the values ("" when dimensionless / an index).
        description: meaning, coordinate frame and value range.
    """

    name: str
    dtype: str
    shape: tuple
    unit: str
    description: str


_POSE = "camera frame (x right, y down, z away), R = Rx(pitch)·Ry(yaw)·Rz(roll)"
COLUMNS: tuple[ColumnSpec, ...] = (
    ColumnSpec("frame", "int64", (), "", "0-based index of the frame in the source's decoding order"),
    ColumnSpec("t_sec", "float64", (), "s", "presentation time from the container's timestamps, first frame at 0"),
    ColumnSpec("face_id", "int32", (), "", "track id, stable while the face stays in view, from 0"),
    ColumnSpec("confidence", "float32", (), "", "face-detector score in [0, 1] of the detection that started "
               "or last refreshed this face's track"),
    ColumnSpec("bbox", "float32", (4,), "px", "face box x_min, y_min, x_max, y_max in source-frame pixels"),
    ColumnSpec("landmarks", "float32", (None, 3), "px", "landmarks (K, 3): x, y in source-frame pixels; z in "
               "pixel scale relative to the head centre, smaller = closer (MediaPipe); scheme in metadata"),
    ColumnSpec("yaw_deg", "float32", (), "deg", "head yaw, + = face turned toward the image's left; " + _POSE),
    ColumnSpec("pitch_deg", "float32", (), "deg", "head pitch, + = face pointing down; " + _POSE),
    ColumnSpec("roll_deg", "float32", (), "deg", "head roll, + = top of head toward the image's right; " + _POSE),
    ColumnSpec("tx_mm", "float32", (), "mm", "head centre x in the camera frame (assumed focal = frame width)"),
    ColumnSpec("ty_mm", "float32", (), "mm", "head centre y in the camera frame"),
    ColumnSpec("tz_mm", "float32", (), "mm", "head centre distance along the optical axis"),
    ColumnSpec("gaze_yaw_deg", "float32", (), "deg", "gaze of both eyes combined, + = toward the image's left"),
    ColumnSpec("gaze_pitch_deg", "float32", (), "deg", "gaze of both eyes combined, + = down"),
    ColumnSpec("gaze_left_yaw_deg", "float32", (), "deg", "subject's left eye gaze yaw"),
    ColumnSpec("gaze_left_pitch_deg", "float32", (), "deg", "subject's left eye gaze pitch"),
    ColumnSpec("gaze_right_yaw_deg", "float32", (), "deg", "subject's right eye gaze yaw"),
    ColumnSpec("gaze_right_pitch_deg", "float32", (), "deg", "subject's right eye gaze pitch"),
    ColumnSpec("ear_left", "float32", (), "", "eye aspect ratio of the subject's left eye (~0.3 open, <0.15 closed)"),
    ColumnSpec("ear_right", "float32", (), "", "eye aspect ratio of the subject's right eye"),
    ColumnSpec("mouth_open", "float32", (), "", "inner-lip gap / inner mouth width (0 closed)"),
    ColumnSpec("blink", "bool", (), "", "frame is part of a blink event (onset to offset)"),
)
COLUMN_SPECS = {c.name: c for c in COLUMNS}


def _json_normalise(meta: dict) -> dict:
    return json.loads(json.dumps(meta, default=_json_default))


def _json_default(o: Any):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, os.PathLike):
        return os.fspath(o)
    raise TypeError(f"metadata value of type {type(o).__name__} is not JSON serialisable")


@dataclass(eq=False)
class AnalysisResult:
    """Per-frame, per-face analysis of one source; one row per (frame, face), sorted by frame then face_id.

    A frame with no face has no row; a source with no face gives a valid zero-row result. Column meanings,
    units and coordinate frames are in :data:`COLUMNS` (and in every Parquet file's footer). N is the row
    count and K the landmark count (478 for MediaPipe, 68 for results read from OpenFace).

    Attributes:
        frame: int64 (N,)
        t_sec: float64 (N,) seconds
        face_id: int32 (N,)
        confidence: float32 (N,) in [0, 1]
        bbox: float32 (N, 4) pixels
        landmarks: float32 (N, K, 3) pixels
        yaw_deg, pitch_deg, roll_deg: float32 (N,) degrees
        tx_mm, ty_mm, tz_mm: float32 (N,) millimetres
        gaze_yaw_deg, gaze_pitch_deg, gaze_left_yaw_deg, gaze_left_pitch_deg, gaze_right_yaw_deg,
        gaze_right_pitch_deg: float32 (N,) degrees
        ear_left, ear_right, mouth_open: float32 (N,) ratios
        blink: bool (N,)
        meta: JSON-serialisable dict: source, fps, width, height, frames_processed, landmark_scheme, models,
            options, … (normalised through JSON so that it survives a file round trip unchanged).
        extra: further per-row columns by name, each an array with N rows (e.g. AU probabilities); their
            units/descriptions go in ``meta["extra_columns"][name]``.
    """

    frame: np.ndarray
    t_sec: np.ndarray
    face_id: np.ndarray
    confidence: np.ndarray
    bbox: np.ndarray
    landmarks: np.ndarray
    yaw_deg: np.ndarray
    pitch_deg: np.ndarray
    roll_deg: np.ndarray
    tx_mm: np.ndarray
    ty_mm: np.ndarray
    tz_mm: np.ndarray
    gaze_yaw_deg: np.ndarray
    gaze_pitch_deg: np.ndarray
    gaze_left_yaw_deg: np.ndarray
    gaze_left_pitch_deg: np.ndarray
    gaze_right_yaw_deg: np.ndarray
    gaze_right_pitch_deg: np.ndarray
    ear_left: np.ndarray
    ear_right: np.ndarray
    mouth_open: np.ndarray
    blink: np.ndarray
    meta: dict = field(default_factory=dict)
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(np.asarray(self.frame))
        for spec in COLUMNS:
            arr = np.asarray(getattr(self, spec.name), dtype=spec.dtype)
            if spec.name == "landmarks" and arr.size == 0 and arr.ndim != 3:
                arr = arr.reshape(0, 478, 3)
            if len(arr) != n:
                raise ValueError(f"column {spec.name} has {len(arr)} rows, expected {n}")
            want = (n,) + tuple(arr.shape[1 + i] if s is None else s for i, s in enumerate(spec.shape))
            if arr.shape != want:
                raise ValueError(f"column {spec.name} has shape {arr.shape}, expected {want}")
            setattr(self, spec.name, arr)
        for name, arr in self.extra.items():
            if name in COLUMN_SPECS:
                raise ValueError(f"extra column {name!r} clashes with a core column")
            if len(arr) != n:
                raise ValueError(f"extra column {name} has {len(arr)} rows, expected {n}")
        self.extra = {k: np.asarray(v) for k, v in self.extra.items()}
        self.meta = _json_normalise(self.meta)

    # ----------------------------------------------------------------- construction
    @classmethod
    def empty(cls, meta: dict | None = None, n_landmarks: int = 478) -> AnalysisResult:
        """A zero-row result (a source with no face)."""
        cols = {}
        for spec in COLUMNS:
            shape = tuple(n_landmarks if s is None else s for s in spec.shape)
            cols[spec.name] = np.zeros((0,) + shape, spec.dtype)
        return cls(**cols, meta=meta or {})

    @classmethod
    def derived_columns(cls) -> frozenset[str]:
        """Core columns with a default of None, derived from other columns when not given (in
        ``__post_init__``); a file or column dict without them is still complete."""
        return frozenset(f.name for f in dataclasses.fields(cls) if f.default is None and f.name in COLUMN_SPECS)

    @classmethod
    def from_columns(cls, columns: dict[str, np.ndarray], meta: dict | None = None,
                     n_landmarks: int = 478) -> AnalysisResult:
        """Build from a dict of columns; missing core columns are filled with NaN (False/-1 for non-floats),
        except :meth:`derived_columns`, which are derived from the others."""
        n = len(columns["frame"])
        cols, extra = {}, {}
        for spec in COLUMNS:
            if spec.name in columns:
                cols[spec.name] = columns[spec.name]
            elif spec.name not in cls.derived_columns():
                shape = (n,) + tuple(n_landmarks if s is None else s for s in spec.shape)
                fill = np.nan if np.dtype(spec.dtype).kind == "f" else (False if spec.dtype == "bool" else -1)
                cols[spec.name] = np.full(shape, fill, spec.dtype)
        for k, v in columns.items():
            if k not in COLUMN_SPECS:
                extra[k] = v
        return cls(**cols, meta=meta or {}, extra=extra)

    # ----------------------------------------------------------------- basic protocol
    def __len__(self) -> int:
        return len(self.frame)

    @property
    def n_landmarks(self) -> int:
        return self.landmarks.shape[1]

    def columns(self) -> dict[str, np.ndarray]:
        """All per-row columns, core first then extras, by name."""
        out = {spec.name: getattr(self, spec.name) for spec in COLUMNS}
        out.update(self.extra)
        return out

    def select(self, rows) -> AnalysisResult:
        """Rows by boolean mask or integer index array; metadata is kept."""
        return dataclasses.replace(
            self, **{s.name: getattr(self, s.name)[rows] for s in COLUMNS},
            extra={k: v[rows] for k, v in self.extra.items()}, meta=dict(self.meta))

    def for_face(self, face_id: int) -> AnalysisResult:
        """The rows of one track."""
        return self.select(self.face_id == face_id)

    def equals(self, other: AnalysisResult) -> bool:
        """Exact equality of every column (NaN equal to NaN) and of the metadata."""
        if not isinstance(other, AnalysisResult) or self.meta != other.meta:
            return False
        a, b = self.columns(), other.columns()
        if a.keys() != b.keys():
            return False
        for k in a:
            x, y = a[k], b[k]
            if x.shape != y.shape or x.dtype != y.dtype:
                return False
            if not np.array_equal(x, y, equal_nan=x.dtype.kind in "fc"):
                return False
        return True

    @classmethod
    def concat(cls, results: list[AnalysisResult], meta: dict | None = None) -> AnalysisResult:
        """Stack results of the same landmark scheme (rows in the given order)."""
        if not results:
            return cls.empty(meta)
        cols = {s.name: np.concatenate([getattr(r, s.name) for r in results]) for s in COLUMNS}
        keys = results[0].extra.keys()
        extra = {k: np.concatenate([r.extra[k] for r in results]) for k in keys}
        return cls(**cols, meta=meta if meta is not None else dict(results[0].meta), extra=extra)

    # ----------------------------------------------------------------- derived tables
    def blink_events(self):
        """Blink events as a pandas DataFrame.

        Columns: face_id, onset_frame, offset_frame (first/last frame of the blink), onset_t_sec,
        offset_t_sec, duration_sec (offset − onset time).
        """
        import pandas as pd

        from mien.face.blink import blink_events

        rows = []
        for fid in np.unique(self.face_id):
            m = self.face_id == fid
            for on_f, off_f, on_t, off_t in blink_events(self.t_sec[m], self.frame[m], self.blink[m]):
                rows.append((int(fid), on_f, off_f, on_t, off_t, off_t - on_t))
        return pd.DataFrame(rows, columns=["face_id", "onset_frame", "offset_frame", "onset_t_sec",
                                           "offset_t_sec", "duration_sec"])

    def summary(self) -> str:
        """One line: rows, faces, frames with a face, blinks."""
        n_frames = len(np.unique(self.frame))
        total = self.meta.get("frames_processed", n_frames)
        return (f"{len(self)} rows, {len(np.unique(self.face_id))} face track(s), face in {n_frames}/{total} "
                f"frames, {len(self.blink_events())} blink(s)")

    # ----------------------------------------------------------------- conversions
    def to_arrow(self):
        """A ``pyarrow.Table`` with units in field metadata and ``meta`` + schema in the schema metadata."""
        from mien.results.arrow import result_to_arrow

        return result_to_arrow(self)

    @classmethod
    def from_arrow(cls, table) -> AnalysisResult:
        """Inverse of :meth:`to_arrow` (exact)."""
        from mien.results.arrow import result_from_arrow

        return result_from_arrow(table)

    def to_pandas(self):
        """A pandas DataFrame, one row per (frame, face); array columns hold one numpy array per row.

        Use the ``df.mien`` accessor (``df.mien.landmarks()`` → (N, K, 3), ``df.mien.to_result()``) to get
        arrays back. ``df.attrs["mien"]`` holds the metadata.
        """
        import pandas as pd

        data = {}
        for name, arr in self.columns().items():
            data[name] = list(arr) if arr.ndim > 1 else arr
        df = pd.DataFrame(data)
        df.attrs["mien"] = dict(self.meta)
        return df

    def to_parquet(self, path: str | os.PathLike) -> None:
        """Write a Parquet file atomically (see :func:`mien.results.files.write_parquet`)."""
        from mien.results.files import write_parquet

        write_parquet(self, path)

    def to_csv(self, path: str | os.PathLike) -> None:
        """Write a flat CSV (landmarks as lm_x_0…, lm_y_0…, lm_z_0…), atomically."""
        from mien.results.files import write_csv

        write_csv(self, path)

    def to_openface(self, path: str | os.PathLike) -> None:
        """Write an OpenFace 2.x style CSV (see :func:`mien.results.openface.write_openface`)."""
        from mien.results.openface import write_openface

        write_openface(self, path)
