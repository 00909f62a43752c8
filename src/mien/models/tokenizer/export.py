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


def with_bank(model: ExpressionTokenizer, bank: int, k: int = 1, temperature: float = 1.0,
              distance: str = "aligned") -> ExpressionTokenizer:
    """A copy of a trained warp tokenizer whose decoder has an exemplar bank (``TokenizerConfig.warp_bank`` = ``bank``
    entries per subject, ``warp_bank_k``/``_temperature``/``_distance`` = ``k``/``temperature``/``distance``),
    every other weight copied and the banks empty (fill them: :func:`mien.models.tokenizer.bank.build_bank`). A bank
    changes only the drawing, so it is added after training (``mien export tokenizer --bank N --bank-data DATASET``).

    With a refinement U-Net (``warp_refiner_width`` > 0) the refiner, trained on the warp of the reference crop,
    is given the bank's drawing instead: with k > 1 the blend of the warped entries, with the NEAREST entry's crop
    and flow as its source image and flow. This is untested for refiner models (the benchmark that chose the bank,
    ``benchmarks/tokenizer_bank.py``, used ``warp_refiner_width`` 0).

    Raises:
        ValueError: not a warp decoder, or an invalid bank setting (:class:`TokenizerConfig`).
    """
    import dataclasses

    if model.config.decoder != "warp":
        raise ValueError(f"exemplar banks need the warp decoder (decoder='warp'), not {model.config.decoder!r}")
    cfg = dataclasses.replace(model.config, warp_bank=int(bank), warp_bank_k=int(k),
                              warp_bank_temperature=float(temperature), warp_bank_distance=distance, pretrained=False)
    new = ExpressionTokenizer(cfg).to(next(model.parameters()).device)
    old = {n: t for n, t in model.state_dict().items() if not n.startswith("reconstruction.bank_")}
    _load_allowing(new, old, ("reconstruction.bank_",), "with_bank")
    return new.train(model.training)


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
    # exports made before neutral meshes existed lack them: their swaps keep the reference as anchor
    if _load_allowing(model, state, ("reconstruction.bank_neutral_",), str(directory)):
        import warnings

        warnings.warn(f"{directory}: exported before neutral meshes; identity swaps move the target by the motion "
                      "from the subjects' references (re-export the checkpoint with `mien export tokenizer --bank N "
                      "--bank-data SHARDS` to anchor them at neutral faces)", stacklevel=2)
    return model.to(device).eval()


def load_weights_into(model: ExpressionTokenizer, directory: str | os.PathLike,
                      allow_missing: tuple[str, ...] = ("reconstruction.refiner.", "reconstruction.bank_")
                      ) -> list[str]:
    """Initialise ``model`` (in place) from the weights of a tokenizer written by :func:`save_pretrained` — a
    second training stage, e.g. the warp decoder's refinement trained on a points-only model
    (``warp_refiner_width`` 0 in the export, > 0 in ``model``; the refiner is zero-initialised, so the model still
    draws the plain warp after loading), or a warp decoder given an exemplar bank (``warp_bank`` > 0 in ``model``;
    fill it with :func:`mien.models.tokenizer.bank.build_bank` before drawing).

    Args:
        model: the model to initialise (its own config may add modules the export lacks).
        directory: the export folder (``config.json`` + ``model.safetensors``).
        allow_missing: prefixes of ``model``'s state keys that may be absent from the export (kept as
            initialised).

    Returns:
        The state keys kept as initialised (sorted).

    Raises:
        mien.errors.InputError: not a tokenizer export; or the export lacks keys outside ``allow_missing`` or
            has keys ``model`` does not (another architecture); or a tensor's shape differs.
    """
    _, state = read_model_folder(directory, fmt=FORMAT, version=FORMAT_VERSION, kind="tokenizer",
                                 what="tokenizer", hint="written by `mien export tokenizer`")
    return _load_allowing(model, state, allow_missing, str(directory))


def _load_allowing(model: torch.nn.Module, state: dict, allow_missing: tuple[str, ...], source: str) -> list[str]:
    """``model.load_state_dict(state)`` where keys of ``model`` starting with ``allow_missing`` may be absent (kept as
    initialised); returns those keys (sorted). InputError (naming ``source``) for other missing or unexpected keys
    or different shapes."""
    from mien.errors import InputError

    own = model.state_dict()
    missing = sorted(k for k in own if k not in state)
    bad = [k for k in missing if not k.startswith(allow_missing)] + sorted(k for k in state if k not in own)
    shape = [k for k in state if k in own and state[k].shape != own[k].shape]
    if bad or shape:
        what = bad[:3] if bad else [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in shape[:3]]
        raise InputError(source, f"weights do not fit {type(model).__name__} "
                         f"({'missing/unexpected keys' if bad else 'shapes differ'}: {', '.join(what)})")
    model.load_state_dict(state, strict=False)
    return missing
