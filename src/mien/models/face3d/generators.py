"""Neural renderers of analysis-by-neural-synthesis: SMIRK's masked-image U-Net with sparse pixel hints (Retsinas
et al., CVPR 2024) and TEASER's token-guided AdaIN U-Net with a zero-initialised token decoder (Liu et al.,
ICLR 2025).

Input: the grey geometry render (B, 3, S, S) concatenated with the masked image (B, 3, S, S): the face region
(the dilated silhouette of the rendered mesh) is blanked except for a sparse set of hint pixels (SMIRK:
``mask_ratio`` ≈ 1 % of the face pixels; TEASER: none — the appearance tokens carry it). Output (B, 3, S, S)
sigmoid in [0, 1].

:class:`UNetGenerator` levels (``depth`` d, ``features`` f): encoder blocks f·2^i at S/2^i (max-pool between),
bottleneck f·2^d at S/2^d with ``res_blocks`` residual blocks (reflect padding, BN), decoder ConvTranspose ×2 +
skip + block, 1×1 conv to RGB. A block is 2 × [conv 3×3, BN, (AdaIN(token)), ReLU]. With tokens, level i
(0 = finest) uses token ``N−1−i`` (clipped to 0) and the bottleneck token 0; AdaIN: instance norm (no affine),
then x·(1+γ)+β with (γ, β) = MLP(token) (D → 128 → 2C). The token decoder (ControlNet-style) maps the
concatenated tokens to a (f·2^(d−1), S/2^d) map, upsamples it level by level and adds it to every decoder
output through zero-initialised 1×1 convs, so a fresh TEASER generator equals its SMIRK-style U-Net.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["UNetGenerator", "masked_image"]


class AdaIN(nn.Module):
    def __init__(self, channels: int, token_dim: int, hidden: int = 128):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(token_dim, hidden), nn.ReLU(), nn.Linear(hidden, 2 * channels))

    def forward(self, x, token):
        g, b = self.mlp(token)[:, :, None, None].chunk(2, 1)
        return F.instance_norm(x) * (1 + g) + b


class Block(nn.Module):
    """2 × [conv 3×3, BN, AdaIN(token) when token_dim, ReLU]."""

    def __init__(self, cin: int, cout: int, token_dim: int | None = None):
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                                    nn.Conv2d(cout, cout, 3, padding=1, bias=False)])
        self.bns = nn.ModuleList([nn.BatchNorm2d(cout), nn.BatchNorm2d(cout)])
        self.ada = nn.ModuleList([AdaIN(cout, token_dim), AdaIN(cout, token_dim)]) if token_dim else None

    def forward(self, x, token=None):
        for i in range(2):
            x = self.bns[i](self.convs[i](x))
            if self.ada is not None:
                x = self.ada[i](x, token)
            x = F.relu(x)
        return x


class ResBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
                                  nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3, bias=False), nn.BatchNorm2d(c))

    def forward(self, x):
        return x + self.body(x)


class UNetGenerator(nn.Module):
    """SMIRK (``token_dim`` None) or TEASER (``token_dim`` D, ``n_tokens`` N) U-Net; see the module docstring.

    forward(x (B, in_channels, S, S), tokens (B, N, D) or None) → (B, 3, S, S) in [0, 1]; S divisible by 2^depth.
    """

    def __init__(self, in_channels: int = 6, features: int = 32, depth: int = 4, res_blocks: int = 5,
                 token_dim: int | None = None, n_tokens: int = 4, size: int = 224):
        super().__init__()
        self.depth, self.n_tokens, self.token_dim = depth, n_tokens, token_dim
        ch = [features * 2 ** i for i in range(depth + 1)]
        self.enc = nn.ModuleList(Block(in_channels if i == 0 else ch[i - 1], ch[i], token_dim) for i in range(depth))
        self.bottleneck = Block(ch[depth - 1], ch[depth], token_dim)
        self.res = nn.Sequential(*[ResBlock(ch[depth]) for _ in range(res_blocks)])
        self.up = nn.ModuleList(nn.ConvTranspose2d(ch[i + 1], ch[i], 2, stride=2) for i in range(depth))
        self.dec = nn.ModuleList(Block(2 * ch[i], ch[i], token_dim) for i in range(depth))
        self.out = nn.Conv2d(ch[0], 3, 1)
        if token_dim:
            g = size // 2 ** depth
            self.grid, self.c0 = g, ch[depth - 1]
            self.token_fc = nn.Linear(n_tokens * token_dim, self.c0 * g * g)
            self.token_up = nn.ModuleList(nn.ConvTranspose2d(ch[i + 1] if i < depth - 1 else self.c0, ch[i], 2, stride=2)
                                          for i in range(depth))
            self.zero = nn.ModuleList(nn.Conv2d(ch[i], ch[i], 1) for i in range(depth))
            for z in self.zero:
                nn.init.zeros_(z.weight)
                nn.init.zeros_(z.bias)

    def _token(self, tokens, level):
        if tokens is None:
            return None
        return tokens[:, max(self.n_tokens - 1 - level, 0)]

    def forward(self, x: torch.Tensor, tokens: torch.Tensor | None = None) -> torch.Tensor:
        if self.token_dim and tokens is None:
            raise ValueError("this generator is token-guided (TEASER): pass tokens (B, N, D)")
        skips = []
        for i, blk in enumerate(self.enc):
            x = blk(x, self._token(tokens, i))
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.res(self.bottleneck(x, self._token(tokens, self.depth - 1)))
        ctrl = [None] * self.depth
        if self.token_dim:
            c = F.relu(self.token_fc(tokens.flatten(1))).view(-1, self.c0, self.grid, self.grid)
            for i in reversed(range(self.depth)):
                c = self.token_up[i](c)
                c = torch.tanh(c) if i == 0 else F.relu(c)
                ctrl[i] = self.zero[i](c)
        for i in reversed(range(self.depth)):
            x = self.dec[i](torch.cat([self.up[i](x), skips[i]], 1), self._token(tokens, i))
            if ctrl[i] is not None:
                x = x + ctrl[i]
        return torch.sigmoid(self.out(x))


def masked_image(image: torch.Tensor, mask: torch.Tensor, hints: torch.Tensor | None, dilate: int) -> torch.Tensor:
    """The generator's masked input: ``image`` with the face region blanked, except the hint pixels.

    Args:
        image: (B, 3, S, S) in [0, 1]. mask: (B, 1, S, S) rendered silhouette (thresholded at 0.5, dilated by
            ``dilate`` px, no gradient). hints: (B or 1, 1, S, S) bool pixels kept inside the face, or None.
    """
    with torch.no_grad():
        face = (mask > 0.5).float()
        if dilate > 0:
            face = F.max_pool2d(face, 2 * dilate + 1, stride=1, padding=dilate)
        keep = 1 - face
        if hints is not None:
            keep = torch.maximum(keep, face * hints.float())
    return image * keep
