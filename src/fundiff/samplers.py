"""Samplers: named update rules x_t -> x_t' and one loop, ``sample``, that runs any of them.

A sampler turns the denoiser's prediction at ``t`` into the next, less noisy ``x_t'``
(``t' = -1`` is the clean image, see schedules.py). fundiff has

- ``ddpm``: ancestral posterior steps (Ho et al. 2020, Alg. 2; strided per convention 3),
  with the learned variance when the denoiser predicts one;
- ``ddim``: DDIM (Song et al. 2021, Eq. 12); ``eta`` in [0, 1], 0 is deterministic;
- ``dpm++``: DPM-Solver++(2M) (Lu et al. 2022, Alg. 2), a deterministic second-order
  multistep solver for few-step sampling, first-order on its first and last step;
- ``euler`` and ``heun``: the probability-flow ODE integrated in flow time tau (flow.py):
  ``dx_tau/dtau = eps_hat - x0_hat`` on ``x_tau = x_t / (alpha_t + sigma_t)``. For a flow-matching
  model that is its own velocity ODE; ``euler`` equals DDIM with eta = 0; ``heun`` (Karras et
  al. 2022, Alg. 1) averages the slopes at both ends of a step (two denoiser calls per step,
  Euler on the last step to the clean image).

Pure-noise sampling, strided iterative denoising and SDEdit differ only in the timestep
list and the start ``x``; inpainting adds a per-step hook; RePaint restarts the sampler
after each jump back up. **Adding a sampler** touches this file only: a class with a
``name`` and ``start(schedule, predict) -> Step``, and an entry in :data:`SAMPLERS`; the CLI's
``--sampler`` choices, every edit, technique and the evaluation take it from there.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol

import torch
from torch import Tensor

from fundiff import timesteps as ts_lib
from fundiff.denoisers import Denoiser, Prediction
from fundiff.errors import FundiffError
from fundiff.schedules import NoiseSchedule
from fundiff.traits import DEFAULT_SAMPLER

# on_step(i, t, t_prev, x_prev, x0_hat) -> replacement for x_prev, or None to keep it
StepHook = Callable[[int, int, int, Tensor, Tensor], Tensor | None]


class Step(Protocol):
    """One update of one descent: (x_t, prediction at t, t, t_prev, generator) -> (x_t', x0_hat)."""

    def __call__(
        self, x_t: Tensor, pred: Prediction, t: int, t_prev: int, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor]: ...


# predict(x, t) -> the denoiser's Prediction at integer timestep t (same conditioning as the descent)
Predict = Callable[[Tensor, int], Prediction]


class Sampler(Protocol):
    """A named update rule. ``start`` gives a fresh :class:`Step` for one descent (multistep state lives there);
    ``predict`` lets a multi-stage step (Heun) call the denoiser again."""

    name: ClassVar[str]

    def start(self, schedule: NoiseSchedule, predict: Predict | None = None) -> Step: ...


@dataclass(frozen=True)
class DDPM:
    """Ancestral DDPM steps (Ho et al. 2020, Alg. 2), strided (convention 3), learned variance if predicted."""

    name: ClassVar[str] = "ddpm"

    def start(self, schedule: NoiseSchedule, predict: Predict | None = None) -> Step:
        def step(x_t, pred, t, t_prev, generator):
            x0 = pred.x0_hat(schedule, x_t, t)
            return schedule.p_step(x_t, pred.eps.to(x_t.dtype), t, t_prev, v=pred.v, x0_hat=x0, generator=generator)

        return step


@dataclass(frozen=True)
class DDIM:
    """DDIM steps (Song et al. 2021, Eq. 12): eta = 0 deterministic, eta = 1 the DDPM posterior variance."""

    eta: float = 0.0
    name: ClassVar[str] = "ddim"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.eta) and 0.0 <= self.eta <= 1.0):
            raise FundiffError(f"DDIM's eta must be in [0, 1] (0: deterministic, 1: DDPM-like), got {self.eta}")

    def start(self, schedule: NoiseSchedule, predict: Predict | None = None) -> Step:
        def step(x_t, pred, t, t_prev, generator):
            x0, eps = pred.x0_hat(schedule, x_t, t), pred.eps.to(x_t.dtype)
            return schedule.ddim_step(x_t, eps, t, t_prev, eta=self.eta, x0_hat=x0, generator=generator)

        return step


