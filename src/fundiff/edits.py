"""Denoising and editing real images: forward noising, blur / one-step / iterative denoising,
SDEdit and inpainting (the write-up's replacement method and RePaint).

All images are (B,C,H,W) float tensors in the denoiser's value range (x_0 in [0, 1] for
fundiff's UNets); timestep lists follow timesteps.py (strictly decreasing in 0..T-1, the
last step goes to the clean image t' = -1). Randomness comes only from ``generator``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from fundiff import samplers
from fundiff import timesteps as ts_lib
from fundiff.denoisers import Denoiser
from fundiff.errors import FundiffError
from fundiff.schedules import NoiseSchedule
from fundiff.views import GaussianFilter

InpaintMethod = Literal["replace", "repaint"]
INPAINT_METHODS: tuple[str, ...] = ("replace", "repaint")


def _randn_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def _t_batch(t: int | Tensor, x: Tensor) -> Tensor:
    t = torch.as_tensor(t, dtype=torch.long, device=x.device)
    return t.expand(x.shape[0]) if t.ndim == 0 else t


def forward_noise(
    schedule: NoiseSchedule, x_0: Tensor, ts: Sequence[int], *, generator: torch.Generator | None
) -> Tensor:
    """x_t ~ q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I) for each t in ``ts`` (convention 1).

    x_0 (B,C,H,W); fresh noise per t. Returns (len(ts), B, C, H, W), like x_0's dtype/device.
    """
    for t in ts:
        if not 0 <= int(t) < schedule.T:
            raise FundiffError(f"noise timestep {t} is outside 0..{schedule.T - 1}")
    return torch.stack([schedule.q_sample(x_0, int(t), _randn_like(x_0, generator)) for t in ts])


def gaussian_blur_denoise(x_t: Tensor, kernel_size: int = 5, sigma: float = 1.0) -> Tensor:
    """The write-up's classical baseline: Gaussian-blur the noisy x_t (B,C,H,W); same shape."""
    return GaussianFilter(kernel_size, sigma).lowpass(x_t)


@torch.no_grad()
def one_step_denoise(denoiser: Denoiser, x_t: Tensor, t: int | Tensor, *, cond: Tensor) -> Tensor:
    """x0_hat = (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t) with eps_hat = eps(x_t, t, cond) (convention 2).

    x_t (B,C,H,W); t an int or (B,) long. Returns x0_hat (B,C,H,W), unclamped.
    """
    t = _t_batch(t, x_t)
    return denoiser(x_t, t, cond).x0_hat(denoiser.schedule, x_t, t)


def iterative_denoise(
    denoiser: Denoiser,
    x_t: Tensor,
    i_start: int,
    timesteps: list[int],
    *,
    cond: Tensor,
    generator: torch.Generator | None,
    every: int = 5,
    sampler: str | samplers.Sampler | None = None,
) -> tuple[Tensor, list[tuple[int, Tensor]]]:
    """Strided iterative denoising (convention 3) of x_t at t = timesteps[i_start] down to x_0.

    x_t (B,C,H,W). Returns (x_0 estimate (B,C,H,W), [(t, x_t) at the start and every ``every``
    steps after it]) for the write-up's progression figure.
    """
    tail = ts_lib.from_start(ts_lib.validate(timesteps, denoiser.schedule.T), i_start)
    if every < 1:
        raise FundiffError(f"every must be >= 1, got {every}")
    seen: list[tuple[int, Tensor]] = [(tail[0], x_t)]

    def record(i: int, t: int, t_prev: int, x_prev: Tensor, x0_hat: Tensor) -> None:
        if t_prev >= 0 and (i + 1) % every == 0:
            seen.append((t_prev, x_prev))

    x_0 = samplers.sample(denoiser, x_t, tail, cond=cond, generator=generator, sampler=sampler, on_step=record)
    return x_0, seen


