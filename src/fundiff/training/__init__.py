"""Training of the write-up's three Part B models: configs, presets, the loop, EMA, resume.

- ``denoiser``: one-step denoiser D(z) ~ x, z = x + sigma * eps, L2 loss on x.
- ``time``: eps_theta(x_t, t), Ho et al. 2020 Alg. 1, L2 loss on eps.
- ``class``: eps_theta(x_t, t, c), c one-hot, dropped to zeros with p_uncond (Ho & Salimans 2022).

Images are in [0, 1] (the write-up's convention), shape (B, 1, 28, 28). The whole split
is one uint8 tensor in memory; batches are index slices of a per-epoch permutation drawn
from (seed, epoch), so a resumed run sees the same batches. Training noise comes from
one ``torch.Generator`` per rank whose state is checkpointed.

Under ``torchrun --nproc_per_node N`` the same code trains with DistributedDataParallel:
each rank takes every N-th index of the epoch permutation and batch_size / N images.

A run folder is locked (``run_lock``) while it trains. ``--precision auto`` takes the
faster of fp32 / bf16 autocast and of the memory formats, timed once per machine
(devices.choose_precision); the choice is recorded in config.json and kept on resume.
The small loop pieces (data order, LR factor, loss check, progress) are shared with
classify.py's classifier training.
"""

from __future__ import annotations

