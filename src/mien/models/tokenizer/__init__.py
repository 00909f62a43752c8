"""Expression tokenizer family: face crops → one unit-norm expression token per frame, and back to faces.

Registered configurations (``mien.list_models("tokenizer")``):

=========================== ===================================================================================
``tokenizer-tiny``          conv patch encoder, 64² crops, 8×8 patches, D = 32 — trains on a CPU in seconds
``tokenizer-vit-tiny``      random-init tiny DINOv2-architecture timm ViT (56², patch 14, D = 32) — the same
                            code path as ``tokenizer-dinov2-s14``, for tests
``tokenizer-dinov2-s14``    the seed's model: frozen DINOv2 ViT-S/14 at 518² (1369 × 384 patch tokens), subject
                            embeddings (501), ExpT 4 heads × 4 layers, reconstruction 2 cross + 2 self layers
``tokenizer-dinov2-s14-inv`` the same, subject-invariant (no subject embedding; seed HEAD)
``tokenizer-faceapi-expression`` frozen pretrained face-api FaceExpressionNet ``dense3`` map (112², 7×7 × 256,
                            offline: weights ship with mien), D = 256
``tokenizer-faceapi-recognition`` frozen pretrained face-api FaceRecognitionNet ``conv256_2`` map (150²,
                            4×4 × 256, offline), D = 256
``tokenizer-warp-tiny``     frozen face-api FaceExpressionNet map (112²), D = 64, warp-guided decoder: the token
                            moves the 468 mesh points of a per-subject reference crop (piecewise-affine warp +
                            zero-initialised refinement; :mod:`mien.models.tokenizer.warp`); ``warp_bank`` > 0
                            warps the nearest of M stored frames per subject instead (:mod:`mien.models.tokenizer.bank`)
``tokenizer-timm``          any timm model by name (``timm_name=…``; default resnet18 at 224²)
``tokenizer-predictor-tiny`` next-token predictor, D = 32
``tokenizer-predictor-s``   next-token predictor, D = 384 (seed: 8 heads × 4 layers, ff 1536, 50 tokens)
=========================== ===================================================================================

Typical use::

    import mien
    from mien.models.tokenizer import save_pretrained, load_pretrained

    model = mien.create_model("tokenizer-tiny").eval()
    out = model(frames, subject_ids)          # frames (B, T, 3, 64, 64) float RGB in [0, 1]
    out.tokens.shape, out.recon.shape         # (B, T, 32), (B, T, 3, 64, 64)
    save_pretrained(model, "exported/")       # config.json + model.safetensors (no Lightning needed)
    same = load_pretrained("exported/")

Every config's input contract (crop size, mean/std applied by the model itself) comes from its config.
Torch and timm are imported only when a model is built. Source: seed 1 (ozgecanoz/face_expT @555e664);
see ``shared/seeds/DIGEST.md`` §1.
"""

from __future__ import annotations

import importlib
from typing import Any

from mien.models.tokenizer import config as _cfg
from mien.models.tokenizer.config import PredictorConfig, TokenizerConfig

__all__ = [
    "ExpressionPredictor",
    "ExpressionReconstruction",
    "ExpressionTokenizer",
    "ExpressionTransformer",
    "PredictorConfig",
    "TokenizerConfig",
    "TokenizerOutput",
    "contract_of",
    "load_pretrained",
    "save_pretrained",
]

_LAZY = {
    "ExpressionPredictor": "mien.models.tokenizer.nets",
    "ExpressionReconstruction": "mien.models.tokenizer.nets",
    "ExpressionTokenizer": "mien.models.tokenizer.nets",
    "ExpressionTransformer": "mien.models.tokenizer.nets",
    "TokenizerOutput": "mien.models.tokenizer.nets",
    "ConvPatchEncoder": "mien.models.tokenizer.patch",
    "TimmPatchTokenizer": "mien.models.tokenizer.patch",
    "FaceApiPatchTokenizer": "mien.models.tokenizer.faceapi_patch",
    "WarpDecoder": "mien.models.tokenizer.warp",
    "reference_frames": "mien.models.tokenizer.warp",
    "build_bank": "mien.models.tokenizer.bank",
    "save_pretrained": "mien.models.tokenizer.export",
    "load_pretrained": "mien.models.tokenizer.export",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def contract_of(config: TokenizerConfig | dict):
    """The :class:`~mien.models.registry.InputContract` of a tokenizer config (crop size and mean/std from it)."""
    from mien.models.registry import InputContract

    if isinstance(config, dict):
        config = TokenizerConfig(**config)
    return InputContract(config.crop_size, "0-1", tuple(config.mean), tuple(config.std), "RGB", config.crop)


def _tokenizer_factory(**kw):
    from mien.models.tokenizer.nets import build_tokenizer

    return build_tokenizer(**kw)


def _predictor_factory(**kw):
    from mien.models.tokenizer.nets import build_predictor

    return build_predictor(**kw)


def _register() -> None:
    from mien.models.registry import InputContract, register_model

    tok = [
        ("tokenizer-tiny", _cfg.TINY, "tiny conv-encoder expression tokenizer (64², D=32), CPU-trainable"),
        ("tokenizer-vit-tiny", _cfg.VIT_TINY, "tiny random-init DINOv2-architecture ViT tokenizer (56², D=32)"),
        ("tokenizer-dinov2-s14", _cfg.DINOV2_S14,
         "seed-1 expression tokenizer on frozen DINOv2 ViT-S/14 at 518² (1369×384), 501 subject embeddings"),
        ("tokenizer-dinov2-s14-inv", _cfg.DINOV2_S14_INVARIANT,
         "subject-invariant DINOv2 ViT-S/14 expression tokenizer (no subject embedding)"),
        ("tokenizer-faceapi-expression", _cfg.FACEAPI_EXPRESSION,
         "expression tokenizer on frozen pretrained face-api FaceExpressionNet features (112², 7×7×256, offline)"),
        ("tokenizer-faceapi-recognition", _cfg.FACEAPI_RECOGNITION,
         "expression tokenizer on frozen pretrained face-api FaceRecognitionNet features (150², 4×4×256, "
         "offline)"),
        ("tokenizer-warp-tiny", _cfg.WARP_TINY,
         "warp-guided expression tokenizer: face-api expression map (112², D=64) → mesh displacements → warp of a "
         "per-subject reference crop (+ refinement); draws faces from step 0"),
        ("tokenizer-timm", _cfg.TIMM_GENERIC, "expression tokenizer on any timm backbone (timm_name=...)"),
    ]
    for name, defaults, desc in tok:
        register_model(name, "tokenizer", contract_of(TokenizerConfig(**defaults)), desc, **defaults)(
            _tokenizer_factory)
    for name, defaults, desc in [
        ("tokenizer-predictor-tiny", _cfg.PREDICTOR_TINY, "tiny next-expression-token predictor (D=32)"),
        ("tokenizer-predictor-s", _cfg.PREDICTOR_S, "next-expression-token predictor (D=384, seed config)"),
    ]:
        register_model(name, "tokenizer", InputContract(None, "0-1", crop="expression tokens (B, T, D)"),
                       desc, **defaults)(_predictor_factory)


_register()
