"""Heads: the per-face neural models used at inference, behind one protocol (:class:`~mien.heads.base.Head`).

Each head has a registered input contract (the crop it takes), ``columns()`` (its per-row output columns with
units), ``model_info()`` (files and hashes for ``meta["models"]``) and a batched ``__call__(crops, landmarks)``;
:class:`mien.pipelines.frame_analyzer.FrameAnalyzer` runs the heads :func:`build_heads` returns for the options.

Heads: :class:`~mien.heads.faceapi.ExpressionHead` (emotion + expression embedding),
:class:`~mien.heads.faceapi.IdentityHead` (re-identification descriptors, with
:class:`~mien.heads.faceapi.ReIdentifier`), :class:`~mien.heads.au.DefaultAUHead` /
:class:`~mien.heads.au.CustomAUHead` (Action Units), :class:`~mien.heads.tokens.TokenHead` (expression tokens),
:class:`~mien.heads.face3d.Face3DHead` (3-D face model fit, no crop).

Adding an output: write ``mien/heads/<name>.py`` with a :class:`~mien.heads.base.Head` subclass, and add one
:class:`HeadSpec` to :data:`HEADS` saying which options switch it on and how to build it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mien.heads.base import Head, column_meta, empty_columns

__all__ = ["HEADS", "Head", "HeadSpec", "build_heads", "column_meta", "empty_columns"]


@dataclass(frozen=True)
class HeadSpec:
    """A head known to ``mien analyze``.

    Attributes:
        name: head name. flag: the CLI flag that switches it on (for messages).
        enabled: options -> whether it runs. build: (options, heads built so far) -> the head.
        needs_torch: options -> whether it needs PyTorch (checked before building, for a clear message).
    """

    name: str
    flag: str
    enabled: Callable[[Any], bool]
    build: Callable[[Any, list], Head]
    needs_torch: Callable[[Any], bool] = lambda o: True


def _expression(o, built) -> Head:
    from mien.heads.faceapi import ExpressionHead

    return ExpressionHead(o.device, o.backend, emit=o.emotion)


def _au(o, built) -> Head:
    from mien.heads.au import au_head

    return au_head(o.au_model, o.device, o.au_baseline)


def _tokens(o, built) -> Head:
    from mien.heads.tokens import TokenHead

    return TokenHead(o.tokenizer, o.device)


def _face3d(o, built) -> Head:
    if o.face3d_encoder:
        from mien.heads.face3d_learned import Face3DEncoderHead

        return Face3DEncoderHead(o.face3d_encoder, smooth=o.face3d_smooth, device=o.device)
    from mien.heads.face3d import Face3DHead

    return Face3DHead(o.face3d_model, smooth=o.face3d_smooth)


def _default_au(o) -> bool:
    import os

    return bool(o.au and not o.au_model) or bool(o.au_model and os.path.isdir(o.au_model))


HEADS: tuple[HeadSpec, ...] = (
    # the expression head also runs (without emitting columns) to feed its embedding to feature AU models
    HeadSpec("expression", "--emotion", lambda o: bool(o.emotion or _default_au(o)), _expression),
    HeadSpec("au", "--au/--au-model", lambda o: bool(o.au or o.au_model), _au,
             needs_torch=lambda o: not str(o.au_model or "").endswith(".onnx")),
    HeadSpec("tokenizer", "--tokenizer", lambda o: bool(o.tokenizer), _tokens),
    HeadSpec("face3d", "--face3d", lambda o: bool(o.face3d), _face3d),
)
"""The heads ``mien analyze`` can run, in run order (a head's ``requires`` come from heads before it)."""


def build_heads(options) -> list[Head]:
    """The heads an :class:`~mien.pipelines.analyze.AnalyzeOptions` switches on, in :data:`HEADS` order.

    Raises:
        ValueError: a head needs PyTorch, which is not installed; invalid model files.
        InputError: an unreadable tokenizer folder.
    """
    from mien.heads import base

    specs = [s for s in HEADS if s.enabled(options)]
    torch_specs = [s for s in specs if s.needs_torch(options)]
    if torch_specs and not base.torch_available():
        raise ValueError(f"{', '.join(s.flag for s in torch_specs)}: needs PyTorch, which is not installed "
                         f"(pip install \"mien[models]\")")
    heads: list[Head] = []
    for s in specs:
        heads.append(s.build(options, heads))
    return heads
