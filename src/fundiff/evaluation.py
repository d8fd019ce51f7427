"""Evaluation procedures built on the metrics of metrics.py: the one-step denoiser's sigma sweep
(MSE / PSNR), drawing class samples, and the classifier-free guidance sweep (accuracy and FID per
scale) with its plot. Images are float (N,C,H,W) in [0,1] throughout.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from fundiff.denoisers import Denoiser
from fundiff.errors import FundiffError
from fundiff.guidance import CFG
from fundiff.metrics import FID, ClassAccuracy, class_accuracy, psnr
from fundiff.samplers import Sampler, sample_from_noise

SWEEP_SIGMAS: tuple[float, ...] = (0.0, 0.2, 0.4, 0.5, 0.6, 0.8, 1.0)  # the write-up's out-of-distribution sweep
GUIDANCE_SWEEP: tuple[float, ...] = (0.0, 1.0, 3.0, 5.0, 7.0)  # CFG scales: 0 unconditional, 1 conditional


# -- the one-step denoiser's sigma sweep --------------------------------------------------------
@dataclass(frozen=True)
class SweepRow:
    sigma: float
    mse: float  # mean squared error of the denoised image against the clean one, images in [0, 1]
    psnr: float  # 10 log10(1 / mse), dB
    mse_noisy: float  # the same for the noisy input, for reference


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


# -- sampling and the guidance sweep ----------------------------------------------------------
def draw_samples(
    denoiser: Denoiser,
    prompts: Sequence[str],
    timesteps: list[int],
    *,
    generator: torch.Generator,
    batch_size: int = 500,
    sampler: str | Sampler | None = None,
) -> Tensor:
    """Samples (len(prompts),C,H,W) float32 in [0,1] (clamped), one per prompt, drawn in batches.

    Pure-noise sampling with ``sampler`` over ``timesteps`` on ``generator``'s
    device; the generator is advanced, so a fixed seed and batch size give fixed samples.
    """
    lo, hi = denoiser.value_range
    out = []
    for i in range(0, len(prompts), batch_size):
        cond = denoiser.encode(list(prompts[i : i + batch_size]))
        x = sample_from_noise(denoiser, cond, timesteps, generator=generator, sampler=sampler, device=generator.device)
        out.append(((x - lo) / (hi - lo)).clamp(0, 1))
    return torch.cat(out)


@dataclass(frozen=True)
class GuidanceResult:
    scale: float  # CFG scale s: eps_u + s (eps_c - eps_u)
    accuracy: ClassAccuracy
    fid: float | None  # FID of the samples, when guidance_sweep was given an FID
    samples: Tensor  # (num_classes * n_per_class, C,H,W) in [0,1]; class k in rows k*n_per_class ...


def guidance_sweep(
    denoiser: Denoiser,
    classifier: nn.Module,
    scales: Sequence[float],
    timesteps: list[int],
    *,
    class_names: Sequence[str],
    n_per_class: int,
    generator: torch.Generator,
    fid: FID | None = None,
    batch_size: int = 500,
    sampler: str | Sampler | None = None,
) -> list[GuidanceResult]:
    """Class accuracy of a class-conditioned model's samples at each CFG scale (Ho & Salimans 2022).

    Every scale starts from the same noise: a copy of ``generator``'s state (which is left
    untouched), so the scales differ only in guidance. With ``fid``, each scale's samples
    also get their FID (the accuracy / FID trade-off of guidance).
    """
    if n_per_class < 1:
        raise FundiffError(f"need at least one sample per class, got {n_per_class}")
    prompts = [name for name in class_names for _ in range(n_per_class)]
    target = torch.arange(len(class_names)).repeat_interleave(n_per_class)
    results = []
    for s in scales:
        g = torch.Generator(device=generator.device)
        g.set_state(generator.get_state())
        x = draw_samples(CFG(denoiser, s), prompts, timesteps, generator=g, batch_size=batch_size, sampler=sampler)
        acc = class_accuracy(classifier, x, target, num_classes=len(class_names))
        results.append(GuidanceResult(float(s), acc, None if fid is None else fid(x), x))
    return results


def plot_guidance_sweep(
    results: Sequence[GuidanceResult],
    path: str | Path,
    *,
    class_names: Sequence[str],
    fid_floor: float | None = None,
    title: str = "",
) -> Path:
    """Class accuracy (overall and per class) against CFG scale, and FID (with its floor) beside it when measured.

    A PNG written atomically.
    """
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    from fundiff.io import save_figure

    scales = [r.scale for r in results]
    with_fid = all(r.fid is not None for r in results)
    fig = Figure(figsize=(10 if with_fid else 6, 4))
    axes = fig.subplots(1, 2 if with_fid else 1, squeeze=False)
    ax = axes[0][0]
    cmap = colormaps["tab10"]
    for k, name in enumerate(class_names):
        ax.plot(scales, [r.accuracy.per_class[k] for r in results], lw=0.8, alpha=0.6, color=cmap(k % 10), label=name)
    ax.plot(scales, [r.accuracy.overall for r in results], "k-o", lw=2, label="all")
    ax.set_ylabel("classifier accuracy of samples")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    if with_fid:
        axes[0][1].plot(scales, [r.fid for r in results], "k-o", lw=2, label="samples")
        if fid_floor is not None:
            axes[0][1].axhline(fid_floor, color="gray", ls="--", label="floor: train vs test")
        axes[0][1].legend(fontsize=7)
        axes[0][1].set_ylabel("FID (classifier features)")
    for a in axes[0]:
        a.set_xlabel("guidance scale s (0: unconditional, 1: conditional)")
        a.grid(True, alpha=0.3)
    fig.suptitle(title or "class accuracy vs. classifier-free guidance", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


__all__ = [
    "SWEEP_SIGMAS", "SweepRow", "denoise_sweep", "GUIDANCE_SWEEP", "draw_samples", "GuidanceResult", "guidance_sweep",
    "plot_guidance_sweep",
]  # fmt: skip