@dataclass(frozen=True)
class DPMSolverPP:
    """DPM-Solver++(2M) (Lu et al. 2022, Alg. 2, midpoint form as in diffusers' ``DPMSolverMultistepScheduler``).

    In lambda_t = log(alpha_t / sigma_t) (half the schedule's log_snr), with data prediction D = x0_hat and
    h = lambda_t' - lambda_t:
    x_t' = (sigma_t'/sigma_t) x_t - alpha_t' (e^-h - 1) (D_t + (D_t - D_prev) / (2 r)),
    r = h_prev / h. The first step, and the last (to the clean image, sigma = 0), are first order
    (which is DDIM with eta = 0). Deterministic: the generator is never used.
    """

    name: ClassVar[str] = "dpm++"

    def start(self, schedule: NoiseSchedule, predict: Predict | None = None) -> Step:
        history: list[tuple[float, Tensor]] = []  # (lambda_t, x0_hat) of the previous step

        def step(x_t, pred, t, t_prev, generator):
            x0_hat = pred.x0_hat(schedule, x_t, t)
            now, prev = schedule.scalar_at(t), schedule.scalar_at(t_prev)
            lam_s = now.log_snr / 2
            if t_prev < 0:  # sigma = 0: the solution at lambda = inf is the data prediction itself
                history.clear()
                return x0_hat, x0_hat
            h = prev.log_snr / 2 - lam_s
            d = x0_hat
            if history:
                lam_prev, x0_prev = history[-1]
                r = (lam_s - lam_prev) / h
                d = x0_hat + (x0_hat - x0_prev) / (2 * r)
            history[:] = [(lam_s, x0_hat)]
            return (prev.sigma / now.sigma) * x_t - (prev.alpha * math.expm1(-h)) * d, x0_hat

        return step


def _flow_velocity(schedule: NoiseSchedule, x_t: Tensor, pred: Prediction, t: int) -> tuple[Tensor, Tensor]:
    """(velocity eps_hat - x0_hat, x0_hat) of the prediction at level t."""
    x0_hat = pred.x0_hat(schedule, x_t, t)
    return pred.eps.to(x_t.dtype) - x0_hat, x0_hat


@dataclass(frozen=True)
class Euler:
    """Euler steps in flow time: x_tau' = x_tau + (tau' - tau) u, u = eps_hat - x0_hat (= DDIM, eta 0).

    x_t = k x_tau with k = alpha_t + sigma_t, the schedule's ``flow_scale``; tau its ``tau``.
    """

    name: ClassVar[str] = "euler"

    def start(self, schedule: NoiseSchedule, predict: Predict | None = None) -> Step:
        def step(x_t, pred, t, t_prev, generator):
            now, prev = schedule.scalar_at(t), schedule.scalar_at(t_prev)
            u, x0_hat = _flow_velocity(schedule, x_t, pred, t)
            return prev.flow_scale * (x_t / now.flow_scale + (prev.tau - now.tau) * u), x0_hat

        return step


@dataclass(frozen=True)
class Heun:
    """Heun steps in flow time (Karras et al. 2022, Alg. 1): an Euler predictor to tau', then
    x_tau' = x_tau + (tau' - tau) (u(x_tau, tau) + u(x_euler, tau')) / 2. The step to the clean
    image (tau' = 0) is a plain Euler step. Two denoiser calls per step otherwise."""

    name: ClassVar[str] = "heun"

    def start(self, schedule: NoiseSchedule, predict: Predict | None = None) -> Step:
        if predict is None:
            raise FundiffError("the heun sampler calls the denoiser twice per step; start it with predict")

        def step(x_t, pred, t, t_prev, generator):
            now, prev = schedule.scalar_at(t), schedule.scalar_at(t_prev)
            k, k_prev = now.flow_scale, prev.flow_scale  # x_t = k x_tau
            u, x0_hat = _flow_velocity(schedule, x_t, pred, t)
            x_euler = x_t / k + (prev.tau - now.tau) * u
            if t_prev < 0:
                return x_euler, x0_hat
            u_prev, _ = _flow_velocity(schedule, k_prev * x_euler, predict(k_prev * x_euler, t_prev), t_prev)
            return k_prev * (x_t / k + (prev.tau - now.tau) * (u + u_prev) / 2), x0_hat

        return step


