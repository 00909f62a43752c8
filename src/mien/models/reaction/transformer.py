"""The unified speaker–listener transformer of seed 4 (UniFaRN, DIGEST §4.3), without its online leak.

Sequence: per token step t (``frames_per_token`` frames) one speaker token (a linear projection of the window's
normalised speaker features) followed by one token per listener stream s (embedding of the token id, or of the
stream's MASK id ``V_s``), interleaved ``[s_0, l_0^1 … l_0^S, s_1, …]``; each token gets a learned modality
embedding and the sinusoidal embedding of its STEP (not of its sequence index, so a KV cache may hold tokens in
any order). Every block has two attention modules — bidirectional (offline) and chunk-causal (online) — and one
shared MLP (pre-LN). Heads: one linear per listener stream, and the SLM head on a CLS token.

Online (chunk-causal) visibility, chunks of ``online_chunk`` steps, for a query q and key k with chunks c(·):
a key SPEAKER token is visible when c(k) ≤ c(q); a key LISTENER token when c(k) < c(q), or when q is a listener
token of the same chunk. Logits for the listener tokens of step t are read at the speaker token of step t. So
the prediction for step t sees the speaker up to the end of its chunk and the listener tokens of EARLIER chunks
only (the ones online decoding has generated): no target leakage (the seed let the speaker positions see the
listener tokens of their own chunk, and never fed generated tokens back; notes/04 §10).

Shapes: speaker (B, T, D_s) float; listener tokens (B, L, S) long with L = ceil(T / w); masks (B, L, S) bool.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ReactionTransformer", "TransformerConfig", "online_visibility"]


@dataclass
class TransformerConfig:
    """Attributes:
        speaker_dim: D_s speaker features per frame; frames_per_token: w (the tokenizer's).
        vocab_sizes: listener vocabulary per stream (the tokenizer's).
        dim, layers, heads, mlp_ratio, dropout: transformer size.
        online_chunk: token steps per online chunk (decoded together; 1 = step by step).
    """

    speaker_dim: int = 16
    frames_per_token: int = 5
    vocab_sizes: tuple[int, ...] = (1000,)
    dim: int = 64
    layers: int = 2
    heads: int = 4
    mlp_ratio: float = 2.0
    dropout: float = 0.1
    online_chunk: int = 1
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["vocab_sizes"] = list(self.vocab_sizes)
        return d


def sinusoid(pos: torch.Tensor, dim: int) -> torch.Tensor:
    """Fixed sinusoidal embedding (…, dim) of integer positions (…)."""
    half = dim // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, device=pos.device, dtype=torch.float32) / half)
    ang = pos.float().unsqueeze(-1) * freq
    emb = torch.cat([ang.sin(), ang.cos()], -1)
    return F.pad(emb, (0, dim - 2 * half))


def online_visibility(q_kind: torch.Tensor, q_chunk: torch.Tensor, k_kind: torch.Tensor,
                      k_chunk: torch.Tensor) -> torch.Tensor:
    """(Q, K) bool: may query attend to key in the online path (kind 0 = speaker, 1 = listener; module doc)."""
    qk, qc = q_kind[:, None], q_chunk[:, None]
    kk, kc = k_kind[None, :], k_chunk[None, :]
    return ((kk == 0) & (kc <= qc)) | ((kk == 1) & ((kc < qc) | ((qk == 1) & (kc == qc))))


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                cache: tuple[torch.Tensor, torch.Tensor] | None = None):
        """x (B, N, D); mask (N, K_total) bool (True = attend) or None; cache: earlier (k, v) (B, H, K0, Dh).
        Returns (out (B, N, D), (k, v) including the cache)."""
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if cache is not None:
            k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                             dropout_p=self.dropout if self.training else 0.0)
        return self.proj(out.transpose(1, 2).reshape(b, n, d)), (k, v)


class Block(nn.Module):
    """Pre-LN block with a bidirectional and a chunk-causal attention sharing one MLP."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.bi_attn = Attention(dim, heads, dropout)
        self.cas_attn = Attention(dim, heads, dropout)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim), nn.Dropout(dropout))
        self.drop = nn.Dropout(dropout)

    def forward(self, x, online: bool, mask=None, cache=None):
        a, kv = (self.cas_attn if online else self.bi_attn)(self.ln1(x), mask, cache)
        x = x + self.drop(a)
        return x + self.mlp(self.ln2(x)), kv


