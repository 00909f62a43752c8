"""``ReactionModel``: speaker features → N listener reactions (REACT 25-d attributes), and its files.

It bundles the speaker-feature normalisation (per-feature mean/std of the training data), the listener
tokenizer (:mod:`~mien.models.reaction.tokenizers`) and the :class:`~mien.models.reaction.transformer.
ReactionTransformer`. Files: ``config.json`` (``{"format": "mien-reaction", "format_version": 1, "kind":
"reaction" | "tokenizer", "tokenizer": {...}, "transformer": {...}, "speaker_feature_names": [...],
"decoding": {...}}``) + ``model.safetensors``; a tokenizer alone is written with ``kind = "tokenizer"``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from mien.models.folder import read_model_folder, write_model_folder
from mien.models.reaction.decoding import maskgit_decode, online_decode
from mien.models.reaction.tokenizers import build_tokenizer
from mien.models.reaction.transformer import ReactionTransformer, TransformerConfig

__all__ = ["ReactionModel", "load_reaction_model", "load_reaction_tokenizer", "save_reaction_model",
           "save_reaction_tokenizer"]

FORMAT = "mien-reaction"
FORMAT_VERSION = 1


class ReactionModel(nn.Module):
    """Listener-reaction generator.

    Args:
        tokenizer: a fitted/trained listener tokenizer (frozen here).
        transformer: the :class:`ReactionTransformer` built for ``tokenizer`` and the speaker features.
        speaker_feature_names: the D_s names, in order (what ``mien.data.react.speaker_features`` computes).
        decoding: defaults of :meth:`generate` (``maskgit_steps``).
        fps: frame rate of the training data (speaker features must be computed on this grid).

    Buffers: ``speaker_mean``/``speaker_std`` (D_s,), and ``observed`` (25,) bool — the attributes the training
    listeners ever had (mien-analysed data has no valence/arousal, AU10 or contempt): the others are generated
    as NaN rather than as values no loss ever constrained.
    """

    def __init__(self, tokenizer: nn.Module, transformer: ReactionTransformer, speaker_feature_names: list[str],
                 decoding: dict | None = None, fps: float = 25.0):
        super().__init__()
        d = transformer.config.speaker_dim
        if len(speaker_feature_names) != d:
            raise ValueError(f"{len(speaker_feature_names)} speaker feature names for D_s={d}")
        if tuple(tokenizer.vocab_sizes) != tuple(transformer.config.vocab_sizes) or \
                tokenizer.frames_per_token != transformer.config.frames_per_token:
            raise ValueError("the transformer was not built for this tokenizer (vocabularies / frames per token)")
        self.tokenizer, self.transformer = tokenizer, transformer
        self.speaker_feature_names = list(speaker_feature_names)
        self.decoding = {"maskgit_steps": 8, **(decoding or {})}
        self.fps = float(fps)
        self.register_buffer("speaker_mean", torch.zeros(d))
        self.register_buffer("speaker_std", torch.ones(d))
        self.register_buffer("observed", torch.ones(25, dtype=torch.bool))

    def normalise_speaker(self, speaker: torch.Tensor) -> torch.Tensor:
        """(B, T, D_s) raw features → z-scored with the training statistics; NaN (missing) → 0 (the mean)."""
        if speaker.ndim != 3 or speaker.shape[-1] != self.speaker_mean.shape[0]:
            raise ValueError(f"speaker must be (B, T, {self.speaker_mean.shape[0]}), got {tuple(speaker.shape)}")
        z = (speaker.float() - self.speaker_mean) / self.speaker_std
        return torch.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0)

    @torch.no_grad()
    def generate(self, speaker: torch.Tensor, n: int, online: bool = False, temperature=1.0, top_k=None,
                 top_p=None, seed: int | None = None, steps: int | None = None) -> torch.Tensor:
        """N listener reactions per speaker.

        Args:
            speaker: (B, T, D_s) float32 raw speaker features (:attr:`speaker_feature_names`; NaN = missing).
            n: reactions per speaker (≥ 1).
            online: chunked causal decoding conditioned on the generated tokens (else offline MaskGIT).
            temperature, top_k, top_p: sampling; each a scalar or a sequence of n values (reaction i uses the
                i-th: per-sample schedules).
            seed: seed of the sampling generator (None: torch's global RNG).
            steps: MaskGIT steps (default ``decoding["maskgit_steps"]``).

        Returns:
            (B, n, T, 25) float32 in the REACT attribute layout (:data:`mien.metrics.react.REACT_ATTRIBUTES`);
            NaN in the attributes not :attr:`observed` in training.

        Raises:
            ValueError: bad shapes or values.
        """
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if speaker.ndim != 3 or speaker.shape[1] < 1:
            raise ValueError(f"speaker must be (B, T, D_s) with T >= 1, got {tuple(speaker.shape)}")
        b, t = speaker.shape[:2]
        dev = self.speaker_mean.device
        x = self.normalise_speaker(speaker.to(dev)).repeat_interleave(n, 0)  # (B·n, T, D)

        def per(v, dtype):
            if v is None or isinstance(v, (int, float)):
                return v
            vv = torch.as_tensor(v, dtype=dtype, device=dev)
            if vv.ndim == 0:
                return vv
            if vv.shape != (n,):
                raise ValueError(f"a per-reaction sampling schedule needs n={n} values, got {tuple(vv.shape)}")
            return vv.repeat(b)

        kw = {"temperature": per(temperature, torch.float32), "top_k": per(top_k, torch.long),
              "top_p": per(top_p, torch.float32)}
        gen = None
        if seed is not None:
            gen = torch.Generator(device=dev)
            gen.manual_seed(int(seed))
        was = self.training
        self.eval()
        try:
            if online:
                tokens = online_decode(self.transformer, x, generator=gen, **kw)
            else:
                tokens = maskgit_decode(self.transformer, x, steps or int(self.decoding["maskgit_steps"]),
                                        generator=gen, **kw)
            out = self.tokenizer.decode(tokens)[:, :t].masked_fill(~self.observed, float("nan"))
        finally:
            self.train(was)
        return out.float().reshape(b, n, t, -1).cpu()

    def config_dict(self) -> dict:
        return {"tokenizer": self.tokenizer.config(), "transformer": self.transformer.config.to_dict(),
                "speaker_feature_names": self.speaker_feature_names, "decoding": self.decoding, "fps": self.fps}


def _write(directory, meta: dict, module: nn.Module) -> Path:
    return write_model_folder(directory, meta, module.state_dict(), fmt=FORMAT, version=FORMAT_VERSION)


def _read(directory, kind: str, what: str) -> tuple[dict, dict]:
    return read_model_folder(directory, fmt=FORMAT, version=FORMAT_VERSION, kind=kind, what=what,
                             hint="written by `mien export reaction`")


def save_reaction_tokenizer(tokenizer: nn.Module, directory: str | os.PathLike, metrics: dict | None = None) -> Path:
    """Write a listener tokenizer (``kind = "tokenizer"``; ``metrics``: e.g. its held-out reconstruction error)."""
    return _write(directory, {"kind": "tokenizer", "tokenizer": tokenizer.config(), "metrics": metrics or {}},
                  tokenizer)


def _build_tokenizer(config: dict, state: dict) -> nn.Module:
    cfg = dict(config)
    if cfg.get("kind") == "seed":  # the table sizes come from the weights
        cfg.update(n_au=state["au_table"].shape[0], n_va=state["va_table"].shape[0],
                   n_exp=state["exp_centres"].shape[0])
    tok = build_tokenizer(cfg)
    tok.load_state_dict(state, strict=True)
    return tok


def load_reaction_tokenizer(directory: str | os.PathLike) -> nn.Module:
    """A tokenizer written by :func:`save_reaction_tokenizer` (eval mode).

    Raises:
        mien.errors.InputError: missing files or not a tokenizer export.
    """
    meta, state = _read(directory, "tokenizer", "reaction tokenizer")
    return _build_tokenizer(meta["tokenizer"], state).eval()


def save_reaction_model(model: ReactionModel, directory: str | os.PathLike, metrics: dict | None = None) -> Path:
    """Write ``config.json`` + ``model.safetensors`` (atomically per file)."""
    return _write(directory, {"kind": "reaction", **model.config_dict(), "metrics": metrics or {}}, model)


def load_reaction_model(directory: str | os.PathLike, device: str | torch.device = "cpu") -> ReactionModel:
    """The :class:`ReactionModel` written by :func:`save_reaction_model` (eval mode, float32).

    Raises:
        mien.errors.InputError: missing files, not a reaction model export.
    """
    meta, state = _read(directory, "reaction", "reaction model")
    tok_state = {k[len("tokenizer."):]: v for k, v in state.items() if k.startswith("tokenizer.")}
    tok = _build_tokenizer(meta["tokenizer"], tok_state)
    tcfg = dict(meta["transformer"])
    tcfg["vocab_sizes"] = tuple(tcfg["vocab_sizes"])
    model = ReactionModel(tok, ReactionTransformer(TransformerConfig(**tcfg)), meta["speaker_feature_names"],
                          meta.get("decoding"), meta.get("fps", 25.0))
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()
