"""Flow matching (rectified flow; Lipman et al. 2023, Liu et al. 2023) on the same UNets.

Flow time ``tau`` runs from 0 (data) to 1 (noise) along the straight path

    x_tau = (1 - tau) x_0 + tau eps,        eps ~ N(0, I),

and the UNet ``u(x_tau, tau)`` learns the velocity ``d x_tau / d tau = eps - x_0`` with a
plain MSE (conditional flow matching). Sampling integrates dx/dtau = u from tau = 1 to 0
(Euler or Heun, samplers.py).

**One Denoiser under everything.** The straight path is a rescaled VP (DDPM) process:
with ``alpha = sqrt(abar)``, ``sigma = sqrt(1 - abar)`` and ``x_vp = alpha x_0 + sigma eps``,

    x_tau = x_vp / (alpha + sigma),   tau = sigma / (alpha + sigma),
    abar(tau) = (1 - tau)^2 / ((1 - tau)^2 + tau^2).

The schedule tabulates that map per level t: ``schedule.at(t, like=x).tau`` and ``.flow_scale``
(= alpha + sigma; schedules.Coefficients). So a flow model is served as a Denoiser on the discrete
schedule :func:`schedule` (a grid of flow times), converting its velocity to the noise estimate
``eps = x_tau + (1 - tau) u`` and ``x0 = x_tau - tau u``. Every sampler, CFG, SDEdit, inpainting,
anagram and hybrid then runs on it unchanged; CFG on eps equals CFG on the velocity (eps is affine
in u at fixed x, tau).
DDIM with eta = 0 on that grid *is* the Euler method in tau (both keep x0_hat and eps_hat
fixed over a step), and any VP model can be integrated in tau the same way.

**The course's flow-matching edition** (objective ``course-flow``, ``--preset course-flow``) runs time the
other way: t = 1 - tau goes from the noise (t = 0) to the data (t = 1), x_t = (1 - t) x0 + t x1 with x0 the
noise and x1 the data, and the UNet at (x_t, t) learns x1 - x0 = -u. Its sampler starts at pure noise
(tau = 1) and takes Euler steps x += u_course / T at t = 0, 1/T, ..., (T-1)/T; that is fundiff's ``euler``
over every point of :func:`grid` with ``endpoint=True`` (tau = 1, (T-1)/T, ..., 1/T, then the data). At
tau = 1 the VP signal scale alpha is 0 (zero terminal SNR), so the clean estimate cannot come from eps:
such a model's Prediction carries x0 itself (denoisers.Prediction.x0).
"""

from __future__ import annotations

import torch
from torch import Tensor

from fundiff.errors import FundiffError
from fundiff.schedules import NoiseSchedule

TIME_LAWS = ("uniform", "logit-normal", "mixed")
# the nearly clean end of the path that sample_times(low_share=) adds times from: tau in (0, 0.1), where
# logit-normal times fall 1.4% of the time (README "Grain": a short fine-tune there removes the grain)
LOW_TAU_MAX = 0.1


def interpolate(x_0: Tensor, eps: Tensor, tau: Tensor) -> Tensor:
    """x_tau = (1 - tau) x_0 + tau eps; ``tau`` (B,) broadcasts over (B, C, H, W)."""
    tau = tau.reshape(-1, *([1] * (x_0.ndim - 1))).to(x_0.dtype)
    return (1 - tau) * x_0 + tau * eps


def velocity(x_0: Tensor, eps: Tensor) -> Tensor:
    """The conditional flow matching target d x_tau / d tau = eps - x_0."""
    return eps - x_0


def sample_times(
    n: int,
    *,
    law: str = "uniform",
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    low_share: float = 0.0,
) -> Tensor:
    """n training times tau in (0, 1): ``uniform``; ``logit-normal`` (sigmoid of N(0, 1); Esser et al. 2024,
    which spends more steps on the middle times but almost none near tau = 0: 1.4% of its times fall below 0.1,
    0.2% below 0.05, so the last sampling steps leave faint grain on MNIST's black background); ``mixed``: each
    time uniform or logit-normal with probability 1/2 (the middle times of the one, the ends of the other).

    ``low_share``: each time is instead uniform in (0, :data:`LOW_TAU_MAX`), the nearly clean end, with this
    probability (0: no extra draws, the law's times alone)."""
    if not 0 <= low_share < 1:
        raise FundiffError(f"the share of low flow times must be in [0, 1), got {low_share}")
    if law == "uniform":
        tau = torch.rand(n, generator=generator, device=device)
    elif law == "logit-normal":
        tau = torch.sigmoid(torch.randn(n, generator=generator, device=device))
    elif law == "mixed":
        uniform = torch.rand(n, generator=generator, device=device)
        logit_normal = torch.sigmoid(torch.randn(n, generator=generator, device=device))
        pick = torch.rand(n, generator=generator, device=device) < 0.5
        tau = torch.where(pick, uniform, logit_normal)
    else:
        raise FundiffError(f"unknown flow time law {law!r}; choose one of {', '.join(TIME_LAWS)}")
    if low_share:
        low = torch.rand(n, generator=generator, device=device) * LOW_TAU_MAX
        tau = torch.where(torch.rand(n, generator=generator, device=device) < low_share, low, tau)
    return tau


def grid(T: int, *, endpoint: bool = False) -> Tensor:
    """The T flow times tau_t = (t + 1) / (T + 1), t = 0..T-1 (float64): t = -1 is tau = 0, the data.

    ``endpoint``: tau_t = (t + 1) / T instead, so that t = T-1 is pure noise (tau = 1), the course's start."""
    if T < 2:
        raise FundiffError(f"a flow grid needs T >= 2, got {T}")
    return torch.arange(1, T + 1, dtype=torch.float64) / (T if endpoint else T + 1)


def schedule(T: int, *, endpoint: bool = False) -> NoiseSchedule:
    """The VP schedule equivalent to flow times :func:`grid`: abar = (1 - tau)^2 / ((1 - tau)^2 + tau^2)
    (with ``endpoint`` its last level is pure noise, abar = 0: beta = 1 there)."""
    tau = grid(T, endpoint=endpoint)
    abar = (1 - tau) ** 2 / ((1 - tau) ** 2 + tau**2)
    prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
    return NoiseSchedule(1 - abar / prev, kind="flow")


def eps_from_velocity(x_tau: Tensor, u: Tensor, tau: Tensor) -> Tensor:
    """The noise estimate of velocity ``u`` at (x_tau, tau): eps = x_tau + (1 - tau) u."""
    return x_tau + (1 - tau) * u


def x0_from_velocity(x_tau: Tensor, u: Tensor, tau: Tensor) -> Tensor:
    """The clean estimate of velocity ``u`` at (x_tau, tau): x0 = x_tau - tau u (defined at tau = 1 too)."""
    return x_tau - tau * u


def is_flow(objective: str) -> bool:
    """Whether a training objective learns a flow-matching velocity: ``flow``, or the course's ``course-flow``."""
    return objective in ("flow", "course-flow")


__all__ = [
    "TIME_LAWS",
    "interpolate",
    "velocity",
    "sample_times",
    "LOW_TAU_MAX",
    "grid",
    "schedule",
    "eps_from_velocity",
    "x0_from_velocity",
    "is_flow",
]
