"""The ``df.mien`` pandas accessor for DataFrames made by :meth:`AnalysisResult.to_pandas`."""

from __future__ import annotations

import numpy as np
import pandas as pd


@pd.api.extensions.register_dataframe_accessor("mien")
class MienAccessor:
    """Array views of a mien results DataFrame (no DataFrame subclass).

    Example::

        df = mien.analyze("video.mp4").to_pandas()
        lm = df.mien.landmarks()        # (N, 478, 3) float32 pixels
        ypr = df.mien.head_pose()       # (N, 3) yaw, pitch, roll degrees
    """

    def __init__(self, df: pd.DataFrame):
        if "frame" not in df.columns or "face_id" not in df.columns:
            raise AttributeError("df.mien needs a mien results DataFrame (columns 'frame' and 'face_id')")
        self._df = df

    def _stack(self, name: str, dtype) -> np.ndarray:
        col = self._df[name].to_numpy()
        if len(col) == 0:
            return np.zeros((0,), dtype)
        return np.stack(col).astype(dtype, copy=False)

    def landmarks(self) -> np.ndarray:
        """(N, K, 3) float32: x, y pixels of the source frame, z in pixel scale (MediaPipe convention)."""
        out = self._stack("landmarks", np.float32)
        return out.reshape(0, 478, 3) if out.size == 0 else out

    def bbox(self) -> np.ndarray:
        """(N, 4) float32 x_min, y_min, x_max, y_max pixels."""
        out = self._stack("bbox", np.float32)
        return out.reshape(0, 4) if out.size == 0 else out

    def head_pose(self) -> np.ndarray:
        """(N, 3) float32 yaw, pitch, roll in degrees."""
        return self._df[["yaw_deg", "pitch_deg", "roll_deg"]].to_numpy(np.float32)

    def gaze(self) -> np.ndarray:
        """(N, 2) float32 combined gaze yaw, pitch in degrees."""
        return self._df[["gaze_yaw_deg", "gaze_pitch_deg"]].to_numpy(np.float32)

    def to_result(self):
        """Back to an :class:`~mien.AnalysisResult` (metadata from ``df.attrs['mien']``)."""
        from mien.results.result import COLUMN_SPECS, AnalysisResult

        cols = {}
        for name in self._df.columns:
            values = self._df[name].to_numpy()
            if len(values) and isinstance(values[0], np.ndarray):
                values = np.stack(values)
            elif name == "landmarks" and len(values) == 0:
                values = np.zeros((0, 478, 3), np.float32)
            elif name == "bbox" and len(values) == 0:
                values = np.zeros((0, 4), np.float32)
            cols[name] = values
        core = {k: v for k, v in cols.items() if k in COLUMN_SPECS}
        extra = {k: v for k, v in cols.items() if k not in COLUMN_SPECS}
        return AnalysisResult(**core, meta=dict(self._df.attrs.get("mien", {})), extra=extra)
