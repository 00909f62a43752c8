"""Neural face models run on crops during analysis: emotion + expression embedding, identity embedding.

Both are face-api networks ported to PyTorch (:mod:`mien.models.faceapi`, MIT); crops are squares around
the MediaPipe landmark box (:func:`mien.face.crops.square_box`, 1.1 × the longer side), black outside the
frame, as face-api pads its detection crops.
"""

from __future__ import annotations

import numpy as np

from mien.face.crops import crop_square, square_box

EMOTIONS = ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")
CROP_SCALE = 1.1
# face-api's own same-person threshold on descriptor distance is 0.6; re-identification uses a stricter one
REID_MAX_DISTANCE = 0.5


class ExpressionModel:
    """Batched emotion probabilities and 256-d expression embeddings (face-api FaceExpressionNet).

    Args:
        device: torch device string.
    """

    name = "faceapi-face-expression-1.7.15"
    input_size = 112

    def __init__(self, device: str = "cpu"):
        import torch

        from mien.models.faceapi import load_expression_net

        self._torch = torch
        self.device = device
        # channels-last memory layout: ~1.5x faster depthwise convolutions on CPU (oneDNN)
        self.net = load_expression_net(device).to(memory_format=torch.channels_last)

    def crop(self, image: np.ndarray, bbox: np.ndarray) -> np.ndarray:
        """(112, 112, 3) uint8 crop of one face from an RGB frame; ``bbox`` in pixels."""
        return crop_square(image, square_box(bbox, CROP_SCALE), self.input_size)

    def __call__(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run on crops (B, 112, 112, 3) uint8 RGB.

        Returns:
            probabilities (B, 7) float32 in :data:`EMOTIONS` order (rows sum to 1), embeddings (B, 256)
            float32 (non-negative).
        """
        torch = self._torch
        if len(crops) == 0:
            return np.zeros((0, 7), np.float32), np.zeros((0, 256), np.float32)
        x = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float().to(self.device)
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            emb = self.net.embed(x)
            probs = torch.softmax(self.net.fc(emb), dim=1)
        return probs.cpu().numpy().astype(np.float32), emb.cpu().numpy().astype(np.float32)


class IdentityModel:
    """128-d face descriptors (face-api FaceRecognitionNet, dlib-style metric: same person < 0.6)."""

    name = "faceapi-face-recognition-1.7.15"
    input_size = 150

    def __init__(self, device: str = "cpu"):
        import torch

        from mien.models.faceapi import load_recognition_net

        self._torch = torch
        self.device = device
        self.net = load_recognition_net(device)

    def __call__(self, image: np.ndarray, bbox: np.ndarray) -> np.ndarray:
        """Descriptor (128,) float32 of the face in ``bbox`` (pixels) of an RGB uint8 frame."""
        torch = self._torch
        crop = crop_square(image, square_box(bbox, CROP_SCALE), self.input_size)
        x = torch.from_numpy(crop).permute(2, 0, 1)[None].float().to(self.device)
        with torch.inference_mode():
            return self.net(x)[0].cpu().numpy().astype(np.float32)


class ReIdentifier:
    """Maps tracker ids to person ids, giving a returning face its earlier id.

    When the tracker starts a new track, its identity descriptor is compared with those of tracks that have
    ended; the nearest within :data:`REID_MAX_DISTANCE` (Euclidean) gives its id back. Person ids start at 0
    in order of first appearance.
    """

    def __init__(self, model: IdentityModel | None):
        self.model = model
        self._map: dict[int, int] = {}
        self._gallery: dict[int, np.ndarray] = {}  # person id -> mean descriptor
        self._counts: dict[int, int] = {}
        self._next = 0

    def person_ids(self, image: np.ndarray, track_ids: np.ndarray, boxes: np.ndarray,
                   live_tracks: set[int]) -> list[int]:
        """Person id for each of this frame's faces (``track_ids`` from the tracker, ``boxes`` (N, 4) px)."""
        out = []
        live_people = {self._map[t] for t in live_tracks if t in self._map}
        for tid, box in zip(track_ids.tolist(), boxes, strict=True):
            if tid in self._map:
                out.append(self._map[tid])
                continue
            pid = None
            desc = self.model(image, box) if self.model is not None else None
            if desc is not None and self._gallery:
                cands = [(float(np.linalg.norm(desc - g)), p) for p, g in self._gallery.items()
                         if p not in live_people and p not in out]
                if cands:
                    d, p = min(cands)
                    if d < REID_MAX_DISTANCE:
                        pid = p
            if pid is None:
                pid = self._next
                self._next += 1
            self._map[tid] = pid
            if desc is not None:
                n = self._counts.get(pid, 0)
                self._gallery[pid] = (self._gallery.get(pid, 0) * n + desc) / (n + 1)
                self._counts[pid] = n + 1
            live_people.add(pid)
            out.append(pid)
        return out

    def descriptors(self) -> dict[int, list[float]]:
        """Mean identity descriptor (128 floats) of every person id seen."""
        return {p: [round(float(v), 6) for v in g] for p, g in sorted(self._gallery.items())}
