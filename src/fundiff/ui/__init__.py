"""``fundiff ui``: a local web app (gradio 6) to play the write-up's techniques by hand.

Tabs: sampling (CFG, sampler, steps), SDEdit of a drawing or an upload, inpainting with a mask
painted over a test image or an upload (replace or RePaint), visual anagrams and hybrid images.
Every run of a tab

- writes its inputs into a folder of its own under ``out`` (the drawing or upload as
  ``input.*``, the painted mask as ``mask.png``) and reads them back with :mod:`fundiff.images`
  exactly as the CLI reads ``--image`` / ``--mask``;
- calls the figure function of :mod:`fundiff.techniques` that the matching CLI command calls
  (no second implementation of any technique), with its ``on_step`` hook streaming x0_hat to
  the page while the sampler runs (in a worker thread; the page polls a queue);
- leaves there the figure, its single images, ``manifest.json`` in the tour's format (one
  section; :mod:`fundiff.tour`, :mod:`fundiff.tour.report`) and ``index.html``, offered as one zip.

The manifest's command (``fundiff sdedit --image OUT/RUN/input.png ...``) reproduces the figure.
All sampling events share one queue slot (concurrency 1), so two users never run two samplers at
once. Bad input shows its FundiffError text in the page, never a traceback. gradio is imported
only in this module; analytics are off and the server binds to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import functools
import html
import queue
import re
import shlex
import shutil
import threading
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import numpy as np
import torch
from torch import Tensor

from fundiff import DEFAULT_SEED, edits, images, io, provenance, samplers, techniques
from fundiff import timesteps as ts_lib
from fundiff.backends import runs
from fundiff.denoisers import Denoiser
from fundiff.errors import FundiffError
from fundiff.guidance import DEFAULT_GUIDANCE
from fundiff.tour import report
from fundiff.views import get_view, view_specs

PROGRESS = gr.Progress()  # a marker: gradio passes each call its own tracker where a default is a Progress
SAMPLING_SLOT = "fundiff-sampler"  # one concurrency id for every event that samples: one run at a time
CANVAS = 280  # drawing canvas side in pixels (10x a 28x28 digit)
PREVIEW_EVERY_S = 0.25  # at most this often the page gets a new x0_hat preview
SDEDIT_MODES = ("all write-up levels", "one level")
INPAINT_SOURCES = ("test image", "upload")
SDEDIT_SOURCES = ("drawing", "upload")
SYSTEM_FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]  # the default theme would fetch Google fonts


@dataclass(frozen=True)
class UIConfig:
    """What ``fundiff ui`` was started with."""

    models: tuple[str, ...]  # the model choices: shipped names, run folders, DeepFloyd IF (folder or hub id)
    model: str  # the one selected first
    steps: int | None = None  # start value of the steps field (None: the write-up's stride, 35 steps)
    device: str = "auto"
    precision: str = "auto"  # devices.PRECISIONS: auto measures fp32 / bf16 once per model and machine
    out: Path = Path("out/ui")  # one folder per run inside
    data_dir: str | None = None  # dataset folder for test images (default: $FUNDIFF_DATA or ~/.cache/fundiff/data)
    model_options: dict[str, dict] = field(default_factory=dict)  # per model: backend options (IF: embeddings=FILE)


def diffusion_models(runs_dir: str | Path | None = None, if_model: str | None = None) -> list[str]:
    """The models the UI offers: shipped time/class models, time/class run folders in ``runs_dir``
    (the folder itself and its subfolders), and ``if_model`` (a DeepFloyd IF folder or hub id)."""
    found = [n for n in runs.shipped_names() if _samples(runs.SHIPPED_DIR / n)]
    if runs_dir is not None:
        root = Path(runs_dir)
        if not root.is_dir():
            raise FundiffError(
                f"--runs {str(root)!r} is not a folder; give the folder your `fundiff train` runs are in"
            )
        found += [str(p) for p in [root, *sorted(root.iterdir())] if p.is_dir() and _samples(p)]
    return found + ([if_model] if if_model else [])


def _samples(folder: Path) -> bool:
    """Is ``folder`` a fundiff run of a diffusion model (time or class kind)?"""
    from fundiff.checkpoints import load_config

    try:
        return load_config(folder).get("train", {}).get("kind") in ("time", "class")
    except FundiffError:
        return False


# -- pictures for the page ------------------------------------------------------------------------
def _unit(x: Tensor, value_range: tuple[float, float]) -> Tensor:
    lo, hi = value_range
    return ((x.detach().float().cpu() - lo) / (hi - lo)).clamp(0, 1)


def tiles(x: Tensor, *, nrow: int, scale: int) -> np.ndarray:
    """Images (B,C,H,W) in [0, 1] as one (H', W', 3) uint8 grid, ``nrow`` per row, upscaled ``scale`` x (nearest)."""
    g = io.grid(x, nrow=max(1, nrow), padding=2)
    if scale > 1:
        g = torch.nn.functional.interpolate(g[None], scale_factor=scale, mode="nearest")[0]
    return io.to_uint8(g.expand(3, -1, -1)).permute(1, 2, 0).numpy()


def near_and_far(x: Tensor, *, scale: int = 8) -> np.ndarray:
    """Hybrids (B,C,H,W) in [0, 1]: up close (``scale`` x) above, from afar (1 x, centred) below, on white."""
    near, far = tiles(x, nrow=len(x), scale=scale), tiles(x, nrow=len(x), scale=1)
    canvas = np.full((near.shape[0] + 24 + far.shape[0], near.shape[1], 3), 255, np.uint8)
    canvas[: near.shape[0]] = near
    left = (near.shape[1] - far.shape[1]) // 2
    canvas[near.shape[0] + 24 :, left : left + far.shape[1]] = far
    return canvas


# -- running a figure in a worker, streaming x0_hat --------------------------------------------------
class _Stopped(Exception):
    """The page went away: the worker stops at its next step."""


def stream_steps(
    run: Callable[[samplers.StepHook], object], *, total: int
) -> Iterator[tuple[int, int, Tensor | None, object]]:
    """Run ``run(on_step=hook)`` in a worker thread; yield (steps done, t, latest x0_hat, None) while it samples
    (at most every PREVIEW_EVERY_S) and (done, -1, None, result) at the end. The worker's exception is raised
    here; closing the iterator stops the worker at its next step."""
    events: queue.Queue = queue.Queue()
    stop = threading.Event()

    def on_step(i: int, t: int, t_prev: int, x_prev: Tensor, x0_hat: Tensor) -> None:
        if stop.is_set():
            raise _Stopped
        events.put(("step", t, x0_hat.detach().float().cpu().clone()))

    def work() -> None:
        try:
            with torch.no_grad():
                events.put(("done", run(on_step=on_step)))
        except BaseException as e:  # handed to the page's thread, which raises it
            events.put(("error", e))

    worker = threading.Thread(target=work, name="fundiff-ui-sampler", daemon=True)
    worker.start()
    done, last = 0, 0.0
    try:
        while True:
            kind, *payload = events.get()
            if kind == "step":
                done += 1
                t, x0_hat = payload
                while not events.empty() and events.queue[0][0] == "step":  # catch up: show only the latest
                    _, t, x0_hat = events.get()
                    done += 1
                if time.monotonic() - last >= PREVIEW_EVERY_S:
                    last = time.monotonic()
                    yield min(done, total), t, x0_hat, None
            elif kind == "done":
                yield done, -1, None, payload[0]
                return
            else:
                raise payload[0]
    finally:
        stop.set()
        worker.join()  # the sampling slot is free only once the worker has stopped (one run at a time)


# -- one run: its folder, the reproducing command, manifest and zip -----------------------------------
@dataclass
class _Run:
    """One press of a tab's button: where it writes, and what the manifest records about it."""

    id: str  # the tab: sampling, sdedit, inpaint, anagram, hybrid
    title: str
    caption: str
    folder: Path
    model: str
    den: Denoiser
    seed: int
    sampler: str
    timesteps: list[int]
    steps_flags: list[str]  # the CLI flags that give these timesteps ([] or ["--steps", "N"])
    guidance: list[float]
    argv: list[str] = field(default_factory=list)  # the `fundiff` command that reproduces the run


