"""Configuration groups of the AU tasks (dataclasses: the LightningCLI / YAML keys are their fields, e.g.
``model.loss.kind``, ``model.optim.lr``). Tasks store them in their checkpoint hyper-parameters as plain dicts
(:func:`mien.tasks.config.as_config` turns either back into the dataclass)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "BackboneConfig",
    "ImageInput",
    "IntensityConfig",
    "LossConfig",
    "MIROConfig",
    "OptimConfig",
    "SSLConfig",
]

LOSSES = ("bce", "focal", "db")
POS_WEIGHTS = ("none", "balanced")
SSL_KINDS = ("none", "fixmatch", "defixmatch")


@dataclass
class LossConfig:
    """Occurrence loss (:mod:`mien.tasks.au.losses`).

    Attributes:
        kind: ``"bce"``, ``"focal"`` or ``"db"`` (distribution-balanced; needs the training split's class counts).
        focal_alpha, focal_gamma: focal α (None/negative: off) and γ (also γ of ``db``).
        pos_weight: ``"none"`` or ``"balanced"`` (``kind="bce"`` only): per-AU positive weight #neg/#pos of the
            training split clamped to [1, ``pos_weight_cap``] (:func:`~mien.tasks.au.losses.balanced_pos_weight`).
    """

    kind: str = "focal"
    focal_alpha: float | None = 0.25
    focal_gamma: float = 2.0
    pos_weight: str = "none"
    pos_weight_cap: float = 20.0

    def __post_init__(self):
        if self.kind not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.kind!r}")
        if self.pos_weight not in POS_WEIGHTS:
            raise ValueError(f"pos_weight must be one of {POS_WEIGHTS}, got {self.pos_weight!r}")
        if self.pos_weight != "none" and self.kind != "bce":
            raise ValueError(f"pos_weight={self.pos_weight!r} applies to loss='bce' only (got loss={self.kind!r})")


@dataclass
class OptimConfig:
    """AdamW with a per-step schedule: linear warm-up over ``warmup_steps`` then cosine decay to
    ``lr · min_lr_ratio`` at the run's last step (:class:`mien.tasks.schedules.WarmupDecaySchedule`)."""

    lr: float = 1e-3
    weight_decay: float = 1e-5
    warmup_steps: int = 0
    min_lr_ratio: float = 0.05


@dataclass
class ImageInput:
    """The image model's input contract, linked from the data config (``data.image``) and stored in checkpoints
    and ONNX metadata.

    Attributes:
        size: S, the square input side in pixels.
        grayscale: images are converted to gray (replicated to RGB) — also at inference.
        crop_scale: the crop is a square of ``crop_scale`` × the landmark box's longer side
            (:func:`mien.models.au.features.face_crops`; CK+48 ≈ 1.0).
    """

    size: int = 64
    grayscale: bool = False
    crop_scale: float = 1.1


@dataclass
class BackboneConfig:
    """Image backbone (:func:`mien.models.au.backbone.build_backbone`).

    Attributes:
        name: timm model name or ``"faceapi"`` (offline, shipped weights).
        pretrained: load pretrained weights (timm: from the hub; faceapi: shipped); loading a checkpoint for
            export turns it off (the weights come from the checkpoint).
        features_only, out_indices: see :class:`mien.models.au.backbone.TimmBackbone`.
        lr_mult: the backbone's LR multiplier.
    """

    name: str = "resnet10t"
    pretrained: bool = False
    features_only: bool = True
    out_indices: list[int] | None = None
    lr_mult: float = 1.0


@dataclass
class IntensityConfig:
    """Intensity head: ``kind`` ``"none"``, ``"regression"`` (L1 on FACS / 5) or ``"ordinal"`` (``levels`` L
    thermometer outputs); ``weight`` of its loss."""

    kind: str = "none"
    levels: int = 5
    weight: float = 1.0


@dataclass
class SSLConfig:
    """Semi-supervised learning on unlabelled images: ``kind`` ``"none"``, ``"fixmatch"`` or ``"defixmatch"``;
    ``threshold`` τ of confident pseudo-labels; ``weight`` λ_u of the unlabelled loss."""

    kind: str = "none"
    threshold: float = 0.95
    weight: float = 1.0

    def __post_init__(self):
        if self.kind not in SSL_KINDS:
            raise ValueError(f"ssl must be one of {SSL_KINDS}, got {self.kind!r}")


@dataclass
class MIROConfig:
    """MIRO regulariser: ``weight`` λ (0 = off), ``lr_mult`` LR multiplier of its variance encoders."""

    weight: float = 0.0
    lr_mult: float = 10.0
