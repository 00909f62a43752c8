"""The one learning-rate / loss-weight schedule of mien's training tasks: warm-up then decay.

Used by the tokenizer and predictor tasks (LR and every loss weight, linear decay) and by the AU tasks (LR
factor, cosine decay). :func:`lambda_lr` turns a schedule into a per-step ``torch.optim.lr_scheduler.LambdaLR``.
"""

from __future__ import annotations

import math

import torch

__all__ = ["WarmupDecaySchedule", "lambda_lr"]

DECAYS = ("linear", "cosine")


class WarmupDecaySchedule:
    """Warm-up from ``initial`` to ``peak``, optionally hold ``peak``, then decay from ``peak`` to ``final`` (seed-1
    CombinedLRLossWeightScheduler for ``decay="linear"``; linear warm-up + cosine annealing for ``decay="cosine"``;
    with ``hold_steps`` the warm-up/keep/cosine schedule of seed 4, whose phases are here all reached within
    ``total_steps``).

    value(step) = lerp(initial, peak, (step + warmup_offset) / warmup_steps) for step < warmup_steps, ``peak`` for
    warmup_steps ≤ step < d0 = warmup_steps + hold_steps, then with
    p = clamp((step − d0) / (total_steps − d0), 0, 1) (p = 1 when total_steps = d0)
    lerp(peak, final, p) (linear) or final + (peak − final) · ½ (1 + cos πp) (cosine); ``floor`` clamps from below
    (the LR's ``min_lr``).

    Args:
        initial, peak, final: values at step 0 (minus the offset), at ``warmup_steps`` and at ``total_steps``
            and after.
        warmup_steps: ≥ 0 (0 = start at ``peak``).
        total_steps: ≥ warmup_steps.
        floor: lower bound or None.
        decay: ``"linear"`` or ``"cosine"``.
        warmup_offset: 0 (step 0 gives ``initial``; the tokenizer tasks) or 1 (step 0 already one warm-up step
            in: with initial 0, step k gives (k + 1) / warmup_steps · peak; the AU tasks).
        hold_steps: ≥ 0 steps at ``peak`` after the warm-up (0: none).

    Raises:
        ValueError: negative warm-up or hold, total_steps < warmup_steps + hold_steps, or unknown decay.
    """

    def __init__(self, initial: float, peak: float, final: float, warmup_steps: int, total_steps: int,
                 floor: float | None = None, decay: str = "linear", warmup_offset: int = 0, hold_steps: int = 0):
        if warmup_steps < 0 or hold_steps < 0 or total_steps < warmup_steps + hold_steps:
            raise ValueError(f"need 0 <= warmup_steps ({warmup_steps}), 0 <= hold_steps ({hold_steps}) and "
                             f"warmup_steps + hold_steps <= total_steps ({total_steps})")
        if decay not in DECAYS:
            raise ValueError(f"decay must be one of {DECAYS}, got {decay!r}")
        self.initial, self.peak, self.final = float(initial), float(peak), float(final)
        self.warmup_steps, self.total_steps, self.floor = int(warmup_steps), int(total_steps), floor
        self.decay, self.warmup_offset, self.hold_steps = decay, int(warmup_offset), int(hold_steps)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            v = self.initial + (self.peak - self.initial) * (step + self.warmup_offset) / self.warmup_steps
        else:
            d0 = self.warmup_steps + self.hold_steps
            span = self.total_steps - d0
            p = 1.0 if span <= 0 else min(max((step - d0) / span, 0.0), 1.0)
            if self.decay == "linear":
                v = self.peak + (self.final - self.peak) * p
            else:
                v = self.final + (self.peak - self.final) * 0.5 * (1 + math.cos(math.pi * p))
        return max(v, self.floor) if self.floor is not None else v


def lambda_lr(optimizer: torch.optim.Optimizer, schedule: WarmupDecaySchedule, scale: float = 1.0) -> dict:
    """Lightning ``lr_scheduler`` entry stepping every optimisation step: each parameter group's LR is its
    initial LR × ``schedule(step) / scale`` (``scale`` = the schedule's peak when it is given in LR units)."""
    sched = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: schedule(s) / scale)
    return {"scheduler": sched, "interval": "step", "frequency": 1}
