"""Learned 3-D face reconstruction (SMIRK / TEASER on any :class:`~mien.models.face3d.FaceModel`): configuration
(:class:`Face3DConfig`), the model (:class:`Face3DNet` = :class:`~mien.models.face3d.encoders.Face3DEncoder` +
:class:`Face3DRenderer`), registered configurations (family ``face3d``), and the export format
(``config.json`` + ``model.safetensors``) with its loaders::

    enc = load_face3d_encoder(dir)          # crop (B, 3, S, S) RGB [0, 1] at enc.size -> Face3DParams
    ren = load_face3d_renderer(dir)         # ren.render(crop, params) -> (B, 3, S, S) neural reconstruction
    geo = render_geometry(enc.face_model, params, enc.size)     # shaded, normals, depth, mask

Crops are mien's (:func:`mien.face.crops.face_crop` with the export's ``crop`` contract, the crop of
``mien prepare`` shards), at ``size``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from torch import nn

from mien.models.face3d.base import FaceModel
from mien.models.face3d.encoders import Face3DEncoder
from mien.models.face3d.generators import UNetGenerator, masked_image
from mien.models.face3d.params import Face3DParams, render_geometry
from mien.models.folder import CONFIG_NAME, read_model_folder, write_model_folder

__all__ = ["CONFIGS", "FORMAT", "Face3DConfig", "Face3DNet", "Face3DRenderer", "load_face3d", "load_face3d_encoder",
           "load_face3d_renderer", "save_face3d"]

FORMAT = "mien-face3d/1"


@dataclass
class Face3DConfig:
    """A SMIRK/TEASER configuration.

    Attributes:
        size: crop side S (px). crop: crop contract (:func:`mien.face.crops.parse_crop_contract`).
        face_model: face-model spec (:func:`mien.models.face3d.open_face_model`): None = shipped ``mien-face``, a
            ``.npz`` path, or ``flame:/path/generic_model.pkl[,embedding.npz]`` (never shipped).
        n_shape, n_expression: leading components regressed (clipped to the model's).
        pose_backbone, shape_backbone, expression_backbone: timm names. token_backbone: timm name of TEASER's
            token encoder (None: SMIRK, no tokens). token_dim: D. pretrained: timm ImageNet weights.
        features, depth, res_blocks: generator U-Net width, levels, bottleneck residual blocks.
        mask_ratio: fraction of face pixels kept as hints in the masked image (SMIRK 0.01; TEASER 0).
        mask_dilate: dilation (px) of the rendered silhouette that is blanked.
        sigma, gamma: soft-rasteriser edge blur (px²) and depth temperature.
    """

    size: int = 224
    crop: str = "aligned-ffhq-0.0"
    face_model: str | None = None
    n_shape: int = 300
    n_expression: int = 50
    pose_backbone: str = "tf_mobilenetv3_small_minimal_100"
    shape_backbone: str = "tf_mobilenetv3_large_minimal_100"
    expression_backbone: str = "tf_mobilenetv3_large_minimal_100"
    token_backbone: str | None = None
    token_dim: int = 256
    pretrained: bool = False
    features: int = 32
    depth: int = 4
    res_blocks: int = 5
    mask_ratio: float = 0.01
    mask_dilate: int = 4
    sigma: float = 0.5
    gamma: float = 1e-2

    @classmethod
    def from_dict(cls, d: dict) -> Face3DConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown face3d config keys {unknown}")
        return cls(**d)


_TINY = dict(size=64, n_shape=300, n_expression=50, pose_backbone="mobilenetv3_small_050",
             shape_backbone="mobilenetv3_small_050", expression_backbone="mobilenetv3_small_050", features=8, depth=3,
             res_blocks=1, mask_dilate=2)
CONFIGS: dict[str, dict] = {
    "smirk-tiny": _TINY,
    "teaser-tiny": {**_TINY, "token_backbone": "mobilenetv3_small_050", "token_dim": 32, "mask_ratio": 0.0},
    "smirk-faceapi-tiny": {**_TINY, "expression_backbone": "faceapi-expression"},
    "smirk": {},
    "teaser": {"token_backbone": "tf_mobilenetv3_small_minimal_100", "mask_ratio": 0.0},
}
"""Registered configurations: ``*-tiny`` (64² crops, MobileNetV3-small-0.5 backbones, 8-feature 3-level U-Net;
CPU-trainable; ``smirk-faceapi-tiny``: the expression encoder on the frozen, shipped face-api FaceExpressionNet
features) and the seed's full ones (224², SMIRK's backbones, 32-feature 4-level U-Net with 5 residual
blocks; TEASER: 4 × 256 tokens, no hint pixels)."""


class Face3DRenderer(nn.Module):
    """The neural renderer: geometry render + masked image (+ tokens) → reconstructed crop.

    ``render(crop, params)`` (eval: deterministic hint pixels) → (B, 3, S, S) in [0, 1]. ``face_model`` is kept as
    an attribute (not a sub-module). Hint pixels: a fixed pseudo-random pattern below ``mask_ratio`` at eval,
    fresh Bernoulli samples in training.
    """

    def __init__(self, face_model: FaceModel, cfg: Face3DConfig):
        super().__init__()
        self.face_model, self.cfg, self.size = face_model, cfg, cfg.size
        tokens = cfg.token_dim if cfg.token_backbone else None
        self.generator = UNetGenerator(6, cfg.features, cfg.depth, cfg.res_blocks, tokens, 4, cfg.size)
        g = torch.Generator().manual_seed(0)
        self.register_buffer("hint_pattern", torch.rand(1, 1, cfg.size, cfg.size, generator=g), persistent=False)

    def geometry(self, params: Face3DParams) -> dict[str, torch.Tensor]:
        return render_geometry(self.face_model, params, self.size, sigma=self.cfg.sigma, gamma=self.cfg.gamma)

    def hints(self, batch: int, device) -> torch.Tensor | None:
        if self.cfg.mask_ratio <= 0:
            return None
        if self.training:
            return torch.rand(batch, 1, self.size, self.size, device=device) < self.cfg.mask_ratio
        return self.hint_pattern.to(device) < self.cfg.mask_ratio

    def render(self, crop: torch.Tensor, params: Face3DParams, geometry: dict | None = None) -> torch.Tensor:
        """Neural reconstruction of ``crop`` (B, 3, S, S) RGB [0, 1] from ``params`` (its geometry; hint pixels
        of ``crop`` for SMIRK, ``params.tokens`` for TEASER) → (B, 3, S, S) in [0, 1].

        Raises:
            ValueError: crop not (B, 3, S, S), or a TEASER renderer given params without tokens."""
        if crop.ndim != 4 or crop.shape[1:] != (3, self.size, self.size):
            raise ValueError(f"face3d renderer needs crops (B, 3, {self.size}, {self.size}), got {tuple(crop.shape)}")
        geo = self.geometry(params) if geometry is None else geometry
        masked = masked_image(crop, geo["mask"], self.hints(len(crop), crop.device), self.cfg.mask_dilate)
        return self.generator(torch.cat([geo["shaded"], masked], 1), params.tokens)

    def forward(self, crop, params):
        return self.render(crop, params)


class Face3DNet(nn.Module):
    """Encoder + neural renderer of one configuration (``self.encoder``, ``self.renderer``, ``self.cfg``)."""

    def __init__(self, cfg: Face3DConfig, face_model: FaceModel | None = None):
        super().__init__()
        from mien.models.face3d.spec import open_face_model

        self.cfg = cfg
        self.face_model = face_model if face_model is not None else open_face_model(cfg.face_model)[0]
        self.encoder = Face3DEncoder(self.face_model, cfg.size, cfg.n_shape, cfg.n_expression, cfg.pose_backbone,
                                     cfg.shape_backbone, cfg.expression_backbone, cfg.token_backbone, cfg.token_dim,
                                     cfg.pretrained, cfg.crop)
        self.renderer = Face3DRenderer(self.face_model, cfg)

    def forward(self, crop: torch.Tensor) -> tuple[Face3DParams, torch.Tensor]:
        params = self.encoder(crop)
        return params, self.renderer.render(crop, params)


def _factory(**kw) -> Face3DNet:
    return Face3DNet(Face3DConfig(**kw))


def _register() -> None:
    from mien.models.registry import InputContract, register_model

    desc = {"smirk-tiny": "tiny SMIRK (64², MobileNetV3-small-0.5 encoders, sparse-hint U-Net renderer), CPU",
            "smirk-faceapi-tiny": "tiny SMIRK whose expression encoder reads frozen face-api FaceExpressionNet "
                                  "features (shipped, pretrained on expressions), CPU",
            "teaser-tiny": "tiny TEASER (64², + 4 × 32 appearance tokens, token-guided AdaIN U-Net), CPU",
            "smirk": "SMIRK (CVPR 2024) at 224²: MobileNetV3 pose/shape/expression encoders, masked-image U-Net",
            "teaser": "TEASER (ICLR 2025) at 224²: SMIRK + 4 × 256 multi-scale tokens, token-guided U-Net"}
    for name, over in CONFIGS.items():
        cfg = Face3DConfig(**over)
        register_model(name, "face3d", InputContract(cfg.size, "0-1", crop=cfg.crop, landmark_scheme="mediapipe478"),
                       desc[name], **asdict(cfg))(_factory)


_register()


# ------------------------------------------------------------------------------------------------- export
def save_face3d(net: Face3DNet, directory: str | os.PathLike, extra: dict | None = None) -> Path:
    """Write ``config.json`` (format, config, face model, ``extra`` provenance) + ``model.safetensors`` into
    ``directory`` (created; each file written atomically; :func:`mien.models.folder.write_model_folder`)."""
    fm = net.face_model
    meta = {"config": asdict(net.cfg), "face_model": {"name": fm.name, "units": fm.units,
            "n_vertices": int(fm.n_vertices), "n_shape": fm.n_shape, "n_expression": fm.n_expression},
            **(extra or {})}
    return write_model_folder(directory, meta, net.state_dict(), fmt=FORMAT, version=None)


def load_face3d(directory: str | os.PathLike, face_model: str | None = None, device="cpu") -> Face3DNet:
    """Rebuild a :func:`save_face3d` export (eval mode; timm backbones built with ``pretrained=False``).

    Args:
        directory: the export folder. face_model: face-model spec overriding the recorded one (e.g. where the
            user's FLAME file lives on this machine).

    Raises:
        mien.errors.InputError: missing files, not a face3d export, or a face model that does not match the
            recorded one (vertices / components).
    """
    from mien.errors import InputError
    from mien.models.face3d.spec import open_face_model

    meta, state = read_model_folder(directory, fmt=FORMAT, version=None, what="face3d",
                                    hint="a folder written by `mien export face3d`")
    d = Path(directory)
    cfg = Face3DConfig.from_dict({**meta["config"], "pretrained": False})
    if face_model is not None:
        cfg.face_model = face_model
    fm = open_face_model(cfg.face_model)[0]
    rec = meta.get("face_model", {})
    if rec and (rec.get("n_vertices") != fm.n_vertices or rec.get("n_expression") != fm.n_expression):
        raise InputError(d / CONFIG_NAME, f"trained on face model {rec} but {cfg.face_model or 'mien-face'} has "
                                          f"{fm.n_vertices} vertices, {fm.n_expression} expression components")
    net = Face3DNet(cfg, fm)
    net.load_state_dict(state, strict=True)
    return net.to(device).eval()


def load_face3d_encoder(directory: str | os.PathLike, face_model: str | None = None, device="cpu") -> Face3DEncoder:
    """The encoder of an export (eval): ``enc(crop)`` → :class:`Face3DParams`; ``enc.size``, ``enc.face_model``,
    ``enc.crop``. Errors as :func:`load_face3d`."""
    return load_face3d(directory, face_model, device).encoder


def load_face3d_renderer(directory: str | os.PathLike, face_model: str | None = None,
                         device="cpu") -> Face3DRenderer:
    """The neural renderer of an export (eval): ``ren.render(crop, params)``. Errors as :func:`load_face3d`."""
    return load_face3d(directory, face_model, device).renderer