TITLES = {
    "sampling": (
        "1.5-1.6 Sampling with classifier-free guidance",
        "Samples from pure noise per prompt, without CFG (s = 1) and with CFG s, from the same noise.",
    ),
    "sdedit": (
        "1.7 SDEdit of a drawing or an upload",
        "The input noised to timesteps[i_start] and denoised: a small i_start invents, a large one keeps the input.",
    ),
    "inpaint": (
        "1.7.2 Inpainting",
        "New content where the mask is white; the rest is the original, noised to t' "
        "after every step (RePaint adds jumps back up).",
    ),
    "anagram": ("1.8 Visual anagrams", "One image that shows one prompt as is and the other under the view."),
    "hybrid": (
        "1.9 Hybrid images",
        "Low frequencies of one prompt (seen from afar), high frequencies of the other (seen up close).",
    ),
}


class App:
    """The app's state and services for the tabs: config, loaded models, run folders, commands, manifests."""

    def __init__(self, config: UIConfig) -> None:
        self.config = config
        self._models: dict[str, Denoiser] = {}
        self._facts: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._count = 0
        self._unfinished: set[Path] = set()  # run folders made but not yet finished (removed if the run fails)

    def discard_unfinished(self) -> None:
        """Remove the folders of runs that failed (bad input, errors): nothing partial stays in --out."""
        with self._lock:
            folders, self._unfinished = self._unfinished, set()
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)

    # -- models, timesteps, folders --
    def denoiser(self, model: str) -> Denoiser:
        """The model as a Denoiser, loaded once (weights, and the precision measured once per machine)."""
        from fundiff.devices import resolve_device

        if model not in self.config.models:
            raise FundiffError(f"unknown model {model!r}; choose one of {', '.join(self.config.models)}")
        with self._lock:
            if model not in self._models:
                device = resolve_device(self.config.device)
                self._models[model] = runs.load_denoiser(
                    model, device=device, precision=self.config.precision, **self.config.model_options.get(model, {})
                )
            return self._models[model]

    def model_facts(self, model: str) -> dict:
        """The manifest's facts of a model, as the tour records them (provenance.model_facts)."""
        if model not in self._facts:
            folder = runs.resolve(model)
            T = self.denoiser(model).schedule.T
            self._facts[model] = provenance.model_facts(model, folder, fallback_T=T)
        return self._facts[model]

    def new_run(self, kind: str, model: str, seed, sampler: str, steps, guidance: Sequence[float]) -> _Run:
        """A fresh run folder ``out/YYYYmmdd-HHMMSS-N-KIND`` and the settings shared by every tab, checked."""
        den = self.denoiser(model)
        seed = _whole(seed, "the seed", 0, 2**63 - 1)
        samplers.get_sampler(sampler)  # an unknown name is an error now, not after the folder exists
        timesteps, steps_flags = self.timesteps(den, steps)
        with self._lock:
            self._count += 1
            folder = self.config.out / f"{time.strftime('%Y%m%d-%H%M%S')}-{self._count}-{kind}"
        folder.mkdir(parents=True, exist_ok=False)
        with self._lock:
            self._unfinished.add(folder)
        title, caption = TITLES[kind]
        return _Run(kind, title, caption, folder, model, den, seed, sampler, timesteps, steps_flags, list(guidance))

    def timesteps(self, den: Denoiser, steps) -> tuple[list[int], list[str]]:
        """The timestep list and its CLI flags: the write-up's stride when ``steps`` is empty or its length,
        else ``--steps N`` evenly spaced."""
        T = den.schedule.T
        default = techniques.default_timesteps(T)
        if steps in (None, "") or int(steps) == len(default):
            return default, []
        steps = int(steps)
        if not 1 <= steps <= T:
            raise FundiffError(f"steps must be in 1..{T} for this model (T = {T}), got {steps}")
        return ts_lib.strided(T, steps=steps), ["--steps", str(steps)]

    def command(self, run: _Run, name: str, *flags: str) -> list[str]:
        """The ``fundiff NAME`` command line that reproduces ``run`` (same model, inputs, seed, steps, threads)."""
        argv = ["fundiff", name, "--model", run.model, *flags, "--seed", str(run.seed), "--out", str(run.folder)]
        argv += run.steps_flags
        argv += ["--sampler", run.sampler] if run.sampler != samplers.default_sampler_of(run.den) else []
        argv += ["--precision", self.config.precision, "--threads", str(torch.get_num_threads())]
        argv += ["--device", self.config.device] if self.config.device != "auto" else []
        if self.config.data_dir and "--index" in flags:
            argv += ["--data-dir", self.config.data_dir]
        return argv

    def finish(self, run: _Run, figure: techniques.Figure, wall_s: float) -> tuple[Path, Path, Path]:
        """Write the run's manifest.json (the tour's format, one section) and index.html; zip the folder.

        Returns (zip, manifest, figure PNG)."""
        with self._lock:
            self._unfinished.discard(run.folder)
        files = [p for p in run.folder.rglob("*") if p.is_file()]
        entry = {
            "id": run.id,
            "part": "A",
            "title": run.title,
            "caption": run.caption,
            "command": shlex.join(run.argv),
            "seed": run.seed,
            "wall_s": round(wall_s, 2),
            "model": run.model,
            "sampler": run.sampler,
            "timesteps": run.timesteps,
            "guidance": run.guidance,
            "numbers": [],
            "note": _precision_note(run.den),
            "figures": [p.relative_to(run.folder).as_posix() for p in figure.paths],
            "files": provenance.hash_files(run.folder, files),
        }
        manifest = provenance.manifest(
            command="fundiff ui (" + run.id + ")", device=run.den.device, seed=run.seed, sampler=run.sampler,
            sizes={}, dataset=self.model_facts(run.model)["dataset"], models={"model": self.model_facts(run.model)},
            sections=[entry], wall_s=wall_s,
        )  # fmt: skip
        manifest_path = report.write_manifest(run.folder, manifest)
        report.write_html(run.folder, manifest)
        archive = run.folder.with_suffix(".zip")
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
            for p in sorted(run.folder.rglob("*")):
                if p.is_file():
                    z.write(p, Path(run.folder.name) / p.relative_to(run.folder))
        return archive, manifest_path, figure.paths[0]

    def play(
        self,
        run: _Run,
        make: Callable[[samplers.StepHook], techniques.Figure],
        *,
        total: int,
        extra: Callable[[techniques.Figure], np.ndarray] | None = None,
        progress=None,
    ) -> Iterator[tuple]:
        """Run ``make(on_step=hook)`` (a figure function, its arguments bound) for ``run``, yielding the page's
        outputs (x0_hat preview, figure, [extra,] downloads, status): previews while it samples, all at the end."""
        skip, start = gr.skip(), time.perf_counter()
        vr = run.den.value_range
        for done, t, x0_hat, figure in stream_steps(make, total=total):
            if figure is None:
                if progress is not None:
                    progress((done, total), desc=f"step {done} of {total}")
                preview = tiles(_unit(x0_hat, vr), nrow=min(len(x0_hat), 8), scale=4)
                status = (
                    f"sampling: step {done} of {total}, t = {t}; the image shows x̂₀, the estimate of the clean image"
                )
                yield preview, skip, *((skip,) if extra else ()), skip, status
                continue
            wall = time.perf_counter() - start
            archive, manifest, png = self.finish(run, figure, wall)
            status = (
                f"done in {wall:.1f} s: {len(run.timesteps)} timesteps, sampler {run.sampler}, seed {run.seed}. "
                f"Files in `{run.folder}`. The same with the CLI:\n\n```\n{shlex.join(run.argv)}\n```"
            )
            extra_out = (extra(figure),) if extra else ()
            yield skip, str(png), *extra_out, [str(archive), str(manifest), str(png)], status


