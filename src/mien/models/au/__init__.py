"""Action Unit (AU) occurrence models.

The default model ships in ``mien/assets/au/`` (``au_default.safetensors``, ``config.json``,
``PROVENANCE.md``). It was trained by mien's AU trainer (:class:`mien.tasks.au.AUFeaturesTask`, then
``AUTask(backbone="features")``; config ``mien/configs/au/default.yaml``, driven by ``scripts/train_default_au.py``) on the
FACS labels of CK+ — posed expressions of 85 subjects — so treat its outputs on spontaneous, in-the-wild video as
indicative. Loading and running it needs torch and safetensors only (no Lightning). Typical use::

    from mien.models.au import load_default_au_model, au_features, predict_au

    feats = au_features(rgb_images, landmarks)      # (B, 1660): face-api embedding + aligned mesh
    probs = predict_au(feats)                       # (B, A) probabilities, columns = au_names()
    present = probs >= load_default_au_model().thresholds.numpy()

Inside ``mien analyze``, where the face-api embedding of the standard crop is already computed, use
:func:`combine_features` ``(embedding (B, 256), landmarks (B, 478, 3)) -> (B, 1660)``. For tight face crops
(CK+48), :func:`tight_crop_features` finds the landmarks on a padded upscale and also returns the features of the
mirrored image. :func:`save_au_head` / :func:`load_au_head` write / read an AUHead in the shipped format
(``au_default.safetensors`` + ``config.json``).
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import numpy as np

from mien.models.au.features import (
    CROP_SCALE,
    CROP_SIZE,
    EXPRESSION_DIM,
    GEOMETRY_DIM,
    align_to_canonical,
    expression_embeddings,
    face_crops,
    geometry_features,
)

__all__ = [
    "AUHead",
    "CROP_SCALE",
    "CROP_SIZE",
    "FEATURE_DIM",
    "align_to_canonical",
    "au_features",
    "au_names",
    "combine_features",
    "default_config",
    "expression_embeddings",
    "face_crops",
    "geometry_features",
    "landmark_bboxes",
    "load_au_head",
    "load_default_au_model",
    "predict_au",
    "save_au_head",
    "tight_crop_features",
]

FEATURE_DIM = EXPRESSION_DIM + GEOMETRY_DIM
"""D = 1660: the 256-d expression embedding followed by the 1404 aligned-mesh values."""
DEFAULT_WEIGHTS = "au_default.safetensors"
DEFAULT_CONFIG = "config.json"


def __getattr__(name: str) -> Any:
    if name == "AUHead":
        from mien.models.au.head import AUHead

        return AUHead
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _asset(filename: str):
    from importlib.resources import files

    path = files("mien").joinpath("assets", "au", filename)
    if not path.is_file():
        raise FileNotFoundError(f"AU model asset {filename} is missing from mien/assets/au")
    return path


@lru_cache(maxsize=1)
def default_config() -> dict:
    """The shipped ``mien/assets/au/config.json`` (feature spec, AU names, thresholds, training summary).

    Raises:
        FileNotFoundError: the asset is not installed.
    """
    return json.loads(_asset(DEFAULT_CONFIG).read_text())


def au_names() -> list[str]:
    """Names (``AU01`` …) of the default model's A output columns, in order."""
    return list(default_config()["au_names"])


def load_default_au_model(device: str = "cpu"):
    """Load mien's default AU occurrence model (an :class:`~mien.models.au.head.AUHead`, float32, eval mode).

    Its input is (B, 1660) features (:func:`au_features` / :func:`combine_features`); ``predict_proba``
    gives (B, A) probabilities for ``model.au_names``; ``model.thresholds`` (A,) are the per-AU decision
    thresholds (0.5; the out-of-fold EER thresholds of the subject-disjoint CV are in ``config.json``).

    Raises:
        FileNotFoundError: the weights or config are not installed.
    """
    return _head_from(default_config(), _asset(DEFAULT_WEIGHTS).read_bytes(), device)


def _head_from(cfg: dict, weights: bytes, device: str = "cpu"):
    from safetensors.torch import load as load_bytes

    from mien.models.au.head import AUHead

    model = AUHead(cfg["in_features"], cfg["au_names"], hidden=cfg["hidden"], dropout=cfg["dropout"])
    model.load_state_dict(load_bytes(weights), strict=True)
    return model.to(device).eval()


def load_au_head(folder, device: str = "cpu"):
    """Load an :class:`~mien.models.au.head.AUHead` saved by :func:`save_au_head` (the shipped default's format).

    Args:
        folder: directory holding ``au_default.safetensors`` and ``config.json``.
        device: torch device.

    Returns:
        the AUHead (float32, eval mode); input (B, D) features, ``predict_proba`` -> (B, A) in [0, 1].

    Raises:
        FileNotFoundError: a file is missing.
    """
    from pathlib import Path

    folder = Path(folder)
    for name in (DEFAULT_WEIGHTS, DEFAULT_CONFIG):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name} not found")
    cfg = json.loads((folder / DEFAULT_CONFIG).read_text())
    return _head_from(cfg, (folder / DEFAULT_WEIGHTS).read_bytes(), device)


