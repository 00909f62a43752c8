"""Listener facial-reaction generation (seed 4, UniFaRN / REACT; DIGEST §4): tokenizers, unified transformer,
decoding, and the :class:`ReactionModel` that ties them together.

Registered configurations (``mien.list_models("reaction")``):

============================ =================================================================================
``reaction-fsq``             FSQ tokenizer of 5-frame windows of the 25 REACT attributes, levels (8, 5, 5, 5)
                             = 1000 codes (Mentzer et al. 2023)
``reaction-seed-tokenizer``  seed 4's AU-combination / VA-grid / expression k-means streams (fit on data)
``reaction-tiny``            unified transformer, D = 64, 2 layers × 4 heads — trains on a CPU
``reaction-base``            unified transformer, D = 256, 6 layers × 8 heads
============================ =================================================================================

Inference::

    from mien.models.reaction import load_reaction_model
    model = load_reaction_model("exported/")
    model.speaker_feature_names                       # the D_s inputs, in order
    out = model.generate(speaker, n=10, online=False)  # speaker (B, T, D_s) float32 → (B, 10, T, 25) float32

Training: ``mien train reaction-tokenizer`` then ``mien train reaction`` (:mod:`mien.tasks.reaction`).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["FSQTokenizer", "ReactionModel", "ReactionTransformer", "SeedTokenizer", "TransformerConfig",
           "load_reaction_model", "load_reaction_tokenizer", "save_reaction_model", "save_reaction_tokenizer"]

_LAZY = {
    "FSQTokenizer": "mien.models.reaction.tokenizers",
    "SeedTokenizer": "mien.models.reaction.tokenizers",
    "ReactionTransformer": "mien.models.reaction.transformer",
    "TransformerConfig": "mien.models.reaction.transformer",
    "ReactionModel": "mien.models.reaction.model",
    "load_reaction_model": "mien.models.reaction.model",
    "load_reaction_tokenizer": "mien.models.reaction.model",
    "save_reaction_model": "mien.models.reaction.model",
    "save_reaction_tokenizer": "mien.models.reaction.model",
}

TRANSFORMERS = {
    "tiny": {"dim": 64, "layers": 2, "heads": 4, "mlp_ratio": 2.0, "dropout": 0.1},
    "base": {"dim": 256, "layers": 6, "heads": 8, "mlp_ratio": 4.0, "dropout": 0.1},
}
"""Sizes of the registered transformers (the speaker/tokenizer fields are given when building)."""


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _transformer_factory(**kw):
    from mien.models.reaction.transformer import ReactionTransformer, TransformerConfig

    if "vocab_sizes" in kw:
        kw["vocab_sizes"] = tuple(kw["vocab_sizes"])
    return ReactionTransformer(TransformerConfig(**kw))


def _fsq_factory(**kw):
    from mien.models.reaction.tokenizers import FSQTokenizer

    return FSQTokenizer(**kw)


def _seed_factory(**kw):
    from mien.models.reaction.tokenizers import SeedTokenizer

    return SeedTokenizer(**kw)


def _register() -> None:
    from mien.models.registry import InputContract, register_model

    attrs = InputContract(None, "0-1", crop="REACT listener attributes (B, T, 25)")
    register_model("reaction-fsq", "reaction", attrs, "FSQ listener-reaction tokenizer (5-frame windows, 1000 codes)",
                   levels=(8, 5, 5, 5), window=5, hidden=128, depth=2)(_fsq_factory)
    register_model("reaction-seed-tokenizer", "reaction", attrs,
                   "seed-4 AU-combination / VA-grid / expression k-means tokenizer (fit on data)")(_seed_factory)
    spk = InputContract(None, "0-1", crop="normalised speaker features (B, T, D_s) + listener tokens (B, L, S)")
    for name, sizes in TRANSFORMERS.items():
        register_model(f"reaction-{name}", "reaction", spk,
                       f"unified speaker-listener transformer (D={sizes['dim']}, {sizes['layers']} layers)",
                       **sizes)(_transformer_factory)


_register()
