"""Option groups of the reaction tasks (dataclasses: YAML / CLI keys ``model.schedule.lr``, ``model.loss.mrm`` …);
checkpoints store them as dicts (:func:`mien.tasks.config.as_config` turns either back into the dataclass)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ReactionLoss", "ReactionSchedule"]


@dataclass
class ReactionSchedule:
    """AdamW and the LR schedule: linear warm-up from ``lr_initial`` to ``lr``, hold, cosine to ``min_lr``
    (:class:`mien.tasks.schedules.WarmupDecaySchedule` with ``hold_steps``; seed 4's warm-up/keep/cosine, with the
    keep phase ending inside the run so that the cosine phase is reached).

    Attributes:
        lr: peak learning rate; min_lr: final LR; lr_initial: LR at step 0.
        weight_decay: AdamW decay of the Linear weights (none on biases, norms, embeddings; seed); betas: AdamW.
        warmup_steps, hold_steps: phase lengths in optimiser steps.
        total_steps: end of the cosine (None: the trainer's estimated stepping batches); must be
            ≥ warmup_steps + hold_steps.
    """

    lr: float = 1.5e-4
    min_lr: float = 1e-6
    lr_initial: float = 2.5e-6
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 1000
    hold_steps: int = 10000
    total_steps: int | None = None


@dataclass
class ReactionLoss:
    """Loss terms of :class:`~mien.tasks.reaction.ReactionTask` (seed 4 pretraining = all three, weight 1).

    Attributes:
        slm, mrm, crm: weights of speaker–listener matching, masked response modelling and causal response
            modelling (0 switches a term off).
        mrm_extra_rate: fraction of the unmasked listener positions also scored in MRM (seed: 0.2).
        shuffle_listener: probability of replacing a positive pair's listener by another listener marked
            appropriate for the speaker (seed: 0.2; needs the dataset's appropriateness matrix).
    """

    slm: float = 1.0
    mrm: float = 1.0
    crm: float = 1.0
    mrm_extra_rate: float = 0.2
    shuffle_listener: float = 0.2
