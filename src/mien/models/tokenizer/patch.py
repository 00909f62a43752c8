"""Patch tokenizers: RGB face crops -> patch tokens (B, N, D) + a positional table (N, D).

Three implementations share one interface (:class:`PatchTokenizer`):

* :class:`TimmPatchTokenizer` — any timm model by name. ViTs (DINOv2 ViT-S/14 at 518² gives 37×37 = 1369
  tokens × 384) return their patch tokens without the prefix (CLS/register) tokens; CNNs return their last
  feature map flattened row-major.
* :class:`ConvPatchEncoder` — a small trainable convolutional encoder (no download, any crop size).
* :class:`~mien.models.tokenizer.faceapi_patch.FaceApiPatchTokenizer` — frozen, pretrained face-api feature
  maps (weights shipped with mien, offline; 112² or 150²).

Positions are added exactly once. A ViT adds its own position table inside the network, so its tokens already
carry positions (``positions_in_tokens = True``) and the table it returns is only used downstream for the
reconstruction queries. (The seed adds DINOv2's table a second time to the tokens — not repeated here.)
Tokenizers whose tokens have no positions return a fixed 2-D sine table and ``positions_in_tokens = False``;
the expression transformer then adds it.

Source: seed 1 (ozgecanoz/face_expT @555e664, ``face_model/models/dinov2_tokenizer.py``; 2-D sine table from
HEAD 97f500c / MAE).
"""

from __future__ import annotations

import torch
from torch import nn

from mien.errors import MienError

DOWNLOAD_FAILED = ("DINOv2 weights could not be downloaded (no network?): pass pretrained=False or put the "
                   "weights in the timm/HF cache")


class PretrainedWeightsError(MienError, RuntimeError):
    """``pretrained=True`` but timm could not fetch the weights (offline, no cache); one-line message."""


def _is_download_error(e: BaseException) -> bool:
    """Network / cache-miss errors of timm's Hugging Face Hub download (not e.g. an unknown model name)."""
    if isinstance(e, (OSError, ConnectionError, TimeoutError)):  # requests/urllib errors are OSErrors
        return True
    return any(c.__module__.split(".")[0] in ("huggingface_hub", "requests", "urllib3", "httpx")
               for c in type(e).__mro__)


