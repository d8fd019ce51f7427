"""The write-up's Part A figures, one function each, on any Denoiser (fundiff's UNets by default).

Every function takes the *base* denoiser (it adds classifier-free guidance itself where the
write-up uses it), draws all its noise from its own ``torch.Generator`` seeded with ``seed``
(the write-up re-seeds before every figure; default 20040805), writes a labelled figure
``out/NAME.png`` plus each image as ``out/NAME/ROW_COLUMN.png`` when ``out`` is given, and
returns a :class:`Figure` with the tensors (in the model's value range, unclamped).
noise, blur and one-step figures with the same seed show the very same noisy images.

**Defaults are resolved here**, from the model, whoever calls (the Python API, ``fundiff <technique>``,
the tour, the web UI -- all built from :mod:`fundiff.specs`): an argument left ``None`` means

- ``timesteps``: :func:`fundiff.timesteps.for_model` -- the write-up's stride 30 on T = 1000 scaled to
  the model's T (``round(0.03 T)``, 9 on T = 300): 35 timesteps, and ``i_start = k`` starts at the same
  fraction of T as in the write-up (i_start 10: t = 690 of 1000, 209 of 300); a model that names its own
  ``traits.default_steps`` (a course-flow model: every one of its T steps) takes that many;
- ``sampler``: the model's own (samplers.default_sampler_of: heun for a flow-matching model, else ddpm);
- noise levels ``ts``: the write-up's t = 250, 500, 750 of 1000 mapped to the model's T (:func:`noise_levels`);
- prompts and the hybrid's filter: the model's :class:`~fundiff.traits.TechniqueDefaults` (:func:`defaults_for`):
  DeepFloyd IF carries the write-up's own (its prompts, kernel 33); fundiff's models use the class names,
  "" (the null prompt, which plays the write-up's "a high quality photo": with "" guidance is a no-op,
  eps_c = eps_u) and a filter chosen per dataset by measurement.

CFG scale s (convention 6 of docs/conventions.md): eps = eps_u + s (eps_c - eps_u); 1 means no guidance.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from fundiff import DEFAULT_SEED, edits, samplers
from fundiff import timesteps as ts_lib
from fundiff.denoisers import Denoiser
from fundiff.figures import (
    WRITEUP_EVERY,
    WRITEUP_ITERATIVE_START,
    WRITEUP_NOISE_TS,
    WRITEUP_SDEDIT_STARTS,
    WRITEUP_SETUP_STEPS,
    Figure,
    Upscale,
    check_starts,
    generator,
    guided,
    iterative_start,
    noise_levels,
    noisy,
    resolve_noise_ts,
    resolve_prompt,
    resolve_timesteps,
    sdedit_starts,
    write,
    writeup_t,
)  # fmt: skip
from fundiff.guidance import scale_for
from fundiff.traits import DATASET_DEFAULTS, DIGIT_DEFAULTS, TechniqueDefaults, defaults_for


# -- 1.1 forward process, 1.2 classical denoising, 1.3 one-step, 1.4 iterative ----------------------
def noise_figure(
    denoiser: Denoiser,
    x_0: Tensor,
    ts: Sequence[int] | None = None,
    *,
    out: str | Path | None = None,
    seed: int = DEFAULT_SEED,
) -> Figure:
    """The forward process q(x_t | x_0) (convention 1) of x_0 (B,C,H,W) at each t in ``ts``."""
    ts = resolve_noise_ts(denoiser, ts)
    x_ts = noisy(denoiser, x_0, ts, seed)
    rows = [(f"image {b}", torch.cat([x_0[b : b + 1], x_ts[:, b]])) for b in range(x_0.shape[0])]
    cols = ["original"] + [f"t={t}" for t in ts]
    paths = write(
        out, "noise", rows, col_labels=cols, title="forward process q(x_t | x_0)", value_range=denoiser.value_range
    )
    return Figure({"x_0": x_0, **{f"t={t}": x_ts[k] for k, t in enumerate(ts)}}, paths)


def blur_figure(
    denoiser: Denoiser,
    x_0: Tensor,
    ts: Sequence[int] | None = None,
    *,
    kernel_size: int = 5,
    sigma: float = 1.0,
    out: str | Path | None = None,
    seed: int = DEFAULT_SEED,
) -> Figure:
    """Classical denoising: Gaussian blur of the noisy images of :func:`noise_figure` (same seed, same noise)."""
    ts = resolve_noise_ts(denoiser, ts)
    x_ts = noisy(denoiser, x_0, ts, seed)
    blurred = torch.stack([edits.gaussian_blur_denoise(x_t, kernel_size, sigma) for x_t in x_ts])
    title = f"Gaussian blur (kernel {kernel_size}, σ={sigma:g})"
    return _noisy_and(denoiser, ts, x_ts, "blurred", blurred, name="blur", title=title, out=out)


def one_step_figure(
    denoiser: Denoiser,
    x_0: Tensor,
    ts: Sequence[int] | None = None,
    *,
    prompt: str | None = None,
    guidance: float | None = None,
    out: str | Path | None = None,
    seed: int = DEFAULT_SEED,
) -> Figure:
    """One-step denoising of :func:`noise_figure`'s images (convention 2).

    x0_hat = (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t).
    """
    ts, prompt = resolve_noise_ts(denoiser, ts), resolve_prompt(denoiser, prompt)
    x_ts = noisy(denoiser, x_0, ts, seed)
    model = guided(denoiser, prompt, scale_for(denoiser, guidance, default=1.0))
    cond = model.encode([prompt] * x_0.shape[0])
    x0_hats = torch.stack([edits.one_step_denoise(model, x_t, t, cond=cond) for t, x_t in zip(ts, x_ts)])
    title = f"one-step denoising, prompt {prompt!r}"
    return _noisy_and(denoiser, ts, x_ts, "one-step", x0_hats, name="one_step", title=title, out=out)


def denoise_figure(
    denoiser: Denoiser,
    x_0: Tensor,
    ts: Sequence[int] | None = None,
    *,
    prompt: str | None = None,
    guidance: float | None = None,
    i_start: int | None = None,
    every: int = WRITEUP_EVERY,
    kernel_size: int = 5,
    sigma: float = 1.0,
    timesteps: list[int] | None = None,
    sampler: str | samplers.Sampler | None = None,
    out: str | Path | None = None,
    seed: int = DEFAULT_SEED,
) -> Figure:
    """Write-up 1.3-1.4 together: :func:`one_step_figure` at the noise levels ``ts``, then
    :func:`iterative_figure` from ``timesteps[i_start]`` with its comparison (``kernel_size`` / ``sigma``: the
    blur it is compared with). Every argument is checked before the first figure is written."""
    ts, timesteps, prompt = (
        resolve_noise_ts(denoiser, ts),
        resolve_timesteps(denoiser, timesteps),
        resolve_prompt(denoiser, prompt),
    )
    i_start = iterative_start(len(timesteps), denoiser.schedule.T) if i_start is None else i_start
    ts_lib.from_start(timesteps, i_start)  # an i_start past the list fails before anything is written
    one = one_step_figure(denoiser, x_0, ts, prompt=prompt, guidance=guidance, out=out, seed=seed)
    it = iterative_figure(
        denoiser, x_0, timesteps=timesteps, sampler=sampler, i_start=i_start, every=every, prompt=prompt,
        guidance=guidance, kernel_size=kernel_size, sigma=sigma, out=out, seed=seed,
    )  # fmt: skip
    return Figure(one.images | it.images, one.paths + it.paths)


def _noisy_and(
    denoiser: Denoiser, ts: Sequence[int], x_ts: Tensor, label: str, results: Tensor, *, name: str, title: str, out
) -> Figure:
    """The noisy images x_ts (len(ts), B, C, H, W) above what a method made of them (same shape), per image b."""
    rows = [row for b in range(x_ts.shape[1]) for row in ((f"noisy {b}", x_ts[:, b]), (f"{label} {b}", results[:, b]))]
    cols = [f"t={t}" for t in ts]
    paths = write(out, name, rows, col_labels=cols, title=title, value_range=denoiser.value_range)
    images = {f"noisy t={t}": x_ts[k] for k, t in enumerate(ts)} | {
        f"{label} t={t}": results[k] for k, t in enumerate(ts)
    }
    return Figure(images, paths)


def iterative_figure(
    denoiser: Denoiser,
    x_0: Tensor,
    *,
    timesteps: list[int] | None = None,
    sampler: str | samplers.Sampler | None = None,
    i_start: int | None = None,
    every: int = WRITEUP_EVERY,
    prompt: str | None = None,
    guidance: float | None = None,
    kernel_size: int = 5,
    sigma: float = 1.0,
    out: str | Path | None = None,
    seed: int = DEFAULT_SEED,
) -> Figure:
    """Strided iterative denoising (convention 3) from t = timesteps[i_start], every ``every``-th step
    shown, and the write-up's comparison: original | noisy | iterative | one-step | Gaussian blur."""
    timesteps, prompt = resolve_timesteps(denoiser, timesteps), resolve_prompt(denoiser, prompt)
    guidance = scale_for(denoiser, guidance, default=1.0)
    i_start = iterative_start(len(timesteps), denoiser.schedule.T) if i_start is None else i_start
    t_start = ts_lib.from_start(timesteps, i_start)[0]
    g = generator(seed, x_0.device)
    x_t = denoiser.schedule.q_sample(
        x_0, t_start, torch.randn(x_0.shape, generator=g, device=x_0.device, dtype=x_0.dtype)
    )
    model = guided(denoiser, prompt, guidance)
    cond = model.encode([prompt] * x_0.shape[0])
    x_iter, seen = edits.iterative_denoise(
        model, x_t, i_start, timesteps, cond=cond, generator=g, every=every, sampler=sampler
    )
    x_one = edits.one_step_denoise(model, x_t, t_start, cond=cond)
    x_blur = edits.gaussian_blur_denoise(x_t, kernel_size, sigma)
    B, vr = x_0.shape[0], denoiser.value_range
    progress = [(f"image {b}", torch.stack([x[b] for _, x in seen] + [x_iter[b]])) for b in range(B)]
    paths = write(
        out,
        "iterative",
        progress,
        col_labels=[f"t={t}" for t, _ in seen] + ["clean"],
        title=f"strided iterative denoising from t={t_start}",
        value_range=vr,
    )
    compare = [(f"image {b}", torch.stack([x_0[b], x_t[b], x_iter[b], x_one[b], x_blur[b]])) for b in range(B)]
    cols = ["original", f"noisy t={t_start}", "iterative", "one-step", "blurred"]
    paths += write(out, "denoise_comparison", compare, col_labels=cols, title="denoising compared", value_range=vr)
    return Figure(
        {
            "x_0": x_0,
            "x_t": x_t,
            "iterative": x_iter,
            "one-step": x_one,
            "blurred": x_blur,
            **{f"t={t}": x for t, x in seen},
        },
        paths,
    )


