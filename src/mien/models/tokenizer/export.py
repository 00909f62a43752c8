"""Export and load tokenizer-family models as ``config.json`` + ``model.safetensors`` (no Lightning).

``config.json``: ``{"format": "mien-tokenizer", "format_version": 1, "kind": "tokenizer" | "predictor",
"config": {...}, "mien_version": ...}``; ``model.safetensors``: the full ``state_dict`` (float tensors as
trained, backbone included, so loading never downloads anything).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from mien.models.tokenizer.config import PredictorConfig, TokenizerConfig
from mien.models.tokenizer.nets import ExpressionPredictor, ExpressionTokenizer

FORMAT = "mien-tokenizer"
FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def save_pretrained(model: ExpressionTokenizer | ExpressionPredictor, directory: str | os.PathLike) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into ``directory`` (created; files written atomically).

    Raises:
        TypeError: not a tokenizer-family model.
    """
    from safetensors.torch import save_file

    from mien._version import __version__

    if isinstance(model, ExpressionTokenizer):
        kind = "tokenizer"
    elif isinstance(model, ExpressionPredictor):
        kind = "predictor"
    else:
        raise TypeError(f"expected ExpressionTokenizer or ExpressionPredictor, got {type(model).__name__}")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": kind,
            "config": model.config.to_dict(), "mien_version": __version__}
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp_w, tmp_c = d / (WEIGHTS_NAME + ".tmp"), d / (CONFIG_NAME + ".tmp")
    save_file(state, str(tmp_w), metadata={"format": FORMAT, "kind": kind})
    tmp_c.write_text(json.dumps(meta, indent=2))
    os.replace(tmp_w, d / WEIGHTS_NAME)
    os.replace(tmp_c, d / CONFIG_NAME)
    return d


def load_pretrained(directory: str | os.PathLike, device: str | torch.device = "cpu"
                    ) -> ExpressionTokenizer | ExpressionPredictor:
    """Rebuild a model written by :func:`save_pretrained` (eval mode, float32 as saved).

    Timm backbones are rebuilt with ``pretrained=False``: every weight comes from the safetensors file.

    Raises:
        FileNotFoundError: config.json or model.safetensors missing.
        ValueError: not a mien tokenizer export or unsupported format version.
    """
    from safetensors.torch import load_file

    d = Path(directory)
    cfg_path, w_path = d / CONFIG_NAME, d / WEIGHTS_NAME
    for p in (cfg_path, w_path):
        if not p.is_file():
            raise FileNotFoundError(f"{p} not found")
    meta = json.loads(cfg_path.read_text())
    if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{cfg_path}: not a {FORMAT} v{FORMAT_VERSION} export")
    if meta["kind"] == "tokenizer":
        cfg = TokenizerConfig.from_dict({**meta["config"], "pretrained": False})
        model = ExpressionTokenizer(cfg)
    elif meta["kind"] == "predictor":
        model = ExpressionPredictor(PredictorConfig.from_dict(meta["config"]))
    else:
        raise ValueError(f"{cfg_path}: unknown kind {meta['kind']!r}")
    model.load_state_dict(load_file(str(w_path)), strict=True)
    return model.to(device).eval()
