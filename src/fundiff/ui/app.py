"""The app's state and services: its config, loaded models, run folders, the worker that streams x0_hat,
the reproducing command, manifests and zips."""

from __future__ import annotations

import queue
import shutil
import threading
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import gradio as gr
import numpy as np
import torch
from torch import Tensor

from fundiff import provenance, samplers, specs, techniques
from fundiff import timesteps as ts_lib
from fundiff.backends import runs
from fundiff.denoisers import Denoiser
from fundiff.errors import FundiffError
from fundiff.tour import report
from fundiff.ui.inputs import whole
from fundiff.ui.pictures import _unit, tiles

PREVIEW_EVERY_S = 0.25  # at most this often the page gets a new x0_hat preview


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
    notice: str = ""  # a warning shown at the top of the page (e.g. that it is served beyond this machine)


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


# -- running a figure in a worker, streaming x0_hat --------------------------------------------------
class Stopped(Exception):
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
            raise Stopped
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
    steps: int | None  # --steps of the reproducing command (None: the default timesteps)
    guidance: list[float] = field(default_factory=list)  # the CFG scales the run applies
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
        self._kept: dict[tuple, object] = {}
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

    def kept(self, key: tuple, make: Callable[[], object]):
        """``make()``, made once per ``key`` for the app's life: what every run reads again (a test split)."""
        if key not in self._kept:
            value = make()
            with self._lock:
                self._kept.setdefault(key, value)
        return self._kept[key]

    def model_facts(self, model: str) -> dict:
        """The manifest's facts of a model, as the tour records them (provenance.model_facts)."""
        if model not in self._facts:
            folder = runs.resolve(model)
            T = self.denoiser(model).schedule.T
            self._facts[model] = provenance.model_facts(model, folder, fallback_T=T)
        return self._facts[model]

    def new_run(self, kind: str, model: str, seed, sampler: str, steps) -> _Run:
        """A fresh run folder ``out/YYYYmmdd-HHMMSS-N-KIND`` and the settings shared by every tab, checked."""
        den = self.denoiser(model)
        seed = whole(seed, "the seed", 0, 2**63 - 1)
        samplers.get_sampler(sampler)  # an unknown name is an error now, not after the folder exists
        timesteps, steps = self.timesteps(den, steps)
        with self._lock:
            self._count += 1
            folder = self.config.out / f"{time.strftime('%Y%m%d-%H%M%S')}-{self._count}-{kind}"
        folder.mkdir(parents=True, exist_ok=False)
        with self._lock:
            self._unfinished.add(folder)
        title, caption = TITLES[kind]
        return _Run(kind, title, caption, folder, model, den, seed, sampler, timesteps, steps)

    def timesteps(self, den: Denoiser, steps) -> tuple[list[int], int | None]:
        """The timestep list and the --steps that gives it: the model's default (fundiff.timesteps.for_model: 35
        steps, a course-flow model's every step) when ``steps`` is empty or its length (no flag), else ``steps``
        evenly spaced (fundiff.timesteps.for_model: a few-step student's own spacing)."""
        T = den.schedule.T
        default = ts_lib.for_model(den)
        if steps in (None, ""):
            return default, None
        steps = whole(steps, "steps", 1, T)
        return (default, None) if steps == len(default) else (ts_lib.for_model(den, steps=steps), steps)

    def command(self, run: _Run, spec, given: dict, input_flags: Sequence[str] = ()) -> list[str]:
        """The ``fundiff NAME`` command line that reproduces ``run`` (specs.technique_command: same model, inputs,
        parameters, seed, steps, sampler, precision, threads)."""
        options = ["--precision", self.config.precision, "--threads", str(torch.get_num_threads())]
        options += ["--device", self.config.device] if self.config.device != "auto" else []
        if self.config.data_dir and "--index" in input_flags:
            options += ["--data-dir", self.config.data_dir]
        sampler = run.sampler if run.sampler != samplers.default_sampler_of(run.den) else None
        return specs.technique_command(
            spec, run.model, given, inputs=input_flags, seed=run.seed, out=str(run.folder), steps=run.steps,
            sampler=sampler, options=options,
        )  # fmt: skip

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
            "command": provenance.command_line(run.argv),
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
        nrow: int | None = None,
    ) -> Iterator[tuple]:
        """Run ``make(on_step=hook)`` (a figure function, its arguments bound) for ``run``, yielding the page's
        outputs (x0_hat preview, figure, [extra,] downloads, status): previews while it samples, all at the end.

        Every step is also recorded: the run's sampling animation (fundiff.animation, ``nrow`` cells per row, as
        ``fundiff NAME --animate`` writes it) is saved beside the figure and offered for download."""
        from fundiff.animation import Recorder

        skip, start = gr.skip(), time.perf_counter()
        vr = run.den.value_range
        recorder = Recorder(vr)

        def recorded(on_step: samplers.StepHook) -> techniques.Figure:
            def both(i: int, t: int, t_prev: int, x_prev: Tensor, x0_hat: Tensor) -> None:
                on_step(i, t, t_prev, x_prev, x0_hat)  # first: it stops the run when the page went away
                recorder(i, t, t_prev, x_prev, x0_hat)

            figure = make(on_step=both)
            gif = recorder.save(Path(figure.paths[0]).with_suffix(".gif"), nrow=nrow)
            return replace(figure, paths=(*figure.paths, gif))

        for done, t, x0_hat, figure in stream_steps(recorded, total=total):
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
                f"Files in `{run.folder}`. The same with the CLI:\n\n```\n{provenance.command_line(run.argv)}\n```"
            )
            extra_out = (extra(figure),) if extra else ()
            downloads = [str(archive), str(manifest), str(png), str(figure.paths[-1])]  # the last: the animation
            yield skip, str(png), *extra_out, downloads, status


def _precision_note(den: Denoiser) -> str:
    """How the model computes, from its declared traits (autocast, memory layout)."""
    traits = den.traits
    arithmetic = "bf16 autocast" if traits.autocast_dtype == torch.bfloat16 else "the weights' dtype, no autocast"
    return f"arithmetic: {arithmetic}, {'channels-last' if traits.channels_last else 'contiguous'}"