def save_au_head(model, out_dir, thresholds=None, dropout: float | None = None, extra: dict | None = None) -> dict:
    """Write an AUHead in the default model's format: ``au_default.safetensors`` + ``config.json`` (atomic).

    The safetensors file holds every state-dict tensor as float32 (``feature_mean`` / ``feature_std`` (D,),
    ``thresholds`` (A,), the MLP weights); ``config.json`` holds ``in_features``, ``hidden``, ``dropout``,
    ``au_names``, ``thresholds``, the feature specification of :func:`combine_features` and ``extra``.
    :func:`load_au_head` (or, for ``mien/assets/au``, :func:`load_default_au_model`) reads it back; no
    Lightning is needed.

    Args:
        model: an :class:`~mien.models.au.head.AUHead` (D = 1660 default features).
        out_dir: destination folder (created).
        thresholds: (A,) per-AU decision thresholds in [0, 1] (default: the model's ``thresholds`` buffer).
        dropout: recorded dropout (default: read from the model).
        extra: more config entries (training data, hyper-parameters, CV summary); they override defaults.

    Returns:
        the config dict written.
    """
    import os
    from pathlib import Path

    import torch
    from safetensors.torch import save_file

    from mien.io.atomic import atomic_output
    from mien.models.registry import FACE_BOX_CROP

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if thresholds is not None:
        model.thresholds.copy_(torch.as_tensor(np.asarray(thresholds, np.float32)))
    if dropout is None:
        dropout = next((float(m.p) for m in model.modules() if isinstance(m, torch.nn.Dropout)), 0.0)
    state = {k: v.detach().cpu().contiguous().float() for k, v in model.state_dict().items()}
    with atomic_output(out_dir / DEFAULT_WEIGHTS) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt", "model": "mien-au-default"})
        os.chmod(tmp, 0o644)
    cfg = {
        "name": "mien-au-head",
        "model": "AUHead",
        "in_features": int(model.in_features),
        "hidden": int(model.hidden),
        "dropout": float(dropout),
        "au_names": list(model.au_names),
        "thresholds": [round(float(t), 6) for t in model.thresholds.cpu()],
        "thresholds_note": "decision thresholds (AU present when probability >= threshold)",
        "output": "sigmoid probabilities (B, A) of AU occurrence, columns in au_names order",
        "features": {
            "dim": FEATURE_DIM,
            "order": ["expression", "geometry"],
            "expression": {
                "dim": EXPRESSION_DIM,
                "net": "face-api FaceExpressionNet.embed (mien.models.faceapi.load_expression_net)",
                "crop": f"mien.face.crops.face_crop(rgb_uint8, {FACE_BOX_CROP!r}, {CROP_SIZE}, landmark_bbox) "
                        "(square of 1.1 x the longer side, centred on the box); landmark_bbox = min/max of the 478 "
                        "landmarks' x, y in pixels; black outside the image",
                "input": f"to_batch_tensor(crops, {CROP_SIZE}): RGB float [0, 255]",
            },
            "geometry": {
                "dim": GEOMETRY_DIM,
                "definition": "first 468 landmarks aligned to mien.face.geometry.canonical_face() by the "
                              "least-squares similarity transform (Umeyama 1991), minus the canonical face; "
                              "x, y, z per point, centimetres",
            },
            "function": "mien.models.au.combine_features(embedding, landmarks) / au_features(images, landmarks)",
        },
        "normalisation": "standardisation (x - feature_mean) / feature_std inside the model; both (D,) buffers "
                         f"are stored in {DEFAULT_WEIGHTS}",
    }
    cfg.update(extra or {})
    with atomic_output(out_dir / DEFAULT_CONFIG) as tmp:
        tmp.write_text(json.dumps(cfg, indent=2) + "\n")
    return cfg


@lru_cache(maxsize=2)
def _cached_model(device: str):
    return load_default_au_model(device)


def predict_au(features: Any, model=None) -> np.ndarray:
    """AU occurrence probabilities from (B, 1660) features.

    Args:
        features: (B, D) or (D,) float array/tensor from :func:`au_features` / :func:`combine_features`.
        model: an :class:`~mien.models.au.head.AUHead`; the default model (cached, CPU) when None.

    Returns:
        float32 (B, A) probabilities in [0, 1]; columns follow ``model.au_names`` (:func:`au_names`).

    Raises:
        ValueError: the feature width is not the model's D.
    """
    import torch

    if model is None:
        model = _cached_model("cpu")
    x = torch.as_tensor(np.asarray(features.detach().cpu() if hasattr(features, "detach") else features,
                                   np.float32))
    if x.ndim == 1:
        x = x[None]
    device = model.feature_mean.device
    return model.predict_proba(x.to(device)).cpu().numpy().astype(np.float32)