def _precision_note(den: Denoiser) -> str:
    dtype = getattr(den, "autocast_dtype", None)
    if dtype is None and not hasattr(den, "autocast_dtype"):
        return ""
    layout = "channels-last" if getattr(den, "memory_format", None) == torch.channels_last else "contiguous"
    return f"UNet arithmetic: {'bf16 autocast' if dtype == torch.bfloat16 else 'fp32'}, {layout}"


def _prompts(den: Denoiser, text: str) -> list[str]:
    """Comma-separated prompts ("3, seven") checked against the model; empty: the model's default prompts."""
    prompts = [p.strip() for p in (text or "").split(",") if p.strip()]
    for p in prompts:
        den.describe_prompt(p)  # an unknown prompt raises its FundiffError now
    return prompts or list(den.default_prompts)


def _prompt(den: Denoiser, text: str) -> str:
    prompt = (text or "").strip()
    den.describe_prompt(prompt)
    return prompt


def _whole(value, what: str, low: int, high: int) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise FundiffError(f"{what} must be a whole number in {low}..{high}, got {value!r}") from None
    if not low <= n <= high:
        raise FundiffError(f"{what} must be in {low}..{high}, got {n}")
    return n


def copy_upload(upload: str | None, folder: Path) -> Path:
    """The uploaded file copied into the run folder as input.EXT, checked to be an image fundiff reads."""
    if not upload:
        raise FundiffError("no file uploaded: upload a PNG or JPEG (or choose another source)")
    src = Path(upload)
    suffix = src.suffix.lower() if re.fullmatch(r"\.[a-z0-9]{1,5}", src.suffix.lower()) else ".png"
    dest = folder / f"input{suffix}"
    shutil.copyfile(src, dest)
    try:
        images.read_image(dest)
    except FundiffError:
        raise FundiffError(f"the upload {src.name!r} is not an image fundiff can read; upload a PNG or JPEG") from None
    return dest


