"""Action Unit heads: mien's default AU model, and AU models trained by ``mien train au``.

* :class:`DefaultAUHead` — the shipped AUHead MLP (:mod:`mien.models.au`) on the face-api expression embedding
  (taken from :class:`~mien.heads.faceapi.ExpressionHead`'s ``expression_embedding``, so the net runs once) and
  the canonical-aligned mesh; optional per-track baseline normalisation in :meth:`DefaultAUHead.finish`.
* :func:`load_au_model` — an image AU model exported by ``mien export au`` (``.onnx`` with the contract JSON in
  the metadata key ``"mien_au"``), as an :class:`AURunner`; :class:`CustomAUHead` wraps it for analysis.
  A ``.ckpt`` is refused (analysis never imports the trainer or Lightning); a safetensors folder
  (:func:`mien.models.au.save_au_head` format) is a feature model and runs as a :class:`DefaultAUHead`.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from mien.heads.base import Head, file_info
from mien.models.au.images import prepare_image
from mien.results.result import ColumnSpec

ONNX_METADATA_KEY = "mien_au"
"""Key of the ONNX ``metadata_props`` entry holding the AU model's contract JSON (written by ``mien export au``)."""


def _probability_columns(names, source: str) -> list[ColumnSpec]:
    return [ColumnSpec(n, "float32", (), "probability", f"probability that {n} is present ({source})") for n in names]


class DefaultAUHead(Head):
    """AU occurrence probabilities from a feature AUHead (default: mien's shipped model).

    Features per face: the 256-d ``expression_embedding`` ‖ the 1404 canonical-aligned mesh values
    (:func:`mien.models.au.combine_features`). Probabilities are computed in :meth:`finish` over all rows at
    once, after the per-track baseline when ``baseline`` is on.

    Args:
        device: torch device.
        baseline: person-specific normalisation (each track's median feature vector replaced by the training
            population's mean before classification, as OpenFace does offline).
        folder: a :func:`mien.models.au.save_au_head` folder instead of the shipped model.
    """

    name = "au"
    contract = None
    requires = ("expression_embedding",)

    def __init__(self, device: str = "cpu", baseline: bool = False, folder: str | os.PathLike | None = None):
        from mien.models.au import DEFAULT_CONFIG, DEFAULT_WEIGHTS, load_au_head

        self.baseline, self.folder = baseline, folder
        if folder is None:
            from mien.models.au import _asset

            self.model = _default_model(device)
            self.files = [str(_asset(DEFAULT_WEIGHTS)), str(_asset(DEFAULT_CONFIG))]
            self.model_name, self.source = "mien-au-default-ckplus", "mien AU default model, posed CK+ training data"
        else:
            self.model = load_au_head(folder, device)
            self.files = [os.path.join(folder, DEFAULT_WEIGHTS), os.path.join(folder, DEFAULT_CONFIG)]
            self.model_name = f"mien-au-head:{os.path.basename(os.path.abspath(folder))}"
            self.source = os.path.basename(os.path.abspath(folder))
        self.names = list(self.model.au_names)

    def columns(self) -> list[ColumnSpec]:
        return _probability_columns(self.names, self.source)

    def finish(self, columns: dict[str, np.ndarray], face_id: np.ndarray) -> dict[str, np.ndarray]:
        """AU probabilities (N,) per AU name from ``expression_embedding`` (N, 256) and ``landmarks`` (N, 478, 3)."""
        from mien.models.au import combine_features, predict_au

        feats = combine_features(columns["expression_embedding"], columns["landmarks"])
        if self.baseline:
            population = self.model.feature_mean.cpu().numpy()
            for fid in np.unique(face_id):
                m = face_id == fid
                feats[m] = feats[m] - np.median(feats[m], axis=0) + population
        probs = predict_au(feats, self.model)
        return {name: probs[:, i] for i, name in enumerate(self.names)}

    def model_info(self) -> dict:
        if self.folder is None:
            return file_info(self.model_name, self.files[0])
        return file_info(self.model_name, *self.files)

    def meta(self) -> dict:
        return {"au": {"model": self.model_name, "names": list(self.names),
                       "thresholds": [float(t) for t in self.model.thresholds.cpu()],
                       "baseline": bool(self.baseline)}}


