"""Finding a trained model (run folder or shipped name) and loading it as a Denoiser, by backend.

A *backend* knows one kind of model folder: :class:`Backend` ``(name, detects(path) -> bool,
load(path, *, device, precision) -> Denoiser)``. :func:`load_denoiser` resolves the
model, asks each registered backend in order whether it recognises the folder and loads it
with the first that does; a folder no backend recognises is an error (no guessing). fundiff's
own run folders (``config.json`` in the fundiff-run format) are the first backend; diffusers
pipeline folders (``model_index.json``: DeepFloyd IF stage I, fundiff.backends.deepfloyd) the
second. A backend may also ``fetch`` names that are no local folder (IF's hub ids such as
``DeepFloyd/IF-I-XL-v1.0``, from the HF cache or the hub) and take options of its own
(``load_denoiser(..., embeddings=FILE, offload=True)`` for IF). Add a backend with
:func:`register_backend`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from fundiff.denoisers import Denoiser, UNetDenoiser
from fundiff.errors import FundiffError
from fundiff.models import SHIPPED_DIR, load_model  # SHIPPED_DIR: the models that ship with fundiff, by name
from fundiff.models.unet import UNet
from fundiff.schedules import NoiseSchedule


def shipped_names() -> list[str]:
    return (
        sorted(p.name for p in SHIPPED_DIR.iterdir() if (p / "config.json").is_file()) if SHIPPED_DIR.is_dir() else []
    )


def _is_bare_name(model: str) -> bool:
    """A name like "mnist-class": no directory separator and not "." / ".." relative."""
    return "/" not in model and "\\" not in model and not model.startswith(".")


def resolve(model: str | Path) -> Path:
    """The folder of ``model``: a shipped model's name, or a path to a model folder.

    Rule: a *bare* name (no "/" and not starting with ".") that names a shipped model always
    means the shipped model, even if a folder of that name exists in the current directory, so
    that a command line (in a README, a model card) means the same thing wherever it runs.
    Reach such a local folder as a path: ``./mnist-class``. Anything else is a path; a
    ``Path`` object is always a path. A string that is no folder is offered to the backends'
    ``fetch`` (a hub id such as ``DeepFloyd/IF-I-XL-v1.0`` gives its local snapshot folder).
    """
    text = str(model)
    if not isinstance(model, Path) and _is_bare_name(text) and (SHIPPED_DIR / text / "config.json").is_file():
        return SHIPPED_DIR / text
    path = Path(model)
    if path.is_dir():
        return path
    if not isinstance(model, Path):
        for backend in _BACKENDS:
            fetched = backend.fetch(text) if backend.fetch is not None else None
            if fetched is not None:
                return fetched
    names = shipped_names()
    hint = f"; shipped models: {', '.join(names)}" if names else ""
    raise FundiffError(f"model {text!r} not found: give a run folder written by `fundiff train`{hint}")


def default_output(model: str | Path, name: str) -> Path:
    """Where a command writes about ``model`` by default: RUN/NAME for a run folder, out/MODEL/NAME for a
    shipped model (never inside the installed package, which may be read-only or shared)."""
    folder = resolve(model)
    if folder.resolve().is_relative_to(SHIPPED_DIR.resolve()):
        return Path("out") / folder.name / name
    return folder / name


def dataset_of(cfg: dict) -> str:
    """The dataset a run was trained on (train.dataset); a missing or unknown one is an error."""
    from fundiff.data import DATASETS

    dataset = cfg.get("train", {}).get("dataset")
    if dataset not in DATASETS:
        raise FundiffError(
            f"the run's config.json names dataset {dataset!r}, which fundiff does not know "
            f"(known: {', '.join(DATASETS)}); the config is incomplete or corrupt"
        )
    return dataset


def class_names_of(cfg: dict) -> tuple[str, ...]:
    """The class names of a run's dataset (for prompts and grid labels); an unknown dataset is an error."""
    from fundiff.data import CLASS_NAMES

    return tuple(CLASS_NAMES.get(dataset_of(cfg), ()))


def schedule_of(cfg: dict, where: str | Path = "config.json") -> NoiseSchedule:
    """The noise schedule a run was trained with (train.beta_schedule, train.T); both must be there.

    A flow-matching run (train.objective "flow") samples on the VP grid of T flow times (flow.schedule); a
    "course-flow" run on the grid that reaches pure noise (flow.schedule(T, endpoint=True)).
    """
    train = cfg.get("train", {})
    from fundiff import flow

    if flow.is_flow(train.get("objective", "eps")) and "T" in train:
        return flow.schedule(int(train["T"]), endpoint=train["objective"] == "course-flow")
    missing = [k for k in ("beta_schedule", "T") if k not in train]
    if missing:
        raise FundiffError(
            f"{where} is incomplete or corrupt: its 'train' section has no {' or '.join(missing)}; "
            "retrain or restore the run folder"
        )
    return NoiseSchedule.from_name(train["beta_schedule"], int(train["T"]))


def load(model: str | Path, *, device: str | torch.device = "cpu", ema: bool = True) -> tuple[UNet, dict]:
    """(UNet in eval mode, run config) for a fundiff run folder or shipped name."""
    return load_model(resolve(model), device=device, ema=ema)


