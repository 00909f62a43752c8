"""Option groups of :class:`~mien.tasks.reenact.ReenactTask` (YAML / CLI keys ``model.weights.l1``,
``model.optim.lr`` …); checkpoints store them as plain dicts (:func:`mien.tasks.config.as_config`)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["OptimConfig", "ReenactWeights"]


@dataclass
class ReenactWeights:
    """Weights of the loss terms (0 switches a term off and skips its computation where possible).

    Attributes:
        l1: multi-scale L1 (full, ½, ¼ resolution) weighted by the eye/mouth region map.
        perceptual: L1 between face-api FaceRecognitionNet feature maps (frozen, shipped) of output and target.
        identity: 1 − cos of FaceRecognitionNet descriptors (output vs target; cross pairs: vs the source).
        expression: L1 between face-api FaceExpressionNet embeddings of output and target (frozen, shipped).
        gan: hinge adversarial loss of the generator; feature_matching: L1 of discriminator features.
        cross: MegaPortraits' contrastive cross-reenactment loss on expression latents (see ``losses``); in the
            warpguided stage, the cross-identity expression term (L1 of FaceExpressionNet embeddings of the
            cross-reenacted output and the driver).
        eye_region, mouth_region: extra weight of the eye / mouth boxes (from the driver's landmarks) in the L1
            map: gaze and blink consistency through eye-region weighting.
        distill: L1 of the student to its teacher's output.
        cycle: hr stage: L1 between the GHR output downsampled ×2 and the base output (MegaPortraits'
            unsupervised HR term, keeps the enhancer faithful to the base).
    """

    l1: float = 1.0
    perceptual: float = 0.1
    identity: float = 0.1
    expression: float = 0.05
    gan: float = 0.0
    feature_matching: float = 0.0
    cross: float = 0.1
    eye_region: float = 2.0
    mouth_region: float = 1.0
    distill: float = 1.0
    cycle: float = 1.0


@dataclass
class OptimConfig:
    """AdamW for generator and discriminator, cosine decay to ``min_lr`` over ``total_steps`` after a linear
    warm-up.

    Attributes:
        lr, d_lr: generator / discriminator peak learning rates; min_lr: floor.
        betas, weight_decay: AdamW; warmup_steps, total_steps (None: the trainer's estimated stepping batches).
        grad_clip: gradient-norm clip of each optimiser step (0: off; manual optimisation ignores the trainer's).
    """

    lr: float = 2e-4
    d_lr: float = 2e-4
    min_lr: float = 1e-5
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    total_steps: int | None = None
    grad_clip: float = 1.0
