"""Timestep lists for samplers: full, strided, the default every sampling command takes, and SDEdit starts
(index convention: schedules.py).

A timestep list is a strictly decreasing list of ints in 0..T-1. A sampler steps from
``ts[i]`` to ``ts[i+1]`` and from ``ts[-1]`` to the clean image (``t' = -1``).
"""

from __future__ import annotations

import math

from fundiff.errors import FundiffError


def validate(ts: list[int], T: int) -> list[int]:
    """Check that ``ts`` is strictly decreasing within 0..T-1; return it as a list of ints."""
    ts = [int(t) for t in ts]
    if not ts:
        raise FundiffError("the timestep list is empty; give at least one step")
    if ts[0] >= T or ts[-1] < 0:
        raise FundiffError(f"timesteps must lie in 0..{T - 1}, got {ts[0]}..{ts[-1]}")
    if any(a <= b for a, b in zip(ts, ts[1:])):
        raise FundiffError("timesteps must be strictly decreasing (from noisy to clean)")
    return ts


def full(T: int) -> list[int]:
    """Every step, T-1 down to 0 (plain DDPM ancestral sampling)."""
    return list(range(T - 1, -1, -1))


def strided(T: int, *, steps: int | None = None, stride: int | None = None) -> list[int]:
    """A strided list from T-1 down to 0 inclusive, by ``steps`` (count) or ``stride``.

    With ``stride`` the list is T-1, T-1-stride, ... and ends with 0 (the write-up's
    ``strided_timesteps``: stride 30 on T=1000 gives 999, 969, ..., 9, 0). With ``steps``
    the timesteps are evenly spaced (rounded) and both ends are always visited.
    """
    if (steps is None) == (stride is None):
        raise FundiffError("give exactly one of steps or stride")
    if stride is not None:
        if not 1 <= stride < T:
            raise FundiffError(f"stride must be in 1..{T - 1}, got {stride}")
        ts = list(range(T - 1, -1, -stride))
        if ts[-1] != 0:
            ts.append(0)
        return ts
    assert steps is not None
    if not 1 <= steps <= T:
        raise FundiffError(f"steps must be in 1..{T}, got {steps}")
    if steps == 1:
        return [T - 1]
    ts = sorted({round((T - 1) * i / (steps - 1)) for i in range(steps)}, reverse=True)
    return validate(ts, T)


def trailing(T: int, steps: int) -> list[int]:
    """``steps`` timesteps evenly spaced from T-1 down, not reaching 0: t_i = round(T (steps - i) / steps) - 1
    (diffusers' "trailing" spacing; 2 steps on T = 1000: 999, 499): :func:`shifted` at shift 1. For few steps,
    where :func:`strided` spends one on the last, nearly clean, level."""
    return shifted(T, steps)


def shifted(T: int, steps: int, shift: float = 1.0) -> list[int]:
    """:func:`trailing` with its flow times tau = (steps - i) / steps moved by the time shift of Esser et al. 2024
    (SD3): tau' = shift tau / (1 + (shift - 1) tau), t_i = round(T tau') - 1. ``shift`` 1 is :func:`trailing`;
    below 1 the steps after the first (always T-1, pure noise) come closer to the clean end: 2 steps at shift
    0.25 are t = 999, 199 on T = 1000 (a distilled student's, measured: README "Few-step students")."""
    if not (math.isfinite(shift) and shift > 0):
        raise FundiffError(f"the time shift must be a positive number, got {shift}")
    if not 1 <= steps <= T:
        raise FundiffError(f"--steps must be in 1..{T}: at most T={T} for this model, got {steps}")
    taus = [(steps - i) / steps for i in range(steps)]
    ts = [max(0, round(T * shift * tau / (1 + (shift - 1) * tau)) - 1) for tau in taus]
    if len(set(ts)) < len(ts):
        raise FundiffError(f"{steps} steps at time shift {shift:g} give repeated timesteps on T={T}: take fewer")
    return validate(ts, T)


def from_start(ts: list[int], i_start: int) -> list[int]:
    """The tail of ``ts`` from index ``i_start`` (SDEdit / iterative denoising start)."""
    if not 0 <= i_start < len(ts):
        raise FundiffError(f"i_start must be in 0..{len(ts) - 1} for a list of {len(ts)} timesteps, got {i_start}")
    return ts[i_start:]


WRITEUP_T = 1000  # DeepFloyd IF's number of diffusion steps, which the write-up's t values refer to
WRITEUP_STRIDE = 30  # the write-up's strided_timesteps stride on T = 1000


def default_stride(T: int) -> int:
    """The write-up's stride 30 on T = 1000, scaled to T: round(0.03 T), at least 1 (9 for T = 300)."""
    return max(1, round(WRITEUP_STRIDE * T / WRITEUP_T))


def default(T: int) -> list[int]:
    """The timesteps every sampling command takes when given no --steps / --stride: T-1, T-1-s, ..., 0 with
    s = :func:`default_stride` -- the write-up's 35 strided steps on T = 1000, and 35 on T = 300 too -- unless
    the model names its own number of steps (``ModelTraits.default_steps``, :func:`for_model`: a course-flow
    model samples every one of its T steps, as the course does)."""
    return strided(T, stride=default_stride(T))


def for_model(denoiser, *, steps: int | None = None, stride: int | None = None) -> list[int]:
    """:func:`resolve` on ``denoiser``'s T, with its own default (``denoiser.traits.default_steps``) for neither;
    a model with its own spacing (``traits.timesteps_for``: a few-step student) takes it for a number of steps."""
    T, traits = denoiser.schedule.T, denoiser.traits
    if traits.timesteps_for is not None and stride is None:
        n = steps if steps is not None else traits.default_steps
        if n is not None:
            return traits.timesteps_for(n)
    return resolve(T, steps=steps, stride=stride, default_steps=traits.default_steps)


def resolve(
    T: int, *, steps: int | None = None, stride: int | None = None, default_steps: int | None = None
) -> list[int]:
    """The one way a number of steps becomes timesteps: ``steps`` evenly spaced, or every ``stride``-th,
    or (neither) :func:`default` (with a model's own ``default_steps``). Both is an error. Errors name the flag
    (--steps / --stride)."""
    if steps is not None and stride is not None:
        raise FundiffError("give --steps or --stride, not both")
    if steps is not None:
        if not 1 <= steps <= T:
            raise FundiffError(f"--steps must be in 1..{T}: at most T={T} for this model, got {steps}")
        return strided(T, steps=steps)
    if stride is not None:
        if not 1 <= stride < T:
            raise FundiffError(f"--stride must be in 1..{T - 1} for this model (T = {T}), got {stride}")
        return strided(T, stride=stride)
    return strided(T, steps=default_steps) if default_steps is not None else default(T)
