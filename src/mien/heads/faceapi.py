"""face-api heads: emotion + 256-d expression embedding (FaceExpressionNet), and identity descriptors for
re-identification (FaceRecognitionNet).

Both are face-api networks ported to PyTorch (:mod:`mien.models.faceapi`, MIT), run in PyTorch or in
onnxruntime (an ONNX export of the shipped weights, cached, see :mod:`mien.heads.backends`). Their crops follow
the registered contracts ``faceapi-expression`` / ``faceapi-recognition``.

The expression head runs in onnxruntime where it is installed ("auto"; ~2× faster on a CPU). Its float32
results differ from PyTorch's in the last bits (max ~1e-5 on the embedding, emotion probabilities equal to 1e-6;
tests/test_heads.py holds them to 1e-4); ``backend="torch"`` gives PyTorch's exact values (the golden-output
test pins it). The identity head stays on PyTorch under "auto": it runs once per new track, so speed does not
matter, and its descriptors are kept in ``meta["identity"]``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from mien.heads.base import Head, file_info, sha256
from mien.results.result import ColumnSpec

EMOTIONS = ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")
"""Order of face-api's 7 expression classes (the ``emotion_<label>`` columns)."""
EXPRESSION_DIM = 256
# face-api's own same-person threshold on descriptor distance is 0.6; re-identification uses a stricter one
REID_MAX_DISTANCE = 0.5


@lru_cache(maxsize=4)
def _expression_net(device: str):
    """The shipped FaceExpressionNet on ``device`` in channels-last layout (~1.5x faster depthwise convolutions on
    CPU with oneDNN); loaded once per process and shared (eval mode, used under ``inference_mode`` only)."""
    import torch

    from mien.models.faceapi import load_expression_net

    return load_expression_net(device).to(memory_format=torch.channels_last)


@lru_cache(maxsize=4)
def _recognition_net(device: str):
    """The shipped FaceRecognitionNet on ``device``, loaded once per process and shared."""
    from mien.models.faceapi import load_recognition_net

    return load_recognition_net(device)


def resize_crops(crops: np.ndarray, size: int) -> np.ndarray:
    """uint8 (N, S, S, 3) square RGB crops resized to (N, size, size, 3) (OpenCV: bilinear up, area down), for the
    fixed input size of a face-api network."""
    import cv2

    crops = np.asarray(crops)
    if len(crops) == 0:
        return np.zeros((0, size, size, 3), np.uint8)
    if crops.shape[1:3] == (size, size):
        return crops
    return np.stack([cv2.resize(c, (size, size), interpolation=cv2.INTER_LINEAR if size > c.shape[0]
                                else cv2.INTER_AREA) for c in crops])


def _contract(name: str):
    from mien.models.registry import get_model_spec

    return get_model_spec(name).contract


def _weights(filename: str) -> str:
    from mien.models.faceapi import asset_path

    return str(asset_path(filename))