# -- the tabs' inputs: drawings, uploads, test images, painted masks -----------------------------------
def save_drawing(value: dict | None, folder: Path) -> Path:
    """The sketchpad's drawing (an EditorValue, PIL composite) as folder/input.png; an empty canvas is an error."""
    composite = (value or {}).get("composite")
    if composite is None or int(np.asarray(composite.convert("L")).min()) > 250:
        raise FundiffError("the canvas is empty: draw a digit (or upload an image and choose 'upload')")
    path = folder / "input.png"
    composite.convert("RGB").save(path)
    return path


def painted_mask(value: dict | None, folder: Path, image_size: int) -> Path:
    """The strokes painted over the image (the editor's layers, any colour) as a 0/1 mask of the model's size,
    written to folder/mask.png (white = fill in) the way ``--mask`` reads it; nothing painted is an error."""
    from PIL import Image

    layers = [layer for layer in (value or {}).get("layers") or [] if layer is not None]
    alpha = [np.asarray(layer.convert("RGBA"))[..., 3] > 0 for layer in layers]
    if not any(a.any() for a in alpha):
        raise FundiffError("the mask is empty: paint over the part of the image to fill in (or choose a preset mask)")
    painted = folder / "painted.png"
    Image.fromarray(np.logical_or.reduce(alpha).astype(np.uint8) * 255, "L").save(painted)
    try:
        mask = images.load_mask(painted, image_size=image_size, fit="pad")
    except FundiffError:
        raise FundiffError(
            f"the painted mask covers no pixel at {image_size}x{image_size}: paint a larger region"
        ) from None
    path = folder / "mask.png"
    io.save_png(mask[0], path)
    return path


