"""Expression tokenizer networks (pure ``torch.nn``; no Lightning).

* :class:`ExpressionTransformer` — a learnable expression query cross-attends to [subject embedding;
  patch tokens + positions + learnable delta positions] → one unit-norm expression token per frame (D).
* :class:`ExpressionReconstruction` — learnable patch queries + positions cross-attend to [subject embedding;
  expression token], self-attention layers, CNN decoder → RGB face at crop size in [0, 1].
* :class:`ExpressionTokenizer` — patch tokenizer + both of the above, batched over all frames of all clips.
* :class:`ExpressionPredictor` — causal transformer predicting the next expression token from a history.

Shapes: B batch (clips), T frames, N patches, D features, H = W = crop size.

Source: seed 1, "Face Expression System & Dataset Utils" (ozgecanoz/face_expT @555e664):
``face_model/models/expression_transformer.py``, ``expression_reconstruction_model.py``,
``face_reconstruction_model.py`` (OptimizedCNNDecoder), ``expression_transformer_decoder.py``.
Differences from the seed (its bugs are not copied): positions are added once; all frames go through one
batched call (no per-frame Python loops); the decoder uses GroupNorm (batch-independent) and exact ×2
transposed convolutions; layer counts come from one config that is saved with the weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from mien.models.tokenizer.config import PredictorConfig, TokenizerConfig
from mien.models.tokenizer.patch import PatchTokenizer, _groups, build_patch_tokenizer


def _decoder_layers(dim, heads, ff, dropout, layers, norm_first):
    layer = nn.TransformerDecoderLayer(dim, heads, ff, dropout, batch_first=True, norm_first=norm_first)
    return nn.TransformerDecoder(layer, layers, norm=nn.LayerNorm(dim) if norm_first else None)


def _encoder_layers(dim, heads, ff, dropout, layers, norm_first):
    layer = nn.TransformerEncoderLayer(dim, heads, ff, dropout, batch_first=True, norm_first=norm_first)
    return nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(dim) if norm_first else None,
                                 enable_nested_tensor=False)



def subject_index(subject_ids, m: int, max_subjects: int, device, missing: str) -> torch.Tensor:
    """Subject ids as a long (M,) tensor on ``device``, checked: given (``missing`` is the error when None), M of
    them, each in [0, max_subjects).

    Raises:
        ValueError: ids None, another count, or out of range.
    """
    if subject_ids is None:
        raise ValueError(missing)
    ids = torch.as_tensor(subject_ids, device=device).long().reshape(-1)
    if ids.shape[0] != m:
        raise ValueError(f"expected {m} subject ids, got {ids.shape[0]}")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= max_subjects):
        raise ValueError(f"subject ids must lie in [0, {max_subjects}), got [{int(ids.min())}, {int(ids.max())}]")
    return ids

class ExpressionTransformer(nn.Module):
    """Expression query cross-attending to patch tokens → unit-norm expression token.

    Args:
        dim: D.
        num_patches: N (size of the learnable delta position table).
        heads, layers, ff, dropout, norm_first: ``nn.TransformerDecoder`` of ``layers`` layers.
        max_subjects: learnable subject-embedding table size; 0 = subject-invariant (no subject token).
        subject_in_encoder: attend to the subject embedding here (seed's joint model). False: the table is kept
            for the reconstruction only (the seed's later subject-invariant encoder), and the token cannot be a
            function of the subject id alone.
        global_dim: G > 0 adds a global conditioning input (e.g. mien's AU features, issue 9): ``condition``
            (M, G) → LayerNorm → Linear(G, D), one more memory token beside the subject embedding.
        condition_in_query: the condition → Linear(G, D) (no LayerNorm, which would drop its magnitude) is added to
            the expression query instead of joining the memory (it is not diluted among the patch tokens).
        use_patches: attend to the patch tokens (False: only to the subject embedding / condition; then
            ``patch_tokens`` may be (M, 0, D)).

    Forward:
        patch_tokens: float (M, N, D) (M = B·T frames).
        pos: float (N, D) position table to add, or None when the tokens already carry positions
            (the learnable ``delta_pos`` (1, N, D) is always added).
        subject_ids: long (M,) in [0, max_subjects); required iff ``max_subjects > 0``.
        condition: float (M, G) global features; required iff ``global_dim > 0``.

    Returns:
        float (M, D) expression tokens with unit L2 norm.

    Raises:
        ValueError: wrong shapes, missing/out-of-range subject ids, missing or wrong-width condition.
    """

    def __init__(self, dim: int, num_patches: int, heads: int = 4, layers: int = 4, ff: int = 768,
                 dropout: float = 0.1, max_subjects: int = 0, norm_first: bool = True,
                 subject_in_encoder: bool = True, global_dim: int = 0, condition_in_query: bool = False,
                 use_patches: bool = True):
        super().__init__()
        self.dim, self.num_patches, self.max_subjects = dim, num_patches, max_subjects
        self.global_dim = int(global_dim)
        self.condition_in_query, self.use_patches = bool(condition_in_query), bool(use_patches)
        if global_dim <= 0:
            self.global_proj = None
        elif condition_in_query:
            self.global_proj = nn.Sequential(nn.Linear(global_dim, dim))
        else:
            self.global_proj = nn.Sequential(nn.LayerNorm(global_dim), nn.Linear(global_dim, dim))
        self.subject_in_encoder = subject_in_encoder
        self.subject_embeddings = nn.Embedding(max_subjects, dim) if max_subjects > 0 else None
        self.expression_query = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.delta_pos = nn.Parameter(torch.zeros(1, num_patches, dim))
        nn.init.trunc_normal_(self.delta_pos, std=0.02)
        self.decoder = _decoder_layers(dim, heads, ff, dropout, layers, norm_first)
        self.output_proj = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)

    def subject_embedding(self, subject_ids: torch.Tensor | None, m: int) -> torch.Tensor | None:
        """(M, D) subject embeddings, or None for the subject-invariant variant.

        Raises:
            ValueError: ids missing when required, wrong shape, or out of range.
        """
        if self.subject_embeddings is None:
            return None
        ids = subject_index(subject_ids, m, self.max_subjects, self.delta_pos.device,
                            "this model has subject embeddings: pass subject_ids")
        return self.subject_embeddings(ids)

    def condition_token(self, condition: torch.Tensor | None, m: int) -> torch.Tensor | None:
        """(M, 1, D) projected global condition, or None without one.

        Raises:
            ValueError: missing when required, given when the model has none, or wrong shape.
        """
        if self.global_proj is None:
            if condition is not None:
                raise ValueError("this model has no global condition (global_dim = 0): do not pass condition")
            return None
        if condition is None:
            raise ValueError(f"this model is conditioned on global features: pass condition ({m}, {self.global_dim})")
        c = torch.as_tensor(condition, device=self.delta_pos.device).to(self.delta_pos.dtype)
        if c.shape != (m, self.global_dim):
            raise ValueError(f"expected condition ({m}, {self.global_dim}), got {tuple(c.shape)}")
        return self.global_proj(c).unsqueeze(1)

    def forward(self, patch_tokens: torch.Tensor, pos: torch.Tensor | None = None,
                subject_ids: torch.Tensor | None = None, condition: torch.Tensor | None = None) -> torch.Tensor:
        m = patch_tokens.shape[0]
        if not self.use_patches:
            x = patch_tokens.new_zeros(m, 0, self.dim)
        elif patch_tokens.ndim != 3 or patch_tokens.shape[1:] != (self.num_patches, self.dim):
            raise ValueError(f"expected patch tokens (M, {self.num_patches}, {self.dim}), got "
                             f"{tuple(patch_tokens.shape)}")
        else:
            x = patch_tokens + self.delta_pos
            if pos is not None:
                x = x + pos.unsqueeze(0)
        subj = self.subject_embedding(subject_ids, m) if self.subject_in_encoder else None
        if subj is not None:
            x = torch.cat([subj.unsqueeze(1), x], 1)
        cond = self.condition_token(condition, m)
        query = self.expression_query.expand(m, -1, -1)
        if cond is not None and self.condition_in_query:
            query = query + cond
        elif cond is not None:
            x = torch.cat([cond, x], 1)
        if x.shape[1] == 0:
            raise ValueError("nothing to attend to: use_patches=False needs a subject embedding or a condition")
        h = self.decoder(query, x)
        return F.normalize(self.norm(self.output_proj(h[:, 0])), dim=-1)


class CNNDecoder(nn.Module):
    """Patch grid features → RGB image (the seed's OptimizedCNNDecoder, made size-generic).

    conv3×3 D→C GN GELU; k = floor(log2(crop/grid)) × [ConvT 4×4 stride 2 (exact ×2), GN, GELU] with the
    width halved each time (min 16); bilinear resize to the crop; conv3×3 GN GELU; conv3×3 → 3; sigmoid.

    Forward: float (M, D, gh, gw) → float (M, 3, crop, crop) in [0, 1].
    """

    def __init__(self, dim: int, grid: tuple[int, int], crop_size: int, channels: int = 256):
        super().__init__()
        self.crop_size = crop_size
        c = channels
        layers: list[nn.Module] = [nn.Conv2d(dim, c, 3, padding=1), nn.GroupNorm(_groups(c), c), nn.GELU()]
        ratio = crop_size / max(grid)
        n_up = max(0, int(math.floor(math.log2(ratio)))) if ratio >= 1 else 0
        for _ in range(n_up):
            c2 = max(c // 2, 16)
            layers += [nn.ConvTranspose2d(c, c2, 4, stride=2, padding=1), nn.GroupNorm(_groups(c2), c2), nn.GELU()]
            c = c2
        self.up = nn.Sequential(*layers)
        c2 = max(c // 2, 16)
        self.head = nn.Sequential(nn.Conv2d(c, c2, 3, padding=1), nn.GroupNorm(_groups(c2), c2), nn.GELU(),
                                  nn.Conv2d(c2, 3, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        if x.shape[-2:] != (self.crop_size, self.crop_size):
            x = F.interpolate(x, size=(self.crop_size, self.crop_size), mode="bilinear", align_corners=False)
        return torch.sigmoid(self.head(x))


class ExpressionReconstruction(nn.Module):
    """Face image from (subject embedding, expression token).

    Learnable patch queries (1, N, D) + positions cross-attend (``cross_layers``) to the memory
    [subject embedding; expression token] (M, 2, D) — or [expression token] (M, 1, D) for the
    subject-invariant variant — then ``self_layers`` self-attention layers over the N patches, reshape to
    (M, D, gh, gw), :class:`CNNDecoder`.

    ``token_scale``: the unit-norm token is multiplied by √D before it enters the memory, so its per-dimension
    scale (RMS 1) matches the N(0, 1)-initialised subject embeddings (norm ≈ √D). The seed puts a norm-1 token
    beside norm-√D subject embeddings (19.6 for D = 384); attention values then come mostly from the subject and
    the decoder learns to ignore the token. False reproduces the seed.

    Forward:
        expression: float (M, D) expression tokens.
        pos: float (N, D) query positions (tokenizer table + the expression transformer's delta).
        subject: float (M, D) subject embeddings or None.

    Returns:
        float (M, 3, crop, crop) RGB in [0, 1].
    """

    def __init__(self, dim: int, grid: tuple[int, int], crop_size: int, heads: int = 4, cross_layers: int = 2,
                 self_layers: int = 2, ff: int = 768, dropout: float = 0.1, decoder_channels: int = 256,
                 norm_first: bool = True, token_scale: bool = True):
        super().__init__()
        self.dim, self.grid = dim, tuple(grid)
        self.token_scale = math.sqrt(dim) if token_scale else 1.0
        n = grid[0] * grid[1]
        self.patch_queries = nn.Parameter(torch.randn(1, n, dim) * 0.02)
        self.cross = _decoder_layers(dim, heads, ff, dropout, cross_layers, norm_first)
        self.self_attn = _encoder_layers(dim, heads, ff, dropout, self_layers, norm_first) if self_layers else None
        self.decoder = CNNDecoder(dim, self.grid, crop_size, decoder_channels)

    def forward(self, expression: torch.Tensor, pos: torch.Tensor,
                subject: torch.Tensor | None = None) -> torch.Tensor:
        if expression.ndim != 2 or expression.shape[1] != self.dim:
            raise ValueError(f"expected expression tokens (M, {self.dim}), got {tuple(expression.shape)}")
        m = expression.shape[0]
        mem = expression.unsqueeze(1) * self.token_scale
        if subject is not None:
            mem = torch.cat([subject.unsqueeze(1), mem], 1)
        q = (self.patch_queries + pos.unsqueeze(0)).expand(m, -1, -1)
        h = self.cross(q, mem)
        if self.self_attn is not None:
            h = self.self_attn(h)
        gh, gw = self.grid
        return self.decoder(h.transpose(1, 2).reshape(m, self.dim, gh, gw))


@dataclass
class TokenizerOutput:
    """Output of :meth:`ExpressionTokenizer.forward`.

    Attributes:
        tokens: float (B, T, D) unit-norm expression tokens ((B, D) for (B, 3, H, W) input).
        recon: float (B, T, 3, H, W) RGB in [0, 1] ((B, 3, H, W) for image input); None from
            ``forward(..., draw=False)``.
        points: warp decoder only: float (B, T, 468, 2) the mesh points the reference was moved to, crop px
            (differentiable w.r.t. the tokens; the landmark loss's prediction); None for the image decoder.
    """

    tokens: torch.Tensor
    recon: torch.Tensor | None
    points: torch.Tensor | None = None


class ExpressionTokenizer(nn.Module):
    """Patch tokenizer + expression transformer + reconstruction, built from a :class:`TokenizerConfig`.

    Input frames: float (B, T, 3, H, W) — or (B, 3, H, W) — RGB in [0, 1] with H = W = ``config.crop_size``
    (uint8 in [0, 255] is accepted and divided by 255). The model normalises with the config's mean/std itself.
    Subject ids: long (B,) (one per clip, repeated over T) or (B, T); needed iff ``config.max_subjects > 0``.
    All B·T frames run through each stage in one batched call.

    Attributes:
        config, tokenizer (:class:`~mien.models.tokenizer.patch.PatchTokenizer`), expression
        (:class:`ExpressionTransformer`), reconstruction (:class:`ExpressionReconstruction`),
        contract (:class:`~mien.models.registry.InputContract`).
    """

    def __init__(self, config: TokenizerConfig | dict | None = None, **overrides):
        super().__init__()
        self.config = config = TokenizerConfig.resolve(config, **overrides)
        self.tokenizer: PatchTokenizer = build_patch_tokenizer(config)
        self.grid = self.tokenizer.grid
        n = self.tokenizer.num_patches
        self.expression = ExpressionTransformer(config.dim, n, config.expr_heads, config.expr_layers,
                                                config.expr_ff, config.dropout, config.max_subjects,
                                                config.norm_first, config.subject_in_encoder, config.global_dim,
                                                config.condition_in_query, config.encoder_patches)
        if config.decoder == "warp":
            from mien.models.tokenizer.warp import WarpDecoder

            self.reconstruction = WarpDecoder(config.dim, config.crop_size, config.max_subjects, config.warp_hidden,
                                              config.warp_refiner_width, config.warp_refiner_levels, config.warp_bank,
                                              config.warp_bank_k, config.warp_bank_temperature,
                                              config.warp_bank_distance)
        else:
            self.reconstruction = ExpressionReconstruction(
                config.dim, self.grid, config.crop_size, config.recon_heads, config.recon_cross_layers,
                config.recon_self_layers, config.recon_ff, config.dropout, config.decoder_channels,
                config.norm_first, config.recon_token_scale)

    @property
    def contract(self):
        from mien.models.tokenizer import contract_of

        return contract_of(self.config)

    # ---- helpers -------------------------------------------------------------------------------------------
    def _flatten(self, frames: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        if frames.dtype == torch.uint8:
            frames = frames.float() / 255.0
        if frames.ndim == 5:
            lead = tuple(frames.shape[:2])
        elif frames.ndim == 4:
            lead = (frames.shape[0],)
        else:
            raise ValueError(f"expected frames (B, T, 3, H, W) or (B, 3, H, W), got {tuple(frames.shape)}")
        return frames.reshape(-1, *frames.shape[-3:]), lead

    def _subject_ids(self, subject_ids, lead: tuple[int, ...]) -> torch.Tensor | None:
        if subject_ids is None or self.config.max_subjects <= 0:
            return None
        ids = torch.as_tensor(subject_ids).long()
        if len(lead) == 2 and ids.ndim == 1:
            ids = ids.repeat_interleave(lead[1])
        return ids.reshape(-1)

    def recon_positions(self, pos: torch.Tensor | None = None) -> torch.Tensor:
        """(N, D) reconstruction query positions: tokenizer table + the expression transformer's delta."""
        if pos is None:
            pos = self.tokenizer.position_table()
        return pos + self.expression.delta_pos[0]

    # ---- API -----------------------------------------------------------------------------------------------
    @staticmethod
    def _condition(condition, lead: tuple[int, ...]) -> torch.Tensor | None:
        """(B, T, G) / (B, G) per-frame global features → (M, G)."""
        if condition is None:
            return None
        c = torch.as_tensor(condition)
        return c.reshape(-1, c.shape[-1]) if c.ndim >= 2 else c

    def encode(self, frames: torch.Tensor, subject_ids=None, condition=None) -> torch.Tensor:
        """Expression tokens: (B, T, 3, H, W) → float (B, T, D), (B, 3, H, W) → (B, D); unit norm.

        ``condition``: per-frame global features (B, T, G) / (B, G) when ``config.global_dim > 0``.

        Raises:
            ValueError: wrong frame shape/size, missing or out-of-range subject ids, missing/wrong condition.
        """
        x, lead = self._flatten(frames)
        tokens, pos = self._patches(x)
        ids = self._subject_ids(subject_ids, lead)
        z = self.expression(tokens, None if self.tokenizer.positions_in_tokens else pos, ids,
                            self._condition(condition, lead))
        return z.reshape(*lead, -1)

    def _patches(self, x: torch.Tensor, backbone_tokens: torch.Tensor | None = None):
        """Patch tokens, positions of (M, 3, H, W) frames; (M, 0, D) unrun if ``config.encoder_patches`` is False."""
        if not self.config.encoder_patches:
            return x.new_zeros(x.shape[0], 0, self.config.dim), None
        return self.tokenizer(x, **({} if backbone_tokens is None else {"backbone_tokens": backbone_tokens}))

    def _reconstruct(self, z: torch.Tensor, ids, pos: torch.Tensor | None = None, source_ids=None
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(M, D) tokens → (M, 3, H, W) faces and, for the warp decoder, (M, 468, 2) mesh points (``source_ids``:
        an identity swap from those subjects, warp decoder only)."""
        if self.config.decoder == "warp":
            return self.reconstruction(z, ids, source_ids)
        subj = self.expression.subject_embedding(ids, z.shape[0]) if self.config.max_subjects > 0 else None
        return self.reconstruction(z, self.recon_positions(pos), subj), None

    def decode(self, tokens: torch.Tensor, subject_ids=None, source_ids=None) -> torch.Tensor:
        """Faces from expression tokens: (B, T, D) → float (B, T, 3, H, W), (B, D) → (B, 3, H, W); [0, 1].

        ``subject_ids`` choose the identity (a different id than the encoding one = identity swap; for the warp
        decoder: that subject's reference face, moved by the token's displacements). ``source_ids`` (long (B,) or
        (B, T) like ``subject_ids``; warp decoder only, ignored by the others, whose identity is the subject embedding
        alone): the ids the tokens were encoded with — the swap then moves the target by the token's motion from the source's neutral mesh
        (:meth:`~mien.models.tokenizer.warp.WarpDecoder.transfer_points`).
        """
        lead = tuple(tokens.shape[:-1])
        z = tokens.reshape(-1, tokens.shape[-1])
        src = self._subject_ids(source_ids, lead) if source_ids is not None and self.config.decoder == "warp" else None
        img, _ = self._reconstruct(z, self._subject_ids(subject_ids, lead), source_ids=src)
        if self.config.decoder == "warp":
            img = img.clamp(0, 1)
        return img.reshape(*lead, *img.shape[1:])

    def forward(self, frames: torch.Tensor, subject_ids=None,
                backbone_tokens: torch.Tensor | None = None, condition=None, draw: bool = True) -> TokenizerOutput:
        """Encode and reconstruct in one batched pass (see :meth:`encode`, :meth:`decode`; ``condition`` as in
        :meth:`encode`).

        ``backbone_tokens`` (B·T, P, C): cached outputs of a frozen timm backbone
        (:meth:`~mien.models.tokenizer.patch.TimmPatchTokenizer.backbone_tokens`) for these frames.
        ``draw=False`` (warp decoder): only tokens and mesh points, ``recon`` is None (no warp is computed).
        """
        x, lead = self._flatten(frames)
        tokens, pos = self._patches(x, backbone_tokens)
        ids = self._subject_ids(subject_ids, lead)
        z = self.expression(tokens, None if self.tokenizer.positions_in_tokens else pos, ids,
                            self._condition(condition, lead))
        if not draw and self.config.decoder == "warp":
            pts = self.reconstruction.points(z, ids)
            return TokenizerOutput(z.reshape(*lead, -1), None, pts.reshape(*lead, *pts.shape[1:]))
        img, pts = self._reconstruct(z, ids, pos)
        return TokenizerOutput(z.reshape(*lead, -1), img.reshape(*lead, *img.shape[1:]),
                               None if pts is None else pts.reshape(*lead, *pts.shape[1:]))


class ExpressionPredictor(nn.Module):
    """Next-expression-token predictor: causal transformer over a token history.

    Learnable positions (1, max_len, D) (init N(0, 0.02²)); ``nn.TransformerEncoder`` with a causal mask;
    LayerNorm; Linear; L2 normalisation.

    Forward:
        tokens: float (B, T, D), T ≤ max_len.

    Returns:
        float (B, T, D) unit-norm predictions; output t predicts input token t + 1 (it sees tokens ≤ t only).

    Raises:
        ValueError: T > max_len or wrong D.

    Source: seed 1 ``face_model/models/expression_transformer_decoder.py`` (returns every position instead of
    only the last, so one pass trains on all T − 1 targets).
    """

    def __init__(self, config: PredictorConfig | dict | None = None, **overrides):
        super().__init__()
        self.config = c = PredictorConfig.resolve(config, **overrides)
        self.pos = nn.Parameter(torch.randn(1, c.max_len, c.dim) * 0.02)
        self.encoder = _encoder_layers(c.dim, c.heads, c.ff, c.dropout, c.layers, c.norm_first)
        self.norm = nn.LayerNorm(c.dim)
        self.head = nn.Linear(c.dim, c.dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.ndim != 3 or tokens.shape[-1] != self.config.dim:
            raise ValueError(f"expected tokens (B, T, {self.config.dim}), got {tuple(tokens.shape)}")
        t = tokens.shape[1]
        if t > self.config.max_len:
            raise ValueError(f"history of {t} tokens exceeds max_len {self.config.max_len}")
        mask = nn.Transformer.generate_square_subsequent_mask(t, device=tokens.device, dtype=tokens.dtype)
        h = self.encoder(tokens + self.pos[:, :t], mask=mask, is_causal=True)
        return F.normalize(self.head(self.norm(h)), dim=-1)

    def predict_next(self, tokens: torch.Tensor) -> torch.Tensor:
        """float (B, D): the predicted token following a (B, T, D) history."""
        return self.forward(tokens)[:, -1]


def build_tokenizer(**config) -> ExpressionTokenizer:
    """Registry factory: :class:`ExpressionTokenizer` from :class:`TokenizerConfig` keyword arguments."""
    return ExpressionTokenizer(TokenizerConfig(**config))


def build_predictor(**config) -> ExpressionPredictor:
    """Registry factory: :class:`ExpressionPredictor` from :class:`PredictorConfig` keyword arguments."""
    return ExpressionPredictor(PredictorConfig(**config))
