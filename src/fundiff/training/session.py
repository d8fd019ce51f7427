"""The state of one UNet training process, and how it is set up, checkpointed and resumed.

A :class:`Session` holds the model (and its DDP wrapper), EMA, optimizer, this rank's noise
generator and the counters. :func:`setup` builds one from a config (seeded init, measured or
recorded precision); :func:`save` checkpoints it into the run folder with every rank's RNG
state, and :func:`restore` loads that checkpoint back so a resumed run continues exactly.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel

from fundiff import checkpoints as ckpt
from fundiff.devices import PrecisionChoice, choose_precision, resolve_device, resolve_precision
from fundiff.errors import FundiffError
from fundiff.models.unet import UNet, UNetConfig, example_inputs
from fundiff.outputs import interrupts_deferred
from fundiff.schedules import NoiseSchedule
from fundiff.training.config import TrainConfig, schedule_of_config
from fundiff.training.distributed import DistInfo, from_main, gather_rng, init_distributed
from fundiff.training.ema import ema_model

CHECKPOINT_FILES = ("model.safetensors", "state.safetensors", "state.json")  # in the order they are renamed


@dataclass
class Session:
    """The mutable state of one training process: model, optimizer, EMA, noise generator, counters."""

    cfg: TrainConfig
    run_dir: Path
    info: DistInfo
    dev: torch.device
    precision: PrecisionChoice  # autocast dtype and memory format of this run
    amp_dtype: torch.dtype | None
    mem_format: torch.memory_format
    model: nn.Module
    net: nn.Module  # the model, or its DistributedDataParallel wrapper
    ema: AveragedModel | None
    opt: torch.optim.Optimizer
    g: torch.Generator  # training noise of this rank
    schedule: NoiseSchedule | None
    x_all: Tensor  # uint8 (N,H,W) or (N,C,H,W) on dev
    y_all: Tensor  # int64 (N,) on dev
    texts: tuple[Tensor, ...] | None  # a text model's training texts (TextEncoder.variant_table), on dev
    noise_all: Tensor | None  # float32 like x_all: each image's own noise (reflow, training.distill), on dev
    per_rank_batch: int
    steps_per_epoch: int
    total_steps: int
    step: int = 0
    losses: list[float] = field(default_factory=list)
    wall_before: float = 0.0  # training seconds of earlier sessions of this run
    t_start: float = field(default_factory=time.perf_counter)
    images_seen: int = 0


def unet_config(cfg: TrainConfig, images: Tensor, text_dim: int | None = None) -> UNetConfig:
    """The UNet a config trains on ``images`` (N,H,W) or (N,C,H,W): their channels and size; a text model's
    class vector is its encoder's ``text_dim`` long."""
    channels = 1 if images.ndim == 3 else images.shape[1]
    extra = {"num_classes": text_dim} if text_dim else {}
    if cfg.time_conditioning != "additive":
        extra["time_conditioning"] = cfg.time_conditioning
    if cfg.patch != 1:
        extra["patch"] = cfg.patch
    if cfg.film:
        extra["film"] = True
    if cfg.class_map:
        extra["class_map"] = cfg.class_map
    return UNetConfig(kind=cfg.kind, in_channels=channels, hidden=cfg.hidden, image_size=images.shape[-1], **extra)


