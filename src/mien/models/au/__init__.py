"""Action Unit (AU) occurrence models.

The default model ships in ``mien/assets/au/`` (``au_default.safetensors``, ``config.json``,
``PROVENANCE.md``). It was trained by mien (``scripts/train_default_au.py``) on the FACS labels of CK+ — posed
expressions of 85 subjects — so treat its outputs on spontaneous, in-the-wild video as indicative. Typical use::

    from mien.models.au import load_default_au_model, au_features, predict_au

    feats = au_features(rgb_images, landmarks)      # (B, 1660): face-api embedding + aligned mesh
    probs = predict_au(feats)                       # (B, A) probabilities, columns = au_names()
    present = probs >= load_default_au_model().thresholds.numpy()

Inside ``mien analyze``, where the face-api embedding of the standard crop is already computed, use
:func:`combine_features` ``(embedding (B, 256), landmarks (B, 478, 3)) -> (B, 1660)``.
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
    "load_default_au_model",
    "predict_au",
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
    thresholds (the EER thresholds of the subject-disjoint cross-validation).

    Raises:
        FileNotFoundError: the weights or config are not installed.
    """
    from safetensors.torch import load as load_bytes

    from mien.models.au.head import AUHead

    cfg = default_config()
    model = AUHead(cfg["in_features"], cfg["au_names"], hidden=cfg["hidden"], dropout=cfg["dropout"])
    model.load_state_dict(load_bytes(_asset(DEFAULT_WEIGHTS).read_bytes()), strict=True)
    return model.to(device).eval()


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
            (in ``mien analyze``: the expression net's embedding of its 1.1× square landmark-box crop).
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


def _register() -> None:
    from mien.models.registry import InputContract, register_model

    register_model(
        "au-default", "au",
        InputContract(CROP_SIZE, "0-255", crop="landmark-box-square-1.1", landmark_scheme="mediapipe478"),
        "AU occurrence MLP on face-api embedding + aligned mesh (1660 features, combine_features); "
        "trained by mien on CK+ FACS labels (posed)",
    )(load_default_au_model)


_register()
