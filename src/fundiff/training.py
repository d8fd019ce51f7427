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
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fundiff import DEFAULT_SEED
from fundiff import checkpoints as ckpt
from fundiff.devices import PRECISIONS, autocast_for, resolve_device, resolve_precision
from fundiff.errors import FundiffError
from fundiff.models.unet import MODEL_KINDS, UNet, UNetConfig
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
    p_uncond: float = 0.1  # probability of dropping the class vector (class kind)
    ema_decay: float = 0.0  # EMA of weights (decay warmed up as (1 + step) / (10 + step)); 0 disables it
    max_steps: int | None = None  # stop after this many optimizer steps in total (short runs)
    seed: int = DEFAULT_SEED  # seeds data order, noise and sample grids
    precision: str = "auto"  # "auto" (bf16 where supported), "bf16" or "fp32"
    channels_last: bool = True  # NHWC memory format: 1.1x (fp32) to 1.3x (bf16) faster on this CPU, see benchmarks/
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

# The write-up's hyperparameters ("paper"); "quick" is fundiff's fast-CPU recipe; "tiny" is for smoke tests.
PRESETS: dict[str, dict[str, dict]] = {
    "paper": {
        "denoiser": dict(hidden=128, batch_size=256, epochs=5, lr=1e-4, lr_schedule="constant", sample_epochs=(1, 5)),
        "time": dict(hidden=64, batch_size=128, epochs=20, lr=1e-3, lr_schedule="exponential", sample_epochs=(5, 20)),
        "class": dict(hidden=64, batch_size=128, epochs=20, lr=1e-3, lr_schedule="exponential", sample_epochs=(5, 20)),
    },
    "quick": {
        "denoiser": dict(
            hidden=64, batch_size=256, epochs=1, lr=1e-3, lr_schedule="cosine", warmup_steps=20, sample_epochs=(1,)
        ),
        "time": dict(
            hidden=64,
            batch_size=256,
            epochs=3,
            lr=2e-3,
            lr_schedule="cosine",
            warmup_steps=100,
            ema_decay=0.995,
            sample_epochs=(3,),
        ),
        "class": dict(
            hidden=64,
            batch_size=256,
            epochs=3,
            lr=2e-3,
            lr_schedule="cosine",
            warmup_steps=100,
            ema_decay=0.995,
            sample_epochs=(3,),
        ),
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


# -- the loop -------------------------------------------------------------------------------
@dataclass
class TrainResult:
    run_dir: Path
    step: int
    epoch: int
    losses: list[float] = field(default_factory=list)
    images_per_s: float = 0.0
    wall_s: float = 0.0


def _lr_factor(cfg: TrainConfig, step: int, epoch: int, total_steps: int) -> float:
    """Multiplier of cfg.lr at optimizer step ``step`` (0-based) in epoch ``epoch``."""
    warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
    if cfg.lr_schedule == "exponential":  # the write-up: ExponentialLR, gamma = 0.1 ** (1 / epochs), per epoch
        return warm * (0.1 ** (1.0 / cfg.epochs)) ** epoch
    if cfg.lr_schedule == "cosine":
        return warm * 0.5 * (1 + math.cos(math.pi * min(step / max(total_steps, 1), 1.0)))
    return warm


def _loss(
    model: nn.Module, cfg: TrainConfig, schedule: NoiseSchedule | None, x0: Tensor, y: Tensor, g: torch.Generator
) -> Tensor:
    """The kind's training loss on a clean batch x0 (B,1,H,W) in [0,1] with labels y (B,)."""
    eps = torch.randn(x0.shape, generator=g, device=x0.device)
    if cfg.kind == "denoiser":
        return F.mse_loss(model(x0 + cfg.sigma * eps).float(), x0)
    assert schedule is not None
    t = torch.randint(0, cfg.T, (x0.shape[0],), generator=g, device=x0.device)
    x_t = schedule.q_sample(x0, t, eps)
    t_norm = t.float() / (cfg.T - 1)
    if cfg.kind == "time":
        return F.mse_loss(model(x_t, t_norm).float(), eps)
    keep = (torch.rand(x0.shape[0], generator=g, device=x0.device) >= cfg.p_uncond).float()
    c = F.one_hot(y, 10).float() * keep[:, None]
    return F.mse_loss(model(x_t, t_norm, c).float(), eps)


def _gather_rng(g: torch.Generator, info: DistInfo) -> list[Tensor]:
    state = g.get_state()
    if info.world == 1:
        return [state]
    import torch.distributed as dist

    out = [torch.empty_like(state) for _ in range(info.world)]
    dist.all_gather(out, state)  # gloo gathers CPU tensors; RNG states are CPU uint8
    return out


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
    ``on_epoch_end(model, epoch, run_dir)`` (main rank, eval mode) draws figures.
    """
    run_dir = Path(run_dir)
    info, dev = _init_distributed(resolve_device(device) if not isinstance(device, torch.device) else device)
    amp_dtype = resolve_precision(cfg.precision, dev)
    images, labels = data
    N = images.shape[0]
    x_all = images.to(dev)  # uint8, converted per batch
    y_all = labels.to(dev)
    model_cfg = UNetConfig(kind=cfg.kind, in_channels=1, hidden=cfg.hidden, image_size=images.shape[-1])
    schedule = NoiseSchedule.from_name(cfg.beta_schedule, cfg.T) if cfg.kind != "denoiser" else None

    torch.manual_seed(cfg.seed)  # parameter init only; training noise uses its own generator
    model = UNet(model_cfg).to(dev)
    mem_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = model.to(memory_format=mem_format)
    ema = None
    if cfg.ema_decay > 0:
        ema = UNet(model_cfg).to(dev).to(memory_format=mem_format).eval().requires_grad_(False)
        ema.load_state_dict(model.state_dict())
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    per_rank_batch = max(1, cfg.batch_size // info.world)
    steps_per_epoch = math.ceil(math.ceil(N / info.world) / per_rank_batch)
    total_steps = (
        steps_per_epoch * cfg.epochs if cfg.max_steps is None else min(cfg.max_steps, steps_per_epoch * cfg.epochs)
    )
    g = torch.Generator(device=dev).manual_seed(cfg.seed * 1009 + info.rank)

    step, losses, wall_before = 0, [], 0.0  # wall_before: training seconds of earlier sessions of this run
    if resume:
        weights, state_tensors, state = ckpt.load_checkpoint(run_dir)
        saved = ckpt.load_config(run_dir).get("train", {})
        changed = [k for k, v in cfg.to_dict().items() if k not in ("max_steps",) and saved.get(k) != v]
        if changed:
            raise FundiffError(
                f"--resume with different settings ({', '.join(changed)}) than {run_dir}/config.json; drop them or start a new run"
            )
        model.load_state_dict({k[6:]: v for k, v in weights.items() if k.startswith("model.")})
        if ema is not None:
            ema.load_state_dict({k[4:]: v for k, v in weights.items() if k.startswith("ema.")})
        opt_state = {"param_groups": state["optimizer"]["param_groups"], "state": {}}
        for key, v in state_tensors.items():
            if key.startswith("optim."):
                _, idx, name = key.split(".", 2)
                opt_state["state"].setdefault(int(idx), {})[name] = v
        opt.load_state_dict(opt_state)
        rng_key = f"rng.noise.{info.rank}"
        if rng_key in state_tensors and state.get("world") == info.world:
            g.set_state(state_tensors[rng_key])
        else:
            raise FundiffError(
                f"cannot resume {run_dir} exactly: it was saved with {state.get('world')} process(es), now {info.world}; resume with the same number"
            )
        step, losses, wall_before = int(state["step"]), list(state["losses"]), float(state.get("wall_s", 0.0))
    elif info.main:
        if (run_dir / "state.json").exists():
            raise FundiffError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --out")
        ckpt.save_config(run_dir, {"model": model_cfg.to_dict(), "train": cfg.to_dict(), **(extra_config or {})})
    _barrier(info)

    net: nn.Module = model
    if info.world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)

    def save(step: int, epoch_done: int) -> None:
        rngs = _gather_rng(g, info)
        if not info.main:
            return
        weights = {f"model.{k}": v for k, v in model.state_dict().items()}
        if ema is not None:
            weights |= {f"ema.{k}": v for k, v in ema.state_dict().items()}
        sd = opt.state_dict()
        tensors = {f"optim.{i}.{k}": torch.as_tensor(v) for i, s in sd["state"].items() for k, v in s.items()}
        tensors |= {f"rng.noise.{r}": s for r, s in enumerate(rngs)}
        wall = wall_before + time.perf_counter() - t_start
        state = {
            "epoch": epoch_done,
            "world": info.world,
            "losses": losses,
            "wall_s": round(wall, 2),
            "optimizer": {"param_groups": sd["param_groups"]},
        }
        ckpt.save_checkpoint(run_dir, step=step, weights=weights, state_tensors=tensors, state=state)

    t_start, images_seen = time.perf_counter(), 0
    bar = None
    if progress and info.main:
        from tqdm import tqdm

        bar = tqdm(
            total=total_steps, initial=step, desc=f"train {cfg.kind}", unit="step", file=sys.stderr, dynamic_ncols=True
        )
    epoch = step // steps_per_epoch
    model.train()
    while step < total_steps:
        perm = torch.randperm(N, generator=torch.Generator().manual_seed(cfg.seed + 7919 * epoch)).to(dev)
        perm = perm[info.rank :: info.world]
        for b in range(step - epoch * steps_per_epoch, steps_per_epoch):
            if step >= total_steps:
                break
            idx = perm[b * per_rank_batch : (b + 1) * per_rank_batch]
            x0 = x_all[idx].unsqueeze(1).float().div_(255).contiguous(memory_format=mem_format)
            for group in opt.param_groups:
                group["lr"] = cfg.lr * _lr_factor(cfg, step, epoch, total_steps)
            with autocast_for(dev, amp_dtype):
                loss = _loss(net, cfg, schedule, x0, y_all[idx], g)
            if not torch.isfinite(loss):
                raise FundiffError(
                    f"the loss became {loss.item()} at step {step}; the last good checkpoint in {run_dir} is kept. "
                    "Lower --lr or use --precision fp32, then --resume"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if ema is not None:
                # warm-up (1 + s) / (10 + s): early in a short run the EMA must not keep the random init
                decay = min(cfg.ema_decay, (1 + step) / (10 + step))
                with torch.no_grad():
                    torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - decay)
                    for b_ema, b_model in zip(ema.buffers(), model.buffers()):
                        b_ema.copy_(b_model)
            step += 1
            images_seen += x0.shape[0] * info.world
            losses.append(loss.item())
            if bar is not None:
                rate = images_seen / max(time.perf_counter() - t_start, 1e-9)
                bar.set_postfix(epoch=epoch + 1, loss=f"{losses[-1]:.4f}", img_s=f"{rate:.0f}", refresh=False)
                bar.update(1)
            if cfg.save_every and step % cfg.save_every == 0 and step % steps_per_epoch != 0:
                save(step, epoch)
        if step % steps_per_epoch == 0:
            epoch += 1
            save(step, epoch)
            if info.main and on_epoch_end is not None:
                on_epoch_end(ema if ema is not None else model, epoch, run_dir)
                model.train()
        else:  # stopped mid-epoch by max_steps
            save(step, epoch)
        _barrier(info)
    if bar is not None:
        bar.close()
    wall = time.perf_counter() - t_start
    return TrainResult(run_dir, step, epoch, losses, images_seen / max(wall, 1e-9), wall)


def run_info(cfg: TrainConfig, device: torch.device) -> dict:
    """Machine facts recorded beside a run (for model cards and benchmarks)."""
    import platform

    return {
        "machine": {
            "device": str(device),
            "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "precision": str(resolve_precision(cfg.precision, device) or torch.float32).replace("torch.", ""),
        }
    }


__all__ = ["TrainConfig", "PRESETS", "preset_config", "train", "TrainResult"]
