"""face-api's FaceExpressionNet and FaceRecognitionNet, ported to PyTorch, with their converted weights.

Source: face-api by Vincent Mühler (face-api.js), maintained as the npm package ``@vladmandic/face-api`` by
Vladimir Mandic; MIT licence. The converted weights ship in ``mien/assets/faceapi/`` with their provenance
(``PROVENANCE.md``) and licence (``LICENSE``).

Typical use::

    from mien.models.faceapi import load_expression_net, to_batch_tensor

    net = load_expression_net()
    x = to_batch_tensor(face_crops_rgb_uint8, 112)   # (B, 3, 112, 112), [0, 255]
    probs = net.predict_proba(x)                      # (B, 7), EXPRESSION_LABELS order
    emb = net.embed(x)                                # (B, 256) expression embedding

The torch-dependent names are imported lazily, so that :mod:`mien.models.faceapi.convert` works with numpy
and safetensors alone.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from mien.models.faceapi.nets import FaceExpressionNet, FaceRecognitionNet

__all__ = [
    "EXPRESSION_LABELS",
    "FaceExpressionNet",
    "FaceFeatureExtractor",
    "FaceRecognitionNet",
    "MEAN_RGB",
    "asset_path",
    "load_expression_net",
    "load_recognition_net",
    "to_batch_tensor",
]

_NET_NAMES = {
    "EXPRESSION_LABELS",
    "FaceExpressionNet",
    "FaceFeatureExtractor",
    "FaceRecognitionNet",
    "MEAN_RGB",
    "to_batch_tensor",
    "pad_to_square",
    "resize_bilinear_tf",
}

EXPRESSION_WEIGHTS = "face_expression.safetensors"
RECOGNITION_WEIGHTS = "face_recognition.safetensors"


def __getattr__(name: str) -> Any:
    if name in _NET_NAMES:
        return getattr(importlib.import_module("mien.models.faceapi.nets"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def asset_path(filename: str):
    """Traversable of a shipped face-api asset (``mien/assets/faceapi/<filename>``) via importlib.resources.

    Raises:
        FileNotFoundError: the asset is not installed.
    """
    from importlib.resources import files

    path = files("mien").joinpath("assets", "faceapi", filename)
    if not path.is_file():
        raise FileNotFoundError(f"face-api asset {filename} is missing from mien/assets/faceapi")
    return path


def _load(module: torch.nn.Module, filename: str, device: str | torch.device) -> torch.nn.Module:
    import torch
    from safetensors.torch import load as load_bytes

    state = load_bytes(asset_path(filename).read_bytes())
    state = {k: v.to(torch.float32) for k, v in state.items()}
    module.load_state_dict(state, strict=True)
    return module.to(device).eval()


def load_expression_net(device: str | torch.device = "cpu") -> FaceExpressionNet:
    """Load the shipped face-api FaceExpressionNet (float32, eval mode).

    Args:
        device: torch device to move the net to.

    Returns:
        :class:`~mien.models.faceapi.nets.FaceExpressionNet`: ``forward`` (B, 3, 112, 112) [0, 255] RGB ->
        (B, 7) logits, ``predict_proba`` -> probabilities, ``embed`` -> (B, 256) embedding.

    Raises:
        FileNotFoundError: the converted weights are not installed.
    """
    from mien.models.faceapi.nets import FaceExpressionNet

    return _load(FaceExpressionNet(), EXPRESSION_WEIGHTS, device)


def load_recognition_net(device: str | torch.device = "cpu") -> FaceRecognitionNet:
    """Load the shipped face-api FaceRecognitionNet (weights stored as float16, run in float32, eval mode).

    Args:
        device: torch device to move the net to.

    Returns:
        :class:`~mien.models.faceapi.nets.FaceRecognitionNet`: (B, 3, 150, 150) [0, 255] RGB -> (B, 128)
        descriptors.

    Raises:
        FileNotFoundError: the converted weights are not installed.
    """
    from mien.models.faceapi.nets import FaceRecognitionNet

    return _load(FaceRecognitionNet(), RECOGNITION_WEIGHTS, device)


def _register() -> None:
    from mien.models.registry import FACE_BOX_CROP, InputContract, register_model

    mean = (122.782, 117.001, 104.298)
    crop = FACE_BOX_CROP
    register_model("faceapi-expression", "faceapi",
                   InputContract(112, "0-255", mean, (255.0, 255.0, 255.0), crop=crop),
                   "face-api FaceExpressionNet: 7 emotions + 256-d embedding (MIT, converted weights)",
                   )(load_expression_net)
    register_model("faceapi-recognition", "faceapi",
                   InputContract(150, "0-255", mean, (255.0, 255.0, 255.0), crop=crop),
                   "face-api FaceRecognitionNet: 128-d identity descriptor (MIT, converted weights)",
                   )(load_recognition_net)


_register()
