"""Listener-reaction tokenizers: REACT 25-d attribute sequences ↔ discrete token streams.

Both share one interface (what :class:`~mien.models.reaction.transformer.ReactionTransformer` needs):
``encode(attrs (B, T, 25) float, NaN = unavailable) -> (tokens (B, L, S) long, valid (B, L, S) bool)`` with
``L = ceil(T / frames_per_token)``, ``decode(tokens) -> (B, L·frames_per_token, 25) float32`` in the attribute
ranges, ``vocab_sizes`` (S,) and ``frames_per_token``.

* :class:`FSQTokenizer` — finite scalar quantisation (Mentzer et al., "Finite Scalar Quantization: VQ-VAE Made
  Simple", ICLR 2024) of short windows of ``window`` frames × 25: an MLP encoder to ``len(levels)`` bounded
  scalars, each rounded to one of ``levels[i]`` values (straight-through gradient), an MLP decoder back to the
  window. One stream, vocabulary ∏ levels. NaN inputs are replaced by 0 and masked in the reconstruction loss.
* :class:`SeedTokenizer` — seed 4's three per-frame streams (DIGEST §4.2): the 15-AU binary combination index,
  the (valence, arousal) pair on a 0.025 grid, and k-means of the 8 expression probabilities; its
  vocabularies are fitted on training data (:meth:`SeedTokenizer.fit`). Unlike the seed, an AU combination or
  VA pair not seen in training maps to the NEAREST known one (Hamming / Euclidean) instead of raising (AU) or
  silently becoming token 0 (VA).
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["ATTR_DIM", "FSQTokenizer", "SeedTokenizer", "bound_attributes", "window_valid"]

ATTR_DIM = 25
AU, VA, EXP = slice(0, 15), slice(15, 17), slice(17, 25)


def bound_attributes(raw: torch.Tensor) -> torch.Tensor:
    """Raw (…, 25) outputs → attribute ranges: sigmoid AUs [0, 1], tanh valence/arousal, softmax expressions."""
    return torch.cat([raw[..., AU].sigmoid(), raw[..., VA].tanh(), raw[..., EXP].softmax(-1)], -1)


def _windows(attrs: torch.Tensor, w: int) -> tuple[torch.Tensor, int]:
    """(B, T, 25) → (B, L, w, 25) with the last window padded by repeating the last frame; returns (x, T)."""
    b, t, d = attrs.shape
    pad = (-t) % w
    if pad:
        attrs = torch.cat([attrs, attrs[:, -1:].expand(b, pad, d)], 1)
    return attrs.reshape(b, -1, w, d), t


def window_valid(attrs: torch.Tensor, w: int, dims: slice = slice(None)) -> torch.Tensor:
    """(B, L) bool: the window has at least one finite value among ``dims`` (a token worth a loss)."""
    x, _ = _windows(attrs[..., dims], w)
    return torch.isfinite(x).flatten(2).any(-1)


class FSQTokenizer(nn.Module):
    """FSQ tokenizer of ``window``-frame windows of REACT attributes (one token per window).

    Args:
        levels: quantisation levels per latent dimension (vocabulary = their product; e.g. (8, 5, 5, 5) = 1000,
            the paper's recommendation for ~2^10 codes).
        window: frames per token w.
        hidden: MLP width; depth: hidden layers of encoder and decoder.

    ``forward(attrs)`` returns ``(reconstruction (B, T, 25), tokens (B, L))``; :meth:`loss` the NaN-masked MSE.
    """

    def __init__(self, levels: tuple[int, ...] = (8, 5, 5, 5), window: int = 5, hidden: int = 128, depth: int = 2):
        super().__init__()
        if window < 1 or not levels or min(levels) < 2:
            raise ValueError(f"need window >= 1 and levels >= 2, got window={window}, levels={levels}")
        self.levels, self.window, self.hidden, self.depth = tuple(int(v) for v in levels), int(window), hidden, depth
        lv = torch.tensor(self.levels, dtype=torch.float32)
        basis = torch.cumprod(torch.tensor((1, *self.levels[:-1])), 0)
        self.register_buffer("_levels", lv, persistent=False)
        self.register_buffer("_basis", basis, persistent=False)
        n_in = window * ATTR_DIM

        def mlp(a: int, b: int) -> nn.Sequential:
            layers: list[nn.Module] = []
            for i in range(depth):
                layers += [nn.Linear(a if i == 0 else hidden, hidden), nn.GELU()]
            return nn.Sequential(*layers, nn.Linear(hidden if depth else a, b))

        self.encoder = mlp(n_in, len(self.levels))
        self.decoder = mlp(len(self.levels), n_in)

    # ---- config -----------------------------------------------------------------------------------------------
    @property
    def vocab_sizes(self) -> tuple[int, ...]:
        return (math.prod(self.levels),)

    @property
    def frames_per_token(self) -> int:
        return self.window

    def config(self) -> dict:
        return {"kind": "fsq", "levels": list(self.levels), "window": self.window, "hidden": self.hidden,
                "depth": self.depth}

    # ---- FSQ --------------------------------------------------------------------------------------------------
    def _bound(self, z: torch.Tensor) -> torch.Tensor:
        """z → (−(L−1)/2 … (L−1)/2) per dimension (paper §3: f(z) = ⌊L/2⌋ tanh(z), with a half-step shift for
        even L so that rounding gives exactly L values)."""
        eps = 1e-3
        half = (self._levels - 1) * (1 + eps) / 2
        offset = torch.where(self._levels % 2 == 0, 0.5, 0.0)
        shift = torch.atanh(offset / half)
        return torch.tanh(z + shift) * half - offset

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Latents (…, d) → (quantised codes in [−1, 1] with straight-through gradient, token ids (…) long)."""
        b = self._bound(z)
        q = b + (b.round() - b).detach()
        half = torch.div(self._levels, 2, rounding_mode="floor")
        codes = q / half
        return codes, self.ids_from_codes(codes.detach())

    def ids_from_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Normalised codes (…, d) → token ids (…) long in [0, ∏ levels) (mixed radix of the level digits)."""
        half = torch.div(self._levels, 2, rounding_mode="floor")
        return ((codes * half).round() + half).long().mul(self._basis).sum(-1)

    def codes_from_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids (…) → normalised codes (…, d)."""
        half = torch.div(self._levels, 2, rounding_mode="floor")
        digits = (ids.unsqueeze(-1) // self._basis) % self._levels.long()
        return (digits.float() - half) / half

    # ---- interface --------------------------------------------------------------------------------------------
    def forward(self, attrs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, t = _windows(torch.nan_to_num(attrs.float(), nan=0.0), self.window)
        q, ids = self.quantize(self.encoder(x.flatten(2)))
        rec = bound_attributes(self.decoder(q).unflatten(-1, (self.window, ATTR_DIM)))
        return rec.flatten(1, 2)[:, :t], ids

    def loss(self, attrs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(MSE over finite target values, reconstruction (B, T, 25))."""
        rec, _ = self(attrs)
        m = torch.isfinite(attrs)
        err = (rec - torch.nan_to_num(attrs.float(), nan=0.0)).square() * m
        return err.sum() / m.sum().clamp(min=1), rec

    @torch.no_grad()
    def encode(self, attrs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, 25) → (tokens (B, L, 1) long, valid (B, L, 1) bool)."""
        _, ids = self(attrs)
        return ids.unsqueeze(-1), window_valid(attrs, self.window).unsqueeze(-1)

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, L, 1) token ids → (B, L·w, 25) float32 attributes."""
        rec = bound_attributes(self.decoder(self.codes_from_ids(tokens[..., 0])).unflatten(-1, (self.window, ATTR_DIM)))
        return rec.flatten(1, 2)


class SeedTokenizer(nn.Module):
    """Seed 4's per-frame streams (AU combination, VA grid pair, expression k-means), fitted on data.

    Args:
        n_au, n_va, n_exp: vocabulary sizes (the fitted tables; :meth:`fit` sets them).
        va_step: VA grid step (seed: 0.025, bins of ``linspace(−1, 1, 81)``).

    Buffers: ``au_table`` (n_au, 15) {0, 1}, ``va_table`` (n_va, 2), ``exp_centres`` (n_exp, 8). AUs are binarised
    at 0.5 (REACT AUs are occurrences). NaN values are taken as 0 (AU, VA) or uniform (expressions).
    """

    def __init__(self, n_au: int = 1, n_va: int = 1, n_exp: int = 1, va_step: float = 0.025):
        super().__init__()
        self.va_step = float(va_step)
        self.register_buffer("au_table", torch.zeros(n_au, 15))
        self.register_buffer("va_table", torch.zeros(n_va, 2))
        self.register_buffer("exp_centres", torch.full((n_exp, 8), 1 / 8))

    @property
    def vocab_sizes(self) -> tuple[int, ...]:
        return (self.au_table.shape[0], self.va_table.shape[0], self.exp_centres.shape[0])

    @property
    def frames_per_token(self) -> int:
        return 1

    def config(self) -> dict:
        n_au, n_va, n_exp = self.vocab_sizes
        return {"kind": "seed", "n_au": n_au, "n_va": n_va, "n_exp": n_exp, "va_step": self.va_step}

    def _parts(self, attrs: torch.Tensor):
        a = torch.nan_to_num(attrs.float(), nan=0.0)
        au = (a[..., AU] >= 0.5).float()
        va = ((a[..., VA].clamp(-1, 1) / self.va_step).round() * self.va_step)
        e = attrs[..., EXP].float()
        e = torch.where(torch.isfinite(e), e, torch.full_like(e, 1 / 8))
        return au, va, e

    def fit(self, attrs: torch.Tensor, n_exp: int = 64, max_au: int = 4096, seed: int = 0) -> SeedTokenizer:
        """Fit the tables on (N, T, 25) or (M, 25) training attributes: the ``max_au`` most frequent AU
        combinations, every VA grid pair seen, and ``n_exp`` k-means centres of the expressions (scikit-learn
        ``KMeans``; fewer when there are fewer distinct vectors). Returns self."""
        from sklearn.cluster import KMeans

        flat = attrs.reshape(-1, ATTR_DIM)
        keep = torch.isfinite(flat).any(-1)
        au, va, e = self._parts(flat[keep])
        combos, counts = torch.unique(au, dim=0, return_counts=True)
        self.au_table = combos[counts.argsort(descending=True, stable=True)[:max_au]]
        self.va_table = torch.unique(va, dim=0)
        k = max(1, min(n_exp, len(torch.unique(e, dim=0))))
        km = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(e.double().numpy())
        self.exp_centres = torch.from_numpy(km.cluster_centers_).float()
        return self

    @staticmethod
    def _nearest(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """Index of the nearest table row (squared Euclidean; Hamming for {0, 1} rows), in chunks."""
        flat = x.reshape(-1, x.shape[-1])
        out = torch.cat([torch.cdist(c, table.to(c)).argmin(-1) for c in flat.split(65536)]) if len(flat) else \
            torch.zeros(0, dtype=torch.long, device=x.device)
        return out.reshape(x.shape[:-1])

    @torch.no_grad()
    def encode(self, attrs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, 25) → (tokens (B, T, 3) long [AU, VA, EXP], valid (B, T, 3) bool: the stream had a finite
        value). Unseen AU combinations / VA pairs map to the nearest known one."""
        au, va, e = self._parts(attrs)
        tokens = torch.stack([self._nearest(au, self.au_table), self._nearest(va, self.va_table),
                              self._nearest(e, self.exp_centres)], -1)
        valid = torch.stack([torch.isfinite(attrs[..., s]).any(-1) for s in (AU, VA, EXP)], -1)
        return tokens, valid

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, T, 3) → (B, T, 25): AU combination, VA grid values, expression centre (renormalised)."""
        e = self.exp_centres[tokens[..., 2]].clamp(min=0)
        e = e / e.sum(-1, keepdim=True).clamp(min=1e-8)
        return torch.cat([self.au_table[tokens[..., 0]], self.va_table[tokens[..., 1]], e], -1)


def build_tokenizer(config: dict) -> nn.Module:
    """A tokenizer from its :meth:`config` dict (``kind`` = ``"fsq"`` or ``"seed"``).

    Raises:
        ValueError: unknown kind.
    """
    cfg = dict(config)
    kind = cfg.pop("kind", "fsq")
    if kind == "fsq":
        return FSQTokenizer(tuple(cfg.get("levels", (8, 5, 5, 5))), cfg.get("window", 5), cfg.get("hidden", 128),
                            cfg.get("depth", 2))
    if kind == "seed":
        return SeedTokenizer(**cfg)
    raise ValueError(f"unknown reaction tokenizer kind {kind!r} (fsq, seed)")
