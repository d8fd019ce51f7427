"""Fine-tuning: a training run that starts from a trained model, its weights and its recipe (``fundiff train
--init-from``).

The new run's config is the base run's training config with the given flags on top (as ``--resume`` takes
the run's), so ``--epochs 1 --lr 2e-4`` changes those two and keeps the rest; its ``--seed`` (its own noise and data
order) is its own, 20040805 unless given, as any new run's. What makes the network -- its kind, data, size,
conditioning, objective, T and beta schedule -- cannot change: the weights would not fit, or would mean
something else. The UNet starts from the base's weights (its EMA, as sampled) with a fresh optimizer and EMA;
config.json records the base (``"init"``: its name, the command that trained it, and its own base, if any),
and an exported card keeps that record. Its EMA takes the full decay from the first step (no warm-up: it holds on to
the weights it starts from).

The shipped MNIST models are such fine-tunes: one epoch with a quarter of the training times near the clean
end (``--low-times 0.25``), where their logit-normal times had almost never trained them (README, Grain).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from torch import Tensor

from fundiff.errors import FundiffError
from fundiff.training.config import TrainConfig, config_from_dict

# the TrainConfig fields that make the network: a fine-tune keeps its base's
ARCHITECTURE = (
    "kind",
    "dataset",
    "text",
    "hidden",
    "film",
    "class_map",
    "patch",
    "time_conditioning",
    "objective",
    "T",
    "beta_schedule",
)


def finetune_config(base: dict, kind: str, overrides: dict, *, name: str) -> TrainConfig:
    """The fine-tune's TrainConfig: the training config in ``base`` (the config.json of the model ``name`` to start
    from) with the non-None ``overrides`` applied. A one-line FundiffError unless ``base`` is a ``kind`` UNet run of
    ``fundiff train`` (no distilled student, no classifier) and the overrides keep every :data:`ARCHITECTURE` field."""
    saved = base.get("train", {})
    base_kind = saved.get("kind") or base.get("model", {}).get("kind")
    if not saved or "distill" in base or base_kind not in ("denoiser", "time", "class"):
        what = ("a distilled student; fine-tune its teacher" if "distill" in base
                else f"a {base_kind}" if base_kind else "no run of `fundiff train`")  # fmt: skip
        raise FundiffError(f"{name} is {what} (--init-from takes a denoiser, time or class model of `fundiff train`)")
    if base_kind != kind:
        raise FundiffError(
            f"{name} is no {kind} model; fine-tune it as `fundiff train {base_kind}`, or start from a {kind} model"
        )
    config = config_from_dict(saved)
    given = {k: v for k, v in overrides.items() if v is not None}
    changed = sorted(k for k in ARCHITECTURE if k in given and given[k] != getattr(config, k))
    if changed:
        flags = ", ".join("--" + k.replace("_", "-") for k in changed)
        raise FundiffError(
            f"{flags} would change the network of the model to start from; drop {'it' if len(changed) == 1 else 'them'}"
            " (a fine-tune keeps its base's network)"
        )
    return replace(config, **given)


def init_weights(run_dir: str | Path) -> tuple[dict[str, Tensor], dict]:
    """(the weights to start from: the UNet's EMA weights, as sampled; its config.json) of the model folder
    ``run_dir`` (a shipped name becomes its folder by backends.runs.resolve)."""
    from fundiff.models import load_model

    net, cfg = load_model(run_dir)
    return {k: v.float().contiguous() for k, v in net.state_dict().items()}, cfg


def init_record(model: str, base_config: dict) -> dict:
    """config.json's ``"init"`` of a fine-tune of ``model``: its name, the command that trained it, and the
    base's own ``"init"`` (a fine-tune of a fine-tune), so a card names every step back to a seeded init."""
    record = {"model": str(model), "command": base_config.get("command")}
    if "init" in base_config:
        record["init"] = base_config["init"]
    return record


__all__ = ["ARCHITECTURE", "finetune_config", "init_weights", "init_record"]