# -- 1.5 sampling, 1.6 classifier-free guidance --------------------------------------------------------
def sampling_figure(
    denoiser: Denoiser,
    prompts: Sequence[str] | None = None,
    *,
    n: int = 5,
    guidance: float | None = None,
    timesteps: list[int] | None = None,
    sampler: str | samplers.Sampler | None = None,
    upscale: Upscale | None = None,
    out: str | Path | None = None,
    seed: int = DEFAULT_SEED,
    on_step: samplers.StepHook | None = None,
) -> Figure:
    """``n`` samples from pure noise per prompt, without CFG (scale 1) and with CFG (scale ``guidance``),
    from the same x_T. Null prompts only: one unguided row each (guidance changes nothing).
    ``upscale`` (IF stage II) adds the figure ``generate_upscaled``. ``on_step`` (samplers.sample's hook)
    sees every step of each descent, one descent per scale. ``prompts`` None: the model's default prompts
    (every class of a class model, the null prompt of a time model)."""
    timesteps, guidance = resolve_timesteps(denoiser, timesteps), scale_for(denoiser, guidance)
    prompts = list(denoiser.default_prompts) if prompts is None else list(prompts)
    all_prompts = [p for p in prompts for _ in range(n)]
    scales = [1.0] if guidance == 1.0 or not any(p.strip() for p in prompts) else [1.0, guidance]
    if denoiser.traits.guidance is not None:  # a distilled student samples at its own scale only
        scales = [guidance]
    xs = {}
    for s in scales:  # the same x_T for every scale: same generator seed
        model = guided(denoiser, prompts, s)
        xs[s] = samplers.sample_from_noise(
            model,
            model.encode(all_prompts),
            timesteps,
            generator=generator(seed, denoiser.device),
            sampler=sampler,
            device=denoiser.device,
            on_step=on_step,
        )
    tag = {s: "no CFG" if s == 1.0 else f"CFG s={s:g}" for s in scales}
    rows = [
        (f"{p or 'null prompt'} ({tag[s]})", xs[s][k * n : (k + 1) * n]) for k, p in enumerate(prompts) for s in scales
    ]
    cols, title = [f"sample {i + 1}" for i in range(n)], f"sampling from noise, {len(timesteps)} steps"
    paths = write(out, "generate", rows, col_labels=cols, title=title, value_range=denoiser.value_range)
    images = {tag[s]: x for s, x in xs.items()}
    if upscale is not None:
        big = {s: upscale(x, all_prompts) for s, x in xs.items()}
        rows = [
            (f"{p or 'null prompt'} ({tag[s]})", big[s][k * n : (k + 1) * n])
            for k, p in enumerate(prompts)
            for s in scales
        ]
        paths += write(
            out,
            "generate_upscaled",
            rows,
            col_labels=cols,
            title=title + ", stage II",
            value_range=denoiser.value_range,
        )
        images |= {f"{tag[s]} upscaled": x for s, x in big.items()}
    return Figure(images, paths)


