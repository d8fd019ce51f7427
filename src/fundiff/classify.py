"""Training the evaluation classifier (models/classifier.py) into a run folder, and loading it back.

The run folder has fundiff's checkpoint format (checkpoints.py): config.json holds
{"model": ClassifierConfig (kind "classifier"), "train": ClassifierTrainConfig}; the
weights are "model.*" tensors; state.json records the loss history and the test accuracy
after every epoch (overall and per class), so `fundiff evaluate` can report it; the final
scores also go to metrics.json (small: `fundiff export --eval-json` puts it in the card).
Cross-entropy, Adam with linear warm-up and cosine decay, bf16 autocast where supported.
Data order comes from (seed, epoch); initialisation from the seed, without touching
torch's global RNG. There is no resume: a run takes minutes.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from fundiff import DEFAULT_SEED
from fundiff import checkpoints as ckpt
from fundiff.atomic import atomic_write_json
from fundiff.data import DATASETS, to_unit_float
from fundiff.devices import PRECISIONS, autocast_for, resolve_device, resolve_precision
from fundiff.errors import FundiffError
from fundiff.metrics import accuracy_of
from fundiff.models.classifier import Classifier, ClassifierConfig, predict
from fundiff.training import Progress, check_loss, epoch_permutation, lr_factor, run_lock, set_lr


@dataclass(frozen=True)
class ClassifierTrainConfig:
    """Everything that determines a classifier training run; saved to config.json."""

    dataset: str = "mnist"  # "mnist" or "fashion-mnist" (recorded; the data is passed in)
    epochs: int = 3  # passes over the train split
    batch_size: int = 128
    lr: float = 2e-3  # Adam peak learning rate
    warmup_steps: int = 100  # linear warm-up, then cosine decay to 0 at the last step
    weight_decay: float = 5e-4  # decoupled (AdamW)
    max_steps: int | None = None  # stop after this many steps (smoke tests)
    seed: int = DEFAULT_SEED  # seeds the initialisation and the data order
    precision: str = "auto"  # "auto" (bf16 where supported), "bf16" or "fp32"

    def __post_init__(self) -> None:
        checks = [
            (self.dataset in DATASETS, f"unknown dataset {self.dataset!r}; choose one of {', '.join(DATASETS)}"),
            (self.epochs >= 1 and self.batch_size >= 1, "epochs and batch size must be >= 1"),
            (self.lr > 0 and math.isfinite(self.lr), f"lr must be a positive number, got {self.lr}"),
            (self.warmup_steps >= 0 and self.weight_decay >= 0, "warmup steps and weight decay must be >= 0"),
            (self.max_steps is None or self.max_steps >= 1, "max steps must be >= 1"),
            (
                self.precision in PRECISIONS,
                f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}",
            ),
        ]
        for ok, msg in checks:
            if not ok:
                raise FundiffError(msg)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ClassifierResult:
    run_dir: Path
    step: int
    test_accuracy: float  # overall, after the last epoch
    test_accuracy_per_class: tuple[float, ...]
    wall_s: float


def _test_accuracy(
    model: Classifier, images: Tensor, labels: Tensor, device: torch.device
) -> tuple[float, tuple[float, ...]]:
    """(overall, per-class) accuracy on uint8 images (N,H,W) with labels (N,)."""
    pred = torch.cat(
        [predict(model, to_unit_float(images[i : i + 1000], device)).cpu() for i in range(0, len(images), 1000)]
    )
    acc = accuracy_of(pred, labels.cpu(), model.config.num_classes)
    return acc.overall, acc.per_class


def _check_data(data: tuple[Tensor, Tensor], test_data: tuple[Tensor, Tensor], num_classes: int) -> None:
    images, labels = data
    if images.ndim != 3 or images.dtype != torch.uint8 or labels.shape != images.shape[:1]:
        raise FundiffError(
            f"data must be (uint8 images (N,H,W), labels (N,)), got {tuple(images.shape)} {images.dtype} "
            f"and {tuple(labels.shape)}"
        )
    for y in (labels, test_data[1]):
        if len(y) and not 0 <= int(y.min()) <= int(y.max()) < num_classes:
            raise FundiffError(f"labels must lie in 0..{num_classes - 1}, got {int(y.min())}..{int(y.max())}")


def train_classifier(
    cfg: ClassifierTrainConfig,
    run_dir: str | Path,
    *,
    data: tuple[Tensor, Tensor],
    test_data: tuple[Tensor, Tensor],
    device: str | torch.device | None = "cpu",
    progress: bool = True,
    model_config: ClassifierConfig | None = None,
    extra_config: dict | None = None,
) -> ClassifierResult:
    """Train a Classifier on ``data`` = (images uint8 (N,H,W), labels int64 (N,)) into ``run_dir``.

    ``test_data`` (same layout) is scored after every epoch; the scores go to state.json.
    Writes config.json first (with ``extra_config``, e.g. the command line and machine) and a
    checkpoint after every epoch (and at ``max_steps``), then metrics.json. The run folder is
    locked while it trains.
    """
    run_dir = Path(run_dir)
    mcfg = model_config or ClassifierConfig(image_size=data[0].shape[-1])
    _check_data(data, test_data, mcfg.num_classes)
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    with run_lock(run_dir):
        if (run_dir / "state.json").exists():
            raise FundiffError(f"{run_dir} already holds a run; choose another --out or delete it")
        with torch.random.fork_rng(devices=[]):  # seeded init without changing the caller's global RNG
            torch.manual_seed(cfg.seed)
            model = Classifier(mcfg)
        model = model.to(dev).to(memory_format=torch.channels_last)
        ckpt.save_config(run_dir, {"model": mcfg.to_dict(), "train": cfg.to_dict(), **(extra_config or {})})
        return _fit(cfg, model, run_dir, data, test_data, dev, progress)


def _fit(
    cfg: ClassifierTrainConfig,
    model: Classifier,
    run_dir: Path,
    data: tuple[Tensor, Tensor],
    test_data: tuple[Tensor, Tensor],
    dev: torch.device,
    progress: bool,
) -> ClassifierResult:
    """The epochs: train, score on ``test_data``, checkpoint; then metrics.json."""
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = data[0].shape[0]
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs if cfg.max_steps is None else min(cfg.max_steps, steps_per_epoch * cfg.epochs)
    x_all, y_all = data[0].to(dev), data[1].to(dev)
    bar = Progress(total, desc=f"train classifier ({cfg.dataset})", enabled=progress)
    step, losses, history, t0 = 0, [], [], time.perf_counter()
    for epoch in range(cfg.epochs):
        if step >= total:
            break
        model.train()
        perm = epoch_permutation(n, seed=cfg.seed, epoch=epoch, device=dev)
        for b in range(min(steps_per_epoch, total - step)):
            idx = perm[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            losses.append(_classifier_step(model, opt, cfg, x_all[idx], y_all[idx], step, total))
            step += 1
            bar.update(epoch=epoch + 1, loss=f"{losses[-1]:.4f}")
        model.eval()
        acc, per_class = _test_accuracy(model, *test_data, dev)
        history.append(acc)
        bar.line(f"epoch {epoch + 1}: test accuracy {acc:.4f}")
        state = {
            "epoch": epoch + 1,
            "losses": losses,
            "test_accuracy": acc,
            "test_accuracy_per_class": list(per_class),
            "test_accuracy_per_epoch": history,
            "n_test": int(len(test_data[1])),
            "wall_s": round(time.perf_counter() - t0, 2),
        }
        weights = {f"model.{k}": v for k, v in model.state_dict().items()}
        ckpt.save_checkpoint(run_dir, step=step, weights=weights, state_tensors={}, state=state)
    bar.close()
    keys = ("test_accuracy", "test_accuracy_per_class", "test_accuracy_per_epoch", "n_test", "wall_s")
    atomic_write_json(run_dir / "metrics.json", {**{k: state[k] for k in keys}, "dataset": cfg.dataset, "steps": step})
    return ClassifierResult(run_dir, step, history[-1], per_class, time.perf_counter() - t0)


def _classifier_step(
    model: Classifier,
    opt: torch.optim.Optimizer,
    cfg: ClassifierTrainConfig,
    x: Tensor,
    y: Tensor,
    step: int,
    total: int,
) -> float:
    """One AdamW step on uint8 images ``x`` (B,H,W) with labels ``y`` (B,); warm-up then cosine LR."""
    x = to_unit_float(x).contiguous(memory_format=torch.channels_last)
    set_lr(
        opt,
        cfg.lr
        * lr_factor("cosine", step, epoch=0, epochs=cfg.epochs, total_steps=total, warmup_steps=cfg.warmup_steps),
    )
    with autocast_for(x.device, resolve_precision(cfg.precision, x.device)):
        loss = F.cross_entropy(model(x).float(), y)
    check_loss(loss, step, "lower --lr or use --precision fp32")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item()


def load_classifier(model: str | Path, *, device: str | torch.device = "cpu") -> tuple[Classifier, dict]:
    """(Classifier in eval mode, info) of a run folder or shipped (exported) name.

    info: {"config": config.json, "run_dir": Path, "test_accuracy": float or None} -- the
    accuracy from state.json (a run) or card.json's evaluation (an export with --eval-json).
    """
    from fundiff.backends.runs import resolve

    run_dir = resolve(model)
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


__all__ = ["ClassifierTrainConfig", "ClassifierResult", "train_classifier", "load_classifier", "predict"]