def sdedit(
    denoiser: Denoiser,
    x_0: Tensor,
    i_start: int,
    timesteps: list[int],
    *,
    cond: Tensor,
    generator: torch.Generator | None,
    sampler: str | samplers.Sampler | None = None,
    on_step: samplers.StepHook | None = None,
) -> Tensor:
    """SDEdit (Meng et al. 2022): noise x_0 to t = timesteps[i_start] by q(x_t | x_0), then denoise from there.

    x_0 (B,C,H,W) in the model's value range. Larger i_start = less noise = closer to x_0.
    ``on_step`` as in :func:`samplers.sample`, over timesteps[i_start:].
    Returns the edited images (B,C,H,W), unclamped.
    """
    tail = ts_lib.from_start(ts_lib.validate(timesteps, denoiser.schedule.T), i_start)
    x_t = denoiser.schedule.q_sample(x_0, tail[0], _randn_like(x_0, generator))
    return samplers.sample(denoiser, x_t, tail, cond=cond, generator=generator, sampler=sampler, on_step=on_step)


def repaint_walk(n: int, jump_length: int, resample: int) -> list[int]:
    """RePaint's resampling schedule (Lugmayr et al. 2022, Sec. 4.2; diffusers' RePaintScheduler).

    A walk over levels q = n (noisiest, timesteps[0]) .. 0 (clean), starting at n and ending
    at 0 with moves of +-1: after reaching a level that is a multiple of ``jump_length`` (below
    n - jump_length), go back up ``jump_length`` levels, ``resample - 1`` times per level.
    resample = 1 is the plain descent n, n-1, ..., 0.
    """
    if resample < 1:
        raise FundiffError(f"resample must be >= 1, got {resample}")
    if resample > 1 and not 1 <= jump_length < n:
        raise FundiffError(f"jump length must be in 1..{n - 1} for {n} timesteps, got {jump_length}")
    jumps = {j: resample - 1 for j in range(0, n - jump_length, jump_length)} if resample > 1 else {}
    q, walk = n, [n]
    while q > 0:
        q -= 1
        walk.append(q)
        if jumps.get(q, 0) > 0:
            jumps[q] -= 1
            for _ in range(jump_length):
                q += 1
                walk.append(q)
    return walk


def renoise(schedule: NoiseSchedule, x_t: Tensor, t: int, t_up: int, *, generator: torch.Generator | None) -> Tensor:
    """Sample q(x_t_up | x_t) = N(sqrt(abar_up / abar_t) x_t, (1 - abar_up / abar_t) I) for t_up > t >= -1.

    The forward chain over several steps at once (RePaint, Lugmayr et al. 2022, Alg. 1 line 10,
    for a strided pair). x_t (B,C,H,W); returns x_t_up like x_t.
    """
    if not -1 <= t < t_up < schedule.T:
        raise FundiffError(f"need -1 <= t < t_up < T={schedule.T}, got t={t}, t_up={t_up}")
    ratio = schedule.scalar_at(t_up).abar / schedule.scalar_at(t).abar
    return math.sqrt(ratio) * x_t + math.sqrt(1 - ratio) * _randn_like(x_t, generator)


def binary_mask(mask: Tensor, x_0: Tensor) -> Tensor:
    """``mask`` (H,W), (C,H,W) or (B,C,H,W) binarised at 0.5 and broadcast to x_0's shape (bool)."""
    try:
        shape = torch.broadcast_shapes(mask.shape, x_0.shape)
    except RuntimeError:
        shape = None
    if shape != x_0.shape:
        raise FundiffError(
            f"mask of shape {tuple(mask.shape)} does not fit images of shape {tuple(x_0.shape)}; "
            "give a mask of the images' height and width"
        )
    m = mask if mask.dtype == torch.bool else mask > 0.5
    return m.to(x_0.device).expand(x_0.shape)


