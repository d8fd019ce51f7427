"""Distillation: a few-step student from a trained flow model, by reflow on the guided teacher's own pairs.

The teacher is a class model (its pairs guided, below) or a time model (every pair unconditional; nothing to
guide). Two ideas, both measured on MNIST (README, "Few-step students"):

- **Guidance distillation** (Meng et al. 2023): the teacher samples with CFG at scale ``guidance``, so the
  student's conditional pass *is* the guided one; one call replaces the CFG pair. The student records the
  scale (``ModelTraits.guidance``): it is sampled at that scale only.
- **Reflow** (Liu et al. 2023, "Flow straight and fast"): the teacher's ODE maps each starting noise
  x_T to a sample x_0 (its default-quality sampler, deterministic). The student learns the flow-matching
  velocity of the *straight* line between the pair, ``x_tau = (1 - tau) x_0 + tau x_T`` with target
  ``x_T - x_0`` (training.objectives with the pair's noise in place of fresh noise). Straight paths are
  what one Euler step follows exactly, so the student samples in 1 or 2 steps, and it still has a
  velocity at every tau (SDEdit, inpainting, anagrams and hybrids start mid-way).

:func:`make_pairs` draws the pairs chunk by chunk into ``run_dir/pairs`` (each chunk written whole, so an
interrupted run resumes after its last chunk); a share ``null_share`` of them is unconditional (the null
prompt, which SDEdit and inpainting take by default; a time model's are all unconditional). :func:`distill`
then trains the student (initialized with the teacher's weights) with fundiff's training loop (resume, DDP,
the run lock, progress, checkpoints).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import Tensor

from fundiff import DEFAULT_SEED
from fundiff import checkpoints as ckpt
from fundiff import timesteps as ts_lib
from fundiff.errors import FundiffError
from fundiff.training.lock import run_lock
from fundiff.training.progress import Progress

PAIRS_DIR = "pairs"
CHUNK = 200  # pairs per chunk file (the teacher samples one chunk as one batch)


@dataclass(frozen=True)
class DistillConfig:
    """Everything that determines a distillation (config.json's "distill"); the student's training config is
    the teacher's with :meth:`train_overrides`."""

    teacher: str = "mnist-class"  # a shipped name or a run folder of a flow class or time model
    # CFG scale distilled in: the class teacher's best FID at >= 99% accuracy (its card's sweep); 1 for a time teacher
    guidance: float = 2.0
    pairs: int = 10000  # teacher samples (x_T, class, x_0)
    null_share: float = 0.1  # the share of unconditional pairs (the null prompt)
    teacher_sampler: str = "dpm++"
    teacher_steps: int = 10
    steps: int = 2  # the student's default number of sampling steps (measured: README "Few-step students")
    time_shift: float = 0.25  # its timesteps (timesteps.shifted): 2 steps at t = 999, 199 (measured: README)
    epochs: int = 16
    lr: float = 2e-4
    batch_size: int = 128
    ema_decay: float = 0.995
    flow_times: str = "uniform"
    seed: int = DEFAULT_SEED

    def to_dict(self) -> dict:
        return asdict(self)

    def check(self) -> None:
        if self.guidance < 1:
            raise FundiffError(f"--guidance must be at least 1 (1: no guidance), got {self.guidance:g}")
        if self.pairs < 1 or self.epochs < 1 or self.steps < 1 or self.teacher_steps < 1 or self.batch_size < 1:
            raise FundiffError("--pairs, --epochs, --steps, --teacher-steps and --batch-size must be at least 1")
        if not 0 <= self.null_share < 1:
            raise FundiffError(f"--null-share must be in [0, 1), got {self.null_share:g}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise FundiffError(f"--lr must be a positive number, got {self.lr}")
        if not (math.isfinite(self.time_shift) and self.time_shift > 0):
            raise FundiffError(f"--time-shift must be a positive number, got {self.time_shift}")


def chunk_plan(cfg: DistillConfig, num_classes: int) -> list[tuple[int, int]]:
    """(conditional pairs, null pairs) of each chunk: :data:`CHUNK` pairs each (the last one the rest),
    ``null_share`` of them null, the classes in turn (pair j of a chunk has class j mod num_classes); with no
    classes (a time model) every pair is null."""
    plan, left = [], cfg.pairs
    while left > 0:
        n = min(CHUNK, left)
        null = round(n * cfg.null_share) if num_classes else n
        plan.append((n - null, null))
        left -= n
    return plan


def chunk_path(run_dir: Path, k: int) -> Path:
    return Path(run_dir) / PAIRS_DIR / f"{k:05d}.safetensors"


def make_pairs(teacher, cfg: DistillConfig, run_dir: Path, *, progress: bool = True) -> float:
    """Sample the teacher's pairs into ``run_dir/pairs``, skipping the chunks already there.

    Chunk k draws its starting noise from ``Generator().manual_seed(seed + k)``: the same pairs on every
    machine and resume. Conditional rows are sampled with CFG at ``guidance``, null rows unguided (a time model's
    label is 0: the training loop reads no label of a time model). Returns the
    seconds spent on them in all (this call's added to those of earlier calls, kept in ``pairs/wall.json``)."""
    import time

    from fundiff import samplers
    from fundiff.atomic import atomic_write_json
    from fundiff.guidance import CFG

    num_classes = teacher.num_classes
    plan = chunk_plan(cfg, num_classes)
    ts = ts_lib.resolve(teacher.schedule.T, steps=cfg.teacher_steps)
    guided = CFG(teacher, cfg.guidance) if num_classes else None
    shape = (teacher.channels, teacher.image_size, teacher.image_size)
    todo = [k for k in range(len(plan)) if not chunk_path(run_dir, k).is_file()]
    bar = Progress(len(plan), initial=len(plan) - len(todo), desc="teacher pairs", enabled=progress)
    wall_file = Path(run_dir) / PAIRS_DIR / "wall.json"
    before = ckpt.read_json(wall_file)["wall_s"] if wall_file.is_file() else 0.0
    t0 = time.perf_counter()
    try:
        for k in todo:
            n_cond, n_null = plan[k]
            g = torch.Generator(device=teacher.device).manual_seed(cfg.seed + k)
            x_T = torch.randn((n_cond + n_null, *shape), generator=g, device=teacher.device)
            y = torch.cat([torch.arange(n_cond) % max(num_classes, 1), torch.full((n_null,), num_classes)]).long()
            parts = []
            if n_cond:
                cond = teacher.one_hot(y[:n_cond].tolist())
                parts.append(samplers.sample(guided, x_T[:n_cond], ts, cond=cond, sampler=cfg.teacher_sampler))
            if n_null:
                null = teacher.encode([""] * n_null)
                parts.append(samplers.sample(teacher, x_T[n_cond:], ts, cond=null, sampler=cfg.teacher_sampler))
            x_0 = torch.cat(parts).clamp(0, 1)
            path = chunk_path(run_dir, k)
            path.parent.mkdir(parents=True, exist_ok=True)
            ckpt.atomic_write_tensors(path, {"x_T": x_T, "y": y, "x_0": x_0}, {"chunk": str(k)})
            atomic_write_json(wall_file, {"wall_s": round(before + time.perf_counter() - t0, 2)})
            bar.update(chunk=f"{k + 1}/{len(plan)}")
    finally:
        bar.close()
    return before + time.perf_counter() - t0 if todo else before


def load_pairs(run_dir: Path, cfg: DistillConfig, num_classes: int) -> tuple[Tensor, Tensor, Tensor]:
    """All pairs of ``run_dir/pairs``: (x_T float32 (N,C,H,W), y int64 (N,) with num_classes for null,
    x_0 uint8 (N,C,H,W), the teacher's samples as the training loop reads images)."""
    xs, ys, x0s = [], [], []
    for k in range(len(chunk_plan(cfg, num_classes))):
        tensors, _ = ckpt.read_tensors(chunk_path(run_dir, k))
        xs.append(tensors["x_T"])
        ys.append(tensors["y"])
        x0s.append(tensors["x_0"])
    x_0 = torch.cat(x0s).mul(255).round().to(torch.uint8)
    return torch.cat(xs), torch.cat(ys), x_0


def train_overrides(cfg: DistillConfig) -> dict:
    """The student's TrainConfig fields that differ from its teacher's: the reflow recipe."""
    return {
        "epochs": cfg.epochs,
        "lr": cfg.lr,
        "lr_schedule": "constant",
        "warmup_steps": 0,
        "batch_size": cfg.batch_size,
        "ema_decay": cfg.ema_decay,
        "flow_times": cfg.flow_times,
        "p_uncond": 0.0,  # the null pairs are the unconditional ones
        "seed": cfg.seed,
        "sample_epochs": (),
        "train_images": None,
        "max_steps": None,
        "preset": "distill",
    }


def guidance_for(teacher, guidance: float | None) -> float:
    """The CFG scale to distill into a student of ``teacher``: ``guidance``, or None for the default (a class
    model's :class:`DistillConfig` default; 1 for a time model, which has nothing to guide and takes no other)."""
    if teacher.kind == "time":
        if guidance not in (None, 1.0):
            raise FundiffError(f"a time model takes no guidance; drop --guidance {guidance:g}")
        return 1.0
    return DistillConfig.guidance if guidance is None else guidance


def check_teacher(teacher, name: str, cfg: DistillConfig | None = None) -> None:
    """A one-line FundiffError unless ``teacher`` is a fundiff time or class model (one-hot classes) that is no
    student already, and ``cfg``'s guidance is 1 for a time model."""
    from fundiff.denoisers import UNetDenoiser

    if not isinstance(teacher, UNetDenoiser) or teacher.text is not None:
        raise FundiffError(
            f"{name} is no fundiff time or class model; distill a model such as mnist-class or mnist-time"
        )
    if teacher.traits.student:
        raise FundiffError(f"{name} is a distilled student already; distill its teacher instead")
    if cfg is not None:
        guidance_for(teacher, cfg.guidance)


def distill(
    cfg: DistillConfig,
    run_dir: str | Path,
    teacher,
    teacher_train: dict,
    *,
    device: str | torch.device = "cpu",
    resume: bool = False,
    progress: bool = True,
    extra_config: dict | None = None,
):
    """Distill ``teacher`` (the Denoiser of ``cfg.teacher``, loaded by the caller: backends.runs.load_denoiser;
    ``teacher_train``: its config.json's "train") into a student in ``run_dir`` (module docstring): the
    teacher's pairs, then reflow.

    ``resume`` continues an interrupted distillation: the pairs after the last complete chunk, then the
    student's training from its last checkpoint. The student's config.json records ``cfg`` ("distill"), which
    the loader reads (its guidance, default steps and sampler). The student trains with its teacher's training
    precision. Returns the training's TrainResult.
    """
    from fundiff.atomic import atomic_write_json
    from fundiff.training.config import config_from_dict
    from fundiff.training.loop import train

    cfg.check()
    check_teacher(teacher, cfg.teacher, cfg)
    run_dir = Path(run_dir)
    record = run_dir / PAIRS_DIR / "distill.json"
    if resume:
        if not record.is_file():
            raise FundiffError(f"{run_dir} holds no distillation to resume; drop --resume to start one")
        saved = ckpt.read_json(record)
        changed = [k for k, v in cfg.to_dict().items() if saved.get(k) != v]
        if changed:
            raise FundiffError(
                f"--resume with different settings ({', '.join(changed)}) than {record}; drop them or start anew"
            )
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise FundiffError(
            f"{run_dir} is not empty; pass --resume to continue its distillation or choose another --out"
        )
    with run_lock(run_dir):
        if not resume:
            record.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(record, cfg.to_dict())
        pairs_s = make_pairs(teacher, cfg, run_dir, progress=progress)
    x_T, y, x_0 = load_pairs(run_dir, cfg, teacher.num_classes)
    student_cfg = replace(config_from_dict(teacher_train), objective="flow", **train_overrides(cfg))
    init = {k: v.contiguous() for k, v in teacher.model.state_dict().items()}
    extra = (extra_config or {}) | {"distill": cfg.to_dict() | {"pairs_wall_s": round(pairs_s, 1)}}
    return train(
        student_cfg,
        run_dir,
        data=(x_0, y),
        noise=x_T,
        init=init,
        device=device,
        resume=resume and (run_dir / "config.json").is_file(),
        progress=progress,
        extra_config=extra,
    )


__all__ = [
    "DistillConfig",
    "chunk_plan",
    "make_pairs",
    "load_pairs",
    "train_overrides",
    "guidance_for",
    "check_teacher",
    "distill",
]
