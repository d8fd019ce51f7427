"""What every figure function of :mod:`fundiff.techniques` shares: the :class:`Figure` it returns, how it writes
its PNGs, the write-up's constants, and how an argument left ``None`` is resolved from the model.

The resolution rules (the one place they are written; see techniques' module docstring): timesteps
:func:`fundiff.timesteps.for_model`; sampler the model's own (left None, the sampling loop resolves it:
:func:`fundiff.samplers.sampler_for`); noise levels :func:`noise_levels`; prompts and the
hybrid's filter :func:`fundiff.traits.defaults_for`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from fundiff import edits, io
from fundiff import timesteps as ts_lib
from fundiff.denoisers import Denoiser
from fundiff.errors import FundiffError
from fundiff.guidance import CFG, scale_for
from fundiff.traits import defaults_for

WRITEUP_NOISE_TS = (250, 500, 750)  # forward-process / denoising figures (of T = 1000)
WRITEUP_SDEDIT_STARTS = (1, 3, 5, 7, 10, 20)  # SDEdit i_start values
WRITEUP_ITERATIVE_START = 10  # iterative denoising starts at strided_timesteps[10]
WRITEUP_EVERY = 5  # the iterative figure shows every 5th step
WRITEUP_SETUP_STEPS = (2, 4, 6, 8, 12, 16)  # the write-up's first table: num_inference_steps


# upscale(images (B,C,H,W) in the value range, one prompt per image) -> larger images in the same range (IF stage II)
Upscale = Callable[[Tensor, Sequence[str]], Tensor]


@dataclass(frozen=True)
class Figure:
    """What a figure function made: tensors by name, in the model's value range, and the PNGs it wrote."""

    images: dict[str, Tensor]
    paths: tuple[Path, ...] = ()


def writeup_t(t: int, T: int) -> int:
    """A write-up timestep t of T = 1000 mapped proportionally to a schedule of T steps."""
    return min(T - 1, max(0, round(t * T / ts_lib.WRITEUP_T)))


def noise_levels(denoiser: Denoiser) -> list[int]:
    """The noise figures' default t: the write-up's 250, 500, 750 of T = 1000 on the model's T (75 150 225 of 300)."""
    return [writeup_t(t, denoiser.schedule.T) for t in WRITEUP_NOISE_TS]


def resolve_timesteps(denoiser: Denoiser, timesteps: list[int] | None) -> list[int]:
    return list(timesteps) if timesteps is not None else ts_lib.for_model(denoiser)


def sdedit_starts(n_steps: int, T: int) -> list[int]:
    """SDEdit's default i_starts for ``n_steps`` timesteps: the write-up's 1, 3, 5, 7, 10, 20 of its 35 steps at the
    same fractions of ``n_steps`` (the write-up's own on the default 35; [0, 1] on a 2-step student)."""
    n_writeup = len(ts_lib.default(T))
    return sorted({min(n_steps - 1, round(i * n_steps / n_writeup)) for i in WRITEUP_SDEDIT_STARTS})


def iterative_start(n_steps: int, T: int) -> int:
    """Iterative denoising's default i_start for ``n_steps`` timesteps: the write-up's 10 of its 35 steps at the
    same fraction of ``n_steps`` (10 on the default 35; 1 on a 2-step student)."""
    return min(n_steps - 1, round(WRITEUP_ITERATIVE_START * n_steps / len(ts_lib.default(T))))


def check_starts(
    denoiser: Denoiser, timesteps: list[int] | None, *, i_start: int | None = None, i_starts: Sequence[int] = ()
) -> None:
    """FundiffError unless ``i_start`` / every ``i_starts`` indexes ``timesteps`` (None: the model's default);
    the front-ends run it before reading their inputs (a test image may need a download)."""
    ts = resolve_timesteps(denoiser, timesteps)
    if i_start is not None:
        ts_lib.from_start(ts, i_start)
    if any(not 0 <= i < len(ts) for i in i_starts):
        got = " ".join(map(str, i_starts))
        raise FundiffError(f"--i-start values must be in 0..{len(ts) - 1} for {len(ts)} timesteps, got {got}")


def resolve_prompt(denoiser: Denoiser, prompt: str | None) -> str:
    return defaults_for(denoiser).prompt if prompt is None else prompt


def guided(denoiser: Denoiser, prompt: str | Sequence[str], scale: float) -> Denoiser:
    """CFG(denoiser, scale), or the denoiser itself where guidance changes nothing (scale 1 or null prompts only)
    or is built in (a distilled student at its own scale; any other is an error: guidance.scale_for)."""
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    scale = scale_for(denoiser, scale)
    if scale == 1.0 or denoiser.traits.guidance is not None or not any(p.strip() for p in prompts):
        return denoiser
    return CFG(denoiser, scale)


def generator(seed: int, device: torch.device | str) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def unit(x: Tensor, value_range: tuple[float, float]) -> Tensor:
    """Model value range -> [0, 1] for display, clamped."""
    lo, hi = value_range
    return ((x - lo) / (hi - lo)).clamp(0, 1)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9=.]+", "-", text.lower()).strip("-") or "image"


def write(
    out: str | Path | None,
    name: str,
    rows: Sequence[tuple[str, Tensor]],
    *,
    col_labels: Sequence[str],
    title: str,
    value_range: tuple[float, float],
) -> tuple[Path, ...]:
    """Save ``rows`` ((label, (N,C,H,W)) pairs) as out/NAME.png and each image as out/NAME/ROW_COL.png."""
    if out is None:
        return ()
    out = Path(out)
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    shown = [unit(images, value_range) for _, images in rows]
    for (label, _), images in zip(rows, shown):
        for j, img in enumerate(images):
            col = col_labels[j] if j < len(col_labels) else str(j)
            io.save_png(img, folder / f"{slug(label)}_{slug(col)}.png")
    return (
        io.save_labeled_grid(
            shown, [label for label, _ in rows], out / f"{name}.png", col_labels=col_labels, title=title
        ),
    )


def noisy(denoiser: Denoiser, x_0: Tensor, ts: Sequence[int], seed: int) -> Tensor:
    """The figures' shared noisy images: (len(ts), B, C, H, W), the same for the same seed."""
    return edits.forward_noise(denoiser.schedule, x_0, ts, generator=generator(seed, x_0.device))


def resolve_noise_ts(denoiser: Denoiser, ts: Sequence[int] | None) -> list[int]:
    ts = list(ts) if ts is not None else noise_levels(denoiser)
    T = denoiser.schedule.T
    if any(not 0 <= t < T for t in ts):
        raise FundiffError(f"--t values must be in 0..{T - 1} for this model, got {' '.join(map(str, ts))}")
    return ts
