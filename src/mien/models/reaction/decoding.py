"""Decoding of listener tokens: MaskGIT (offline) and chunked causal decoding with a KV cache (online).

* :func:`mask_count` — the MaskGIT cosine schedule used in training (Chang et al., "MaskGIT", CVPR 2022;
  seed 4 ``PretrainDataset``): with r ~ U(0, 1), ``ceil(n · cos(π r / 2))`` of n tokens are masked.
* :func:`masked_after` — the decoding schedule: after step k of K, ``floor(n · cos(π k / (2K)))`` tokens stay
  masked (0 after the last step).
* :func:`filter_logits` — temperature, top-k and top-p (nucleus), each a scalar or one value per sample (the
  seed's per-sample schedules: reaction i may use temperature t0 + i·Δt, …).
* :func:`maskgit_decode` — offline: start all-masked, per step sample every masked position, keep the most
  confident samples jointly over all streams and steps, re-mask the rest (seed ``predict``).
* :func:`online_decode` — online: chunk by chunk, the logits of a chunk condition on the speaker up to the
  chunk's end and on the listener tokens generated for the earlier chunks (``use_cache``: incremental with a
  KV cache; False: the whole prefix recomputed, the reference the cache is tested against).
"""

from __future__ import annotations

import math

import torch

from mien.models.reaction.transformer import ReactionTransformer

__all__ = ["filter_logits", "mask_count", "masked_after", "maskgit_decode", "online_decode"]


def mask_count(r: torch.Tensor, n: int) -> torch.Tensor:
    """Training mask counts ceil(n·cos(π r / 2)) for ratios r ∈ [0, 1) (long, in [1, n] for r < 1)."""
    return torch.ceil(n * torch.cos(math.pi / 2 * r)).long().clamp(0, n)


def masked_after(k: int, steps: int, n: int) -> int:
    """Tokens still masked after decoding step k (1…steps) of n: floor(n·cos(π k / (2·steps)))."""
    if not 1 <= k <= steps:
        raise ValueError(f"need 1 <= k <= steps, got k={k}, steps={steps}")
    return 0 if k == steps else int(math.floor(n * math.cos(math.pi / 2 * k / steps)))


def _per_sample(v, b: int, device, dtype) -> torch.Tensor | None:
    if v is None:
        return None
    t = torch.as_tensor(v, device=device, dtype=dtype)
    return t.expand(b) if t.ndim == 0 else t


def filter_logits(logits: torch.Tensor, temperature=1.0, top_k=None, top_p=None) -> torch.Tensor:
    """Log-probabilities (B, …, V) after temperature, top-k and top-p filtering (filtered entries −inf).

    ``temperature`` (> 0), ``top_k`` (≥ 1; None/0 = off), ``top_p`` ((0, 1]; None = off): scalars or (B,)
    tensors, one value per sample.
    """
    b, v = logits.shape[0], logits.shape[-1]
    shape = (b,) + (1,) * (logits.ndim - 1)
    t = _per_sample(temperature, b, logits.device, logits.dtype)
    if (t <= 0).any():
        raise ValueError("temperature must be > 0")
    x = logits / t.reshape(shape)
    k = _per_sample(top_k, b, logits.device, torch.long)
    if k is not None:
        k = torch.where(k <= 0, v, k.clamp(max=v))
        kth = x.sort(-1, descending=True).values.gather(-1, (k - 1).reshape(shape).expand(*x.shape[:-1], 1))
        x = x.masked_fill(x < kth, float("-inf"))
    p = _per_sample(top_p, b, logits.device, logits.dtype)
    if p is not None:
        srt, idx = x.sort(-1, descending=True)
        cum = srt.softmax(-1).cumsum(-1)
        drop = (cum - srt.softmax(-1)) >= p.reshape(shape)  # keep the smallest prefix with mass >= p
        x = x.masked_fill(drop.scatter(-1, idx, drop), float("-inf"))
    return x.log_softmax(-1)


def _sample(logp: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    flat = logp.reshape(-1, logp.shape[-1]).exp()
    return torch.multinomial(flat, 1, generator=gen).reshape(logp.shape[:-1])


@torch.no_grad()
def maskgit_decode(model: ReactionTransformer, speaker: torch.Tensor, steps: int = 8, temperature=1.0, top_k=None,
                   top_p=None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Offline MaskGIT decoding: speaker (B, T, D_s) → listener tokens (B, L, S) long.

    Each step: bidirectional forward, sample every position from the filtered distribution, confidence = the
    sample's probability (+inf for tokens fixed earlier), keep the ``n − masked_after(k)`` most confident
    tokens of each sample jointly over steps and streams, re-mask the rest.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    b = speaker.shape[0]
    n_steps = -(-speaker.shape[1] // model.config.frames_per_token)
    s = model.n_streams
    tokens = torch.zeros(b, n_steps, s, dtype=torch.long, device=speaker.device)
    masked = torch.ones(b, n_steps, s, dtype=torch.bool, device=speaker.device)
    n = n_steps * s
    for k in range(1, steps + 1):
        logits = model.forward_offline(speaker, tokens, masked)
        samples, conf = [], []
        for lg in logits:
            logp = filter_logits(lg.float(), temperature, top_k, top_p)
            x = _sample(logp, generator)
            samples.append(x)
            conf.append(logp.gather(-1, x.unsqueeze(-1)).squeeze(-1))
        cand = torch.where(masked, torch.stack(samples, -1), tokens)
        conf = torch.where(masked, torch.stack(conf, -1), torch.full_like(masked, float("inf"), dtype=torch.float))
        keep_masked = masked_after(k, steps, n)
        if keep_masked == 0:
            return cand
        order = conf.flatten(1).argsort(dim=-1, stable=True)  # lowest confidence first
        new_mask = torch.zeros(b, n, dtype=torch.bool, device=speaker.device)
        new_mask.scatter_(1, order[:, :keep_masked], True)
        masked = new_mask.reshape(b, n_steps, s)
        tokens = torch.where(masked, torch.zeros_like(cand), cand)
    return tokens


@torch.no_grad()
def online_decode(model: ReactionTransformer, speaker: torch.Tensor, temperature=1.0, top_k=None, top_p=None,
                  generator: torch.Generator | None = None, use_cache: bool = True) -> torch.Tensor:
    """Online decoding, chunk by chunk (``model.config.online_chunk`` steps): speaker (B, T, D_s) → (B, L, S).

    The logits of chunk j see the speaker up to the end of chunk j and the tokens generated for chunks < j.
    """
    win = model.speaker_windows(speaker)
    b, n_steps = win.shape[:2]
    c, s = model.config.online_chunk, model.n_streams
    tokens = torch.zeros(b, n_steps, s, dtype=torch.long, device=speaker.device)
    known = torch.zeros_like(tokens, dtype=torch.bool)
    cache, prev = None, None
    for start in range(0, n_steps, c):
        steps = torch.arange(start, min(start + c, n_steps), device=speaker.device)
        if use_cache:
            prev_tokens = None if prev is None else tokens[:, prev]
            logits, cache = model.online_step(win[:, steps], steps, prev_tokens, prev, cache)
        else:
            end = int(steps[-1]) + 1
            w = model.config.frames_per_token
            full = model.forward_online(speaker[:, :end * w] if speaker.shape[1] >= end * w else speaker,
                                        tokens[:, :end], known[:, :end])
            logits = [lg[:, steps] for lg in full]
        new = torch.stack([_sample(filter_logits(lg.float(), temperature, top_k, top_p), generator)
                           for lg in logits], -1)
        tokens[:, steps] = new
        known[:, steps] = True
        prev = steps
    return tokens
