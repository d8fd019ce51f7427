"""Running the tour: each section into OUT/sections/ID, resuming complete ones, the manifest and the report."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

import fundiff
from fundiff import DEFAULT_SEED, provenance
from fundiff.atomic import atomic_write_json
from fundiff.data import CLASS_DATASETS
from fundiff.devices import resolve_device
from fundiff.errors import FundiffError
from fundiff.outputs import check_folder, folder_lock
from fundiff.tour import report
from fundiff.tour.retrain import train_part_b
from fundiff.tour.sections import SECTION_IDS, SECTIONS
from fundiff.tour.state import CHOICES, FULL, PART_B_MODELS, QUICK, TEXT_MODEL, Section, TourState


@dataclass(frozen=True)
class TourResult:
    """What a tour did: the report, its manifest, and which sections ran or were complete already."""

    index: Path
    manifest: dict
    ran: tuple[str, ...]
    skipped: tuple[str, ...]


# -- running sections, resuming ----------------------------------------------------------------------
def _key(t: TourState, sec: Section) -> dict:
    """Everything a section's outputs depend on (as JSON reads it back): a saved entry with another key is stale."""
    key = {
        "fundiff": fundiff.__version__,
        "section": sec.id,
        "model_sha256": t.model_facts[sec.role]["sha256"],
        "seed": t.seed,
        "sizes": asdict(t.sizes),
        "sampler": t.sampler,
        "choices": asdict(t.choices),
        "threads": torch.get_num_threads(),
        "device": str(t.device),
    }
    return json.loads(json.dumps(key))


def _complete(t: TourState, sec: Section, entry_path: Path) -> dict | None:
    """The saved entry of ``sec`` when it matches this run and every file still has its hash, else None."""
    if not entry_path.is_file():
        return None
    try:
        entry = json.loads(entry_path.read_text())
    except (OSError, ValueError):
        return None
    if entry.get("key") != _key(t, sec) or not entry.get("files"):
        return None
    if not set(entry.get("figures", [])) <= set(entry["files"]):
        return None
    return entry if provenance.files_intact(t.out, entry["files"]) else None


def _run_section(t: TourState, sec: Section) -> dict:
    """Run one section into OUT/sections/ID (emptied first) and write its entry atomically; on any failure the
    folder is removed again."""
    folder = t.out / "sections" / sec.id
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        return _write_section(t, sec, folder)
    except BaseException:  # a full disk, Ctrl-C, an error: no half-written section stays (the earlier ones do)
        shutil.rmtree(folder, ignore_errors=True)
        try:
            folder.parent.rmdir()  # sections/, when this was its first
        except OSError:
            pass
        raise


def _write_section(t: TourState, sec: Section, folder: Path) -> dict:
    start = time.perf_counter()
    made = sec.make(t, folder)
    wall = time.perf_counter() - start
    files = [p for p in folder.rglob("*") if p.is_file() and p.name != "section.json"]
    entry = {
        "key": _key(t, sec),
        "id": sec.id,
        "part": sec.part,
        "title": sec.title,
        "caption": sec.caption,
        "command": provenance.command_line(made.argv),
        "seed": t.seed,
        "wall_s": round(wall, 2),
        "model": t.names[sec.role],
        "sampler": t.sampler_for(t.denoiser(sec.role)) if made.timesteps is not None else None,
        "timesteps": made.timesteps,
        "guidance": made.guidance,
        "numbers": [list(row) for row in made.numbers + t.card_numbers(sec.role)],
        "note": made.note,
        "figures": [Path(p).relative_to(t.out).as_posix() for p in made.figures],
        "files": provenance.hash_files(t.out, files),
    }
    atomic_write_json(folder / "section.json", entry)
    return entry


# -- the manifest ------------------------------------------------------------------------------------
def _manifest(t: TourState, entries: list[dict], command: str, wall_s: float) -> dict:
    """manifest.json's content (provenance.manifest) for the entries run so far."""
    sampler = t.sampler or ", ".join(sorted({e["sampler"] for e in entries if e.get("sampler")})) or None
    return provenance.manifest(
        command=command, device=t.device, seed=t.seed, sampler=sampler, sizes=asdict(t.sizes), dataset=t.dataset,
        models=t.model_facts, sections=entries, wall_s=wall_s,
    )  # fmt: skip


# -- the tour ------------------------------------------------------------------------------------------
def _resolve_class_model(model: str | None, dataset: str | None) -> tuple[str, str]:
    """(Part A's model, its dataset) from --model / --dataset, with one-line errors for what cannot work."""
    from fundiff.backends import runs
    from fundiff.checkpoints import load_config

    if dataset is not None and dataset not in CLASS_DATASETS:
        raise FundiffError(f"unknown dataset {dataset!r}; choose one of {', '.join(CLASS_DATASETS)}")
    model = model or CHOICES[dataset or "mnist"].model
    from fundiff.backends.deepfloyd import is_hub_id

    path = Path(model)
    if is_hub_id(model) or (path.is_dir() and runs.backend_for(path).name != "fundiff"):
        raise FundiffError(
            f"{model} is not a fundiff model folder or shipped name; the tour runs on fundiff's own models for "
            "now (DeepFloyd IF works with the Part A commands): pass a shipped name (mnist-class, fashion-class) "
            "or a `fundiff train class` run"
        )
    cfg = load_config(runs.resolve(model))
    kind = cfg.get("model", {}).get("kind")
    if kind != "class":
        raise FundiffError(
            f"{model} is a {kind!r} model; the tour's Part A needs a class-conditioned model (`fundiff train class`)"
        )
    own = cfg.get("train", {}).get("dataset", "mnist")
    if dataset is not None and dataset != own:
        raise FundiffError(f"{model} was trained on {own}, not {dataset}; drop --dataset or pass a {dataset} model")
    if own not in CHOICES:
        raise FundiffError(f"{model} was trained on {own!r}; the tour knows {', '.join(CHOICES)}")
    return model, own


