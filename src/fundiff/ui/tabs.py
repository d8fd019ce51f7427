"""The page and its tabs: sampling, SDEdit, inpainting, visual anagrams, hybrid images.

Each tab is a technique spec (fundiff.specs): its parameter controls come from the spec (ui/controls.py), a
press runs the spec's figure function with the checked values, and the run's "same with the CLI" command comes
from the same spec and values. A tab adds only what the CLI reads from files: the drawing, the upload, the
painted mask, the test image (saved into the run folder and read back as ``--image`` / ``--mask`` read them).
"""

from __future__ import annotations

import functools
import html
import time
from collections.abc import Callable, Iterator

import gradio as gr
import numpy as np
import torch

from fundiff import DEFAULT_SEED, edits, images, samplers, specs, techniques
from fundiff import timesteps as ts_lib
from fundiff.errors import FundiffError
from fundiff.ui.app import App, UIConfig, _Run
from fundiff.ui.controls import PROGRESS, SAMPLING_SLOT, check_prompts, controls, given_from, listen, outputs, ui_params
from fundiff.ui.inputs import copy_upload, inpaint_image, painted_mask, save_drawing, scratch, whole
from fundiff.ui.pad import pad, png_data_url, with_background
from fundiff.ui.pictures import CANVAS, _unit, model_view, near_and_far, tiles

SDEDIT_MODES = ("all write-up levels", "one level")


def live_label() -> str:
    """The live checkbox's label, naming the shipped few-step students (their configs record a "distill")."""
    from fundiff.backends.runs import SHIPPED_DIR, shipped_names
    from fundiff.checkpoints import load_config

    fast = ", ".join(n for n in shipped_names() if "distill" in load_config(SHIPPED_DIR / n))
    return f"live: redo at every stroke, no files (quick with a fast model: {fast})"


INPAINT_SOURCES = ("test image", "upload")
SDEDIT_SOURCES = ("drawing", "upload")