class _ExpressionOutputs:
    """``forward(x) -> (probs, embedding)`` of FaceExpressionNet, for the ONNX export."""

    @staticmethod
    def build():
        import torch

        from mien.models.faceapi import load_expression_net

        class Wrapped(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.net = load_expression_net("cpu")

            def forward(self, x):
                emb = self.net.embed(x)
                return torch.softmax(self.net.fc(emb), dim=1), emb

        return Wrapped().eval()


class ExpressionHead(Head):
    """Emotion probabilities (7 ``emotion_<label>`` columns, sum 1) and the 256-d ``expression_embedding``.

    Args:
        device: torch device ("cpu", "cuda").
        backend: "auto" (onnxruntime when installed and the device is the CPU, else PyTorch), "torch" or
            "onnxruntime".
        emit: add the emotion/embedding columns (False: the head runs only to feed the embedding to the
            default AU head, whose features contain it; its columns are then not output).
    """

    name = "expression"
    model_name = "faceapi-face-expression-1.7.15"

    def __init__(self, device: str = "cpu", backend: str = "auto", emit: bool = True):
        from mien.heads.backends import resolve_backend
        from mien.models.faceapi import EXPRESSION_WEIGHTS

        self.contract = _contract("faceapi-expression")
        self.device, self.emit = device, emit
        self.weights = _weights(EXPRESSION_WEIGHTS)
        self.backend = resolve_backend(backend, device)
        if self.backend == "onnxruntime":
            from mien.heads.backends import cached_onnx_session

            s = self.contract.crop_size
            self._session = cached_onnx_session("faceapi-expression", sha256(self.weights), _ExpressionOutputs.build,
                                                (2, 3, s, s), ["probs", "embedding"])
        else:
            import torch

            self._torch = torch
            self.net = _expression_net(device)

    def columns(self) -> list[ColumnSpec]:
        """``emotion_<label>`` for :data:`EMOTIONS` (probability) and ``expression_embedding`` (256,), when
        emitted; none otherwise."""
        if not self.emit:
            return []
        cols = [ColumnSpec(f"emotion_{label}", "float32", (), "probability",
                           f"probability of a {label} expression (face-api FaceExpressionNet, 7 classes sum to 1)")
                for label in EMOTIONS]
        cols.append(ColumnSpec("expression_embedding", "float32", (EXPRESSION_DIM,), "",
                               "(256,) face-api FaceExpressionNet features of the 112-px face crop, non-negative"))
        return cols

    def run(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities float32 (B, 7) in :data:`EMOTIONS` order (rows sum to 1) and embeddings float32 (B, 256)
        (non-negative) of crops uint8 (B, 112, 112, 3) RGB."""
        if len(crops) == 0:
            return np.zeros((0, len(EMOTIONS)), np.float32), np.zeros((0, EXPRESSION_DIM), np.float32)
        if self.backend == "onnxruntime":
            x = np.ascontiguousarray(np.asarray(crops).transpose(0, 3, 1, 2), np.float32)
            probs, emb = self._session.run(None, {"input": x})
            return probs.astype(np.float32), emb.astype(np.float32)
        torch = self._torch
        x = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float().to(self.device)
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            emb = self.net.embed(x)
            probs = torch.softmax(self.net.fc(emb), dim=1)
        return probs.cpu().numpy().astype(np.float32), emb.cpu().numpy().astype(np.float32)

    def emotions(self, crops: np.ndarray, batch: int = 64) -> np.ndarray:
        """Emotion probabilities float32 (N, 7) in :data:`EMOTIONS` order of uint8 (N, S, S, 3) RGB face crops of any
        square size S (resized by :func:`resize_crops`), in batches of ``batch``.

        Raises:
            ValueError: crops that are not uint8 (float [0, 1] crops would all read as one class).
        """
        crops = np.asarray(crops)
        if crops.dtype != np.uint8:
            raise ValueError(f"expected uint8 face crops (N, S, S, 3), got {crops.dtype}")
        if len(crops) == 0:
            return np.zeros((0, len(EMOTIONS)), np.float32)
        size = self.contract.crop_size
        return np.concatenate([self.run(resize_crops(crops[i:i + batch], size))[0]
                               for i in range(0, len(crops), batch)])

    def __call__(self, crops, landmarks, **inputs) -> dict[str, np.ndarray]:
        """{``emotion_<label>``: (B,), ``expression_embedding``: (B, 256)} (the embedding also when not emitted,
        for the heads that require it)."""
        probs, emb = self.run(crops)
        out = {f"emotion_{label}": probs[:, i] for i, label in enumerate(EMOTIONS)} if self.emit else {}
        out["expression_embedding"] = emb
        return out

    def model_info(self) -> dict:
        return file_info(self.model_name, self.weights)


class IdentityHead(Head):
    """128-d face descriptors (face-api FaceRecognitionNet, dlib-style metric: same person < 0.6).

    Adds no per-row column: :class:`ReIdentifier` runs it once per new track and ``meta["identity"]`` holds the
    mean descriptor per person.

    Args:
        device: torch device. backend: "auto" (= "torch": it runs once per new track, and its descriptors are
            stored in ``meta["identity"]`` rounded to 6 decimals, which ORT's last bits would change), "torch"
            or "onnxruntime".
    """

    name = "identity"
    model_name = "faceapi-face-recognition-1.7.15"

    def __init__(self, device: str = "cpu", backend: str = "auto"):
        from mien.heads.backends import resolve_backend
        from mien.models.faceapi import RECOGNITION_WEIGHTS

        self.contract = _contract("faceapi-recognition")
        self.device = device
        self.weights = _weights(RECOGNITION_WEIGHTS)
        self.backend = resolve_backend("torch" if backend == "auto" else backend, device)
        if self.backend == "onnxruntime":
            from mien.heads.backends import cached_onnx_session
            from mien.models.faceapi import load_recognition_net

            s = self.contract.crop_size
            self._session = cached_onnx_session("faceapi-recognition", sha256(self.weights),
                                                lambda: load_recognition_net("cpu"), (2, 3, s, s), ["descriptor"])
        else:
            import torch

            self._torch = torch
            self.net = _recognition_net(device)

    def columns(self) -> list[ColumnSpec]:
        return []

    def descriptors(self, crops: np.ndarray) -> np.ndarray:
        """Descriptors float32 (B, 128) of crops uint8 (B, 150, 150, 3) RGB cut by ``contract``."""
        if len(crops) == 0:
            return np.zeros((0, 128), np.float32)
        if self.backend == "onnxruntime":
            x = np.ascontiguousarray(np.asarray(crops).transpose(0, 3, 1, 2), np.float32)
            return self._session.run(None, {"input": x})[0].astype(np.float32)
        torch = self._torch
        x = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float().to(self.device)
        with torch.inference_mode():
            return self.net(x).cpu().numpy().astype(np.float32)

    def __call__(self, crops, landmarks, **inputs) -> dict[str, np.ndarray]:
        return {}

    def model_info(self) -> dict:
        return file_info(self.model_name, self.weights)


class ReIdentifier:
    """Maps tracker ids to person ids, giving a returning face its earlier id.

    When the tracker starts a new track, its identity descriptor is compared with those of tracks that have
    ended; the nearest within :data:`REID_MAX_DISTANCE` (Euclidean) gives its id back. Person ids start at 0
    in order of first appearance.

    Args:
        head: an :class:`IdentityHead`, or None (ids are then just numbered tracks).
    """

    def __init__(self, head: IdentityHead | None):
        self.head = head
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
            desc = None
            if self.head is not None:
                desc = self.head.descriptors(self.head.contract.cut(image, box)[None])[0]
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