def check_memory(cfg: TrainConfig, data: tuple[Tensor, Tensor], device, text_dim: int | None = None) -> None:
    """A one-line FundiffError, before the run folder is made, when a training step's estimated memory
    (fundiff.memory.training_bytes: the autograd graph counted on the meta device, plus parameters, grads,
    Adam and EMA) exceeds what the device has available. A step takes min(batch per rank, images per rank)."""
    import os

    from fundiff.memory import available_bytes, gib, training_bytes

    images = data[0]
    world = max(1, int(os.environ.get("WORLD_SIZE", "1")))
    batch = min(max(1, cfg.batch_size // world), max(1, math.ceil(images.shape[0] / world)))
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    have = available_bytes(dev)
    if have is None:
        return
    config = unet_config(cfg, images, text_dim)
    need = training_bytes(config, batch)
    if need <= have:
        return
    one = training_bytes(config, 1)
    per_image = max(1, (need - one) // max(1, batch - 1))
    fits = max(0, (have - one) // per_image + 1) if have > one else 0
    fix = f"use --batch-size {fits * world} or less" if fits else "use a smaller --hidden"
    raise FundiffError(
        f"training a hidden-{cfg.hidden} {cfg.kind} UNet on {batch} images a step needs about {gib(need)} of memory "
        f"but {gib(have)} is available; {fix}"
    )


def setup(
    cfg: TrainConfig,
    run_dir: Path,
    data: tuple[Tensor, Tensor],
    device,
    resume: bool,
    text=None,
    *,
    noise: Tensor | None = None,
    init: dict[str, Tensor] | None = None,
    ema_warmup: bool = True,
) -> Session:
    """Device, DDP process group, precision, model (seeded init, or the weights ``init``), EMA, optimizer and
    noise generator.

    ``text``: a text model's (TextEncoder, its variant_table) -- the class vector's length and training texts.
    ``noise``: each image's own noise (reflow). ``ema_warmup``: ema.ema_model's (False: a fine-tune's EMA holds on
    to the weights it starts from)."""
    info, dev = init_distributed(resolve_device(device) if not isinstance(device, torch.device) else device)
    images, labels = data
    model_cfg = unet_config(cfg, images, text[0].dim if text is not None else None)
    with torch.random.fork_rng(devices=[]):  # seeded init without changing the caller's global RNG
        torch.manual_seed(cfg.seed)
        model = UNet(model_cfg)
    if init is not None:
        model.load_state_dict(init)
    per_rank_batch = max(1, cfg.batch_size // info.world)
    precision = _precision(cfg, run_dir, resume, model.to(dev), per_rank_batch, info, images.shape[0])
    mem_format = torch.channels_last if precision.channels_last else torch.contiguous_format
    model = model.to(dev).to(memory_format=mem_format)
    steps_per_epoch = math.ceil(math.ceil(images.shape[0] / info.world) / per_rank_batch)
    total_steps = steps_per_epoch * cfg.epochs
    return Session(
        cfg=cfg,
        run_dir=run_dir,
        info=info,
        dev=dev,
        precision=precision,
        amp_dtype=precision.dtype,
        mem_format=mem_format,
        model=model,
        net=model,
        ema=ema_model(model, cfg.ema_decay, warmup=ema_warmup) if cfg.ema_decay > 0 else None,
        opt=torch.optim.Adam(model.parameters(), lr=cfg.lr),
        g=torch.Generator(device=dev).manual_seed(cfg.seed * 1009 + info.rank),
        schedule=schedule_of_config(cfg) if cfg.kind != "denoiser" else None,
        x_all=images.to(dev),  # uint8, converted per batch
        y_all=labels.to(dev),
        texts=tuple(v.to(dev) for v in text[1]) if text is not None else None,
        noise_all=None if noise is None else noise.to(dev),
        per_rank_batch=per_rank_batch,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps if cfg.max_steps is None else min(cfg.max_steps, total_steps),
    )


def _precision(
    cfg: TrainConfig, run_dir: Path, resume: bool, model: UNet, batch_size: int, info: DistInfo, n_images: int
) -> PrecisionChoice:
    """The run's autocast dtype and memory format: as recorded in config.json when resuming, else
    devices.choose_precision on rank 0 (timed for "auto", on a batch of at most ``n_images``: a step never
    takes more), sent to the other ranks."""
    dev = next(model.parameters()).device
    if resume:
        recorded = ckpt.load_config(run_dir).get("precision")
        if recorded:
            return PrecisionChoice.from_dict(recorded)
        # a run from before the measured choice: its rule then (bf16 where supported, channels_last on)
        return PrecisionChoice(resolve_precision(cfg.precision, dev), cfg.channels_last is not False, "forced")
    choice = None
    if info.main:
        make_batch = partial(example_inputs, model.config, min(batch_size, n_images), dev)
        choice = choose_precision(
            model, make_batch, dev, mode="train", precision=cfg.precision, channels_last=cfg.channels_last
        )
    choice = from_main(choice, info)
    assert choice is not None
    return choice


def restore(s: Session) -> None:
    """Load the run folder's last checkpoint into ``s`` (weights, EMA, optimizer, this rank's RNG, counters)."""
    weights, opt_state, rng_states, state = ckpt.load_train_state(s.run_dir)
    saved = ckpt.load_config(s.run_dir).get("train", {})
    defaults = TrainConfig.__dataclass_fields__
    changed = [  # a field newer than the run (absent from its config.json) had its default
        k for k, v in s.cfg.to_dict().items() if k not in ("max_steps",) and saved.get(k, defaults[k].default) != v
    ]
    if changed:
        raise FundiffError(
            f"--resume with different settings ({', '.join(changed)}) than {s.run_dir}/config.json; "
            "drop them or start a new run"
        )
    if state.get("world") != s.info.world or s.info.rank not in rng_states:
        raise FundiffError(
            f"cannot resume {s.run_dir} exactly: it was saved with {state.get('world')} process(es), "
            f"now {s.info.world}; resume with the same number"
        )
    s.model.load_state_dict(ckpt.strip_prefix(weights, "model."))
    s.step = int(state["step"])
    if s.ema is not None:
        s.ema.module.load_state_dict(ckpt.strip_prefix(weights, "ema."))
        s.ema.n_averaged.fill_(s.step + 1)
    s.opt.load_state_dict(opt_state)
    s.g.set_state(rng_states[s.info.rank])
    s.losses, s.wall_before = list(state["losses"]), float(state.get("wall_s", 0.0))


def save(s: Session, epoch_done: int) -> None:
    """Checkpoint ``s`` (all ranks take part: their RNG states are gathered; rank 0 writes), all or nothing."""
    rngs = gather_rng(s.g, s.info)
    if not s.info.main:
        return
    weights = {f"model.{k}": v for k, v in s.model.state_dict().items()}
    if s.ema is not None:
        weights |= {f"ema.{k}": v for k, v in s.ema.module.state_dict().items()}
    wall = s.wall_before + time.perf_counter() - s.t_start
    state = {"epoch": epoch_done, "world": s.info.world, "losses": s.losses, "wall_s": round(wall, 2)}
    # written whole into a temporary folder first, then renamed over the last checkpoint file by file (state.json
    # last): a full disk or an interrupt while writing leaves the last complete checkpoint as it was
    tmp = s.run_dir / f".checkpoint.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        ckpt.save_train_state(
            tmp, step=s.step, weights=weights, optimizer_state=s.opt.state_dict(), rng_states=rngs, state=state
        )
        with interrupts_deferred():  # the files move together or not at all
            for name in CHECKPOINT_FILES:
                os.replace(tmp / name, s.run_dir / name)
    except OSError as e:  # name the checkpoint file, not its temporary copy
        if e.filename is not None:
            e.filename = str(s.run_dir / Path(e.filename).name)
        raise
    finally:
        with interrupts_deferred():
            shutil.rmtree(tmp, ignore_errors=True)


def run_config(s: Session, extra: dict) -> dict:
    """config.json of a new run: model, training config, ``extra`` (machine, command) and the precision used."""
    precision = s.precision.to_dict() | ({"timings": s.precision.timings} if s.precision.timings else {})
    config = {"model": s.model.config.to_dict(), "train": s.cfg.to_dict(), **extra, "precision": precision}
    if isinstance(config.get("machine"), dict):  # run_info's guess -> what the run uses
        dtype = str(s.amp_dtype or torch.float32).replace("torch.", "")
        config["machine"] = {**config["machine"], "precision": dtype, "channels_last": s.precision.channels_last}
    return config


__all__ = ["Session", "setup", "restore", "save", "run_config"]
