"""Exporting a trained run as a small shipped model: EMA weights in bf16 + config + model card.

Shipped files are committed and read on other machines, so the card and the config keep no
absolute path of the machine they were made on: each is cut to its last component (a run
folder to its name, ``--out /tmp/runs/x`` to ``--out x``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from fundiff import checkpoints as ckpt
from fundiff.errors import FundiffError
from fundiff.provenance import strip_paths


def export_run(
    run_dir: str | Path,
    dest: str | Path,
    *,
    dtype: torch.dtype = torch.bfloat16,
    evaluation: dict | None = None,
    card_extra: dict | None = None,
    name: str | None = None,
) -> Path:
    """Copy ``run_dir``'s weights (EMA when kept; floats cast to ``dtype``) and config to ``dest``.

    ``dest`` gets config.json, model.safetensors (keys "model.*") and card.json: the exact
    command that trained it, preset, data, wall time, machine and ``evaluation`` numbers.
    Absolute paths in the card and the config are cut to their last component (strip_paths).
    ``name``: the shipped model's name in the card (default: ``dest``'s name; the CLI writes into a
    temporary folder first, fundiff.outputs).
    """
    run_dir, dest = Path(run_dir), Path(dest)
    cfg = ckpt.load_config(run_dir)
    state = ckpt.read_json(run_dir / "state.json")
    weights, step = ckpt.load_weights(run_dir)
    model_weights, is_ema = ckpt.model_state(weights)
    small = {"model." + k: (v.to(dtype) if v.is_floating_point() else v) for k, v in model_weights.items()}
    if not small:
        raise FundiffError(f"{run_dir}/model.safetensors holds no model weights; retrain or restore it")
    train = cfg.get("train", {})
    card = {
        "name": name or dest.name,
        "kind": cfg["model"]["kind"],
        "dataset": train.get("dataset"),
        "command": cfg.get("command"),
        "preset": train.get("preset"),
        "train": train,
        "steps": step,
        "epochs": state.get("epoch"),
        "final_loss": state["losses"][-1] if state.get("losses") else None,
        "wall_s": state.get("wall_s"),
        "machine": cfg.get("machine"),
        "weights": ("EMA " if is_ema else "") + f"weights stored as {str(dtype).replace('torch.', '')}",
        "evaluation": evaluation or {},
    }
    if "distill" in cfg:  # a distilled student (training.distill): its teacher, recipe and the pairs' seconds
        card["distill"] = cfg["distill"]
    if "init" in cfg:  # a fine-tune (training.finetune): the model it started from and the command that trained that
        card["init"] = cfg["init"]
    card.update({k: v for k, v in (card_extra or {}).items() if v is not None})
    ckpt.atomic_write_tensors(dest / "model.safetensors", small, {"step": str(step)})
    ckpt.atomic_write_json(dest / "config.json", strip_paths(cfg))
    ckpt.atomic_write_json(dest / "card.json", strip_paths(card))
    return dest
