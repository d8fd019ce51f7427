"""Step pieces shared by the UNet loop and the classifier loop: data order, LR, the loss check."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from fundiff.errors import FundiffError


def epoch_permutation(n: int, *, seed: int, epoch: int, device: torch.device | str = "cpu") -> Tensor:
    """The data order of epoch ``epoch`` (0-based): a permutation of 0..n-1 (int64, on ``device``).

    Drawn on the CPU from (seed + 7919 * epoch), so it is the same on every device, rank and
    resumed session.
    """
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed + 7919 * epoch)).to(device)


def lr_factor(schedule: str, step: int, *, epoch: int, epochs: int, total_steps: int, warmup_steps: int = 0) -> float:
    """Multiplier of the peak LR at optimizer step ``step`` (0-based) in epoch ``epoch`` (0-based).

    A linear warm-up min(1, (step + 1) / warmup_steps) times the schedule: "exponential" (the
    write-up's ExponentialLR, gamma = 0.1 ** (1 / epochs), stepped per epoch), "cosine"
    (0.5 (1 + cos(pi step / total_steps)), per step, to 0 at the end) or "constant".
    """
    warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
    if schedule == "exponential":
        return warm * (0.1 ** (1.0 / epochs)) ** epoch
    if schedule == "cosine":
        return warm * 0.5 * (1 + math.cos(math.pi * min(step / max(total_steps, 1), 1.0)))
    return warm


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """Set every parameter group of ``opt`` to learning rate ``lr``."""
    for group in opt.param_groups:
        group["lr"] = lr


def check_loss(loss: Tensor, step: int, advice: str) -> None:
    """A one-line FundiffError when the scalar ``loss`` is NaN or infinite; ``advice`` says what to do."""
    if not torch.isfinite(loss):
        raise FundiffError(f"the loss became {loss.item()} at step {step}; {advice}")


__all__ = ["epoch_permutation", "lr_factor", "set_lr", "check_loss"]