@lru_cache(maxsize=2)
def _default_model(device: str):
    """The shipped AU model, loaded once per process and shared (eval mode, inference only)."""
    from mien.models.au import load_default_au_model

    return load_default_au_model(device)


class AURunner:
    """An image AU model from :func:`load_au_model`.

    Attributes:
        names: A AU names. contract: the stored contract (dict: ``au_names``, ``image_size``, ``grayscale``,
            ``crop``, ``intensity``, …). input_contract: it as an :class:`~mien.models.registry.InputContract`.
        backend: "onnxruntime" (a session) or "torch" (a module, as the trainer builds one for its checks).

    Args:
        contract: the contract dict. session: an ``onnxruntime.InferenceSession`` with input ``image``.
        path: the model file (for messages). torch_model: instead of ``session``, a module mapping
            (B, 3, S, S) float32 [0, 1] to probs (B, A) [, intensity (B, A)].

    ``runner(crops)`` with crops (B, H, W, 3) uint8 RGB face crops (cut as the contract says; any H, W — resized
    to S like the training images) returns ``(names, probs)``, probs float32 (B, A) in [0, 1].
    :meth:`predict` also returns the intensity (B, A) in [0, 1] (×5 = FACS) when the model has one.
    """

    def __init__(self, contract: dict, session=None, path: str = "", torch_model=None):
        from mien.models.registry import InputContract

        self.contract, self.names = contract, list(contract["au_names"])
        self.input_contract = InputContract.from_dict(contract)
        self._session, self._model, self.path = session, torch_model, path
        self.backend = "torch" if torch_model is not None else "onnxruntime"

    def preprocess(self, crops) -> np.ndarray:
        """Crops (B, H, W, 3) or (H, W, 3) uint8 RGB → model input float32 (B, 3, S, S) in [0, 1].

        Raises:
            ValueError: not uint8 RGB crops.
        """
        crops = np.asarray(crops)
        if crops.ndim == 3:
            crops = crops[None]
        if crops.ndim != 4 or crops.shape[-1] != 3 or crops.dtype != np.uint8:
            raise ValueError(f"crops must be (B, H, W, 3) uint8 RGB, got {crops.shape} {crops.dtype}")
        s, gray = int(self.contract["image_size"]), bool(self.contract.get("grayscale", False))
        if not len(crops):
            return np.zeros((0, 3, s, s), np.float32)
        return np.stack([prepare_image(c, s, gray) for c in crops])

    def crop_faces(self, images, landmarks) -> np.ndarray:
        """Cut (B, S, S, 3) uint8 crops from B RGB images and their (B, 478, 3) pixel landmarks as the contract
        says (square landmark box)."""
        lm = np.asarray(landmarks, np.float32)
        lm = lm[None] if lm.ndim == 2 else lm
        boxes = np.concatenate([lm[..., :2].min(-2), lm[..., :2].max(-2)], -1)
        c = self.input_contract
        if not len(lm):
            return np.zeros((0, c.crop_size, c.crop_size, 3), np.uint8)
        return np.stack([c.cut(np.ascontiguousarray(img), b, m) for img, b, m in zip(images, boxes, lm, strict=True)])

    def predict(self, crops) -> dict:
        """Run the model on crops (B, H, W, 3) uint8 RGB cut by :meth:`crop_faces`.

        Returns:
            {"probs": float32 (B, A) occurrence probabilities in [0, 1]} plus, for models with an intensity
            head, "intensity": float32 (B, A) in [0, 1] (× 5 = FACS intensity).
        """
        x = self.preprocess(crops)
        if len(x) == 0:
            res = {"probs": np.zeros((0, len(self.names)), np.float32)}
            if self.has_intensity:
                res["intensity"] = np.zeros((0, len(self.names)), np.float32)
            return res
        if self._model is not None:
            import torch

            with torch.no_grad():
                out = self._model(torch.from_numpy(x))
            out = [o.numpy() for o in ([out] if isinstance(out, torch.Tensor) else out)]
        else:
            out = self._session.run(None, {"image": x})
        res = {"probs": np.asarray(out[0], np.float32)}
        if len(out) > 1:
            res["intensity"] = np.asarray(out[1], np.float32)
        return res

    @property
    def has_intensity(self) -> bool:
        """Whether the model also predicts FACS intensity."""
        return self.contract.get("intensity", "none") != "none"

    def __call__(self, crops) -> tuple[list[str], np.ndarray]:
        return self.names, self.predict(crops)["probs"]