# -- backends -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Backend:
    """One kind of model folder: how to recognise it and how to load it as a Denoiser."""

    name: str  # shown in errors
    detects: Callable[[Path], bool]  # does this folder hold a model of this backend? (cheap: file checks)
    load: Callable[..., Denoiser]  # load(path, *, device, precision, **options) -> Denoiser (devices.PRECISIONS)
    fetch: Callable[[str], Path | None] | None = None  # a name that is no local folder -> its folder, or None


def _is_fundiff_run(path: Path) -> bool:
    from fundiff.checkpoints import FORMAT

    try:
        return json.loads((path / "config.json").read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


INFER_TIMING_BATCH = 64  # images per timed forward when choosing the precision for sampling


def _load_fundiff(path: Path, *, device: torch.device | str, precision: str, **options) -> Denoiser:
    """A fundiff time- or class-conditioned run as a UNetDenoiser with its own noise schedule.

    ``precision`` "auto" times fp32 / bf16 autocast with and without channels_last for this
    model on this machine once (cached, see devices.choose_precision); "fp32"/"bf16" force it.
    """
    from fundiff.devices import choose_precision
    from fundiff.models.unet import example_inputs

    if options:
        raise FundiffError(f"{', '.join(sorted(options))} apply to DeepFloyd IF models, not to the fundiff run {path}")
    net, cfg = load_model(path, device=device)
    kind = net.config.kind
    if kind not in ("time", "class"):
        raise FundiffError(f"{path} is a {kind!r} model; this command needs a 'time' or 'class' model")
    schedule = schedule_of(cfg, path / "config.json")
    text = None
    if "text" in cfg:
        from fundiff.text import TextEncoder

        text = TextEncoder.from_dict(cfg["text"])
    names = class_names_of(cfg) if kind == "class" and text is None else ()
    choice = choose_precision(
        net,
        lambda: example_inputs(net.config, INFER_TIMING_BATCH),
        torch.device(device),
        mode="infer",
        precision=precision,
    )
    return UNetDenoiser(
        net,
        schedule,
        class_names=names,
        autocast_dtype=choice.dtype,
        channels_last=choice.channels_last,
        objective=cfg["train"].get("objective", "eps"),
        dataset=cfg["train"].get("dataset"),
        text=text,
        student=cfg.get("distill"),
    )


def _is_diffusers_pipeline(path: Path) -> bool:
    return (path / "model_index.json").is_file()


def _load_diffusers(path: Path, **options) -> Denoiser:
    """A diffusers pipeline folder: DeepFloyd IF stage I (fundiff.backends.deepfloyd.load; options: embeddings,
    offload). diffusers and transformers are imported only there."""
    from fundiff.backends import deepfloyd

    return deepfloyd.load(path, **options)


def _fetch_diffusers(model: str) -> Path | None:
    from fundiff.backends import deepfloyd

    return deepfloyd.fetch(model)


_BACKENDS: list[Backend] = [
    Backend("fundiff", _is_fundiff_run, _load_fundiff),
    Backend("diffusers", _is_diffusers_pipeline, _load_diffusers, _fetch_diffusers),
]


def register_backend(backend: Backend, *, first: bool = False) -> Backend:
    """Make ``backend`` available to :func:`load_denoiser` (asked last, or first with ``first``)."""
    if any(b.name == backend.name for b in _BACKENDS):
        raise FundiffError(f"a backend named {backend.name!r} is already registered")
    _BACKENDS.insert(0 if first else len(_BACKENDS), backend)
    return backend


def backend_names() -> list[str]:
    return [b.name for b in _BACKENDS]


def backend_for(path: Path) -> Backend:
    """The first registered backend that recognises the folder ``path``; none is an error."""
    for backend in _BACKENDS:
        if backend.detects(path):
            return backend
    if (path / "config.json").is_file() and not (path / "model_index.json").is_file():
        from fundiff.checkpoints import read_json

        read_json(path / "config.json")  # a config.json that is not valid JSON says so, with its line
    raise FundiffError(
        f"{path} holds no model fundiff can load (no fundiff config.json, no model_index.json); "
        "give a run folder written by `fundiff train` or a shipped model name"
    )


def load_denoiser(
    model: str | Path,
    *,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    conditional: bool | None = None,
    **options,
) -> Denoiser:
    """The model (shipped name or folder, see :func:`resolve`) as a Denoiser, by its folder's backend.

    ``precision`` "fp32" (default), "bf16" or "auto" (the fastest here, measured once and cached).
    ``conditional=True`` requires a model that takes prompts (classifier-free guidance applies),
    ``False`` one that does not; None accepts either. ``options`` go to the backend (DeepFloyd IF:
    ``embeddings=FILE``, ``offload=True``); a backend refuses options it does not take.
    """
    path = resolve(model)
    den = backend_for(path).load(path, device=device, precision=precision, **options)
    if conditional is not None and den.conditional != conditional:
        need = "a conditional model (one that takes prompts)" if conditional else "an unconditional model"
        raise FundiffError(f"{model} is {'not ' if conditional else ''}conditional; this command needs {need}")
    return den
