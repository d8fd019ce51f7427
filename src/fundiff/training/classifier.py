"""Training the evaluation classifier (models/classifier.py) into a run folder.

The run folder has fundiff's checkpoint format (checkpoints.py): config.json holds
{"model": ClassifierConfig (kind "classifier"), "train": ClassifierTrainConfig}; the
weights are "model.*" tensors; state.json records the loss history and the test accuracy
after every epoch (overall and per class), so `fundiff evaluate` can report it; the final
scores also go to metrics.json (small: `fundiff export --eval-json` puts it in the card).
Cross-entropy, AdamW with linear warm-up and cosine decay, bf16 autocast where supported. ``noise`` and
``shift`` augment each batch (Gaussian noise of a random level up to ``noise``, a shift of up to ``shift``
pixels), drawn from a generator seeded by the run's seed: the emoji classifier (1,643 emoji, one or a few
images each, no test split) learns to read the diffusion model's slightly noisy samples that way.
Data order comes from (seed, epoch); initialisation from the seed, without touching
torch's global RNG. There is no resume: a run takes minutes. The loop pieces (data order,
LR factor, loss check, progress, run lock) are the UNet loop's. fundiff.classify loads the
trained classifier back.
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
from fundiff.data import CLASS_DATASETS, to_unit_float
from fundiff.devices import PRECISIONS, autocast_for, resolve_device, resolve_precision
from fundiff.errors import FundiffError
from fundiff.metrics import accuracy_of
from fundiff.models.classifier import Classifier, ClassifierConfig, predict
from fundiff.training.lock import run_lock
from fundiff.training.options import (
    NONNEG_FLOAT,
    NONNEG_INT,
    POSITIVE_FLOAT,
    POSITIVE_INT,
    SEED,
    Choice,
    option,
    validate,
)
from fundiff.training.progress import Progress
from fundiff.training.steps import check_loss, epoch_permutation, lr_factor, set_lr


@dataclass(frozen=True)
class ClassifierTrainConfig:
    """Everything that determines a classifier training run; saved to config.json.

    Checked by training.options.validate like TrainConfig; the flags are `fundiff train classifier`'s.
    """

    dataset: str = option(
        Choice((*CLASS_DATASETS, "emoji")),
        "training data (recorded; the data is passed in); emoji: one class per emoji, its skin tones included",
        default="mnist",
        flag="--dataset",
    )
    epochs: int = option(POSITIVE_INT, "passes over the train split", default=3, flag="--epochs")
    batch_size: int = option(POSITIVE_INT, "batch size", default=128, flag="--batch-size")
    lr: float = option(POSITIVE_FLOAT, "AdamW peak learning rate", default=2e-3, flag="--lr")
    warmup_steps: int = option(NONNEG_INT, "linear warm-up steps, then cosine decay to 0 at the last step", default=100)
    weight_decay: float = option(NONNEG_FLOAT, "decoupled weight decay (AdamW)", default=5e-4)
    noise: float = option(
        NONNEG_FLOAT,
        "augmentation: add Gaussian noise of a level drawn uniformly in [0, NOISE] per image (0: none)",
        default=0.0,
        flag="--noise",
    )
    shift: int = option(
        NONNEG_INT, "augmentation: shift each batch by up to SHIFT pixels (wrapping around; 0: none)", default=0,
        flag="--shift",
    )  # fmt: skip
    max_steps: int | None = option(
        POSITIVE_INT, "stop after this many steps (smoke tests)", default=None, flag="--max-steps", optional=True
    )
    seed: int = option(SEED, "seeds the initialisation and the data order", default=DEFAULT_SEED, flag="--seed")
    precision: str = option(
        Choice(PRECISIONS), "auto (bf16 where supported), bf16 or fp32", default="auto", flag="--precision"
    )

    def __post_init__(self) -> None:
        validate(self)

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
    if images.ndim not in (3, 4) or images.dtype != torch.uint8 or labels.shape != images.shape[:1]:
        raise FundiffError(
            f"data must be (uint8 images (N,H,W) or (N,C,H,W), labels (N,)), got {tuple(images.shape)} "
            f"{images.dtype} and {tuple(labels.shape)}"
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
    """Train a Classifier on ``data`` = (images uint8 (N,H,W) or (N,C,H,W), labels int64 (N,)) into ``run_dir``.

    ``test_data`` (same layout) is scored after every epoch; the scores go to state.json.
    Writes config.json first (with ``extra_config``, e.g. the command line and machine) and a
    checkpoint after every epoch (and at ``max_steps``), then metrics.json. The run folder is
    locked while it trains.
    """
    run_dir = Path(run_dir)
    channels = 1 if data[0].ndim == 3 else data[0].shape[1]
    mcfg = model_config or ClassifierConfig(in_channels=channels, image_size=data[0].shape[-1])
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
    g = torch.Generator(device=dev).manual_seed(cfg.seed)  # the augmentation's draws
    step, losses, history, t0 = 0, [], [], time.perf_counter()
    for epoch in range(cfg.epochs):
        if step >= total:
            break
        model.train()
        perm = epoch_permutation(n, seed=cfg.seed, epoch=epoch, device=dev)
        for b in range(min(steps_per_epoch, total - step)):
            idx = perm[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            losses.append(_classifier_step(model, opt, cfg, x_all[idx], y_all[idx], step, total, g))
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
    g: torch.Generator | None = None,
) -> float:
    """One AdamW step on uint8 images ``x`` (B,H,W) or (B,C,H,W) with labels ``y`` (B,); warm-up then cosine LR;
    ``cfg.noise`` / ``cfg.shift`` augment the batch with draws from ``g``."""
    x = augment(to_unit_float(x), cfg.noise, cfg.shift, g).contiguous(memory_format=torch.channels_last)
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


def augment(x: Tensor, noise: float, shift: int, g: torch.Generator | None) -> Tensor:
    """x (B,C,H,W) rolled by one random (dy, dx) in [-shift, shift]^2, plus N(0, s^2) noise with s ~ U[0, noise] per
    image; draws from ``g`` (none at all when both are 0)."""
    if shift:
        dy, dx = torch.randint(-shift, shift + 1, (2,), generator=g, device=x.device).tolist()
        x = torch.roll(x, shifts=(dy, dx), dims=(-2, -1))
    if noise:
        level = torch.rand(x.shape[0], 1, 1, 1, generator=g, device=x.device) * noise
        x = x + level * torch.randn(x.shape, generator=g, device=x.device)
    return x


__all__ = ["ClassifierTrainConfig", "ClassifierResult", "augment", "train_classifier"]