def sincos_2d(grid_h: int, grid_w: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sine/cosine position table (MAE style), row-major over the grid.

    Args:
        grid_h, grid_w: patch grid.
        dim: feature size D, divisible by 4.

    Returns:
        float32 (grid_h·grid_w, D) in [-1, 1]; first half of the features encodes the row, second the column.

    Raises:
        ValueError: ``dim`` not divisible by 4.
    """
    if dim % 4:
        raise ValueError(f"dim must be divisible by 4, got {dim}")
    quarter = dim // 4
    omega = 1.0 / (10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter))
    ys, xs = torch.meshgrid(torch.arange(grid_h, dtype=torch.float64),
                            torch.arange(grid_w, dtype=torch.float64), indexing="ij")

    def enc(p: torch.Tensor) -> torch.Tensor:
        a = p.reshape(-1, 1) * omega[None]
        return torch.cat([a.sin(), a.cos()], 1)

    return torch.cat([enc(ys), enc(xs)], 1).float()


class PatchTokenizer(nn.Module):
    """Interface: ``forward(images) -> (tokens, pos)``.

    Input: float (B, 3, H, W) RGB in [0, 1] with H = W = ``crop_size``; the tokenizer applies its own
    mean/std normalisation.
    Output: ``tokens`` float32 (B, N, D), ``pos`` float32 (N, D) with N = grid_h·grid_w (row-major).

    Attributes:
        crop_size, grid (grid_h, grid_w), num_patches N, dim D, positions_in_tokens (see module doc),
        mean, std (buffers, (1, 3, 1, 1)).
    """

    crop_size: int
    grid: tuple[int, int]
    dim: int
    positions_in_tokens: bool

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    def _check(self, images: torch.Tensor) -> None:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images (B, 3, H, W), got {tuple(images.shape)}")
        if images.shape[-2:] != (self.crop_size, self.crop_size):
            raise ValueError(f"expected {self.crop_size}x{self.crop_size} crops, got "
                             f"{images.shape[-2]}x{images.shape[-1]}")
        if not images.is_floating_point():
            raise TypeError(f"expected float images in [0, 1], got {images.dtype}")

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean) / self.std

    def position_table(self) -> torch.Tensor:
        """float32 (N, D) position table (see the module doc for whether the tokens already contain it)."""
        return self.pos_table


class ConvPatchEncoder(PatchTokenizer):
    """Small trainable convolutional patch encoder (offline, any crop size).

    3×3 stem at full resolution → patchify conv (kernel = stride = ``patch_size``) → residual 3×3 block →
    1×1 projection to D → LayerNorm. Grid = crop_size // patch_size (a remainder is cropped by the stride).

    Args:
        crop_size: input side in pixels (≥ patch_size).
        dim: token size D (divisible by 4).
        patch_size: patch side in pixels.
        channels: (stem, body) widths.
        mean, std: RGB normalisation of [0, 1] input.

    Raises:
        ValueError: crop smaller than a patch, or D not divisible by 4.
    """

    def __init__(self, crop_size: int, dim: int, patch_size: int = 8, channels: tuple[int, int] = (32, 64),
                 mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)):
        super().__init__()
        if crop_size < patch_size:
            raise ValueError(f"crop_size {crop_size} is smaller than patch_size {patch_size}")
        c0, c1 = channels
        self.crop_size, self.dim, self.positions_in_tokens = crop_size, dim, False
        g = crop_size // patch_size
        self.grid = (g, g)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.stem = nn.Sequential(nn.Conv2d(3, c0, 3, padding=1), nn.GELU())
        self.patchify = nn.Sequential(nn.Conv2d(c0, c1, patch_size, stride=patch_size), nn.GELU())
        self.block = nn.Sequential(nn.Conv2d(c1, c1, 3, padding=1), nn.GroupNorm(_groups(c1), c1), nn.GELU(),
                                   nn.Conv2d(c1, c1, 3, padding=1))
        self.proj = nn.Conv2d(c1, dim, 1)
        self.norm = nn.LayerNorm(dim)
        self.register_buffer("pos_table", sincos_2d(g, g, dim), persistent=False)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._check(images)
        x = self.patchify(self.stem(self.normalize(images)))
        x = self.proj(x + self.block(x))
        return self.norm(x.flatten(2).transpose(1, 2)), self.position_table()


class TimmPatchTokenizer(PatchTokenizer):
    """Patch tokens from any timm model (real timm code; DINOv2 ViT-S/14 is the seed's choice).

    ViT-like models (having ``pos_embed`` and ``patch_embed``): ``forward_features`` → drop the
    ``num_prefix_tokens`` prefix tokens → (B, N, D_backbone); the returned position table is the ViT's own
    learned table (its patch part), which is already inside the tokens (``positions_in_tokens = True``).
    Other models (CNNs): last feature map (B, C, h, w) → (B, h·w, C); fixed 2-D sine table,
    ``positions_in_tokens = False``. If D_backbone ≠ ``dim`` a trainable Linear projects the tokens and the
    table becomes a 2-D sine table of size ``dim`` (the ViT positions stay inside the tokens).

    Args:
        name: timm model name, e.g. "vit_small_patch14_dinov2.lvd142m".
        crop_size: input side in pixels.
        dim: output token size D.
        pretrained: load timm's pretrained weights (the Hugging Face Hub, or the timm/HF cache when offline).
        freeze: no gradients and eval mode for the backbone (the projection stays trainable).
        mean, std: RGB normalisation of [0, 1] input (from the config / input contract).
        timm_kwargs: passed to ``timm.create_model`` (e.g. ``img_size``, ``embed_dim``, ``depth``).

    Raises:
        ImportError: timm is not installed (``pip install timm``).
        PretrainedWeightsError: ``pretrained`` and the weights can be neither downloaded nor found in the
            cache (one line: :data:`DOWNLOAD_FAILED`).
        RuntimeError: unknown timm model name (timm's error).
    """

    def __init__(self, name: str, crop_size: int, dim: int, pretrained: bool = False, freeze: bool = True,
                 mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), timm_kwargs: dict | None = None):
        super().__init__()
        try:
            import timm
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("the timm patch tokenizer needs timm: pip install timm") from e
        kwargs = dict(timm_kwargs or {})
        try:
            self.backbone = timm.create_model(name, pretrained=pretrained, **kwargs)
        except Exception as e:
            if not (pretrained and _is_download_error(e)):
                raise
            msg = DOWNLOAD_FAILED if "dinov2" in name else DOWNLOAD_FAILED.replace("DINOv2", name, 1)
            raise PretrainedWeightsError(msg) from None
        # ViT-like: a patch embedding and prefix tokens; positions inside (learned table or rotary)
        self.is_vit = hasattr(self.backbone, "patch_embed") and hasattr(self.backbone, "num_prefix_tokens")
        if self.is_vit:
            size = tuple(self.backbone.patch_embed.img_size)
            if size != (crop_size, crop_size):
                raise ValueError(f"{name} expects {size} input but crop_size is {crop_size}; "
                                 f"pass timm_kwargs={{'img_size': {crop_size}}}")
        self.crop_size, self.dim, self.freeze = crop_size, dim, freeze
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        if self.is_vit:
            gh, gw = self.backbone.patch_embed.grid_size
            self.prefix = int(getattr(self.backbone, "num_prefix_tokens", 1))
            backbone_dim = int(getattr(self.backbone, "num_features", self.backbone.embed_dim))
        else:  # probe the feature map size once
            with torch.no_grad():
                was = self.backbone.training
                self.backbone.eval()
                feats = self._features(torch.zeros(1, 3, crop_size, crop_size))
                self.backbone.train(was)
            if feats.ndim != 4:
                raise ValueError(f"{name}: forward_features gave shape {tuple(feats.shape)}, expected (B,C,h,w)")
            gh, gw = feats.shape[-2:]
            backbone_dim = feats.shape[1]
        self.grid = (int(gh), int(gw))
        self.backbone_dim = int(backbone_dim)
        self.proj = nn.Linear(self.backbone_dim, dim) if self.backbone_dim != dim else nn.Identity()
        self.positions_in_tokens = self.is_vit
        has_table = self.is_vit and getattr(self.backbone, "pos_embed", None) is not None
        self.use_vit_pos = has_table and self.backbone_dim == dim
        if not self.use_vit_pos:
            self.register_buffer("pos_table", sincos_2d(gh, gw, dim), persistent=False)
        if freeze:
            self.backbone.requires_grad_(False)
            self.backbone.eval()

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(x)

    def _vit_pos(self) -> torch.Tensor:
        pe = self.backbone.pos_embed[0]
        n = self.num_patches
        if pe.shape[0] == n + self.prefix:
            pe = pe[self.prefix:]
        elif pe.shape[0] != n:
            raise ValueError(f"ViT position table has {pe.shape[0]} rows, expected {n} (+{self.prefix})")
        return pe

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze:
            self.backbone.eval()
        return self

    def backbone_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """The frozen backbone's patch tokens before the projection, for caching across epochs.

        Args:
            images: float (N, 3, S, S) in [0, 1].

        Returns:
            float (N, P, C_backbone), P = number of patches (prefix tokens dropped); no gradient.

        Raises:
            ValueError: the backbone is trainable (``freeze=False``): its tokens change during training.
        """
        if not self.freeze:
            raise ValueError("backbone tokens can only be cached for a frozen backbone")
        self._check(images)
        with torch.no_grad():
            f = self._features(self.normalize(images))
        if self.is_vit:
            if f.shape[1] != self.prefix + self.num_patches:
                raise ValueError(f"ViT gave {f.shape[1]} tokens, expected {self.prefix}+{self.num_patches}")
            return f[:, self.prefix:]
        return f.flatten(2).transpose(1, 2)

    def forward(self, images: torch.Tensor,
                backbone_tokens: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Patch tokens (N, P, D) and position table (P, D); ``backbone_tokens`` (from :meth:`backbone_tokens`,
        e.g. a cache) skips the frozen backbone."""
        if backbone_tokens is not None:
            return self.proj(backbone_tokens.to(images.dtype)), self.position_table()
        if self.freeze:
            return self.proj(self.backbone_tokens(images)), self.position_table()
        self._check(images)
        f = self._features(self.normalize(images))
        if self.is_vit:
            if f.shape[1] != self.prefix + self.num_patches:
                raise ValueError(f"ViT gave {f.shape[1]} tokens, expected {self.prefix}+{self.num_patches}")
            f = f[:, self.prefix:]
        else:
            f = f.flatten(2).transpose(1, 2)
        return self.proj(f), self.position_table()

    def position_table(self) -> torch.Tensor:
        if not self.use_vit_pos:
            return self.pos_table
        pos = self._vit_pos()
        return pos.detach() if self.freeze else pos


def _groups(c: int) -> int:
    for g in (8, 4, 2):
        if c % g == 0:
            return g
    return 1


def build_patch_tokenizer(cfg) -> PatchTokenizer:
    """The patch tokenizer of a :class:`~mien.models.tokenizer.config.TokenizerConfig`."""
    if cfg.backbone == "conv":
        return ConvPatchEncoder(cfg.crop_size, cfg.dim, cfg.patch_size, cfg.conv_channels, cfg.mean, cfg.std)
    if cfg.backbone.startswith("faceapi-"):
        from mien.models.tokenizer.faceapi_patch import FaceApiPatchTokenizer

        return FaceApiPatchTokenizer(cfg.backbone, cfg.dim)
    return TimmPatchTokenizer(cfg.timm_name, cfg.crop_size, cfg.dim, cfg.pretrained, cfg.freeze_backbone,
                              cfg.mean, cfg.std, cfg.timm_kwargs)


__all__ = ["ConvPatchEncoder", "PatchTokenizer", "PretrainedWeightsError", "TimmPatchTokenizer", "build_patch_tokenizer", "sincos_2d"]