def landmark_bboxes(landmarks: np.ndarray) -> np.ndarray:
    """(B, K, 2|3) landmarks in pixels -> (B, 4) float32 boxes x_min, y_min, x_max, y_max (as ``mien analyze``)."""
    lm = np.asarray(landmarks, np.float32)
    return np.concatenate([lm[..., :2].min(-2), lm[..., :2].max(-2)], -1)


def combine_features(embedding: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Default-model features from precomputed parts.

    Args:
        embedding: (B, 256) face-api expression embeddings of ``face_crops(images, landmark_bboxes(lm))``
            (in ``mien analyze``: the expression head's embedding of its ``FACE_BOX_CROP`` crop).
        landmarks: (B, 478, 3) MediaPipe landmarks in pixels.

    Returns:
        float32 (B, 1660).

    Raises:
        ValueError: mismatched batch sizes or widths.
    """
    emb = np.asarray(embedding, np.float32).reshape(-1, EXPRESSION_DIM) if np.ndim(embedding) == 1 \
        else np.asarray(embedding, np.float32)
    lm = np.asarray(landmarks, np.float32)
    if lm.ndim == 2:
        lm = lm[None]
    if emb.ndim != 2 or emb.shape[1] != EXPRESSION_DIM or len(emb) != len(lm):
        raise ValueError(f"combine_features: embedding {emb.shape} and landmarks {lm.shape} do not match")
    return np.concatenate([emb, geometry_features(lm)], 1).astype(np.float32)


def au_features(images, landmarks: np.ndarray, net=None) -> np.ndarray:
    """Default-model features of B faces: crops, face-api embeddings and aligned mesh, in one call.

    Args:
        images: B RGB uint8 (H, W, 3) images (gray (H, W) is replicated), one per face.
        landmarks: (B, 478, 3) MediaPipe landmarks in each image's pixels.
        net: a loaded face-api expression net, or None to load it on the CPU.

    Returns:
        float32 (B, 1660).
    """
    lm = np.asarray(landmarks, np.float32)
    if lm.ndim == 2:
        lm = lm[None]
    crops = face_crops(images, landmark_bboxes(lm))
    return combine_features(expression_embeddings(crops, net), lm)


def tight_crop_features(images, mirror: bool = True, net=None, mesh=None) -> tuple[np.ndarray, np.ndarray | None,
                                                                                   np.ndarray]:
    """Default-model features of tightly cropped face images (e.g. CK+48), and of their mirror images.

    Landmarks come from :func:`~mien.models.au.features.tight_crop_landmarks` (upscale + black border so that
    MediaPipe finds faces that fill the image); the features are then those of :func:`au_features`. The
    mirrored features are those of the horizontally flipped image: the flipped crop's embedding ‖ the mesh of
    :func:`~mien.models.au.features.mirror_landmarks` (vertices swapped left/right).

    Args:
        images: B RGB uint8 (H, W, 3) or gray (H, W) images, one face each.
        mirror: also compute the mirrored features.
        net: a loaded face-api expression net (loaded on the CPU when None).
        mesh: a :class:`~mien.face.landmarker.MediaPipeFaceMesh` (a static full-range one when None).

    Returns:
        ``(features, mirrored, face_found)``: float32 (B, 1660); float32 (B, 1660) or None (``mirror=False``);
        bool (B,). Rows without a face are zeros.
    """
    from mien.models.au.features import mirror_landmarks, tight_crop_landmarks

    images = [np.repeat(np.asarray(im)[:, :, None], 3, axis=2) if np.ndim(im) == 2 else np.asarray(im)
              for im in images]
    lm = tight_crop_landmarks(images, mesh)
    ok = np.isfinite(lm).all(axis=(1, 2))
    feats = np.zeros((len(images), FEATURE_DIM), np.float32)
    flipped = np.zeros((len(images), FEATURE_DIM), np.float32) if mirror else None
    if ok.any():
        if net is None:
            from mien.models.faceapi import load_expression_net

            net = load_expression_net()
        idx = np.nonzero(ok)[0]
        crops = face_crops([images[i] for i in idx], landmark_bboxes(lm[idx]))
        feats[idx] = combine_features(expression_embeddings(crops, net), lm[idx])
        if mirror:
            widths = np.array([images[i].shape[1] for i in idx], np.float32)[:, None]
            lm_flip = mirror_landmarks(lm[idx], 0.0)
            lm_flip[..., 0] += widths
            flipped[idx] = combine_features(expression_embeddings(np.ascontiguousarray(crops[:, :, ::-1]), net),
                                            lm_flip)
    return feats, flipped, ok


def _register() -> None:
    from mien.models.registry import FACE_BOX_CROP, InputContract, register_model

    register_model(
        "au-default", "au",
        InputContract(CROP_SIZE, "0-255", crop=FACE_BOX_CROP, landmark_scheme="mediapipe478"),
        "AU occurrence MLP on face-api embedding + aligned mesh (1660 features, combine_features); "
        "trained by mien on CK+ FACS labels (posed)",
    )(load_default_au_model)


_register()
