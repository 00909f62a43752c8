"""Option groups of the tokenizer and predictor tasks (dataclasses: YAML / CLI keys ``model.schedule.lr``,
``model.weights.recon``, ``model.loss.recon`` …). Checkpoints store them as plain dicts
(:func:`mien.tasks.config.as_config` turns either back into the dataclass)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PredictorWeights", "ScheduleConfig", "TokenizerLoss", "TokenizerWeights"]

Triple = tuple[float, float, float]


@dataclass
class ScheduleConfig:
    """AdamW and the LR schedule (:class:`mien.tasks.schedules.WarmupDecaySchedule`, linear).

    Attributes:
        lr: peak learning rate; min_lr: final/floor LR; lr_initial: LR at step 0 (None: ``min_lr``).
        weight_decay, betas: AdamW.
        warmup_steps: steps from ``lr_initial`` to ``lr`` (the loss weights warm up over the same steps).
        total_steps: end of the decay (None: the trainer's estimated stepping batches).
    """

    lr: float = 5e-5
    min_lr: float = 1e-6
    lr_initial: float | None = None
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 3000
    total_steps: int | None = None


@dataclass
class TokenizerWeights:
    """(initial, peak, final) loss weights of :class:`~mien.tasks.tokenizer.TokenizerTask`, scheduled like the
    LR; defaults: the seed README's from-scratch values (perceptual, variance and the expression terms off).

    The expression terms (issue 9) go through face-api's frozen FaceExpressionNet
    (:class:`~mien.tasks.tokenizer.losses.ExpressionNetLoss`): ``expression`` = relative ``dense3`` feature error
    of the reconstruction, ``emotion`` = KL of its emotion probabilities from the input's, ``swap_emotion`` = the
    same KL for the input's tokens decoded with *another* subject's embedding of the batch (identity swap; every
    other frame), which no subject embedding can meet without the token.

    ``landmarks`` (warp decoder only, ``TokenizerConfig.decoder = "warp"``; needs batches with landmarks, e.g. mien
    shards): mean Euclidean distance between the decoder's 468 target mesh points and the frame's own landmarks,
    in units of the crop side (the displacement head learns from it; the refinement from ``recon``).
    """

    recon: Triple = (0.01, 0.2, 0.5)
    temporal: Triple = (0.4, 0.3, 0.2)
    diversity: Triple = (0.3, 0.2, 0.2)
    perceptual: Triple = (0.0, 0.0, 0.0)
    variance: Triple = (0.0, 0.0, 0.0)
    expression: Triple = (0.0, 0.0, 0.0)
    emotion: Triple = (0.0, 0.0, 0.0)
    swap_emotion: Triple = (0.0, 0.0, 0.0)
    landmarks: Triple = (1.0, 1.0, 1.0)


@dataclass
class PredictorWeights:
    """(initial, peak, final) loss weights of :class:`~mien.tasks.tokenizer.PredictorTask` (seed run)."""

    prediction: Triple = (0.01, 0.15, 0.5)
    temporal: Triple = (0.1, 0.3, 0.2)
    diversity: Triple = (0.5, 0.4, 0.2)


@dataclass
class TokenizerLoss:
    """Definitions of the tokenizer's loss terms (:mod:`mien.tasks.tokenizer.losses`).

    Attributes:
        recon: ``"mse"``, ``"l1"`` or ``"mse+l1"``.
        motion_gain: > 0 weights each pixel's reconstruction error by
            :func:`~mien.tasks.tokenizer.losses.motion_weights` (normalised by the mean weight); 0 = uniform (seed).
        perceptual_net: timm name of a frozen feature net for the perceptual term (None: off);
            perceptual_pretrained: load its pretrained weights.
        coherence_weight, contrast_weight, contrast_stride: temporal = coherence_weight · coherence +
            contrast_weight · contrast (stride s).
        diversity_stride, diversity_scope: ``"clip"`` (seed) or ``"batch"``
            (:func:`~mien.tasks.tokenizer.losses.diversity_loss`).
        variance_target: per-dimension within-clip standard deviation kept by the variance term.
    """

    recon: str = "mse"
    motion_gain: float = 0.0
    perceptual_net: str | None = None
    perceptual_pretrained: bool = True
    coherence_weight: float = 0.7
    contrast_weight: float = 0.3
    contrast_stride: int = 5
    diversity_stride: int = 5
    diversity_scope: str = "clip"
    variance_target: float = 0.1

    def __post_init__(self):
        if self.recon not in ("mse", "l1", "mse+l1"):
            raise ValueError(f"recon_loss must be 'mse', 'l1' or 'mse+l1', got {self.recon!r}")
        if self.diversity_scope not in ("clip", "batch"):
            raise ValueError(f"diversity_scope must be 'clip' or 'batch', got {self.diversity_scope!r}")