def build(config: UIConfig) -> gr.Blocks:
    """The page: shared settings (model, sampler, steps, seed) above one tab per technique."""
    app = App(config)
    den = app.denoiser(config.model)  # a model that cannot load is reported before the server starts
    # delete_cache: gradio's copies of uploads and results older than an hour go, checked hourly
    with gr.Blocks(title="fundiff", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown(
            "# fundiff: fun with diffusion models\nDraw, paint a mask, pick prompts, and watch the model denoise. "
            "Every run writes its figure, images and a manifest (with the CLI command that reproduces it) "
            f"into `{config.out}`."
        )
        if config.notice:
            gr.Markdown(f"**Warning:** {config.notice}.")
        with gr.Row():
            model = gr.Dropdown(list(config.models), value=config.model, label="model", scale=3)
            sampler = gr.Radio(list(samplers.SAMPLERS), value=default_sampler(app, config.model), label="sampler")
            default_steps = len(ts_lib.for_model(den))
            own = den.traits.default_steps
            whose = "the write-up's stride" if not own else "every step" if own == den.schedule.T else "its own"
            steps = gr.Number(
                value=config.steps or default_steps,
                precision=0,
                label=f"steps ({default_steps}: {whose}; other counts: evenly spaced)",
                minimum=1,
                scale=2,
            )
            seed = gr.Number(value=DEFAULT_SEED, precision=0, label="seed", minimum=0, scale=2)
        shared = [model, sampler, steps, seed]
        # a newly picked model brings its own default sampler (heun for a flow-matching model); in the sampling
        # slot, as loading a model never overlaps a run
        model.change(
            lambda m: gr.Radio(value=default_sampler(app, m)),
            model,
            sampler,
            api_name=False,
            show_progress="hidden",
            concurrency_id=SAMPLING_SLOT,
        )
        with gr.Tabs():
            with gr.Tab("sampling", id="sampling"):
                _sampling_tab(app, shared, den)
            with gr.Tab("SDEdit", id="sdedit"):
                _sdedit_tab(app, shared, den, steps)
            with gr.Tab("inpainting", id="inpaint"):
                _inpaint_tab(app, shared, den, demo)
            with gr.Tab("visual anagrams", id="anagram"):
                _anagram_tab(app, shared, den)
            with gr.Tab("hybrid images", id="hybrid"):
                _hybrid_tab(app, shared, den)
    return demo


def default_sampler(app: App, model: str) -> str:
    """The sampler the CLI uses for ``model`` when none is given (heun for a flow-matching model, else ddpm)."""
    return samplers.default_sampler_of(app.denoiser(model))


def _play(
    app: App,
    r: _Run,
    spec: specs.Technique,
    given: dict,
    *,
    inputs: list = (),
    input_flags: list[str] = (),
    options: dict | None = None,
    total: int,
    extra: Callable | None = None,
    progress=None,
) -> Iterator[tuple]:
    """Run ``spec`` for the run ``r`` with the checked ``given`` values, streaming x0_hat to the page; the run's
    command and guidance scales come from the spec and the values, as the tour's do."""
    from fundiff.tour.part_a import guidance_scales

    check_prompts(r.den, given)
    r.argv = app.command(r, spec, given, [*input_flags, "--animate"])  # the run's GIF is written as the CLI's
    values = spec.resolve(r.den, given)
    r.guidance = guidance_scales(spec, values, r.den)
    run_options = dict(timesteps=r.timesteps, sampler=r.sampler, out=r.folder, seed=r.seed, **(options or {}))
    make = functools.partial(spec.run, r.den, list(inputs), given, **run_options)
    yield from app.play(r, make, total=total, extra=extra, progress=progress, nrow=values.get("n"))


def _tab_inputs(spec: specs.Technique, den, elem_prefix: str) -> tuple[list, gr.Button]:
    """The spec's controls and the tab's button (its elem_id: PREFIX-run)."""
    parts = controls(spec, den, elem_prefix=elem_prefix)
    return parts, gr.Button(spec.summary.split(":")[0], variant="primary", elem_id=f"{elem_prefix}-run")


# -- tab: sampling (fundiff generate) ----------------------------------------------------------------
def _sampling_tab(app: App, shared: list, den) -> None:
    spec = specs.technique("generate")
    with gr.Row():
        with gr.Column():
            parts, go = _tab_inputs(spec, den, "sampling")
        outs = outputs("sampling")
    listen(go, functools.partial(run_sampling, app), [*shared, *parts], outs, "sample", app.discard_unfinished)


def run_sampling(app: App, model, sampler, steps, seed, *values, progress=PROGRESS) -> Iterator[tuple]:
    """The sampling tab: the generate spec (techniques.sampling_figure), per prompt without and with CFG."""
    spec = specs.technique("generate")
    r = app.new_run("sampling", model, seed, sampler, steps)
    given = given_from(spec, values)
    resolved = spec.resolve(r.den, given)
    from fundiff.tour.part_a import guidance_scales

    scales = guidance_scales(spec, resolved, r.den)  # as sampling_figure samples
    yield from _play(app, r, spec, given, total=len(r.timesteps) * len(scales), progress=progress)


# -- tab: SDEdit ---------------------------------------------------------------------------------------
def _sdedit_tab(app: App, shared: list, den, steps: gr.Number) -> None:
    from fundiff.images import FITS

    spec = specs.technique("sdedit")
    last = int(steps.value) - 1
    with gr.Row():
        with gr.Column():
            source = gr.Radio(list(SDEDIT_SOURCES), value="drawing", label="edit")
            sketch = pad(
                "ink", label="drawing (dark on light; inverted for the model)", side=CANVAS, brush=18,
                elem_id="sdedit-sketch",
            )  # fmt: skip
            upload = gr.File(label="or upload an image", type="filepath", elem_id="sdedit-upload")
            fit = gr.Radio(list(FITS), value="ink", label="fit: ink boxes the drawing like MNIST")
            parts, go = _tab_inputs(spec, den, "sdedit")
            mode = gr.Radio(list(SDEDIT_MODES), value=SDEDIT_MODES[0], label="noise levels")
            i_start = gr.Slider(0, last, value=min(10, last), step=1, label="i_start (one level; larger: less noise)")
            live = gr.Checkbox(False, label=live_label() + " (at i_start)", elem_id="sdedit-live")
        outs = outputs("sdedit")
    steps.change(lambda s: gr.Slider(maximum=max(int(s or 1) - 1, 0)), steps, i_start, queue=False)
    inputs = [*shared, source, sketch, upload, fit, *parts, mode, i_start]
    listen(go, functools.partial(run_sdedit, app), inputs, outs, "sdedit", app.discard_unfinished)
    live_inputs = [*shared, live, sketch, fit, *parts, i_start]
    on_every_stroke(sketch, functools.partial(run_sdedit_live, app), live_inputs, outs, "sdedit_live")


def run_sdedit(app: App, model, sampler, steps, seed, source, sketch, upload, fit, *rest, progress=PROGRESS):
    """The SDEdit tab: the drawing or upload saved as input.* and read as `fundiff sdedit --image` reads it, then
    the sdedit spec at every write-up level (techniques.sdedit_starts) or at one i_start."""
    spec = specs.technique("sdedit")
    *values, mode, i_start = rest
    r = app.new_run("sdedit", model, seed, sampler, steps)
    path = copy_upload(upload, r.folder) if source == "upload" else save_drawing(sketch, r.folder)
    den, n = r.den, len(r.timesteps)
    x_0 = drawing_image(den, path, fit)
    if mode == SDEDIT_MODES[0]:
        starts = techniques.sdedit_starts(n, den.schedule.T)
    else:
        starts = [whole(i_start, "i_start", 0, n - 1)]
    given = given_from(spec, values) | spec.check({"i_starts": starts})
    flags = ["--image", str(path), "--fit", fit, "--invert", "auto"]
    yield from _play(
        app, r, spec, given, inputs=[x_0], input_flags=flags, options={"name": "handdrawn"},
        total=sum(n - i for i in starts), progress=progress,
    )  # fmt: skip


def drawing_image(den, path, fit: str):
    """The drawing or upload at ``path`` in the model's format, as `fundiff sdedit --image --fit F --invert auto`
    reads it."""
    return images.load_image(
        path, channels=den.channels, image_size=den.image_size, value_range=den.value_range, fit=fit, invert="auto"
    ).to(den.device)


def run_sdedit_live(app: App, model, sampler, steps, seed, live, sketch, fit, *rest) -> tuple:
    """Live SDEdit (the checkbox on): the drawing SDEdited from one level, i_start, on every stroke, shown in the
    x0_hat image with the milliseconds it took; nothing is written (the button makes the run's files)."""
    if not live:
        return gr.skip(), gr.skip()
    *values, i_start = rest
    spec, start = specs.technique("sdedit"), time.perf_counter()
    den = app.denoiser(model)
    timesteps, _ = app.timesteps(den, steps)
    with scratch(app) as folder:
        x_0 = drawing_image(den, save_drawing(sketch, folder), fit)
    i = whole(i_start, "i_start", 0, len(timesteps) - 1)
    given = given_from(spec, values) | spec.check({"i_starts": [i]})
    check_prompts(den, given)
    seed = whole(seed, "the seed", 0, 2**63 - 1)
    x = spec.run(den, [x_0], given, timesteps=timesteps, sampler=sampler, seed=seed).images[f"i_start={i}"]
    ms = 1000 * (time.perf_counter() - start)
    status = f"live: SDEdit from i_start {i} (t = {timesteps[i]}) in {ms:.0f} ms; the button writes the run's files"
    return tiles(_unit(x, den.value_range), nrow=len(x), scale=4), status


def on_every_stroke(editor, fn, inputs: list, outs: list, api_name: str) -> None:
    """``fn(*inputs) -> (image, status)`` on every change of ``editor``, into the tab's x0_hat image and status,
    in the sampling slot; strokes that come while it runs collapse into the latest (gradio's always_last). A
    problem (an empty canvas) shows in the status line, not as a pop-up."""

    def shown(*values):
        try:
            return fn(*values)
        except FundiffError as e:
            return gr.skip(), f"live: {e}"

    editor.change(
        shown, inputs, [outs[0], outs[-1]], api_name=api_name, trigger_mode="always_last", concurrency_limit=1,
        concurrency_id=SAMPLING_SLOT, show_progress="hidden",
    )  # fmt: skip


# -- tab: inpainting -------------------------------------------------------------------------------------
def _inpaint_tab(app: App, shared: list, den, demo: gr.Blocks) -> None:
    from fundiff.images import MASK_PRESETS

    spec = specs.technique("inpaint")
    with gr.Row():
        with gr.Column():
            with gr.Row():
                source = gr.Radio(list(INPAINT_SOURCES), value="test image", label="image")
                index = gr.Number(value=0, precision=0, minimum=0, label="test image index (MNIST test 0 is a 7)")
            upload = gr.File(label="or upload an image", type="filepath", elem_id="inpaint-upload")
            editor = pad("mask", label="paint the region to fill in", side=CANVAS, brush=28, elem_id="inpaint-editor")
            mask_from = gr.Radio(["painted", *MASK_PRESETS], value="painted", label="mask")
            parts, go = _tab_inputs(spec, den, "inpaint")
            live = gr.Checkbox(False, label=live_label() + " (the painted mask)", elem_id="inpaint-live")
        outs = outputs("inpaint")
    show, picked = functools.partial(show_inpaint_image, app, editor), [shared[0], source, index, upload]
    for trigger in (source.change, index.change, upload.change, shared[0].change, demo.load):
        # in the sampling slot: loading a model (and timing its precision) never overlaps a run
        trigger(show, picked, editor, api_name=False, show_progress="hidden", concurrency_id=SAMPLING_SLOT)
    inputs = [*shared, source, index, upload, editor, mask_from, *parts]
    listen(go, functools.partial(run_inpaint, app), inputs, outs, "inpaint", app.discard_unfinished)
    live_inputs = [*shared, live, source, index, upload, editor, *parts]
    on_every_stroke(editor, functools.partial(run_inpaint_live, app), live_inputs, outs, "inpaint_live")


def run_inpaint_live(app: App, model, sampler, steps, seed, live, source, index, upload, editor, *values) -> tuple:
    """Live inpainting (the checkbox on): the painted region filled in on every stroke, shown in the x0_hat image
    with the milliseconds it took; nothing is written (the button makes the run's files)."""
    if not live:
        return gr.skip(), gr.skip()
    spec, start = specs.technique("inpaint"), time.perf_counter()
    den = app.denoiser(model)
    timesteps, _ = app.timesteps(den, steps)
    size = den.image_size
    with scratch(app) as folder:
        x_0, _ = inpaint_image(app, model, source, index, upload, folder)
        mask = images.load_mask(painted_mask(editor, folder, size), image_size=size, like=(size, size))
    given = given_from(spec, values)
    check_prompts(den, given)
    seed = whole(seed, "the seed", 0, 2**63 - 1)
    x = spec.run(den, [x_0, mask.to(x_0.device)], given, timesteps=timesteps, sampler=sampler, seed=seed)
    x = x.images["inpainted"]
    ms = 1000 * (time.perf_counter() - start)
    status = f"live: {len(x)} inpainting(s), {len(timesteps)} step(s), in {ms:.0f} ms; the button writes the files"
    return tiles(_unit(x, den.value_range), nrow=len(x), scale=4), status


def show_inpaint_image(app: App, editor: gr.HTML, model, source, index, upload):
    """The mask pad's background: the image to inpaint as the model sees it. A problem is a warning, not an
    error (it runs when the page opens, e.g. before the dataset is there)."""
    try:
        with scratch(app) as folder:
            x_0, _ = inpaint_image(app, model, source, index, upload, folder)
    except FundiffError as e:
        gr.Warning(html.escape(str(e), quote=False), title="fundiff")
        return gr.skip()
    return with_background(editor, png_data_url(model_view(x_0, app.denoiser(model).value_range)))


def run_inpaint(
    app: App, model, sampler, steps, seed, source, index, upload, editor, mask_from, *values, progress=PROGRESS
) -> Iterator[tuple]:
    """The inpainting tab: image and painted mask saved as input.png / mask.png and read as `fundiff inpaint
    --index/--image --mask` reads them (or a preset mask), then the inpaint spec."""
    spec = specs.technique("inpaint")
    r = app.new_run("inpaint", model, seed, sampler, steps)
    given = given_from(spec, values)
    den = r.den
    x_0, image_flags = inpaint_image(app, model, source, index, upload, r.folder)
    if mask_from == "painted":
        mask_path, size = painted_mask(editor, r.folder, den.image_size), den.image_size
        mask, mask_flags = images.load_mask(mask_path, image_size=size, like=(size, size)), ["--mask", str(mask_path)]
    else:
        mask, mask_flags = images.mask_preset(mask_from, den.image_size), ["--mask-preset", mask_from]
    values = spec.resolve(den, given)
    walk = None
    if values["method"] == "repaint":
        walk = edits.repaint_walk(len(r.timesteps), values["jump_length"], values["resample"])
    total = len(r.timesteps) if walk is None else sum(b < a for a, b in zip(walk, walk[1:]))
    yield from _play(
        app, r, spec, given, inputs=[x_0, mask.to(x_0.device)], input_flags=image_flags + mask_flags, total=total,
        progress=progress,
    )  # fmt: skip


# -- tab: visual anagrams ----------------------------------------------------------------------------------
def _anagram_tab(app: App, shared: list, den) -> None:
    spec = specs.technique("anagram")
    with gr.Row():
        with gr.Column():
            parts, go = _tab_inputs(spec, den, "anagram")
        outs = outputs("anagram", "every view of each sample: as is (top), under each further view (below)")
    listen(go, functools.partial(run_anagram, app), [*shared, *parts], outs, "anagram", app.discard_unfinished)


def run_anagram(app: App, model, sampler, steps, seed, *values, progress=PROGRESS) -> Iterator[tuple]:
    """The anagram tab: the anagram spec (the first prompt as is, the others under their views); the samples shown
    large under every view."""
    spec = specs.technique("anagram")
    r = app.new_run("anagram", model, seed, sampler, steps)
    given = given_from(spec, values)
    resolved = spec.resolve(r.den, given)
    views, n, vr = techniques.anagram_views(resolved["prompts"], resolved["views"]), resolved["n"], r.den.value_range

    def every_view(fig: techniques.Figure) -> np.ndarray:
        x = fig.images["x_0"]
        return tiles(_unit(torch.cat([v.view_image(x, vr) for v in views]), vr), nrow=n, scale=6)

    yield from _play(app, r, spec, given, total=len(r.timesteps), extra=every_view, progress=progress)


# -- tab: hybrid images --------------------------------------------------------------------------------------
def _hybrid_tab(app: App, shared: list, den) -> None:
    spec = specs.technique("hybrid")  # the start model's defaults: the filter chosen for its dataset
    with gr.Row():
        with gr.Column():
            parts, go = _tab_inputs(spec, den, "hybrid")
        outs = outputs("hybrid", "up close (large) and from afar (small)")
    listen(go, functools.partial(run_hybrid, app), [*shared, *parts], outs, "hybrid", app.discard_unfinished)


def run_hybrid(app: App, model, sampler, steps, seed, *values, progress=PROGRESS) -> Iterator[tuple]:
    """The hybrid tab: the hybrid spec; the hybrids shown large (up close) and small (from afar)."""
    spec = specs.technique("hybrid")
    r = app.new_run("hybrid", model, seed, sampler, steps)
    names = [p.name for p in ui_params(spec)]
    raw = dict(zip(names, values))
    if not (raw["mid"] or "").strip():  # two bands: the mid filter's controls do not apply (and are not flags)
        raw["mid_kernel_size"] = raw["mid_sigma"] = None
    given = given_from(spec, [raw[name] for name in names])

    def sizes(fig: techniques.Figure) -> np.ndarray:
        return near_and_far(_unit(fig.images["x_0"], r.den.value_range))

    yield from _play(app, r, spec, given, total=len(r.timesteps), extra=sizes, progress=progress)