class ReactionTransformer(nn.Module):
    """UniFaRN-style unified transformer (module doc). Build with a :class:`TransformerConfig`."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        c = self.config = config
        if c.dim % c.heads:
            raise ValueError(f"dim {c.dim} must be divisible by heads {c.heads}")
        self.n_streams = len(c.vocab_sizes)
        self.speaker_proj = nn.Linear(c.speaker_dim * c.frames_per_token, c.dim)
        self.listener_emb = nn.ModuleList(nn.Embedding(v + 1, c.dim) for v in c.vocab_sizes)  # id v = MASK
        self.modality = nn.Parameter(torch.zeros(1 + self.n_streams, c.dim))
        self.cls = nn.Parameter(torch.zeros(c.dim))
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(Block(c.dim, c.heads, c.mlp_ratio, c.dropout) for _ in range(c.layers))
        self.ln_f = nn.LayerNorm(c.dim)
        self.heads = nn.ModuleList(nn.Linear(c.dim, v, bias=False) for v in c.vocab_sizes)
        self.head_slm = nn.Linear(c.dim, 2, bias=False)
        self.apply(self._init)
        for n, p in self.named_parameters():  # minGPT: scaled init of residual projections
            if n.endswith("proj.weight") or n.endswith("mlp.2.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * c.layers))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    # ---- embeddings ---------------------------------------------------------------------------------------------
    def speaker_windows(self, speaker: torch.Tensor) -> torch.Tensor:
        """(B, T, D_s) → (B, L, w·D_s), the last window padded by repeating the last frame."""
        b, t, d = speaker.shape
        w = self.config.frames_per_token
        if d != self.config.speaker_dim:
            raise ValueError(f"speaker features have D={d}, the model expects {self.config.speaker_dim}")
        pad = (-t) % w
        if pad:
            speaker = torch.cat([speaker, speaker[:, -1:].expand(b, pad, d)], 1)
        return speaker.reshape(b, -1, w * d)

    def embed_speaker(self, windows: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        """(B, n, w·D_s) windows at token steps (n,) → (B, n, D)."""
        return self.speaker_proj(windows) + self.modality[0] + sinusoid(steps, self.config.dim)

    def embed_listener(self, tokens: torch.Tensor, known: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        """(B, n, S) ids, (B, n, S) known → (B, n, S, D) (unknown → the stream's MASK embedding)."""
        out = []
        for s, emb in enumerate(self.listener_emb):
            ids = torch.where(known[..., s], tokens[..., s], torch.full_like(tokens[..., s], emb.num_embeddings - 1))
            out.append(emb(ids) + self.modality[1 + s])
        return torch.stack(out, 2) + sinusoid(steps, self.config.dim)[:, None]

    def _sequence(self, speaker, tokens, known):
        """Interleaved (B, L·(1+S), D) sequence and its (kind, step) per token."""
        win = self.speaker_windows(speaker)
        b, n = win.shape[:2]
        if tokens.shape[:2] != (b, n) or tokens.shape[2] != self.n_streams:
            raise ValueError(f"listener tokens {tuple(tokens.shape)} must be (B, L, S) = {(b, n, self.n_streams)}")
        steps = torch.arange(n, device=win.device)
        x = torch.cat([self.embed_speaker(win, steps).unsqueeze(2), self.embed_listener(tokens, known, steps)], 2)
        kind = torch.tensor([0] + [1] * self.n_streams, device=win.device).repeat(n)
        return self.drop(x.flatten(1, 2)), kind, steps.repeat_interleave(1 + self.n_streams)

    def _run(self, x, online: bool, mask=None):
        for blk in self.blocks:
            x, _ = blk(x, online, mask)
        return self.ln_f(x)

    def _logits(self, h: torch.Tensor) -> list[torch.Tensor]:
        return [head(h) for head in self.heads]

    # ---- the three paths ----------------------------------------------------------------------------------------
    def forward_offline(self, speaker: torch.Tensor, tokens: torch.Tensor, masked: torch.Tensor) -> list[torch.Tensor]:
        """Bidirectional MRM path: logits per stream [(B, L, V_s)] at the listener positions; ``masked`` (B, L, S)
        True = the token is hidden (MASK embedding)."""
        x, _, _ = self._sequence(speaker, tokens, ~masked)
        h = self._run(x, online=False).unflatten(1, (-1, 1 + self.n_streams))
        return [head(h[:, :, 1 + s]) for s, head in enumerate(self.heads)]

    def forward_slm(self, speaker: torch.Tensor, tokens: torch.Tensor, known: torch.Tensor | None = None) -> torch.Tensor:
        """Speaker–listener matching: (B, 2) logits (class 1 = the listener reacts to this speaker)."""
        known = torch.ones_like(tokens, dtype=torch.bool) if known is None else known
        x, _, _ = self._sequence(speaker, tokens, known)
        cls = (self.cls + self.modality[0]).expand(x.shape[0], 1, -1)
        return self.head_slm(self._run(torch.cat([x, cls], 1), online=False)[:, -1])

    def online_mask(self, kind: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        chunk = step // self.config.online_chunk
        return online_visibility(kind, chunk, kind, chunk)

    def forward_online(self, speaker: torch.Tensor, tokens: torch.Tensor,
                       known: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Chunk-causal CRM path (teacher forcing): logits per stream [(B, L, V_s)] for step t, read at the
        speaker token of step t (module doc: they never see listener tokens of step t's chunk or later)."""
        known = torch.ones_like(tokens, dtype=torch.bool) if known is None else known
        x, kind, step = self._sequence(speaker, tokens, known)
        h = self._run(x, online=True, mask=self.online_mask(kind, step))
        return self._logits(h.unflatten(1, (-1, 1 + self.n_streams))[:, :, 0])

    # ---- incremental online step (KV cache) ---------------------------------------------------------------------
    def online_step(self, speaker_windows: torch.Tensor, steps: torch.Tensor, prev_tokens: torch.Tensor | None,
                    prev_steps: torch.Tensor | None, cache: dict | None) -> tuple[list[torch.Tensor], dict]:
        """One chunk of online decoding with a KV cache.

        Feeds the listener tokens just generated for the previous chunk (``prev_tokens`` (B, n', S) at
        ``prev_steps``; None at the first chunk) and the speaker windows (B, n, w·D_s) of the new chunk at
        ``steps``; returns the logits [(B, n, V_s)] for the new chunk's listener tokens and the grown cache
        (``{"kv": per-layer (k, v), "kind": (K,), "chunk": (K,)}``). Equal to :meth:`forward_online` on the
        whole prefix (tested).
        """
        c = self.config.online_chunk
        parts, kinds, chunks = [], [], []
        if prev_tokens is not None:
            lst = self.embed_listener(prev_tokens, torch.ones_like(prev_tokens, dtype=torch.bool), prev_steps)
            parts.append(lst.flatten(1, 2))
            kinds.append(torch.ones(lst.shape[1] * self.n_streams, dtype=torch.long, device=lst.device))
            chunks.append((prev_steps // c).repeat_interleave(self.n_streams))
        parts.append(self.embed_speaker(speaker_windows, steps))
        kinds.append(torch.zeros(len(steps), dtype=torch.long, device=steps.device))
        chunks.append(steps // c)
        x, q_kind, q_chunk = torch.cat(parts, 1), torch.cat(kinds), torch.cat(chunks)
        if cache is None:
            cache = {"kv": [None] * len(self.blocks), "kind": q_kind[:0], "chunk": q_chunk[:0]}
        k_kind, k_chunk = torch.cat([cache["kind"], q_kind]), torch.cat([cache["chunk"], q_chunk])
        mask = online_visibility(q_kind, q_chunk, k_kind, k_chunk)
        new_kv = []
        for blk, kv in zip(self.blocks, cache["kv"], strict=True):
            x, kv2 = blk(x, True, mask, kv)
            new_kv.append(kv2)
        h = self.ln_f(x[:, -len(steps):])
        return self._logits(h), {"kv": new_kv, "kind": k_kind, "chunk": k_chunk}