def model_view(x: Tensor, value_range: tuple[float, float]) -> np.ndarray:
    """What the model sees, x (1,C,S,S), upscaled (nearest, no border) to about CANVAS pixels to paint on:
    (H, W, 3) uint8, so that the painted strokes line up with the image's pixels."""
    big = torch.nn.functional.interpolate(_unit(x, value_range), scale_factor=max(1, CANVAS // x.shape[-1]))[0]
    return io.to_uint8(big.expand(3, -1, -1)).permute(1, 2, 0).numpy()


def build(config: UIConfig) -> gr.Blocks:
    """The page: shared settings (model, sampler, steps, seed) above one tab per technique."""
    app = App(config)
    app.denoiser(config.model)  # a model that cannot load is reported before the server starts
    # delete_cache: gradio's copies of uploads and results older than an hour go, checked hourly
    with gr.Blocks(title="fundiff", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown(
            "# fundiff: fun with diffusion models\nDraw, paint a mask, pick prompts, and watch the model denoise. "
            "Every run writes its figure, images and a manifest (with the CLI command that reproduces it) "
            f"into `{config.out}`."
        )
        with gr.Row():
            model = gr.Dropdown(list(config.models), value=config.model, label="model", scale=3)
            sampler = gr.Radio(
                list(samplers.SAMPLERS), value=default_sampler(app, config.model), label="sampler", scale=2
            )
            steps = gr.Number(
                value=config.steps or len(techniques.default_timesteps(app.denoiser(config.model).schedule.T)),
                precision=0,
                label="steps (35: the write-up's stride; fewer: evenly spaced)",
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
                _sampling_tab(app, shared)
            with gr.Tab("SDEdit", id="sdedit"):
                _sdedit_tab(app, shared, steps)
            with gr.Tab("inpainting", id="inpaint"):
                _inpaint_tab(app, shared, demo)
            with gr.Tab("visual anagrams", id="anagram"):
                _anagram_tab(app, shared)
            with gr.Tab("hybrid images", id="hybrid"):
                _hybrid_tab(app, shared)
    return demo


def default_sampler(app: App, model: str) -> str:
    """The sampler the CLI uses for ``model`` when none is given (heun for a flow-matching model, else ddpm)."""
    return samplers.default_sampler_of(app.denoiser(model))


def _outputs(name: str, extra_label: str | None = None) -> list:
    """The output column every tab has: live x0_hat, the figure, [an extra view,] downloads, and a status line."""
    with gr.Column():
        live = gr.Image(label="x̂₀ while sampling", type="numpy", interactive=False, elem_id=f"{name}-live", height=200)
        figure = gr.Image(label="result", type="filepath", interactive=False, elem_id=f"{name}-result")
        extra = []
        if extra_label:
            extra = [gr.Image(label=extra_label, type="numpy", interactive=False, elem_id=f"{name}-extra")]
        files = gr.File(
            label="download: run zip (figure, images, manifest, index.html), manifest, figure",
            file_count="multiple",
            interactive=False,
            elem_id=f"{name}-files",
        )
        status = gr.Markdown(elem_id=f"{name}-status")
    return [live, figure, *extra, files, status]


def _guard(fn: Callable[..., Iterator], app: App | None = None) -> Callable[..., Iterator]:
    """A tab function whose FundiffError (and any other error) reaches the page as a message, not a traceback;
    a failed run's folder is removed (``app``)."""

    @functools.wraps(fn)
    def guarded(*args, **kwargs):
        try:
            yield from fn(*args, **kwargs)
        except BaseException:
            if app is not None:
                app.discard_unfinished()
            raise

    @functools.wraps(fn)
    def shown(*args, **kwargs):
        try:
            yield from guarded(*args, **kwargs)
        except FundiffError as e:
            raise gr.Error(html.escape(str(e), quote=False), title="fundiff", print_exception=False) from None
        except _Stopped:
            return
        except gr.Error:
            raise
        except Exception as e:  # a bug: say so in one line; the console keeps the traceback
            raise gr.Error(
                html.escape(f"unexpected {type(e).__name__}: {e}", quote=False), title="fundiff: internal error"
            ) from e

    return shown


def _flags(**options) -> list[str]:
    """CLI flags from keywords, in order: i_start=[1, 3] -> ["--i-start", "1", "3"]; prompt="" -> ["--prompt", ""]."""
    flags = []
    for key, value in options.items():
        flags += [f"--{key.replace('_', '-')}", *map(str, value if isinstance(value, (list, tuple)) else [value])]
    return flags


def _common(r: _Run) -> dict:
    """The figure functions' keywords that every tab passes the same way."""
    return dict(timesteps=r.timesteps, sampler=r.sampler, out=r.folder, seed=r.seed)


def _listen(button: gr.Button, fn, inputs: list, outputs: list, api_name: str) -> None:
    """``fn`` on the button's click, in the one sampling slot; progress shows on the result, not on the live x0_hat.
    ``fn``'s FundiffError shows as a message in the page (:func:`_guard`)."""
    button.click(
        _guard(fn, getattr(fn, "args", (None,))[0] if isinstance(fn, functools.partial) else None),
        inputs,
        outputs,
        api_name=api_name,
        concurrency_limit=1,
        concurrency_id=SAMPLING_SLOT,
        show_progress_on=outputs[1],
    )


def _guidance(value: float = DEFAULT_GUIDANCE) -> gr.Slider:
    return gr.Slider(0, 15, value=value, step=0.5, label="CFG scale s (eps = eps_u + s (eps_c - eps_u); 1: none)")


def _n(value: int) -> gr.Slider:
    return gr.Slider(1, 10, value=value, step=1, label="samples")


# -- tab: sampling -----------------------------------------------------------------------------------
def _sampling_tab(app: App, shared: list) -> None:
    with gr.Row():
        with gr.Column():
            prompts = gr.Textbox(label="prompts, comma-separated (class names such as 3, seven; empty: every class)")
            guidance, n = _guidance(), _n(4)
            go = gr.Button("sample", variant="primary", elem_id="sampling-run")
        outputs = _outputs("sampling")
    _listen(go, functools.partial(run_sampling, app), [*shared, prompts, guidance, n], outputs, "sample")


def run_sampling(app: App, model, sampler, steps, seed, prompts, guidance, n, progress=PROGRESS) -> Iterator[tuple]:
    """The sampling tab: techniques.sampling_figure (`fundiff generate`), per prompt without and with CFG."""
    r = app.new_run("sampling", model, seed, sampler, steps, [1.0, float(guidance)])
    prompts, n = _prompts(r.den, prompts), _whole(n, "samples", 1, 64)
    r.argv = app.command(r, "generate", *_flags(prompt=prompts, n=n, guidance=f"{guidance:g}"))
    guided = float(guidance) != 1.0 and any(p.strip() for p in prompts)  # as sampling_figure decides
    make = functools.partial(techniques.sampling_figure, r.den, prompts, n=n, guidance=float(guidance), **_common(r))
    yield from app.play(r, make, total=len(r.timesteps) * (2 if guided else 1), progress=progress)


# -- tab: SDEdit -------------------------------------------------------------------------------------
def sdedit_levels(n_steps: int, T: int) -> list[int]:
    """The write-up's SDEdit i_starts (1, 3, 5, 7, 10, 20 of its 35 steps) at the same fractions of ``n_steps``."""
    n_writeup = len(techniques.default_timesteps(T))
    return sorted({min(n_steps - 1, round(i * n_steps / n_writeup)) for i in techniques.WRITEUP_SDEDIT_STARTS})


def _sdedit_tab(app: App, shared: list, steps: gr.Number) -> None:
    from fundiff.images import FITS

    last = int(steps.value) - 1
    with gr.Row():
        with gr.Column():
            source = gr.Radio(list(SDEDIT_SOURCES), value="drawing", label="edit")
            sketch = gr.Sketchpad(
                label="drawing (dark on light; inverted for the model)",
                type="pil",
                image_mode="RGB",
                canvas_size=(CANVAS, CANVAS),
                brush=gr.Brush(default_size=12, colors=["#000000"], color_mode="fixed"),
                format="png",
                elem_id="sdedit-sketch",
            )
            upload = gr.File(label="or upload an image", type="filepath", elem_id="sdedit-upload")
            fit = gr.Radio(list(FITS), value="ink", label="fit: ink boxes the drawing like MNIST")
            prompt = gr.Textbox(label="prompt ('' : unconditioned)", value="")
            guidance = _guidance()
            mode = gr.Radio(list(SDEDIT_MODES), value=SDEDIT_MODES[0], label="noise levels")
            i_start = gr.Slider(0, last, value=min(10, last), step=1, label="i_start (one level; larger: less noise)")
            go = gr.Button("SDEdit", variant="primary", elem_id="sdedit-run")
        outputs = _outputs("sdedit")
    steps.change(lambda s: gr.Slider(maximum=max(int(s or 1) - 1, 0)), steps, i_start, queue=False)
    inputs = [*shared, source, sketch, upload, fit, prompt, guidance, mode, i_start]
    _listen(go, functools.partial(run_sdedit, app), inputs, outputs, "sdedit")


def run_sdedit(
    app: App, model, sampler, steps, seed, source, sketch, upload, fit, prompt, guidance, mode, i_start,
    progress=PROGRESS,
) -> Iterator[tuple]:  # fmt: skip
    """The SDEdit tab: the drawing or upload saved as input.* and read as `fundiff sdedit --image` reads it,
    then techniques.sdedit_figure at every write-up level (:func:`sdedit_levels`) or one i_start."""
    r = app.new_run("sdedit", model, seed, sampler, steps, [float(guidance)])
    path = copy_upload(upload, r.folder) if source == "upload" else save_drawing(sketch, r.folder)
    den, prompt, n = r.den, _prompt(r.den, prompt), len(r.timesteps)
    x_0 = images.load_image(
        path, channels=den.channels, image_size=den.image_size, value_range=den.value_range, fit=fit, invert="auto"
    ).to(den.device)
    starts = sdedit_levels(n, den.schedule.T) if mode == SDEDIT_MODES[0] else [_whole(i_start, "i_start", 0, n - 1)]
    flags = _flags(image=path, fit=fit, invert="auto", prompt=prompt, i_start=starts, guidance=f"{guidance:g}")
    r.argv = app.command(r, "sdedit", *flags)
    make = functools.partial(  # name: what `fundiff sdedit --image` calls the figure
        techniques.sdedit_figure, den, x_0, i_starts=starts, prompt=prompt, guidance=float(guidance),
        name="handdrawn", **_common(r),
    )  # fmt: skip
    yield from app.play(r, make, total=sum(n - i for i in starts), progress=progress)


# -- tab: inpainting ---------------------------------------------------------------------------------
def _inpaint_tab(app: App, shared: list, demo: gr.Blocks) -> None:
    from fundiff.edits import INPAINT_METHODS
    from fundiff.images import MASK_PRESETS

    with gr.Row():
        with gr.Column():
            with gr.Row():
                source = gr.Radio(list(INPAINT_SOURCES), value="test image", label="image")
                index = gr.Number(value=0, precision=0, minimum=0, label="test image index (MNIST test 0 is a 7)")
            upload = gr.File(label="or upload an image", type="filepath", elem_id="inpaint-upload")
            editor = gr.ImageMask(
                label="paint the region to fill in",
                type="pil",
                sources=(),
                canvas_size=(CANVAS, CANVAS),
                brush=gr.Brush(default_size=20, colors=[("#ff3399", 0.7)], color_mode="fixed"),
                layers=False,
                transforms=(),
                format="png",
                elem_id="inpaint-editor",
            )
            mask_from = gr.Radio(["painted", *MASK_PRESETS], value="painted", label="mask")
            method = gr.Radio(list(INPAINT_METHODS), value="replace", label="method (repaint: RePaint's jumps)")
            with gr.Row():
                jump = gr.Slider(1, 20, value=5, step=1, label="RePaint jump length")
                resample = gr.Slider(1, 10, value=5, step=1, label="RePaint resample")
            prompt = gr.Textbox(label="prompt for the new part ('' : unconditioned)", value="")
            guidance, n = _guidance(), _n(3)
            go = gr.Button("inpaint", variant="primary", elem_id="inpaint-run")
        outputs = _outputs("inpaint")
    show, picked = functools.partial(show_inpaint_image, app), [shared[0], source, index, upload]
    for trigger in (source.change, index.change, upload.change, shared[0].change, demo.load):
        # in the sampling slot: loading a model (and timing its precision) never overlaps a run
        trigger(show, picked, editor, api_name=False, show_progress="hidden", concurrency_id=SAMPLING_SLOT)
    inputs = [*shared, source, index, upload, editor, mask_from, method, jump, resample, prompt, guidance, n]
    _listen(go, functools.partial(run_inpaint, app), inputs, outputs, "inpaint")


def show_inpaint_image(app: App, model, source, index, upload):
    """The editor's background: the image to inpaint as the model sees it. A problem is a warning, not an
    error (it runs when the page opens, e.g. before the dataset is there)."""
    try:
        with _scratch(app) as folder:
            x_0, _ = _inpaint_image(app, model, source, index, upload, folder)
    except FundiffError as e:
        gr.Warning(html.escape(str(e), quote=False), title="fundiff")
        return gr.skip()
    return model_view(x_0, app.denoiser(model).value_range)


def run_inpaint(
    app: App, model, sampler, steps, seed, source, index, upload, editor, mask_from, method, jump, resample, prompt,
    guidance, n, progress=PROGRESS,
) -> Iterator[tuple]:  # fmt: skip
    """The inpainting tab: image and painted mask saved as input.png / mask.png and read as `fundiff inpaint
    --index/--image --mask` reads them (or a preset mask), then techniques.inpaint_figure."""
    r = app.new_run("inpaint", model, seed, sampler, steps, [float(guidance)])
    den, prompt, n = r.den, _prompt(r.den, prompt), _whole(n, "samples", 1, 64)
    x_0, image_flags = _inpaint_image(app, model, source, index, upload, r.folder)
    if mask_from == "painted":
        mask_path, size = painted_mask(editor, r.folder, den.image_size), den.image_size
        mask, mask_flags = images.load_mask(mask_path, image_size=size, like=(size, size)), _flags(mask=mask_path)
    else:
        mask, mask_flags = images.mask_preset(mask_from, den.image_size), _flags(mask_preset=mask_from)
    jump, resample = int(jump), int(resample)
    repaint = _flags(jump_length=jump, resample=resample) if method == "repaint" else []
    flags = _flags(method=method) + repaint + _flags(prompt=prompt, n=n, guidance=f"{guidance:g}")
    r.argv = app.command(r, "inpaint", *image_flags, *mask_flags, *flags)
    walk = edits.repaint_walk(len(r.timesteps), jump, resample) if method == "repaint" else None
    total = len(r.timesteps) if walk is None else sum(b < a for a, b in zip(walk, walk[1:]))
    make = functools.partial(
        techniques.inpaint_figure, den, x_0, mask.to(x_0.device), n=n, method=method, jump_length=jump,
        resample=resample, prompt=prompt, guidance=float(guidance), **_common(r),
    )  # fmt: skip
    yield from app.play(r, make, total=total, progress=progress)


class _scratch:
    """A throw-away folder under the app's ``out`` (for the editor's preview image), removed afterwards."""

    def __init__(self, app: App) -> None:
        self.folder = app.config.out / ".preview" / f"{threading.get_ident()}-{time.monotonic_ns()}"

    def __enter__(self) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        return self.folder

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _inpaint_image(app: App, model: str, source: str, index, upload, folder: Path) -> tuple[Tensor, list[str]]:
    """The image to inpaint (1,C,S,S) in the model's range, as folder/input.png, and the CLI flags that read it.

    A test image is saved as it is (uint8, the model's size: exact; the CLI's ``--index``). An upload is
    brought to the model's format (pad, auto-invert) and saved at that size, so the mask is painted on what
    the model sees and ``--image input.png --invert never`` reads the very same pixels back.
    """
    den, path = app.denoiser(model), folder / "input.png"
    if source == "upload":
        raw = copy_upload(upload, folder)
        x = images.load_image(raw, channels=den.channels, image_size=den.image_size, value_range=den.value_range)
        io.save_png(_unit(x, den.value_range)[0], path)
        flags = ["--image", str(path), "--invert", "never"]
    else:
        x_test = _test_images(app, model)
        i = _whole(index, "the test image index", 0, len(x_test) - 1)
        io.save_png(x_test[i : i + 1].float().div(255), path)
        flags = ["--index", str(i)]
    x_0 = images.load_image(
        path, channels=den.channels, image_size=den.image_size, value_range=den.value_range, invert="never"
    )
    return x_0.to(den.device), flags


def _test_images(app: App, model: str) -> Tensor:
    """The test split (N,H,W) uint8 of the dataset the model was trained on."""
    from fundiff import data
    from fundiff.checkpoints import load_config

    den = app.denoiser(model)
    try:
        dataset = runs.dataset_of(load_config(runs.resolve(model)))
    except FundiffError:
        raise FundiffError(f"{model} has no test dataset to take an image from; choose 'upload'") from None
    x_test, _ = data.load_split(dataset, app.config.data_dir, train=False)
    if x_test.shape[-1] != den.image_size or den.channels != 1:
        raise FundiffError(f"{dataset}'s test images do not fit {model}; choose 'upload'")
    return x_test


# -- tab: visual anagrams ----------------------------------------------------------------------------
def _anagram_tab(app: App, shared: list) -> None:
    with gr.Row():
        with gr.Column():
            with gr.Row():
                first = gr.Textbox(value="6", label="prompt seen as is")
                second = gr.Textbox(value="9", label="prompt seen under the view")
            view = gr.Dropdown(view_specs(), value="rot180", label="view", allow_custom_value=True)
            guidance, n = _guidance(), _n(4)
            go = gr.Button("make anagrams", variant="primary", elem_id="anagram-run")
        outputs = _outputs("anagram", "both orientations: as is (top), under the view (bottom)")
    _listen(go, functools.partial(run_anagram, app), [*shared, first, second, view, guidance, n], outputs, "anagram")


def run_anagram(
    app: App, model, sampler, steps, seed, first, second, view, guidance, n, progress=PROGRESS
) -> Iterator[tuple]:
    """The anagram tab: techniques.anagram_figure with the identity for the first prompt and ``view`` for the
    second; the samples shown large as they are and under the view."""
    r = app.new_run("anagram", model, seed, sampler, steps, [float(guidance)])
    den, n, v = r.den, _whole(n, "samples", 1, 64), get_view(view)
    prompts = [_prompt(den, first), _prompt(den, second)]
    r.argv = app.command(r, "anagram", *_flags(prompts=prompts, view=view, n=n, guidance=f"{guidance:g}"))
    make = functools.partial(
        techniques.anagram_figure, den, prompts, ["identity", v], n=n, guidance=float(guidance), **_common(r)
    )

    def both(fig: techniques.Figure) -> np.ndarray:
        x = fig.images["x_0"]
        return tiles(_unit(torch.cat([x, v.view_image(x, den.value_range)]), den.value_range), nrow=n, scale=6)

    yield from app.play(r, make, total=len(r.timesteps), extra=both, progress=progress)


# -- tab: hybrid images ------------------------------------------------------------------------------
def _hybrid_tab(app: App, shared: list) -> None:
    d = techniques.defaults_for(app.denoiser(app.config.model))  # the start model's filter (per dataset)
    with gr.Row():
        with gr.Column():
            with gr.Row():
                low = gr.Textbox(value=d.hybrid_prompts[0], label="seen from afar (low frequencies)")
                high = gr.Textbox(value=d.hybrid_prompts[1], label="seen up close (high frequencies)")
            with gr.Row():
                kernel = gr.Slider(1, 33, value=d.hybrid_kernel_size, step=2, label="filter kernel size (odd)")
                sigma = gr.Slider(0.25, 8, value=d.hybrid_sigma, step=0.25, label="filter sigma (pixels)")
            guidance, n = _guidance(), _n(4)
            go = gr.Button("make hybrids", variant="primary", elem_id="hybrid-run")
        outputs = _outputs("hybrid", "up close (large) and from afar (small)")
    inputs = [*shared, low, high, kernel, sigma, guidance, n]
    _listen(go, functools.partial(run_hybrid, app), inputs, outputs, "hybrid")


def run_hybrid(
    app: App, model, sampler, steps, seed, low, high, kernel, sigma, guidance, n, progress=PROGRESS
) -> Iterator[tuple]:
    """The hybrid tab: techniques.hybrid_figure; the hybrids shown large (up close) and small (from afar)."""
    r = app.new_run("hybrid", model, seed, sampler, steps, [float(guidance)])
    den, n, kernel, sigma = r.den, _whole(n, "samples", 1, 64), int(kernel), float(sigma)
    low, high = _prompt(den, low), _prompt(den, high)
    flags = _flags(low=low, high=high, kernel_size=kernel, sigma=f"{sigma:g}", n=n, guidance=f"{guidance:g}")
    r.argv = app.command(r, "hybrid", *flags)
    make = functools.partial(
        techniques.hybrid_figure, den, low, high, kernel_size=kernel, sigma=sigma, n=n, guidance=float(guidance),
        **_common(r),
    )  # fmt: skip

    def sizes(fig: techniques.Figure) -> np.ndarray:
        return near_and_far(_unit(fig.images["x_0"], den.value_range))

    yield from app.play(r, make, total=len(r.timesteps), extra=sizes, progress=progress)


# -- serving -----------------------------------------------------------------------------------------
def launch(demo: gr.Blocks, config: UIConfig, *, host: str = "127.0.0.1", port: int | None = None) -> str:
    """Serve ``demo`` on host:port (port None: the first free one from 7860) in background threads, with one
    queue slot for sampling, no analytics, no share link, no monitoring, no MCP server and no web fonts.

    Returns the local URL; ``demo.block_thread()`` waits (until Ctrl-C), ``demo.close()`` stops it.
    Every file under ``config.out`` can be downloaded, so it must not be (or contain) the working folder, the
    home folder or /."""
    out = config.out.resolve()
    for broad in (Path.cwd().resolve(), Path.home().resolve(), Path(out.anchor)):
        if out == broad or out in broad.parents:
            raise FundiffError(
                f"--out {config.out} would let the page serve every file under {out}; give a folder of its own "
                "(default out/ui)"
            )
    config.out.mkdir(parents=True, exist_ok=True)
    demo.queue(default_concurrency_limit=1)
    try:
        _, url, _ = demo.launch(
            server_name=host,
            server_port=port,
            share=False,
            inbrowser=False,
            prevent_thread_lock=True,
            allowed_paths=[str(config.out.resolve())],
            enable_monitoring=False,
            mcp_server=False,
            ssr_mode=False,
            quiet=True,
            show_error=False,
            max_file_size="20mb",
            footer_links=[],
            run_history=False,
            theme=gr.themes.Default(font=SYSTEM_FONTS, font_mono=["ui-monospace", "monospace"]),
        )
    except OSError as e:  # e.g. the port is taken
        raise FundiffError(
            f"cannot serve on {host}:{port or 'a free port from 7860'}: {e}; pick another --port"
        ) from None
    return url