def run_tour(
    out: str | Path = "out/tour",
    *,
    model: str | None = None,
    dataset: str | None = None,
    train: str | None = None,
    time_model: str | None = None,
    denoiser_model: str | None = None,
    text_model: str | None = None,
    fast_model: str | None = None,
    seed: int = DEFAULT_SEED,
    sampler: str | None = None,
    device: str = "auto",
    quick: bool = False,
    sections: Sequence[str] | None = None,
    data_dir: str | None = None,
    log: Callable[[str], None] = print,
) -> TourResult:
    """Run the write-up's sections in order into ``out`` and write ``out/index.html`` and ``out/manifest.json``.

    model: Part A's class-conditioned model (shipped name or run folder; default ``mnist-class``, or
    ``fashion-class`` for dataset "fashion-mnist"); it is also Part B's class model unless ``train``
    names a preset (see ``fundiff.training.PRESETS``) to train a denoiser, a time and a class model
    first. time_model / denoiser_model: Part B's (default: the shipped ``mnist-time``, ``mnist-denoiser``);
    text_model: the text sections' text-to-image model (default: the shipped ``emoji``); fast_model: the few-step
    student's section's (default: the shipped student of the dataset's class model, ``mnist-class-fast``).
    quick: the small :data:`QUICK` sizes (tests). sections: a subset of :data:`SECTION_IDS` (run in
    tour order; the report and manifest then hold only those).
    Uses torch's current thread count (the CLI sets it from --threads). Sections complete from an
    earlier run with the same settings are skipped (``TourResult.skipped``). ``out`` is checked before
    any work and locked while the tour runs (a second tour into it stops at once); a section that
    fails leaves no files, the sections before it stay complete.
    """
    from fundiff.samplers import get_sampler

    start = time.perf_counter()
    check_folder(out)  # before any work
    if sampler is not None:  # None: each model's own (heun for a flow-matching model, else ddpm)
        get_sampler(sampler)  # unknown names fail here, before any work
    unknown = set(sections or ()) - set(SECTION_IDS)
    if unknown:
        raise FundiffError(f"unknown section(s) {', '.join(sorted(unknown))}; choose from {', '.join(SECTION_IDS)}")
    model, dataset = _resolve_class_model(model, dataset)
    out, dev = Path(out), resolve_device(device)
    models = {"class": model, "class-b": model, **PART_B_MODELS, "emoji": text_model or TEXT_MODEL}
    models["fast"] = fast_model or CHOICES[dataset].fast
    models.update({k: v for k, v in (("time", time_model), ("denoiser", denoiser_model)) if v})
    chosen = [s for s in SECTIONS if sections is None or s.id in sections]
    if not chosen:
        raise FundiffError(f"no sections chosen; choose from {', '.join(SECTION_IDS)}")
    with folder_lock(out, doing="written"):  # one tour per folder at a time
        return _tour(out, models, model, dataset, train, seed, sampler, dev, quick, chosen, data_dir, log, start)


def _tour(out, models, model, dataset, train, seed, sampler, dev, quick, chosen, data_dir, log, start) -> TourResult:
    """run_tour's work, with ``out`` locked: Part B's training when asked, then the sections."""
    if train is not None:
        models.update(train_part_b(out, train, dataset, seed=seed, device=dev, data_dir=data_dir, log=log))
    state = TourState(
        out,
        models,
        dataset=dataset,
        sizes=QUICK if quick else FULL,
        seed=seed,
        sampler=sampler,
        device=dev,
        data_dir=data_dir,
    )
    log(f"fundiff tour: {len(chosen)} sections into {out} on {model} ({dev}, {torch.get_num_threads()} threads)")
    result = _run_sections(state, chosen, _tour_command(out, model, dataset, train, sampler), start, log)
    log(f"report: {result.index} ({time.perf_counter() - start:.0f} s)")
    return result


def _run_sections(t: TourState, chosen: list[Section], command: str, start: float, log) -> TourResult:
    """Run or skip each section in order, rewriting manifest.json and index.html after each one."""
    entries, ran, skipped = [], [], []
    for i, sec in enumerate(chosen, 1):
        entry = _complete(t, sec, t.out / "sections" / sec.id / "section.json")
        if entry is None:
            entry = _run_section(t, sec)
            ran.append(sec.id)
            log(f"[{i}/{len(chosen)}] {sec.title}: {entry['wall_s']:.1f} s, {len(entry['files'])} files")
        else:
            entry.update(id=sec.id, part=sec.part, title=sec.title, caption=sec.caption)  # wording may have changed
            skipped.append(sec.id)
            log(f"[{i}/{len(chosen)}] {sec.title}: complete from an earlier run, skipped")
        entries.append(entry)
        manifest = _manifest(t, entries, command, time.perf_counter() - start)
        report.write_manifest(t.out, manifest)
        index = report.write_html(t.out, manifest)
    return TourResult(index, manifest, tuple(ran), tuple(skipped))


def _tour_command(out: Path, model: str, dataset: str, train: str | None, sampler: str | None) -> str:
    argv = ["tour", "--out", str(out), "--model", model, "--dataset", dataset]
    argv += ["--train", train] if train else []
    argv += ["--sampler", sampler] if sampler else []
    return "fundiff " + provenance.portable_command(argv + ["--threads", str(torch.get_num_threads())])
