"""Measuring models: the one-step denoiser's sigma sweep (MSE / PSNR)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

SWEEP_SIGMAS: tuple[float, ...] = (0.0, 0.2, 0.4, 0.5, 0.6, 0.8, 1.0)  # the write-up's out-of-distribution sweep


@dataclass(frozen=True)
class SweepRow:
    sigma: float
    mse: float  # mean squared error of the denoised image against the clean one, images in [0, 1]
    psnr: float  # 10 log10(1 / mse), dB
    mse_noisy: float  # the same for the noisy input, for reference


def psnr(mse: float) -> float:
    return 10 * math.log10(1.0 / mse) if mse > 0 else float("inf")


@torch.no_grad()
def denoise_sweep(
    model: nn.Module,
    x: Tensor,
    sigmas: Sequence[float] = SWEEP_SIGMAS,
    *,
    generator: torch.Generator,
    batch_size: int = 1000,
) -> tuple[list[SweepRow], dict[float, tuple[Tensor, Tensor]]]:
    """Denoise z = x + sigma * eps with a one-step denoiser for each sigma.

    x: (N,1,H,W) clean images in [0,1]. Returns the metrics per sigma and, per sigma,
    (noisy, denoised) tensors like x (denoised clamped to [0,1] for the metrics too).
    """
    rows, images = [], {}
    for sigma in sigmas:
        eps = torch.randn(x.shape, generator=generator, device=x.device)
        z = x + sigma * eps
        out = torch.cat([model(z[i : i + batch_size]).float() for i in range(0, len(z), batch_size)]).clamp(0, 1)
        mse = float(((out - x) ** 2).mean())
        mse_noisy = float(((z.clamp(0, 1) - x) ** 2).mean())
        rows.append(SweepRow(float(sigma), mse, psnr(mse), mse_noisy))
        images[float(sigma)] = (z, out)
    return rows, images
