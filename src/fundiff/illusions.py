"""The write-up's visual illusions, 1.8 visual anagrams and 1.9 hybrid images, as figure functions (part of
:mod:`fundiff.techniques`, which re-exports them; same conventions: base denoiser in, own generator, defaults
resolved from the model by :mod:`fundiff.figures`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fundiff import DEFAULT_SEED, samplers
from fundiff.composers import Anagram, Hybrid
from fundiff.denoisers import Denoiser
from fundiff.errors import FundiffError
from fundiff.figures import Figure, generator, guided, resolve_timesteps, write
from fundiff.guidance import DEFAULT_GUIDANCE
from fundiff.traits import defaults_for
from fundiff.views import GaussianFilter, View, get_view


def anagram_views(prompts: Sequence[str], views: Sequence[str | View]) -> list[View]:
    """One view per prompt (2 or more prompts: fewer is an error): ``views`` as given when there is one per
    prompt, else (one per prompt after the first) the identity for the first prompt and ``views`` for the rest;
    any other count is an error."""
    if len(prompts) < 2:
        raise FundiffError(
            f"a visual anagram needs 2 or more prompts (one per view), got {len(prompts)}; give another prompt"
        )
    views = list(views)
    if len(views) == len(prompts) - 1:
        views = ["identity", *views]
    if len(views) != len(prompts):
        raise FundiffError(
            f"give one --view per prompt after the first ({len(prompts) - 1}) or one per prompt ({len(prompts)}); "
            f"got {len(views)}"
        )
    return [get_view(v) for v in views]


def anagram_figure(
    denoiser: Denoiser,
    prompts: Sequence[str] | None = None,
    views: Sequence[str | View] | None = None,
    *,
    n: int = 4,
    guidance: float = DEFAULT_GUIDANCE,
    timesteps: list[int] | None = None,
    sampler: str | samplers.Sampler | None = None,
    out: str | Path | None = None,
    seed: int = DEFAULT_SEED,
    on_step: samplers.StepHook | None = None,
) -> Figure:
    """``n`` visual anagrams (Geng et al. 2024): view i of each sample should show prompts[i]; one row per view.

    ``views``: one per prompt, or one per prompt after the first (which is then seen as is, the identity).
    ``prompts`` / ``views`` None: the model's (:func:`defaults_for`). ``on_step``: samplers.sample's hook."""
    timesteps = resolve_timesteps(denoiser, timesteps)
    d = defaults_for(denoiser)
    prompts = list(d.anagram_prompts if prompts is None else prompts)
    views = anagram_views(prompts, d.anagram_views if views is None else views)
    model = Anagram.from_prompts(guided(denoiser, prompts, guidance), views, prompts)
    x = samplers.sample_from_noise(
        model,
        model.encode([""] * n),
        timesteps,
        generator=generator(seed, denoiser.device),
        sampler=sampler,
        device=denoiser.device,
        on_step=on_step,
    )
    rows = [(f"{v.name}: {p or 'null prompt'}", v.view_image(x, denoiser.value_range)) for v, p in zip(views, prompts)]
    paths = write(
        out,
        "anagram",
        rows,
        col_labels=[f"sample {i + 1}" for i in range(n)],
        title=f"visual anagrams, CFG s={guidance:g}",
        value_range=denoiser.value_range,
    )
    return Figure({"x_0": x, **{f"{v.name}": img for (_, img), v in zip(rows, views)}}, paths)


def hybrid_figure(
    denoiser: Denoiser,
    low: str | None = None,
    high: str | None = None,
    *,
    kernel_size: int | None = None,
    sigma: float | None = None,
    n: int = 4,
    guidance: float = DEFAULT_GUIDANCE,
    timesteps: list[int] | None = None,
    sampler: str | samplers.Sampler | None = None,
    out: str | Path | None = None,
    seed: int = DEFAULT_SEED,
    on_step: samplers.StepHook | None = None,
) -> Figure:
    """``n`` hybrid images (factorized diffusion, Geng et al. 2024): coarse structure of ``low``, detail of ``high``.

    Rows: the hybrid, its low-pass part and its high-pass part (shown around mid-gray).
    Arguments left None are the model's (:func:`defaults_for`): the prompts and a filter chosen per dataset
    by measurement (kernel 9 with sigma 2 on MNIST, 1.5 on Fashion-MNIST; the write-up's kernel 33, sigma 2
    on DeepFloyd IF's 64x64). ``on_step``: samplers.sample's hook.
    """
    timesteps, d = resolve_timesteps(denoiser, timesteps), defaults_for(denoiser)
    low = d.hybrid_prompts[0] if low is None else low
    high = d.hybrid_prompts[1] if high is None else high
    kernel_size = d.hybrid_kernel_size if kernel_size is None else kernel_size
    sigma = d.hybrid_sigma if sigma is None else sigma
    filt = GaussianFilter(kernel_size, sigma)
    model = Hybrid.from_prompts(guided(denoiser, [low, high], guidance), low, high, filt)
    x = samplers.sample_from_noise(
        model,
        model.encode([""] * n),
        timesteps,
        generator=generator(seed, denoiser.device),
        sampler=sampler,
        device=denoiser.device,
        on_step=on_step,
    )
    lo, hi = denoiser.value_range
    x_low, x_high = filt.lowpass(x), filt.highpass(x)
    rows = [
        ("hybrid", x),
        (f"low-pass: {low or 'null'}", x_low),
        (f"high-pass: {high or 'null'}", x_high + (lo + hi) / 2),
    ]
    paths = write(
        out,
        "hybrid",
        rows,
        col_labels=[f"sample {i + 1}" for i in range(n)],
        title=f"hybrid images (kernel {kernel_size}, σ={sigma:g}), CFG s={guidance:g}",
        value_range=denoiser.value_range,
    )
    return Figure({"x_0": x, "lowpass": x_low, "highpass": x_high}, paths)
