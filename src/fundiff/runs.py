"""Finding a trained model by run folder (or shipped name) and loading it as a Denoiser."""

from __future__ import annotations

from pathlib import Path

import torch

from fundiff.denoisers import UNetDenoiser
from fundiff.errors import FundiffError
from fundiff.models import load_model
from fundiff.models.unet import UNet
from fundiff.schedules import NoiseSchedule

SHIPPED_DIR = Path(__file__).parent / "shipped"  # models that ship with fundiff, by name


def shipped_names() -> list[str]:
    return (
        sorted(p.name for p in SHIPPED_DIR.iterdir() if (p / "config.json").is_file()) if SHIPPED_DIR.is_dir() else []
    )


def resolve(model: str | Path) -> Path:
    """A run folder path, or the folder of a shipped model called ``model``."""
    path = Path(model)
    if path.is_dir():
        return path
    if (SHIPPED_DIR / str(model) / "config.json").is_file():
        return SHIPPED_DIR / str(model)
    names = shipped_names()
    hint = f"; shipped models: {', '.join(names)}" if names else ""
    raise FundiffError(f"model {str(model)!r} not found: give a run folder written by `fundiff train`{hint}")


def class_names_of(cfg: dict) -> tuple[str, ...]:
    """The class names of a run's dataset (for prompts and grid labels)."""
    from fundiff.data import CLASS_NAMES

    return tuple(CLASS_NAMES.get(cfg.get("train", {}).get("dataset", "mnist"), CLASS_NAMES["mnist"]))


def load(model: str | Path, *, device: str | torch.device = "cpu", ema: bool = True) -> tuple[UNet, dict]:
    """(UNet in eval mode, run config) for a run folder or shipped name."""
    return load_model(resolve(model), device=device, ema=ema)


def load_denoiser(
    model: str | Path,
    *,
    device: str | torch.device = "cpu",
    autocast_dtype: torch.dtype | None = None,
    kinds: tuple[str, ...] = ("time", "class"),
) -> UNetDenoiser:
    """A time- or class-conditioned run as a Denoiser with its own noise schedule."""
    net, cfg = load(model, device=device)
    kind = net.config.kind
    if kind not in kinds:
        raise FundiffError(
            f"{model} is a {kind!r} model; this command needs a {' or '.join(repr(k) for k in kinds)} model"
        )
    train = cfg.get("train", {})
    schedule = NoiseSchedule.from_name(train.get("beta_schedule", "linear"), int(train.get("T", 300)))
    return UNetDenoiser(
        net, schedule, class_names=class_names_of(cfg) if kind == "class" else (), autocast_dtype=autocast_dtype
    )