# -- 1.7 SDEdit, hand-drawn editing, inpainting -------------------------------------------------------
def sdedit_figure(
    denoiser: Denoiser,
    x_0: Tensor,
    *,
    i_starts: Sequence[int] | None = None,
    prompt: str | None = None,
    guidance: float | None = None,
    timesteps: list[int] | None = None,
    sampler: str | samplers.Sampler | None = None,
    name: str = "sdedit",
    out: str | Path | None = None,
    seed: int = DEFAULT_SEED,
    on_step: samplers.StepHook | None = None,
) -> Figure:
    """SDEdit (Meng et al. 2022) of x_0 (B,C,H,W) at each i_start: one row per image, originals last.

    With prompt "" it is the write-up's unconditioned image-to-image translation (also used
    for hand-drawn images); with a prompt, the text-conditioned one (CFG scale ``guidance``).
    ``on_step`` (samplers.sample's hook) sees every step of each descent, one per i_start in order.
    ``i_starts`` None: :func:`~fundiff.figures.sdedit_starts` of the timesteps (the write-up's on its 35 steps).
    """
    timesteps, prompt = resolve_timesteps(denoiser, timesteps), resolve_prompt(denoiser, prompt)
    guidance = scale_for(denoiser, guidance)
    i_starts = sdedit_starts(len(timesteps), denoiser.schedule.T) if i_starts is None else list(i_starts)
    check_starts(denoiser, timesteps, i_starts=i_starts)
    model = guided(denoiser, prompt, guidance)
    cond = model.encode([prompt] * x_0.shape[0])
    g = generator(seed, x_0.device)
    edited = {
        i: edits.sdedit(model, x_0, i, timesteps, cond=cond, generator=g, sampler=sampler, on_step=on_step)
        for i in i_starts
    }
    rows = [(f"image {b}", torch.stack([edited[i][b] for i in i_starts] + [x_0[b]])) for b in range(x_0.shape[0])]
    cols = [f"i_start {i} (t={timesteps[i]})" for i in i_starts] + ["original"]
    paths = write(
        out,
        name,
        rows,
        col_labels=cols,
        title=f"SDEdit, prompt {prompt!r}" + (f", CFG s={guidance:g}" if model is not denoiser else ""),
        value_range=denoiser.value_range,
    )
    return Figure({f"i_start={i}": x for i, x in edited.items()} | {"x_0": x_0}, paths)


