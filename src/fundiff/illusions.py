"""The write-up's visual illusions, 1.8 visual anagrams and 1.9 hybrid images, as figure functions (part of
:mod:`fundiff.techniques`, which re-exports them; same conventions: base denoiser in, own generator, defaults
resolved from the model by :mod:`fundiff.figures`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from fundiff import DEFAULT_SEED, samplers
from fundiff.composers import Anagram, Factorized, hold_band
from fundiff.denoisers import Denoiser
from fundiff.errors import FundiffError
from fundiff.figures import Figure, generator, guided, resolve_timesteps, write
from fundiff.guidance import scale_for
from fundiff.traits import defaults_for
from fundiff.views import FrequencyBands, GaussianFilter, View, get_view


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
    guidance: float | None = None,
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
    guidance = scale_for(denoiser, guidance)
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


def hybrid_conflicts(given: Mapping[str, Any]) -> None:
    """Refuse hybrid arguments that do not go together (one-line FundiffError saying what to do); ``given``: the
    hybrid's arguments by name, None (or absent) where not given. Checked by the spec before any model loads and
    by :func:`hybrid_figure` itself."""
    if given.get("low_image") is not None and given.get("low") is not None:
        raise FundiffError("--low-image gives the low band in place of a --low prompt; give one of them, not both")
    if given.get("mid") is None:
        extra = [f"--{k.replace('_', '-')}" for k in ("mid_kernel_size", "mid_sigma") if given.get(k) is not None]
        if extra:
            raise FundiffError(
                f"{' and '.join(extra)} {'set' if len(extra) > 1 else 'sets'} the mid band's filter of a "
                f"three-prompt hybrid; give --mid PROMPT too, or drop {'them' if len(extra) > 1 else 'it'}"
            )
    elif given.get("sigma") is not None and given.get("mid_sigma") is not None:
        _mid_blurs_less(given["sigma"], given["mid_sigma"])


def _mid_blurs_less(sigma: float, mid_sigma: float) -> None:
    if not mid_sigma < sigma:
        raise FundiffError(
            f"the mid band is G_mid - G_low, so the mid filter must blur less than the low one: --mid-sigma "
            f"{mid_sigma:g} must be below --sigma {sigma:g}; lower --mid-sigma or raise --sigma"
        )


def hybrid_figure(
    denoiser: Denoiser,
    low: str | None = None,
    high: str | None = None,
    *,
    mid: str | None = None,
    low_image: str | Path | Tensor | None = None,
    kernel_size: int | None = None,
    sigma: float | None = None,
    mid_kernel_size: int | None = None,
    mid_sigma: float | None = None,
    n: int = 4,
    guidance: float | None = None,
    timesteps: list[int] | None = None,
    sampler: str | samplers.Sampler | None = None,
    out: str | Path | None = None,
    seed: int = DEFAULT_SEED,
    on_step: samplers.StepHook | None = None,
) -> Figure:
    """``n`` hybrid images (factorized diffusion, Geng et al. 2024): coarse structure of ``low``, detail of ``high``.

    The bands (:class:`~fundiff.views.FrequencyBands`) sum to the whole: low f_1 = G_low (``kernel_size``,
    ``sigma``) and high I - G_low; with ``mid``, three: low G_low, mid G_mid - G_low, high I - G_mid, G_mid
    (``mid_kernel_size``, ``mid_sigma``) blurring less than G_low. The composite noise estimate is
    sum_i f_i(eps(x_t, prompt_i)) (:class:`~fundiff.composers.Factorized`), each part guided by CFG.

    ``low_image`` (a file, a shipped drawing's name, or (1 or n, C, H, W) in the model's value range): the low band
    comes from that image instead of a prompt (``low`` must then be None), as the paper's hybrids of real images:
    after every step the low band of x_t' is replaced by that of the image noised to t'
    (:func:`~fundiff.composers.hold_band`); the generated bands' composite estimate gives the low band's own
    estimate to the next band's prompt (for two bands this is ILVR conditioned on ``high``). A file is read as
    ``--image`` is: padded square, inverted when its border is light for a grayscale model (images.load_image).

    Rows: the hybrid, [the given image's low-pass,] its low-pass part, [its mid band,] its high-pass part (bands
    other than the low one shown around mid-gray). Arguments left None are the model's (:func:`defaults_for`): the
    prompts and filters chosen per dataset by measurement (low filter: kernel 9 with sigma 2 on MNIST, 1.5 on
    Fashion-MNIST; the write-up's kernel 33, sigma 2 on DeepFloyd IF's 64x64). ``on_step``: samplers.sample's hook.
    """
    hybrid_conflicts(
        dict(low=low, mid=mid, low_image=low_image, sigma=sigma, mid_kernel_size=mid_kernel_size, mid_sigma=mid_sigma)
    )
    timesteps, d = resolve_timesteps(denoiser, timesteps), defaults_for(denoiser)
    low = None if low_image is not None else d.hybrid_prompts[0] if low is None else low
    high = d.hybrid_prompts[1] if high is None else high
    kernel_size = d.hybrid_kernel_size if kernel_size is None else kernel_size
    sigma = d.hybrid_sigma if sigma is None else sigma
    filters = [GaussianFilter(kernel_size, sigma)]
    if mid is not None:
        mid_kernel_size = d.hybrid_mid_kernel_size if mid_kernel_size is None else mid_kernel_size
        mid_sigma = d.hybrid_mid_sigma if mid_sigma is None else mid_sigma
        _mid_blurs_less(sigma, mid_sigma)
        filters.append(GaussianFilter(mid_kernel_size, mid_sigma))
    bands = FrequencyBands(tuple(filters))
    prompts = [p for p in (low, mid, high) if p is not None]  # one per generated band, from the lowest
    generated = FrequencyBands(bands.filters[1:]) if low_image is not None else bands
    guidance = scale_for(denoiser, guidance)
    model = Factorized.from_prompts(guided(denoiser, prompts, guidance), prompts, generated)
    g = generator(seed, denoiser.device)
    x_ref, hook = None, on_step
    if low_image is not None:
        x_ref = _held_image(denoiser, low_image, n)
        hold = hold_band(denoiser.schedule, x_ref, bands.filters[0].lowpass, generator=g)

        def hook(i, t, t_prev, x_prev, x0_hat):  # the low band held first; the caller's hook sees the result
            x_prev = hold(i, t, t_prev, x_prev, x0_hat)
            replaced = on_step(i, t, t_prev, x_prev, x0_hat) if on_step is not None else None
            return x_prev if replaced is None else replaced

    x = samplers.sample_from_noise(
        model, model.encode([""] * n), timesteps, generator=g, sampler=sampler, device=denoiser.device, on_step=hook
    )
    lo, hi = denoiser.value_range
    parts = bands.split(x)
    low_shows = "image" if low_image is not None else low or "null"
    labels = [f"low-pass: {low_shows}", *([f"band-pass: {mid or 'null'}"] if mid is not None else [])]
    labels.append(f"high-pass: {high or 'null'}")
    rows = [("hybrid", x)]
    if x_ref is not None:
        rows.append(("image low-pass", bands.band(0, x_ref).expand_as(x)))
    rows.append((labels[0], parts[0]))
    rows += [(label, part + (lo + hi) / 2) for label, part in zip(labels[1:], parts[1:])]  # around mid-gray
    kernels, sigmas = "/".join(str(f.kernel_size) for f in filters), "/".join(f"{f.sigma:g}" for f in filters)
    paths = write(
        out,
        "hybrid",
        rows,
        col_labels=[f"sample {i + 1}" for i in range(n)],
        title=f"hybrid images (kernel {kernels}, σ={sigmas}), CFG s={guidance:g}",  # low[/mid] filter
        value_range=denoiser.value_range,
    )
    found = {"x_0": x, "lowpass": parts[0], "highpass": parts[-1]}
    found |= {"bandpass": parts[1]} if mid is not None else {}
    found |= {"low_image": x_ref} if x_ref is not None else {}
    return Figure(found, paths)


def _held_image(denoiser: Denoiser, image: str | Path | Tensor, n: int) -> Tensor:
    """The low band's image (1 or n, C, H, W) on the model's device: a tensor as given, a file read as --image is."""
    if not isinstance(image, Tensor):
        from fundiff.images import load_image

        kw = dict(channels=denoiser.channels, image_size=denoiser.image_size, value_range=denoiser.value_range)
        image = load_image(image, **kw)
    want = (denoiser.channels, denoiser.image_size, denoiser.image_size)
    if image.ndim != 4 or image.shape[0] not in (1, n) or tuple(image.shape[1:]) != want:
        raise FundiffError(f"the low image is {tuple(image.shape)}; give (1 or {n}, {', '.join(map(str, want))})")
    return image.to(denoiser.device, torch.float32)
