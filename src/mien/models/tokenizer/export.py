"""Export and load tokenizer-family models as ``config.json`` + ``model.safetensors`` (no Lightning).

``config.json``: ``{"format": "mien-tokenizer", "format_version": 1, "kind": "tokenizer" | "predictor",
"config": {...}, "mien_version": ...}``; ``model.safetensors``: the full ``state_dict`` (float tensors as
trained, backbone included, so loading never downloads anything).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from mien.models.folder import read_model_folder, write_model_folder
from mien.models.tokenizer.config import PredictorConfig, TokenizerConfig
from mien.models.tokenizer.nets import ExpressionPredictor, ExpressionTokenizer

FORMAT = "mien-tokenizer"
FORMAT_VERSION = 1


def save_pretrained(model: ExpressionTokenizer | ExpressionPredictor, directory: str | os.PathLike) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into ``directory`` (created; files written atomically).

    Raises:
        TypeError: not a tokenizer-family model.
    """
    if isinstance(model, ExpressionTokenizer):
        kind = "tokenizer"
    elif isinstance(model, ExpressionPredictor):
        kind = "predictor"
    else:
        raise TypeError(f"expected ExpressionTokenizer or ExpressionPredictor, got {type(model).__name__}")
    return write_model_folder(directory, {"kind": kind, "config": model.config.to_dict()}, model.state_dict(),
                              fmt=FORMAT, version=FORMAT_VERSION)


def load_pretrained(directory: str | os.PathLike, device: str | torch.device = "cpu"
                    ) -> ExpressionTokenizer | ExpressionPredictor:
    """Rebuild a model written by :func:`save_pretrained` (eval mode, float32 as saved).

    Timm backbones are rebuilt with ``pretrained=False``: every weight comes from the safetensors file.

    Raises:
        mien.errors.InputError: config.json or model.safetensors missing, not a mien tokenizer export, or an
            unsupported format version.
    """
    meta, state = read_model_folder(directory, fmt=FORMAT, version=FORMAT_VERSION, kind=("tokenizer", "predictor"),
                                    what="tokenizer", hint="written by `mien export tokenizer`")
    if meta["kind"] == "tokenizer":
        model = ExpressionTokenizer(TokenizerConfig.from_dict({**meta["config"], "pretrained": False}))
    else:
        model = ExpressionPredictor(PredictorConfig.from_dict(meta["config"]))
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()