import math
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from fundiff import DEFAULT_SEED, flow
from fundiff import checkpoints as ckpt
from fundiff.denoisers import OBJECTIVES
from fundiff.devices import (
    PRECISIONS,
    PrecisionChoice,
    autocast_for,
    choose_precision,
    resolve_device,
    resolve_precision,
)
from fundiff.errors import FundiffError
from fundiff.models.unet import MODEL_KINDS, UNet, UNetConfig, example_inputs
from fundiff.schedules import BETA_SCHEDULES, NoiseSchedule


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run; saved to config.json."""

    kind: str  # "denoiser", "time" or "class"
    preset: str = "paper"  # which preset the values came from (informational)
    dataset: str = "mnist"  # "mnist" or "fashion-mnist"
    hidden: int = 64  # UNet hidden size D
    batch_size: int = 128  # global batch size (split across DDP ranks)
    epochs: int = 20  # passes over the train split
    lr: float = 1e-3  # Adam learning rate
    lr_schedule: str = (
        "exponential"  # "exponential": gamma = 0.1 ** (1 / epochs) per epoch; "constant"; "cosine": per step to 0
    )
    warmup_steps: int = 0  # linear LR warm-up steps (on top of lr_schedule)
    sigma: float = 0.5  # noise level of the one-step denoiser's training data
    T: int = 300  # diffusion steps (time / class kinds)
    beta_schedule: str = "linear"  # "linear" (write-up) or "cosine"
    objective: str = "eps"  # what the UNet predicts: "eps" (write-up), "v" (v-prediction) or "flow" (flow matching)
    loss_weight: str = "none"  # "none", or "min-snr" (Hang et al. 2023, gamma = 5; eps and v objectives)
    flow_times: str = "uniform"  # flow matching's training times: "uniform" or "logit-normal"
    p_uncond: float = 0.1  # probability of dropping the class vector (class kind)
    ema_decay: float = 0.0  # EMA of weights (decay warmed up as (1 + step) / (10 + step)); 0 disables it
    max_steps: int | None = None  # stop after this many optimizer steps in total (short runs)
    seed: int = DEFAULT_SEED  # seeds data order, noise and sample grids
    precision: str = "auto"  # "auto" (the faster of fp32 / bf16 autocast, timed once per machine), "bf16" or "fp32"
    channels_last: bool | None = None  # NHWC memory format; None: timed with "auto" precision, else on
    sample_epochs: tuple[int, ...] = ()  # write sample grids after these epochs
    save_every: int = 500  # checkpoint every N steps (and at every epoch end); 0: epoch ends only

    def __post_init__(self) -> None:
        checks = [
            (self.kind in MODEL_KINDS, f"unknown model kind {self.kind!r}; choose one of {', '.join(MODEL_KINDS)}"),
            (
                self.hidden >= 1 and self.batch_size >= 1 and self.epochs >= 1,
                "hidden, batch size and epochs must be >= 1",
            ),
            (self.lr > 0 and math.isfinite(self.lr), f"lr must be a positive number, got {self.lr}"),
            (
                self.lr_schedule in LR_SCHEDULES,
                f"unknown lr schedule {self.lr_schedule!r}; choose one of {', '.join(LR_SCHEDULES)}",
            ),
            (
                self.beta_schedule in BETA_SCHEDULES,
                f"unknown beta schedule {self.beta_schedule!r}; choose one of {', '.join(BETA_SCHEDULES)}",
            ),
            (
                self.precision in PRECISIONS,
                f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}",
            ),
            (
                self.objective in OBJECTIVES,
                f"unknown objective {self.objective!r}; choose one of {', '.join(OBJECTIVES)}",
            ),
            (
                self.loss_weight in LOSS_WEIGHTS,
                f"unknown loss weight {self.loss_weight!r}; choose one of {', '.join(LOSS_WEIGHTS)}",
            ),
            (
                self.loss_weight == "none" or self.objective != "flow",
                "min-snr weighting applies to the eps and v objectives, not to flow; drop --loss-weight",
            ),
            (
                self.flow_times in flow.TIME_LAWS,
                f"unknown flow time law {self.flow_times!r}; choose one of {', '.join(flow.TIME_LAWS)}",
            ),
            (0 <= self.p_uncond < 1, f"p_uncond must be in [0, 1), got {self.p_uncond}"),
            (0 <= self.ema_decay < 1, f"ema decay must be in [0, 1), got {self.ema_decay}"),
            (self.max_steps is None or self.max_steps >= 1, "max steps must be >= 1"),
            (self.T >= 2, "T must be >= 2"),
            (self.sigma >= 0, "sigma must be >= 0"),
        ]
        for ok, msg in checks:
            if not ok:
                raise FundiffError(msg)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["sample_epochs"] = list(self.sample_epochs)
        return d


LR_SCHEDULES = ("exponential", "constant", "cosine")
LOSS_WEIGHTS = ("none", "min-snr")
MIN_SNR_GAMMA = 5.0

# The write-up's hyperparameters ("paper"); "quick" is fundiff's fast-CPU recipe; "tiny" is for smoke tests.
# The time- and class-conditioned UNets share their recipe in each preset.
_PAPER_DIFFUSION = dict(hidden=64, batch_size=128, epochs=20, lr=1e-3, lr_schedule="exponential", precision="fp32")
_QUICK_DIFFUSION = dict(
    hidden=64, batch_size=256, epochs=3, lr=2e-3, lr_schedule="cosine", warmup_steps=100, ema_decay=0.995
)
# Flow matching (rectified flow) on the quick recipe, 10 epochs: the shipped models' recipe
# (benchmarks/ablate.py: at equal epochs it beats DDPM on FID and class balance; README "Better models").
_FLOW_DIFFUSION = dict(_QUICK_DIFFUSION, objective="flow", flow_times="logit-normal", T=1000, epochs=10)
PRESETS: dict[str, dict[str, dict]] = {
    "paper": {
        "denoiser": dict(
            hidden=128,
            batch_size=256,
            epochs=5,
            lr=1e-4,
            lr_schedule="constant",
            precision="fp32",
            sample_epochs=(1, 5),
        ),
        "time": dict(_PAPER_DIFFUSION, sample_epochs=(5, 20)),
        "class": dict(_PAPER_DIFFUSION, sample_epochs=(5, 20)),
    },
    "quick": {
        "denoiser": dict(
            hidden=64, batch_size=256, epochs=1, lr=1e-3, lr_schedule="cosine", warmup_steps=20, sample_epochs=(1,)
        ),
        "time": dict(_QUICK_DIFFUSION, sample_epochs=(3,)),
        "class": dict(_QUICK_DIFFUSION, sample_epochs=(3,)),
    },
    "flow": {
        "denoiser": dict(
            hidden=64, batch_size=256, epochs=1, lr=1e-3, lr_schedule="cosine", warmup_steps=20, sample_epochs=(1,)
        ),
        "time": dict(_FLOW_DIFFUSION, sample_epochs=(10,)),
        "class": dict(_FLOW_DIFFUSION, sample_epochs=(10,)),
    },
    "tiny": {
        k: dict(hidden=8, batch_size=64, epochs=1, lr=1e-3, lr_schedule="constant", max_steps=20, save_every=10)
        for k in MODEL_KINDS
    },
}


def preset_config(preset: str, kind: str, **overrides) -> TrainConfig:
    """The TrainConfig of ``preset`` for model ``kind``, with non-None ``overrides`` applied."""
    if preset not in PRESETS:
        raise FundiffError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if kind not in MODEL_KINDS:
        raise FundiffError(f"unknown model kind {kind!r}; choose one of {', '.join(MODEL_KINDS)}")
    names = {f.name for f in fields(TrainConfig)}
    unknown = set(overrides) - names
    if unknown:
        raise FundiffError(f"unknown training option(s) {', '.join(sorted(unknown))}")
    values = {**PRESETS[preset][kind], **{k: v for k, v in overrides.items() if v is not None}}
    return TrainConfig(kind=kind, preset=preset, **values)


def schedule_of_config(cfg: TrainConfig) -> NoiseSchedule:
    """The discrete schedule a time/class run samples on: its beta schedule, or for the flow
    objective the VP-equivalent grid of T flow times (flow.schedule)."""
    return flow.schedule(cfg.T) if cfg.objective == "flow" else NoiseSchedule.from_name(cfg.beta_schedule, cfg.T)


# -- distributed ---------------------------------------------------------------------------
@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device: torch.device) -> tuple[DistInfo, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(), device
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    rank = dist.get_rank()
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return DistInfo(rank, world), device


def _barrier(info: DistInfo) -> None:
    if info.world > 1:
        import torch.distributed as dist

        dist.barrier()


# -- loop pieces shared with classify.py -----------------------------------------------------
def epoch_permutation(n: int, *, seed: int, epoch: int, device: torch.device | str = "cpu") -> Tensor:
    """The data order of epoch ``epoch`` (0-based): a permutation of 0..n-1 (int64, on ``device``).

    Drawn on the CPU from (seed + 7919 * epoch), so it is the same on every device, rank and
    resumed session.
    """
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed + 7919 * epoch)).to(device)


def lr_factor(schedule: str, step: int, *, epoch: int, epochs: int, total_steps: int, warmup_steps: int = 0) -> float:
    """Multiplier of the peak LR at optimizer step ``step`` (0-based) in epoch ``epoch`` (0-based).

    A linear warm-up min(1, (step + 1) / warmup_steps) times the schedule: "exponential" (the
    write-up's ExponentialLR, gamma = 0.1 ** (1 / epochs), stepped per epoch), "cosine"
    (0.5 (1 + cos(pi step / total_steps)), per step, to 0 at the end) or "constant".
    """
    warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
    if schedule == "exponential":
        return warm * (0.1 ** (1.0 / epochs)) ** epoch
    if schedule == "cosine":
        return warm * 0.5 * (1 + math.cos(math.pi * min(step / max(total_steps, 1), 1.0)))
    return warm


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


def check_loss(loss: Tensor, step: int, advice: str) -> None:
    """A one-line FundiffError when the scalar ``loss`` is NaN or infinite; ``advice`` says what to do."""
    if not torch.isfinite(loss):
        raise FundiffError(f"the loss became {loss.item()} at step {step}; {advice}")


class Progress:
    """Step progress of a training loop: a tqdm bar on a terminal; in a log file (stderr not a
    terminal) one plain line every ``interval`` seconds and at every ``line()`` instead of redraws."""

    def __init__(self, total: int, *, desc: str, initial: int = 0, enabled: bool = True, interval: float = 30.0):
        self.total, self.desc, self.step, self.interval = total, desc, initial, interval
        self.enabled, self.info, self.bar = enabled, {}, None
        self.tty = enabled and sys.stderr.isatty()
        self.t_last = time.perf_counter()
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit="step", file=sys.stderr, dynamic_ncols=True)

    def update(self, **info) -> None:
        """One step done; ``info`` (e.g. epoch=, loss=) is shown beside the count."""
        self.step += 1
        self.info = info
        if self.bar is not None:
            self.bar.set_postfix(**info, refresh=False)
            self.bar.update(1)
        elif self.enabled and time.perf_counter() - self.t_last >= self.interval:
            self.line()

    def line(self, message: str = "") -> None:
        """Print ``message`` on its own line; without one, the current step and info (log mode only)."""
        if not self.enabled or (not message and self.bar is not None):
            return
        if not message:
            info = ", ".join(f"{k} {v}" for k, v in self.info.items())
            message = f"{self.desc}: step {self.step}/{self.total}" + (f", {info}" if info else "")
        if self.bar is not None:
            self.bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr, flush=True)
        self.t_last = time.perf_counter()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@contextmanager
def run_lock(run_dir: Path, *, enabled: bool = True) -> Iterator[None]:
    """Hold an exclusive OS lock (flock) on ``run_dir``/.lock; a second holder fails at once.

    The lock file holds the owner's pid and is removed on release. Linux/macOS only: where
    fcntl is missing the lock is skipped.
    """
    try:
        import fcntl
    except ImportError:  # Windows
        enabled = False
    if not enabled:
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / ".lock"
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise FundiffError(
                f"{run_dir} is being trained by another process (pid {pid}); wait for it or choose another --out"
            ) from None
        try:  # the holder may have removed the file between our open and flock: lock the new one then
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        path.unlink(missing_ok=True)  # while still locked, so no one else holds this inode
        os.close(fd)


# -- the loop -------------------------------------------------------------------------------
@dataclass
class TrainResult:
    run_dir: Path
    step: int
    epoch: int
    losses: list[float] = field(default_factory=list)
    images_per_s: float = 0.0
    wall_s: float = 0.0


def _loss(
    model: nn.Module, cfg: TrainConfig, schedule: NoiseSchedule | None, x0: Tensor, y: Tensor, g: torch.Generator
) -> Tensor:
    """The kind's training loss on a clean batch x0 (B,1,H,W) in [0,1] with labels y (B,)."""
    eps = torch.randn(x0.shape, generator=g, device=x0.device)
    if cfg.kind == "denoiser":
        return F.mse_loss(model(x0 + cfg.sigma * eps).float(), x0)
    b = x0.shape[0]
    if cfg.objective == "flow":
        tau = flow.sample_times(b, law=cfg.flow_times, generator=g, device=x0.device)
        x_in, t_in, target, weight = flow.interpolate(x0, eps, tau), tau, flow.velocity(x0, eps), None
    else:
        assert schedule is not None
        t = torch.randint(0, cfg.T, (b,), generator=g, device=x0.device)
        x_in, t_in = schedule.q_sample(x0, t, eps), t.float() / (cfg.T - 1)
        target, weight = diffusion_target(schedule, x0, eps, t, cfg.objective, cfg.loss_weight)
    c = None
    if cfg.kind == "class":
        keep = (torch.rand(b, generator=g, device=x0.device) >= cfg.p_uncond).float()
        num_classes = getattr(model, "module", model).config.num_classes  # through a DDP wrapper
        c = F.one_hot(y, num_classes).float() * keep[:, None]
    err = (model(x_in, t_in, c).float() - target).pow(2)
    if weight is None:
        return err.mean()
    return (err.mean(dim=(1, 2, 3)) * weight).mean()


def diffusion_target(
    schedule: NoiseSchedule, x0: Tensor, eps: Tensor, t: Tensor, objective: str, loss_weight: str
) -> tuple[Tensor, Tensor | None]:
    """(regression target, per-sample loss weight or None) of a DDPM objective at timesteps ``t`` (B,).

    ``eps``: the noise; ``v``: alpha_t eps - sigma_t x0 (Salimans & Ho 2022). ``min-snr``
    (Hang et al. 2023) weights each sample by min(SNR, gamma) / SNR for eps and
    min(SNR, gamma) / (SNR + 1) for v, SNR = abar / (1 - abar), gamma = 5: the eps-loss of
    a clean-ish sample no longer dominates, and the v-loss is the same weighting in x0 terms.
    """
    abar = schedule.abar_at(t.cpu()).to(x0.device, torch.float32)
    alpha, sigma = abar.sqrt().reshape(-1, 1, 1, 1), (1 - abar).sqrt().reshape(-1, 1, 1, 1)
    target = eps if objective == "eps" else alpha * eps - sigma * x0
    if loss_weight == "none":
        return target, None
    snr = abar / (1 - abar)
    weight = snr.clamp(max=MIN_SNR_GAMMA) / (snr if objective == "eps" else snr + 1)
    return target, weight


def _gather_rng(g: torch.Generator, info: DistInfo) -> list[Tensor]:
    state = g.get_state()
    if info.world == 1:
        return [state]
    import torch.distributed as dist

    out = [torch.empty_like(state) for _ in range(info.world)]
    dist.all_gather(out, state)  # gloo gathers CPU tensors; RNG states are CPU uint8
    return out


def _ema_model(model: nn.Module, decay: float) -> AveragedModel:
    """EMA of ``model``'s parameters (buffers copied) with decay min(decay, (1 + s) / (10 + s)) at step s.

    The warm-up keeps a short run's EMA from holding on to the random init. n_averaged starts
    at 1 (the copy of the init counts), so the update after optimizer step s sees n = s + 1.
    """
    # torch's AveragedModel costs 1.2 ms per update on the class UNet (D=64, 2 threads, 300 updates)
    # against 0.9 ms for a hand-written foreach lerp: < 0.2% of a training step, so no custom EMA.

    def lerp(ema_params: list[Tensor], params: list[Tensor], n_averaged: Tensor) -> None:
        s = int(n_averaged) - 1
        get_ema_multi_avg_fn(min(decay, (1 + s) / (10 + s)))(ema_params, params, n_averaged)

    ema = AveragedModel(model, multi_avg_fn=lerp, use_buffers=False).eval().requires_grad_(False)
    ema.n_averaged.fill_(1)
    return ema


@dataclass
class _Session:
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
    x_all: Tensor  # uint8 (N,H,W) on dev
    y_all: Tensor  # int64 (N,) on dev
    per_rank_batch: int
    steps_per_epoch: int
    total_steps: int
    step: int = 0
    losses: list[float] = field(default_factory=list)
    wall_before: float = 0.0  # training seconds of earlier sessions of this run
    t_start: float = field(default_factory=time.perf_counter)
    images_seen: int = 0


def _setup(cfg: TrainConfig, run_dir: Path, data: tuple[Tensor, Tensor], device, resume: bool) -> _Session:
    """Device, DDP process group, precision, model (seeded init), EMA, optimizer and noise generator."""
    info, dev = _init_distributed(resolve_device(device) if not isinstance(device, torch.device) else device)
    images, labels = data
    model_cfg = UNetConfig(kind=cfg.kind, in_channels=1, hidden=cfg.hidden, image_size=images.shape[-1])
    with torch.random.fork_rng(devices=[]):  # seeded init without changing the caller's global RNG
        torch.manual_seed(cfg.seed)
        model = UNet(model_cfg)
    per_rank_batch = max(1, cfg.batch_size // info.world)
    precision = _precision(cfg, run_dir, resume, model.to(dev), per_rank_batch, info)
    mem_format = torch.channels_last if precision.channels_last else torch.contiguous_format
    model = model.to(dev).to(memory_format=mem_format)
    steps_per_epoch = math.ceil(math.ceil(images.shape[0] / info.world) / per_rank_batch)
    total_steps = steps_per_epoch * cfg.epochs
    return _Session(
        cfg=cfg,
        run_dir=run_dir,
        info=info,
        dev=dev,
        precision=precision,
        amp_dtype=precision.dtype,
        mem_format=mem_format,
        model=model,
        net=model,
        ema=_ema_model(model, cfg.ema_decay) if cfg.ema_decay > 0 else None,
        opt=torch.optim.Adam(model.parameters(), lr=cfg.lr),
        g=torch.Generator(device=dev).manual_seed(cfg.seed * 1009 + info.rank),
        schedule=schedule_of_config(cfg) if cfg.kind != "denoiser" else None,
        x_all=images.to(dev),  # uint8, converted per batch
        y_all=labels.to(dev),
        per_rank_batch=per_rank_batch,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps if cfg.max_steps is None else min(cfg.max_steps, total_steps),
    )


def _precision(
    cfg: TrainConfig, run_dir: Path, resume: bool, model: UNet, batch_size: int, info: DistInfo
) -> PrecisionChoice:
    """The run's autocast dtype and memory format: as recorded in config.json when resuming, else
    devices.choose_precision on rank 0 (timed for "auto"), sent to the other ranks."""
    dev = next(model.parameters()).device
    if resume:
        recorded = ckpt.load_config(run_dir).get("precision")
        if recorded:
            return PrecisionChoice.from_dict(recorded)
        # a run from before the measured choice: its rule then (bf16 where supported, channels_last on)
        return PrecisionChoice(resolve_precision(cfg.precision, dev), cfg.channels_last is not False, "forced")
    choice: list[PrecisionChoice | None] = [None]
    if info.main:
        make_batch = partial(example_inputs, model.config, batch_size, dev)
        choice[0] = choose_precision(
            model, make_batch, dev, mode="train", precision=cfg.precision, channels_last=cfg.channels_last
        )
    if info.world > 1:
        import torch.distributed as dist

        dist.broadcast_object_list(choice, src=0)
    assert choice[0] is not None
    return choice[0]


def _restore(s: _Session) -> None:
    """Load the run folder's last checkpoint into ``s`` (weights, EMA, optimizer, this rank's RNG, counters)."""
    weights, opt_state, rng_states, state = ckpt.load_train_state(s.run_dir)
    saved = ckpt.load_config(s.run_dir).get("train", {})
    changed = [k for k, v in s.cfg.to_dict().items() if k not in ("max_steps",) and saved.get(k) != v]
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


def _save(s: _Session, epoch_done: int) -> None:
    """Checkpoint ``s`` (all ranks take part: their RNG states are gathered; rank 0 writes)."""
    rngs = _gather_rng(s.g, s.info)
    if not s.info.main:
        return
    weights = {f"model.{k}": v for k, v in s.model.state_dict().items()}
    if s.ema is not None:
        weights |= {f"ema.{k}": v for k, v in s.ema.module.state_dict().items()}
    wall = s.wall_before + time.perf_counter() - s.t_start
    state = {"epoch": epoch_done, "world": s.info.world, "losses": s.losses, "wall_s": round(wall, 2)}
    ckpt.save_train_state(
        s.run_dir, step=s.step, weights=weights, optimizer_state=s.opt.state_dict(), rng_states=rngs, state=state
    )


def _train_step(s: _Session, idx: Tensor, epoch: int) -> float:
    """One optimizer step (and EMA update) on the images ``idx`` of this rank; returns the loss."""
    cfg = s.cfg
    x0 = s.x_all[idx].unsqueeze(1).float().div_(255).contiguous(memory_format=s.mem_format)
    set_lr(s.opt, cfg.lr * _lr_factor(cfg, s.step, epoch, s.total_steps))
    with autocast_for(s.dev, s.amp_dtype):
        loss = _loss(s.net, cfg, s.schedule, x0, s.y_all[idx], s.g)
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


def _train_epoch(s: _Session, epoch: int, progress: Progress) -> None:
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
            _save(s, epoch)


def _lr_factor(cfg: TrainConfig, step: int, epoch: int, total_steps: int) -> float:
    """lr_factor with ``cfg``'s schedule and warm-up."""
    return lr_factor(
        cfg.lr_schedule, step, epoch=epoch, epochs=cfg.epochs, total_steps=total_steps, warmup_steps=cfg.warmup_steps
    )


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
) -> TrainResult:
    """Train ``cfg.kind`` on ``data`` = (images uint8 (N,H,W), labels int64 (N,)) into ``run_dir``.

    Writes config.json at the start and a checkpoint every ``save_every`` steps, at each
    epoch end and at the end; ``resume`` continues a run folder exactly where it stopped.
    ``on_epoch_end(model, epoch, run_dir)`` (main rank, eval mode) draws figures. The run
    folder is locked for the whole training (one ``train`` per folder at a time).
    """
    run_dir = Path(run_dir)
    main = int(os.environ.get("RANK", "0")) == 0
    with run_lock(run_dir, enabled=main):
        if not resume and main and (run_dir / "state.json").exists():
            raise FundiffError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --out")
        s = _setup(cfg, run_dir, data, device, resume)
        if resume:
            _restore(s)
        elif s.info.main:
            ckpt.save_config(run_dir, _run_config(s, extra_config or {}))
        _barrier(s.info)
        if s.info.world > 1:
            device_ids = [s.dev.index] if s.dev.type == "cuda" else None
            s.net = nn.parallel.DistributedDataParallel(s.model, device_ids=device_ids)
        return _train_epochs(s, progress, on_epoch_end)


def _run_config(s: _Session, extra: dict) -> dict:
    """config.json of a new run: model, training config, ``extra`` (machine, command) and the precision used."""
    precision = s.precision.to_dict() | ({"timings": s.precision.timings} if s.precision.timings else {})
    config = {"model": s.model.config.to_dict(), "train": s.cfg.to_dict(), **extra, "precision": precision}
    if isinstance(config.get("machine"), dict):  # run_info's guess -> what the run uses
        dtype = str(s.amp_dtype or torch.float32).replace("torch.", "")
        config["machine"] = {**config["machine"], "precision": dtype, "channels_last": s.precision.channels_last}
    return config


def _train_epochs(s: _Session, progress: bool, on_epoch_end) -> TrainResult:
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
                _save(s, epoch)
                bar.line()
                if s.info.main and on_epoch_end is not None:
                    on_epoch_end(s.ema.module if s.ema is not None else s.model, epoch, s.run_dir)
                    s.model.train()
            else:  # stopped mid-epoch by max_steps
                _save(s, epoch)
            _barrier(s.info)
    finally:  # also on a NaN loss or Ctrl-C: the bar's last line stays readable
        bar.close()
    wall = time.perf_counter() - s.t_start
    return TrainResult(s.run_dir, s.step, epoch, s.losses, s.images_seen / max(wall, 1e-9), wall)


__all__ = [
    "TrainConfig",
    "PRESETS",
    "preset_config",
    "train",
    "TrainResult",
    "epoch_permutation",
    "lr_factor",
    "set_lr",
    "check_loss",
    "Progress",
    "run_lock",
]
