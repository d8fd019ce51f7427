"""Loading the evaluation classifier (models/classifier.py) back from a run folder or a shipped name.

``fundiff train classifier`` (fundiff.training.classifier) writes the run folder: config.json
with {"model": ClassifierConfig (kind "classifier"), "train": ClassifierTrainConfig}, the
"model.*" weights, and state.json with the test accuracy; ``fundiff export`` makes a shipped
model of it (card.json holds the accuracy). ``fundiff evaluate`` and the benchmarks load
their grader here; this is core code, so it imports neither fundiff.training nor fundiff.backends
(a shipped name is found with fundiff.models.shipped_folder).
"""

from __future__ import annotations

from pathlib import Path

import torch

from fundiff import checkpoints as ckpt
from fundiff.errors import FundiffError
from fundiff.models import shipped_folder
from fundiff.models.classifier import Classifier, ClassifierConfig


def load_classifier(model: str | Path, *, device: str | torch.device = "cpu") -> tuple[Classifier, dict]:
    """(Classifier in eval mode, info) of a run folder or shipped (exported) name.

    ``model``: a shipped model's bare name (e.g. "mnist-classifier"; the rule of
    fundiff.models.shipped_folder), else a path to a run folder.
    info: {"config": config.json, "run_dir": Path, "test_accuracy": float or None} -- the
    accuracy from state.json (a run) or card.json's evaluation (an export with --eval-json).
    """
    run_dir = shipped_folder(model) or Path(model)
    if not run_dir.is_dir():
        raise FundiffError(
            f"classifier {str(model)!r} not found: give a run folder written by `fundiff train classifier` "
            "or the name of a shipped classifier"
        )
    cfg = ckpt.load_config(run_dir)
    kind = cfg.get("model", {}).get("kind") if isinstance(cfg.get("model"), dict) else None
    if kind != "classifier":
        raise FundiffError(
            f"{run_dir} is not a classifier run (model kind {kind!r}); train one with `fundiff train classifier`"
        )
    try:
        net = Classifier(ClassifierConfig(**cfg["model"]))
    except TypeError as e:
        raise FundiffError(f"{run_dir}/config.json has no valid 'model' section ({e}); retrain or restore it") from None
    weights, _ = ckpt.load_weights(run_dir)
    state = ckpt.strip_prefix(weights, "model.")
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
        problem = f"{len(missing)} missing, {len(unexpected)} unexpected tensors" if missing or unexpected else ""
    except RuntimeError:  # load_state_dict raises on a tensor of the wrong shape
        problem = "tensor shapes differ"
    if problem:
        raise FundiffError(f"{run_dir}/model.safetensors does not match its config ({problem}); retrain or restore it")
    if (run_dir / "state.json").is_file():
        acc = ckpt.read_json(run_dir / "state.json").get("test_accuracy")
    else:  # exported: no training state, maybe a model card
        acc = (
            ckpt.read_json(run_dir / "card.json").get("evaluation", {}).get("test_accuracy")
            if (run_dir / "card.json").is_file()
            else None
        )
    return net.to(device).eval(), {"config": cfg, "run_dir": run_dir, "test_accuracy": acc}


__all__ = ["load_classifier"]
