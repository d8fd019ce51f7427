"""The UNet training loop: :func:`train` runs a config's epochs into a run folder, resumably.

Batches are index slices of a per-epoch permutation drawn from (seed, epoch), so a resumed
run sees the same batches; under DDP each rank takes every N-th index of it and
batch_size / N images. A checkpoint is written every ``save_every`` steps, at each epoch
end and at the end (session.save), and the run folder is locked while it trains.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from fundiff import checkpoints as ckpt
from fundiff.devices import autocast_for
from fundiff.errors import FundiffError
from fundiff.training.config import TrainConfig
from fundiff.training.distributed import barrier
from fundiff.training.lock import run_lock
from fundiff.training.objectives import batch_loss
from fundiff.training.progress import Progress
from fundiff.training.session import Session, check_memory, restore, run_config, save, setup
from fundiff.training.steps import check_loss, epoch_permutation, lr_factor, set_lr


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    epoch: int
    losses: list[float] = field(default_factory=list)
    images_per_s: float = 0.0
    wall_s: float = 0.0


def train(
    cfg: TrainConfig,
    run_dir: str | Path,
    *,
    data: tuple[Tensor, Tensor],
    device: str | torch.device | None = "cpu",
    resume: bool = False,
    progress: bool = True,
    on_epoch_end: Callable[[nn.Module, int, Path], None] | None = None,
    extra_config: dict | None = None,
    text=None,
    noise: Tensor | None = None,
    init: dict[str, Tensor] | None = None,
    ema_warmup: bool = True,
) -> TrainResult:
    """Train ``cfg.kind`` on ``data`` = (images uint8 (N,H,W) or (N,C,H,W), labels int64 (N,)) into ``run_dir``.

    ``text`` (a text model, ``cfg.text``): (fundiff.text.TextEncoder, its variant_table of the items' training
    texts); the encoder is saved in config.json ("text") so the run reads prompts without the dataset.
    ``noise`` (reflow, training.distill): float32 like the images, each image's own noise (objectives.batch_loss);
    ``init``: the UNet's starting weights (a distilled student starts as its teacher) instead of a seeded init;
    ``ema_warmup`` False: its EMA takes the full decay from the first step (a fine-tune, training.finetune).

    Writes config.json at the start and a checkpoint every ``save_every`` steps, at each
    epoch end and at the end (each whole or not at all: session.save); ``resume`` continues a
    run folder exactly where it stopped (from step 0 when it stopped before its first checkpoint).
    ``on_epoch_end(model, epoch, run_dir)`` (main rank, eval mode) draws figures. The run
    folder is locked for the whole training (one ``train`` per folder at a time).
    """
    run_dir = Path(run_dir)
    main = int(os.environ.get("RANK", "0")) == 0
    if (text is None) != (cfg.text == "none"):
        raise FundiffError(f"text={cfg.text!r} needs the text encoder and its training texts (train(..., text=))")
    check_memory(cfg, data, device, text[0].dim if text is not None else None)  # before the run folder is made
    with run_lock(run_dir, enabled=main):
        if not resume and main and (run_dir / "state.json").exists():
            raise FundiffError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --out")
        s = setup(cfg, run_dir, data, device, resume, text, noise=noise, init=init, ema_warmup=ema_warmup)
        if resume and (run_dir / "state.json").exists():
            restore(s)
        elif not resume and s.info.main:
            extra = (extra_config or {}) | ({"text": text[0].to_dict()} if text is not None else {})
            ckpt.save_config(run_dir, run_config(s, extra))
        # else: --resume of a run stopped before its first checkpoint (config.json only) starts at step 0
        barrier(s.info)
        if s.info.world > 1:
            device_ids = [s.dev.index] if s.dev.type == "cuda" else None
            s.net = nn.parallel.DistributedDataParallel(s.model, device_ids=device_ids)
        return _train_epochs(s, progress, on_epoch_end)


def _train_epochs(s: Session, progress: bool, on_epoch_end) -> TrainResult:
    """The epochs from ``s.step`` to ``s.total_steps``: a checkpoint and ``on_epoch_end`` after each."""
    bar = Progress(s.total_steps, initial=s.step, desc=f"train {s.cfg.kind}", enabled=progress and s.info.main)
    s.t_start = time.perf_counter()
    epoch = s.step // s.steps_per_epoch
    s.model.train()
    try:
        while s.step < s.total_steps:
            _train_epoch(s, epoch, bar)
            if s.step % s.steps_per_epoch == 0:
                epoch += 1
                save(s, epoch)
                bar.line()
                if s.info.main and on_epoch_end is not None:
                    on_epoch_end(s.ema.module if s.ema is not None else s.model, epoch, s.run_dir)
                    s.model.train()
            else:  # stopped mid-epoch by max_steps
                save(s, epoch)
            barrier(s.info)
    finally:  # also on a NaN loss or Ctrl-C: the bar's last line stays readable
        bar.close()
    wall = time.perf_counter() - s.t_start
    return TrainResult(s.run_dir, s.step, epoch, s.losses, s.images_seen / max(wall, 1e-9), wall)


def _train_epoch(s: Session, epoch: int, progress: Progress) -> None:
    """Steps of epoch ``epoch`` (0-based) from ``s.step`` on, up to its end or ``s.total_steps``."""
    perm = epoch_permutation(s.x_all.shape[0], seed=s.cfg.seed, epoch=epoch, device=s.dev)
    perm = perm[s.info.rank :: s.info.world]
    b_size = s.per_rank_batch
    for b in range(s.step - epoch * s.steps_per_epoch, s.steps_per_epoch):
        if s.step >= s.total_steps:
            break
        loss = _train_step(s, perm[b * b_size : (b + 1) * b_size], epoch)
        rate = s.images_seen / max(time.perf_counter() - s.t_start, 1e-9)
        progress.update(epoch=epoch + 1, loss=f"{loss:.4f}", img_s=f"{rate:.0f}")
        if s.cfg.save_every and s.step % s.cfg.save_every == 0 and s.step % s.steps_per_epoch != 0:
            save(s, epoch)


def _train_step(s: Session, idx: Tensor, epoch: int) -> float:
    """One optimizer step (and EMA update) on the images ``idx`` of this rank; returns the loss."""
    cfg = s.cfg
    x0 = s.x_all[idx]
    x0 = (x0.unsqueeze(1) if x0.ndim == 3 else x0).float().div_(255).contiguous(memory_format=s.mem_format)
    set_lr(s.opt, cfg.lr * _lr_factor(cfg, s.step, epoch, s.total_steps))
    with autocast_for(s.dev, s.amp_dtype):
        eps = None if s.noise_all is None else s.noise_all[idx].contiguous(memory_format=s.mem_format)
        loss = batch_loss(s.net, cfg, s.schedule, x0, s.y_all[idx], s.g, s.texts, eps)
    check_loss(
        loss,
        s.step,
        f"the last good checkpoint in {s.run_dir} is kept. Lower --lr or use --precision fp32, then --resume",
    )
    s.opt.zero_grad(set_to_none=True)
    loss.backward()
    s.opt.step()
    if s.ema is not None:
        s.ema.update_parameters(s.model)
    s.step += 1
    s.images_seen += x0.shape[0] * s.info.world
    s.losses.append(loss.item())
    return s.losses[-1]


def _lr_factor(cfg: TrainConfig, step: int, epoch: int, total_steps: int) -> float:
    """lr_factor with ``cfg``'s schedule and warm-up."""
    return lr_factor(
        cfg.lr_schedule, step, epoch=epoch, epochs=cfg.epochs, total_steps=total_steps, warmup_steps=cfg.warmup_steps
    )


__all__ = ["TrainResult", "train"]
