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
        config = UNetConfig(**cfg["model"])
    except (KeyError, TypeError) as e:
        raise FundiffError(f"{run_dir}/config.json has no valid 'model' section ({e}); retrain or restore it") from None
    state, _ = model_state(load_weights(run_dir)[0], ema=ema)
    check_config_matches(config, state, run_dir)  # before building: a wrong hidden could be huge
    model = UNet(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise FundiffError(
            f"{run_dir}/model.safetensors does not match its config "
            f"({len(missing)} missing, {len(unexpected)} unexpected tensors); retrain or restore it"
        )
    return model.to(device).eval(), cfg


def config_of_weights(state: dict[str, torch.Tensor]) -> dict:
    """The UNetConfig fields that a UNet state dict's tensors show (those it shows: kind, in_channels, hidden,
    num_classes, image_size), read from the shapes of e1's first conv, the unflatten and the class FC layer."""
    facts: dict = {}
    if "fc1_c.0.weight" in state:
        facts["kind"] = "class"
        facts["num_classes"] = int(state["fc1_c.0.weight"].shape[1])
    elif "fc1_t.0.weight" in state:
        facts["kind"] = "time"
    elif any(k.startswith("e1.") for k in state):
        facts["kind"] = "denoiser"
    first = state.get("e1.0.0.weight")
    if first is not None and first.ndim == 4:
        facts["hidden"], facts["in_channels"] = int(first.shape[0]), int(first.shape[1])
    unflatten = state.get("unflatten.0.weight")
    if unflatten is not None and unflatten.ndim == 4:
        facts["image_size"] = 4 * int(unflatten.shape[-1])
    return facts


def check_config_matches(config: UNetConfig, state: dict[str, torch.Tensor], run_dir: str | Path) -> None:
    """A one-line FundiffError naming the first config.json field (kind, in_channels, hidden, num_classes,
    image_size) that disagrees with the weights; nothing when they agree."""
    facts = config_of_weights(state)
    said = config.to_dict()
    if config.patch > 1:  # the weights show the patches' channels and side (models.unet: space-to-depth)
        facts = dict(facts)
        if "in_channels" in facts:
            facts["in_channels"] //= config.patch**2
        if "image_size" in facts:
            facts["image_size"] *= config.patch
    for name in ("kind", "in_channels", "hidden", "num_classes", "image_size"):
        if name in facts and facts[name] != said[name]:
            raise FundiffError(
                f"{run_dir}/config.json says model.{name} = {said[name]!r} but model.safetensors holds a model with "
                f"{name} = {facts[name]!r}; fix config.json or restore the run folder"
            )


__all__ = ["UNet", "UNetConfig", "load_model", "check_config_matches", "config_of_weights", "SHIPPED_DIR"]
__all__ += ["shipped_folder"]
