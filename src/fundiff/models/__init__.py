"""fundiff's networks, loading one from a run folder, and where the shipped models are."""

from __future__ import annotations

from pathlib import Path

import torch

from fundiff.checkpoints import load_config, load_weights, model_state
from fundiff.errors import FundiffError
from fundiff.models.unet import UNet, UNetConfig

SHIPPED_DIR = Path(__file__).parent.parent / "shipped"  # models that ship with fundiff, by name


def shipped_folder(name: str | Path) -> Path | None:
    """The folder of the shipped model ``name``, or None when ``name`` is no shipped model's bare name.

    A bare name has no directory separator and does not start with "." (so "./mnist-class" is a
    path); a ``Path`` is never a name. Such a name means the shipped model even where a folder of
    that name exists in the current directory, so a command line means the same thing everywhere
    (the rule of fundiff.backends.runs.resolve).
    """
    if isinstance(name, Path) or "/" in name or "\\" in name or name.startswith("."):
        return None
    folder = SHIPPED_DIR / name
    return folder if (folder / "config.json").is_file() else None


def load_model(run_dir: str | Path, *, device: str | torch.device = "cpu", ema: bool = True) -> tuple[UNet, dict]:
    """The UNet of a run folder in eval mode (EMA weights when the run kept them) and its config dict."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FundiffError(f"model {str(run_dir)!r} not found: give a run folder written by `fundiff train`")
    cfg = load_config(run_dir)
    try:
        model = UNet(UNetConfig(**cfg["model"]))
    except (KeyError, TypeError) as e:
        raise FundiffError(f"{run_dir}/config.json has no valid 'model' section ({e}); retrain or restore it") from None
    state, _ = model_state(load_weights(run_dir)[0], ema=ema)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise FundiffError(
            f"{run_dir}/model.safetensors does not match its config "
            f"({len(missing)} missing, {len(unexpected)} unexpected tensors); retrain or restore it"
        )
    return model.to(device).eval(), cfg


__all__ = ["UNet", "UNetConfig", "load_model", "SHIPPED_DIR", "shipped_folder"]