def inpaint_figure(
    denoiser: Denoiser,
    x_0: Tensor,
    mask: Tensor,
    *,
    n: int = 3,
    method: edits.InpaintMethod = "replace",
    jump_length: int = 5,
    resample: int = 5,
    prompt: str | None = None,
    guidance: float | None = None,
    timesteps: list[int] | None = None,
    sampler: str | samplers.Sampler | None = None,
    out: str | Path | None = None,
    seed: int = DEFAULT_SEED,
    on_step: samplers.StepHook | None = None,
) -> Figure:
    """``n`` inpaintings of one image x_0 (1,C,H,W) where ``mask`` (.., H, W) is 1: original | mask | hole | results.

    ``on_step``: edits.inpaint's hook (every step down, after the known region is put back)."""
    timesteps, prompt = resolve_timesteps(denoiser, timesteps), resolve_prompt(denoiser, prompt)
    model = guided(denoiser, prompt, guidance)
    x_n = x_0[:1].expand(n, *x_0.shape[1:])
    result = edits.inpaint(
        model,
        x_n,
        mask,
        timesteps,
        cond=model.encode([prompt] * n),
        generator=generator(seed, x_0.device),
        method=method,
        jump_length=jump_length,
        resample=resample,
        sampler=sampler,
        on_step=on_step,
    )
    lo, hi = denoiser.value_range
    m = edits.binary_mask(mask, x_0[:1]).to(x_0.dtype)
    shown_mask = lo + (hi - lo) * m
    hole = torch.where(m.bool(), torch.full_like(x_0[:1], (lo + hi) / 2), x_0[:1])
    row = torch.cat([x_0[:1], shown_mask, hole, result])
    cols = ["original", "mask (white = new)", "hole"] + [f"inpainted {i + 1}" for i in range(n)]
    title = (
        f"inpainting ({method}"
        + (f", jump {jump_length}, resample {resample}" if method == "repaint" else "")
        + f"), prompt {prompt!r}"
    )
    paths = write(out, "inpaint", [("image", row)], col_labels=cols, title=title, value_range=denoiser.value_range)
    return Figure({"x_0": x_0[:1], "mask": m, "inpainted": result}, paths)