def refuse_checkpoint(path: str | os.PathLike) -> None:
    """Raise the one-line ValueError for a training checkpoint (``.ckpt``) given to analysis.

    Raises:
        ValueError: ``path`` ends in ``.ckpt`` (the message says how to convert it with ``mien export au``).
    """
    path = Path(path)
    if path.suffix == ".ckpt":
        raise ValueError(f"{path}: a training checkpoint; convert it with "
                         f"`mien export au --checkpoint {path} -o {path.with_suffix('.onnx').name}`")


def load_au_model(path: str | os.PathLike, device: str = "cpu") -> AURunner:
    """Load an image AU model exported by ``mien export au`` (``.onnx`` with ``"mien_au"`` metadata).

    Args:
        path: the ``.onnx`` file. device: accepted for API compatibility; ONNX models run on the CPU.

    Returns:
        :class:`AURunner`: ``runner(crops_uint8 (B, H, W, 3) RGB) -> (names, probs (B, A) float32)``.

    Raises:
        FileNotFoundError: missing file.
        ValueError: a ``.ckpt`` (one line: convert it with ``mien export au``), another suffix, or an ONNX
            file without mien AU metadata.
    """
    path = Path(path)
    refuse_checkpoint(path)
    if not path.is_file():
        raise FileNotFoundError(f"AU model not found: {path}")
    if path.suffix != ".onnx":
        raise ValueError(f"{path}: expected an .onnx file exported by `mien export au`")
    import onnx

    from mien.heads.backends import ort_session

    meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    if ONNX_METADATA_KEY not in meta:
        raise ValueError(f"{path}: no '{ONNX_METADATA_KEY}' metadata (not exported by `mien export au`)")
    return AURunner(json.loads(meta[ONNX_METADATA_KEY]), ort_session(path), str(path))


class CustomAUHead(Head):
    """AU probabilities (and FACS intensities 0–5 when the model has them) from an exported image AU model.

    Args:
        path: ``.onnx`` from ``mien export au``.
    """

    name = "au"

    def __init__(self, path: str | os.PathLike, device: str = "cpu"):
        self.runner = load_au_model(path, device)
        self.contract = self.runner.input_contract
        self.path = str(path)
        self.names = self.runner.names
        self.backend = self.runner.backend

    def columns(self) -> list[ColumnSpec]:
        cols = _probability_columns(self.names, os.path.basename(self.path))
        if self.runner.has_intensity:
            cols += [ColumnSpec(f"{n}_intensity", "float32", (), "FACS 0-5",
                                f"{n} intensity on the FACS scale 0 (absent) to 5 (E)") for n in self.names]
        return cols

    def __call__(self, crops, landmarks, **inputs) -> dict[str, np.ndarray]:
        pred = self.runner.predict(crops)
        out = {n: pred["probs"][:, i] for i, n in enumerate(self.names)}
        if "intensity" in pred:
            inten = pred["intensity"] * 5.0  # the model predicts FACS intensity / 5
            out.update({f"{n}_intensity": inten[:, i] for i, n in enumerate(self.names)})
        return out

    def model_info(self) -> dict:
        return file_info("mien-au-trained", self.path)

    def meta(self) -> dict:
        return {"au": {"model": os.path.basename(self.path), "names": list(self.names),
                       "thresholds": [0.5] * len(self.names), "baseline": False}}


def au_head(path: str | os.PathLike | None = None, device: str = "cpu", baseline: bool = False) -> Head:
    """The AU head for ``mien analyze``: the default model (``path`` None), a :func:`mien.models.au.save_au_head`
    folder, or an exported ``.onnx``.

    Raises:
        ValueError: a ``.ckpt`` or unknown file; ``baseline`` with an image model.
        FileNotFoundError: missing file.
    """
    if path is None or os.path.isdir(path):
        return DefaultAUHead(device, baseline, path)
    if baseline:
        raise ValueError("au_baseline works with feature AU models (default or safetensors folder), not with "
                         f"{os.path.basename(str(path))}")
    return CustomAUHead(path, device)
