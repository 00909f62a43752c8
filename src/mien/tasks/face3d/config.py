"""Configuration of :class:`mien.tasks.face3d.Face3DTask`: every loss weight (:class:`Face3DWeights`), the
expression-augmentation cycle (:class:`CycleConfig`) and optimisation (:class:`Face3DOptim`). Defaults follow
SMIRK/TEASER's ``config_train.yaml`` (DIGEST §5.3) where the term exists there; mien's replacements (face-api
perceptual/emotion networks instead of VGG16/EMOCA) are marked."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Face3DWeights:
    """Loss weights (all used; 0 switches a term off).

    Attributes:
        landmark: MSE of the projected model landmarks vs the 468 MediaPipe mesh points, crop-normalised
            coordinates ([−1, 1]) (seed ``landmark_loss_mp`` ×100).
        photometric: L1(reconstruction, crop) (seed ×10).
        perceptual: L1 between frozen face-api FaceRecognitionNet feature maps of reconstruction and crop
            (replaces the seed's VGG16 term ×10).
        emotion: MSE between frozen face-api FaceExpressionNet 256-d embeddings of reconstruction and crop,
            the generator's weights frozen for this term (replaces EMOCA's emotion ResNet, seed ×1).
        token_cycle: MSE(TokenEncoder(reconstruction), tokens) over the 4 scales (TEASER ×5; no effect without
            tokens).
        cycle: the expression-augmentation cycle path (seed ×1).
        cycle_jaw, cycle_eyelids, cycle_token, cycle_shape: weights inside the cycle term (seed 10, 10, 1, 1;
            the shape term only when the generator is trained in the cycle path).
        expression_reg, jaw_reg, shape_reg: mean squared coefficients (expression and shape divided by the face
            model's per-component std: unit-variance units) (seed 1e-3, 1e-2, shape 0 in the main stage).
        fit_distill: MSE between the encoder's expression (unit-variance units), jaw (×10) and eyelids (×10) and
            those of the per-frame landmark fit (:func:`mien.models.face3d.fit_landmarks`) of the same crop's
            MediaPipe landmarks — a supervised warm start towards the non-learned baseline, in the spirit of
            SMIRK's landmark terms (mien addition; 0 = off, the seed's behaviour).
    """

    landmark: float = 100.0
    photometric: float = 10.0
    perceptual: float = 1.0
    emotion: float = 1.0
    token_cycle: float = 5.0
    cycle: float = 1.0
    cycle_jaw: float = 10.0
    cycle_eyelids: float = 10.0
    cycle_token: float = 1.0
    cycle_shape: float = 1.0
    expression_reg: float = 1e-3
    jaw_reg: float = 1e-2
    shape_reg: float = 1e-3
    fit_distill: float = 0.0


@dataclass
class CycleConfig:
    """The expression-augmentation cycle (seed ``step2``): each sample's copy is assigned one of ``groups``
    at random — ``random`` (Bernoulli(``random_prob``) mask × N(0, 1) · (1 + 2U) added to the expression, in
    std units, clamped to ±``clamp``), ``permuted`` (another sample's expression × (0.25 + 1.25U)), ``template``
    (an expression template × (0.25 + 1.25U): the face model's AU directions for ``mien-face``; ``permuted``
    when the model has none), ``zero`` (zero expression and jaw, random eyelids); then noise 0.2U·N, jaw jitter
    N · ``jaw_noise`` · [1, .1, .1] on half, eyelids ± ``eyelid_jitter``.
    """

    groups: tuple[str, ...] = ("random", "permuted", "template", "zero")
    random_prob: float = 0.5
    clamp: float = 4.0
    noise: float = 0.2
    jaw_noise: float = 0.2
    eyelid_jitter: float = 0.25


@dataclass
class Face3DOptim:
    """Optimisation.

    Attributes:
        lr: generator Adam learning rate (betas ``generator_betas``); encoders use ``lr · encoder_lr_scale``.
        train_pose, train_shape, train_expression: which encoders are optimised (the seed's main stage freezes
            pose and shape after its landmark-only pre-training; mien trains all from scratch by default).
        alternate: in the cycle path, freeze the encoders on even steps and the generator on odd steps (seed).
        generator_clip: gradient-norm clip of the generator on steps where the cycle path trains it.
        min_lr_ratio: cosine decay of both learning rates to this fraction over the run (seed: 1 %).
        frames_per_clip: frames sampled from each clip of a shard batch (images: 1).
    """

    lr: float = 1e-3
    encoder_lr_scale: float = 0.25
    generator_betas: tuple[float, float] = (0.5, 0.999)
    train_pose: bool = True
    train_shape: bool = True
    train_expression: bool = True
    alternate: bool = True
    generator_clip: float = 0.1
    min_lr_ratio: float = 0.01
    frames_per_clip: int = 2
