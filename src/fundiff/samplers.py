"""Samplers: plain functions of (denoiser, x, timesteps, cond, generator).

``sample`` runs ancestral DDPM steps (Ho et al. 2020, Alg. 2, strided per ERRATA item 3)
or DDIM steps (Song et al. 2021) over a timestep list (see timesteps.py). Pure-noise
sampling, strided iterative denoising and SDEdit differ only in the list and the start
``x``; inpainting adds a per-step hook.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from fundiff import timesteps as ts_lib
from fundiff.denoisers import Denoiser

# on_step(i, t, t_prev, x_prev, x0_hat) -> replacement for x_prev, or None to keep it
StepHook = Callable[[int, int, int, Tensor, Tensor], Tensor | None]


@torch.no_grad()
def sample(
    denoiser: Denoiser,
    x: Tensor,
    timesteps: list[int],
    *,
    cond: Tensor,
    generator: torch.Generator | None = None,
    eta: float | None = None,
    on_step: StepHook | None = None,
) -> Tensor:
    """Denoise ``x`` = x_{timesteps[0]} (B,C,H,W) down to x_0 over ``timesteps``.

    eta=None takes ancestral DDPM posterior steps (learned variance used when the
    denoiser predicts it); a float takes DDIM steps with that eta. Noise comes only from
    ``generator``. Returns the clean estimate (B,C,H,W), same dtype as ``x``.
    """
    schedule = denoiser.schedule
    timesteps = ts_lib.validate(timesteps, schedule.T)
    for i, t in enumerate(timesteps):
        t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1
        t_batch = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        pred = denoiser(x, t_batch, cond)
        if eta is None:
            x_prev, x0_hat = schedule.p_step(x, pred.eps.to(x.dtype), t, t_prev, v=pred.v, generator=generator)
        else:
            x_prev, x0_hat = schedule.ddim_step(x, pred.eps.to(x.dtype), t, t_prev, eta=eta, generator=generator)
        if on_step is not None:
            replaced = on_step(i, t, t_prev, x_prev, x0_hat)
            if replaced is not None:
                x_prev = replaced
        x = x_prev
    return x


def noise_like(
    shape: tuple[int, ...], *, generator: torch.Generator | None, device: torch.device | str = "cpu"
) -> Tensor:
    """Pure Gaussian noise x_T (float32) from ``generator`` on ``device``."""
    return torch.randn(shape, generator=generator, device=device)


def sample_from_noise(
    denoiser: Denoiser,
    cond: Tensor,
    timesteps: list[int],
    *,
    generator: torch.Generator | None,
    eta: float | None = None,
    device: torch.device | str = "cpu",
) -> Tensor:
    """Draw x_T ~ N(0, I) for each row of ``cond`` and denoise it (the write-up's i_start = 0).

    Returns (B,C,H,W) float32 on ``device`` in the model's value range (unclamped).
    """
    shape = (cond.shape[0], denoiser.channels, denoiser.image_size, denoiser.image_size)
    x_T = noise_like(shape, generator=generator, device=device)
    return sample(denoiser, x_T, timesteps, cond=cond, generator=generator, eta=eta)