SAMPLERS: dict[str, type] = {cls.name: cls for cls in (DDPM, DDIM, DPMSolverPP, Euler, Heun)}
# DEFAULT_SAMPLER ("ddpm", defined in traits.py): ModelTraits' default_sampler unless a model names its own


def default_sampler_of(denoiser: Denoiser) -> str:
    """The sampler ``denoiser`` is sampled with when none is asked for: ``denoiser.traits.default_sampler``."""
    return denoiser.traits.default_sampler


def sampler_for(denoiser: Denoiser, sampler: str | Sampler | None = None) -> Sampler:
    """``sampler`` (a name or a Sampler), or None: the denoiser's own (its traits' default_sampler: heun for a
    flow-matching UNet, else ddpm). Every loop that samples resolves its sampler here."""
    return get_sampler(default_sampler_of(denoiser) if sampler is None else sampler)


def get_sampler(sampler: str | Sampler = DEFAULT_SAMPLER, *, eta: float | None = None) -> Sampler:
    """A sampler by name (``ddpm``, ``ddim``, ``dpm++``, ``euler``, ``heun``), or ``sampler`` itself if it is one.

    ``eta`` applies to samplers that take it (DDIM); giving it to another is an error.
    """
    if not isinstance(sampler, str):
        if eta is not None:
            raise FundiffError("give eta to the sampler's constructor, not beside a sampler object")
        return sampler
    if sampler not in SAMPLERS:
        raise FundiffError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    cls = SAMPLERS[sampler]
    if eta is None:
        return cls()
    if "eta" not in getattr(cls, "__dataclass_fields__", {}):
        takes = [n for n, c in SAMPLERS.items() if "eta" in getattr(c, "__dataclass_fields__", {})]
        raise FundiffError(f"the {sampler} sampler takes no eta; eta applies to {', '.join(takes)}")
    return cls(eta=eta)


def predictor(denoiser: Denoiser, cond: Tensor) -> Predict:
    """predict(x, t): ``denoiser`` at integer timestep t for every row of x, conditioned on ``cond``."""

    def predict(x: Tensor, t: int) -> Prediction:
        return denoiser(x, torch.full((x.shape[0],), t, device=x.device, dtype=torch.long), cond)

    return predict


@torch.no_grad()
def sample(
    denoiser: Denoiser,
    x: Tensor,
    timesteps: list[int],
    *,
    cond: Tensor,
    generator: torch.Generator | None = None,
    sampler: str | Sampler | None = None,
    on_step: StepHook | None = None,
) -> Tensor:
    """Denoise ``x`` = x_{timesteps[0]} (B,C,H,W) down to x_0 over ``timesteps`` with ``sampler``
    (None: the model's own, :func:`sampler_for`).

    Noise comes only from ``generator``. ``on_step`` may replace each x_t' (inpainting).
    Returns the clean estimate (B,C,H,W), same dtype as ``x``.
    """
    schedule = denoiser.schedule
    timesteps = ts_lib.validate(timesteps, schedule.T)
    predict = predictor(denoiser, cond)
    step = sampler_for(denoiser, sampler).start(schedule, predict)
    for i, t in enumerate(timesteps):
        t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1
        x_prev, x0_hat = step(x, predict(x, t), t, t_prev, generator)
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
    sampler: str | Sampler | None = None,
    device: torch.device | str = "cpu",
    on_step: StepHook | None = None,
) -> Tensor:
    """Draw x_T ~ N(0, I) for each row of ``cond`` and denoise it (the write-up's i_start = 0).

    ``on_step`` as in :func:`sample` (e.g. to watch x0_hat while sampling).
    Returns (B,C,H,W) float32 on ``device`` in the model's value range (unclamped).
    """
    shape = (cond.shape[0], denoiser.channels, denoiser.image_size, denoiser.image_size)
    x_T = noise_like(shape, generator=generator, device=device)
    return sample(denoiser, x_T, timesteps, cond=cond, generator=generator, sampler=sampler, on_step=on_step)
