"""Run folders: weights in safetensors, config and state in JSON, written atomically. Never pickle.

A run folder holds::

    config.json          model + training config (written once, at the start)
    model.safetensors    model weights (and EMA weights, prefixed "ema.")
    state.safetensors    optimizer tensors and RNG states
    state.json           step, epoch, LR-scheduler and optimizer scalars, loss history

Each file is written to a temp file in the same folder, fsynced and renamed over the
old one. Every safetensors file records the step it belongs to in its metadata and
``state.json`` is written last, so a reader can tell a torn checkpoint from a whole one.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save
from torch import Tensor

from fundiff.atomic import atomic_write_bytes, atomic_write_json
from fundiff.errors import FundiffError
from fundiff.outputs import interrupts_deferred

FORMAT = "fundiff-run/1"


def atomic_write_tensors(path: Path, tensors: dict[str, Tensor], metadata: dict[str, str]) -> None:
    """Save a flat dict of tensors as safetensors (contiguous CPU copies) atomically."""
    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    atomic_write_bytes(path, save(flat, metadata={"format": FORMAT, **metadata}))


def read_json(path: Path) -> dict:
    """Read a JSON file; a missing or garbled file is a one-line FundiffError."""
    path = Path(path)
    if not path.is_file():
        raise FundiffError(f"{path} not found: is this a fundiff run folder? (train one with `fundiff train`)")
    try:
        obj = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise FundiffError(
            f"{path} is not valid JSON: invalid JSON at line {e.lineno}, column {e.colno} ({e.msg}); "
            "fix the file or retrain / restore it"
        ) from None
    except UnicodeDecodeError:
        raise FundiffError(f"{path} is not valid JSON (not UTF-8 text); it is corrupt, retrain or restore it") from None
    if not isinstance(obj, dict):
        raise FundiffError(f"{path} does not hold a JSON object; the file is corrupt, retrain or restore it")
    return obj


def read_tensors(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Load a fundiff safetensors file (tensors, metadata); foreign or truncated files are rejected."""
    path = Path(path)
    if not path.is_file():
        raise FundiffError(f"{path} not found: is this a fundiff run folder? (train one with `fundiff train`)")
    # Ctrl-C / SIGTERM wait for the load: raised inside torch's C code they would surface as a ValueError
    # ("could not determine the shape ...") and read as a corrupt file
    try:
        with interrupts_deferred():
            with safe_open(str(path), framework="pt") as f:
                metadata = f.metadata() or {}
            tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise FundiffError(
            f"{path} is not a readable safetensors file ({str(e).splitlines()[0]}); "
            "it is truncated or corrupt, retrain or restore it"
        ) from None
    if metadata.get("format") != FORMAT:
        raise FundiffError(
            f"{path} is not a fundiff checkpoint (format {metadata.get('format')!r}, expected {FORMAT!r})"
        )
    return tensors, metadata


def save_config(run_dir: Path, config: dict) -> None:
    atomic_write_json(Path(run_dir) / "config.json", {"format": FORMAT, **config})


def load_config(run_dir: Path) -> dict:
    cfg = read_json(Path(run_dir) / "config.json")
    if cfg.get("format") != FORMAT:
        raise FundiffError(
            f"{run_dir}/config.json is not a fundiff run config (format {cfg.get('format')!r}, expected {FORMAT!r})"
        )
    return cfg


def save_checkpoint(
    run_dir: Path,
    *,
    step: int,
    weights: dict[str, Tensor],
    state_tensors: dict[str, Tensor],
    state: dict,
) -> None:
    """Write one checkpoint (weights, state tensors, then state.json last), each file atomically."""
    run_dir = Path(run_dir)
    meta = {"step": str(step)}
    atomic_write_tensors(run_dir / "model.safetensors", weights, meta)
    atomic_write_tensors(run_dir / "state.safetensors", state_tensors, meta)
    atomic_write_json(run_dir / "state.json", {"format": FORMAT, **state, "step": step})


def load_weights(run_dir: Path) -> tuple[dict[str, Tensor], int]:
    """Model weights of a run folder and the step they belong to."""
    tensors, meta = read_tensors(Path(run_dir) / "model.safetensors")
    return tensors, int(meta.get("step", -1))


def strip_prefix(weights: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The tensors of ``weights`` whose key starts with ``prefix`` ("model." or "ema."), keyed without it.

    A run's model.safetensors holds both state dicts in one flat file; this takes one back out.
    """
    return {k.removeprefix(prefix): v for k, v in weights.items() if k.startswith(prefix)}


def model_state(weights: dict[str, Tensor], *, ema: bool = True) -> tuple[dict[str, Tensor], bool]:
    """(state dict, is_ema) of a run's flat weights.

    The EMA copy ("ema.*") when ``ema`` is set and the run kept one, else the raw weights ("model.*").
    """
    use_ema = ema and any(k.startswith("ema.") for k in weights)
    return strip_prefix(weights, "ema." if use_ema else "model."), use_ema


def load_checkpoint(run_dir: Path) -> tuple[dict[str, Tensor], dict[str, Tensor], dict]:
    """(weights, state tensors, state) of a run folder, checked to belong to one step."""
    run_dir = Path(run_dir)
    state = read_json(run_dir / "state.json")
    weights, w_meta = read_tensors(run_dir / "model.safetensors")
    state_tensors, s_meta = read_tensors(run_dir / "state.safetensors")
    steps = {int(w_meta.get("step", -1)), int(s_meta.get("step", -1)), int(state.get("step", -2))}
    if len(steps) != 1:
        raise FundiffError(
            f"the checkpoint files in {run_dir} belong to different steps {sorted(steps)} (an interrupted save?); "
            "retrain or restore the folder"
        )
    return weights, state_tensors, state


# -- training state: optimizer tensors, RNG states, step, losses ----------------------------
def save_train_state(
    run_dir: Path,
    *,
    step: int,
    weights: dict[str, Tensor],
    optimizer_state: dict,
    rng_states: list[Tensor],
    state: dict,
) -> None:
    """Write a resumable checkpoint: ``weights``, the optimizer's ``state_dict()`` and one RNG state per rank.

    Optimizer tensors go to state.safetensors as "optim.<param index>.<name>", RNG states as
    "rng.noise.<rank>"; the optimizer's param_groups (scalars) go to state.json beside ``state``.
    """
    tensors = {f"optim.{i}.{k}": torch.as_tensor(v) for i, s in optimizer_state["state"].items() for k, v in s.items()}
    tensors |= {f"rng.noise.{r}": s for r, s in enumerate(rng_states)}
    state = {**state, "optimizer": {"param_groups": optimizer_state["param_groups"]}}
    save_checkpoint(run_dir, step=step, weights=weights, state_tensors=tensors, state=state)


def load_train_state(run_dir: Path) -> tuple[dict[str, Tensor], dict, dict[int, Tensor], dict]:
    """(weights, optimizer state_dict, RNG state by rank, state.json) of a checkpoint from save_train_state."""
    weights, tensors, state = load_checkpoint(run_dir)
    optimizer_state: dict = {"param_groups": state["optimizer"]["param_groups"], "state": {}}
    rng_states = {}
    for key, v in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            optimizer_state["state"].setdefault(int(idx), {})[name] = v
        elif key.startswith("rng.noise."):
            rng_states[int(key.rsplit(".", 1)[1])] = v
    return weights, optimizer_state, rng_states, state