# -- 0 set-up: prompts x number of steps ----------------------------------------------------------------


def model_timesteps(denoiser: Denoiser, steps: int) -> list[int]:
    """The model's own ``steps`` timesteps (``pipeline_timesteps``: DeepFloyd IF's scheduler), else evenly spaced.

    Only the set-up table uses these (the write-up's num_inference_steps); every other figure takes
    ``timesteps`` (default :func:`fundiff.timesteps.for_model`)."""
    own = denoiser.traits.pipeline_timesteps
    return own(steps) if own is not None else ts_lib.strided(denoiser.schedule.T, steps=steps)


def setup_prompts(denoiser: Denoiser) -> list[str]:
    """The set-up table's default prompts: the model's own set-up prompts (IF: the write-up's), else its defaults."""
    return list(defaults_for(denoiser).setup_prompts or denoiser.default_prompts)


def setup_figure(
    denoiser: Denoiser,
    prompts: Sequence[str] | None = None,
    *,
    steps: Sequence[int] = WRITEUP_SETUP_STEPS,
    guidance: float | None = None,
    sampler: str | samplers.Sampler | None = None,
    upscale: Upscale | None = None,
    out: str | Path | None = None,
    seed: int = DEFAULT_SEED,
    on_step: samplers.StepHook | None = None,
) -> Figure:
    """The write-up's set-up table: one sample per prompt (columns) for each number of steps (rows).

    Timesteps are the model's own for each count (:func:`model_timesteps`); every row starts from
    the same x_T (same seed). ``upscale`` (IF stage II) adds the figure ``setup_upscaled``.
    ``prompts`` None: the model's set-up prompts (IF: the write-up's three), else its default prompts.
    ``on_step`` (samplers.sample's hook) sees every step of each row's descent, the rows in order.
    """
    prompts = setup_prompts(denoiser) if prompts is None else list(prompts)
    guidance = scale_for(denoiser, guidance)
    model = guided(denoiser, prompts, guidance)
    cond = model.encode(list(prompts))
    xs = {
        n: samplers.sample_from_noise(
            model,
            cond,
            model_timesteps(denoiser, n),
            generator=generator(seed, denoiser.device),
            sampler=sampler,
            device=denoiser.device,
            on_step=on_step,
        )
        for n in steps
    }
    cols = [p or "null prompt" for p in prompts]
    rows = [(f"{n} steps", x) for n, x in xs.items()]
    title = f"prompts x number of steps, CFG s={guidance:g}"
    vr = denoiser.value_range
    paths = write(out, "setup", rows, col_labels=cols, title=title, value_range=vr)
    images = {f"{n} steps": x for n, x in xs.items()}
    if upscale is not None:
        big = [(label, upscale(x, prompts)) for label, x in rows]
        paths += write(out, "setup_upscaled", big, col_labels=cols, title=title + ", stage II", value_range=vr)
        images |= {f"{label} upscaled": x for label, x in big}
    return Figure(images, paths)


# 1.8 visual anagrams and 1.9 hybrid images live in fundiff.illusions; they are techniques too
from fundiff.illusions import anagram_figure, anagram_views, hybrid_conflicts, hybrid_figure  # noqa: E402

__all__ = [
    "DATASET_DEFAULTS", "DIGIT_DEFAULTS", "WRITEUP_EVERY", "WRITEUP_ITERATIVE_START", "WRITEUP_NOISE_TS",
    "WRITEUP_SDEDIT_STARTS", "WRITEUP_SETUP_STEPS", "Figure", "TechniqueDefaults", "Upscale", "anagram_figure",
    "anagram_views", "blur_figure", "defaults_for", "denoise_figure", "guided", "hybrid_conflicts", "hybrid_figure",
    "inpaint_figure", "iterative_figure", "iterative_start", "model_timesteps", "noise_figure", "noise_levels",
    "one_step_figure",
    "sampling_figure", "sdedit_figure", "sdedit_starts", "setup_figure", "setup_prompts", "writeup_t",
]  # fmt: skip