@torch.no_grad()
def inpaint(
    denoiser: Denoiser,
    x_0: Tensor,
    mask: Tensor,
    timesteps: list[int],
    *,
    cond: Tensor,
    generator: torch.Generator | None,
    method: InpaintMethod = "replace",
    jump_length: int = 5,
    resample: int = 5,
    sampler: str | samplers.Sampler | None = None,
    on_step: samplers.StepHook | None = None,
) -> Tensor:
    """Fill in x_0 (B,C,H,W) where ``mask`` is 1, keeping it exactly where ``mask`` is 0.

    "replace" (the write-up, after RePaint): start from x_T ~ N(0, I); after every step to t',
    x_t' <- m x_t' + (1 - m) q_sample(x_0, t', fresh noise); at t' = -1 the known part is
    x_0 itself, so every pixel outside the mask ends exactly equal to x_0.
    "repaint" (Lugmayr et al. 2022, Alg. 1): the same, over :func:`repaint_walk`; going back
    up a level draws x_t'' ~ q(x_t'' | x_t') = N(sqrt(abar_t''/abar_t') x_t', (1 - abar_t''/abar_t') I).
    With resample=1 it equals "replace" (same noise draws, same result). Any ``sampler`` takes the
    denoising steps; a multistep one restarts after each jump back up (its history no longer applies).
    mask: (H,W), (C,H,W) or (B,C,H,W), 1 = generate new content. Returns (B,C,H,W).
    ``on_step(i, t, t_prev, x_prev, x0_hat)`` sees each denoising step i = 0, 1, ... (RePaint: each step
    down the walk) after the known region is put back, and may replace x_prev as in :func:`samplers.sample`,
    inside the mask only: outside it the result is x_0 whatever the hook returns.
    """
    if method not in INPAINT_METHODS:
        raise FundiffError(f"unknown inpainting method {method!r}; choose one of {', '.join(INPAINT_METHODS)}")
    m = binary_mask(mask, x_0)
    if not bool(m.any()):
        raise FundiffError("the mask selects no pixel to fill in; paint (white, > 0.5) the region to generate")
    sampler = samplers.sampler_for(denoiser, sampler)
    schedule = denoiser.schedule
    timesteps = ts_lib.validate(timesteps, schedule.T)
    walk = repaint_walk(len(timesteps), jump_length, resample) if method == "repaint" else None

    def keep_known(x_t: Tensor, t: int) -> Tensor:
        known = x_0 if t < 0 else schedule.q_sample(x_0, t, _randn_like(x_0, generator))
        return torch.where(m, x_t, known)

    def known_then_hook(i: int, t: int, t_prev: int, x_prev: Tensor, x0_hat: Tensor) -> Tensor:
        x_prev = keep_known(x_prev, t_prev)
        replaced = on_step(i, t, t_prev, x_prev, x0_hat) if on_step is not None else None
        return x_prev if replaced is None else torch.where(m, replaced, x_prev)  # the known region stays known

    x = _randn_like(x_0, generator)
    if walk is None:
        return samplers.sample(
            denoiser, x, timesteps, cond=cond, generator=generator, sampler=sampler, on_step=known_then_hook
        )

    def t_at(q: int) -> int:  # level q of the walk -> timestep (level 0 is the clean image, t = -1)
        return timesteps[len(timesteps) - q] if q > 0 else -1

    predict = samplers.predictor(denoiser, cond)
    step, i = sampler.start(schedule, predict), 0
    for q, q_next in zip(walk, walk[1:]):
        t, t_next = t_at(q), t_at(q_next)
        if q_next < q:  # denoise one (strided) step, then put the known region back
            x, x0_hat = step(x, predict(x, t), t, t_next, generator)
            x, i = known_then_hook(i, t, t_next, x, x0_hat), i + 1
        else:  # jump back up to t_next > t, and restart the sampler there
            x = renoise(schedule, x, t, t_next, generator=generator)
            step = sampler.start(schedule, predict)
    return x
