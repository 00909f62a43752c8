"""Track identities across frames by box overlap (IoU) with optimal assignment."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of two sets of boxes.

    Args:
        a: (N, 4) boxes x_min, y_min, x_max, y_max (any consistent unit).
        b: (M, 4) boxes.

    Returns:
        float (N, M) IoU in [0, 1].
    """
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clip(0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clip(0).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


class IoUTracker:
    """Assigns stable integer ids to faces from frame to frame.

    A face keeps its id while its box overlaps (IoU ≥ ``min_iou``) the box of a face of the previous
    processed frame; assignment between frames is optimal (Hungarian algorithm, scipy). A track unseen for
    more than ``max_gap`` processed frames is dropped; a face that leaves and comes back gets a new id.
    Ids start at 0 and increase in order of first appearance.

    Args:
        min_iou: minimum IoU to continue a track.
        max_gap: processed frames a track may be missing before it ends.
    """

    def __init__(self, min_iou: float = 0.3, max_gap: int = 5):
        self.min_iou, self.max_gap = min_iou, max_gap
        self._boxes = np.zeros((0, 4), np.float32)
        self._ids = np.zeros(0, np.int64)
        self._missing = np.zeros(0, np.int64)
        self._next_id = 0

    @property
    def live_ids(self) -> set[int]:
        """Ids of the tracks still alive (seen within the last ``max_gap`` processed frames)."""
        return set(self._ids.tolist())

    def update(self, boxes: np.ndarray) -> np.ndarray:
        """Match this frame's boxes (N, 4) pixels to the live tracks; return their ids (N,) int64."""
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        ids = np.full(len(boxes), -1, np.int64)
        matched_tracks = np.zeros(len(self._ids), bool)
        if len(boxes) and len(self._ids):
            iou = box_iou(boxes, self._boxes)
            rows, cols = linear_sum_assignment(-iou)
            for r, c in zip(rows, cols, strict=True):
                if iou[r, c] >= self.min_iou:
                    ids[r] = self._ids[c]
                    matched_tracks[c] = True
        for i in np.flatnonzero(ids < 0):
            ids[i] = self._next_id
            self._next_id += 1
        # survivors: unmatched old tracks within the gap, plus this frame's faces
        keep = ~matched_tracks & (self._missing + 1 <= self.max_gap)
        self._boxes = np.concatenate([self._boxes[keep], boxes])
        self._ids = np.concatenate([self._ids[keep], ids])
        self._missing = np.concatenate([self._missing[keep] + 1, np.zeros(len(boxes), np.int64)])
        return ids
