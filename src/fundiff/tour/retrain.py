"""``fundiff tour --train PRESET``: retrain Part B's denoiser, time and class models first, saying how long."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch

from fundiff import provenance
from fundiff.devices import cpu_name


def _total_steps(cfg, n_images: int) -> int:
    total = -(-n_images // cfg.batch_size) * cfg.epochs
    return total if cfg.max_steps is None else min(total, cfg.max_steps)


def estimate_train_seconds(cfg, data: tuple[torch.Tensor, torch.Tensor], device: torch.device) -> float:
    """Seconds ``cfg`` will train here: the wall time of a 2-step run (start-up included), plus
    (wall of 5 steps - wall of 2 steps) / 3 for each further step. The probes train in a temporary folder.
    """
    import tempfile

    from fundiff import training

    walls = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in (2, 5):
            probe = replace(cfg, max_steps=k, save_every=0, sample_epochs=())
            walls.append(training.train(probe, Path(tmp) / str(k), data=data, device=device, progress=False).wall_s)
    per_step = max(walls[1] - walls[0], 0.0) / 3 or walls[1] / 5
    return walls[0] + per_step * max(_total_steps(cfg, len(data[0])) - 2, 0)  # start-up + 2 steps, then the rest


def train_part_b(
    out: Path, preset: str, dataset: str, *, seed: int, device: torch.device, data_dir, log
) -> dict[str, str]:
    """Train a denoiser, a time and a class model with ``preset`` into OUT/runs/ (resuming unfinished runs).

    Says up front how long it will take here. Returns {role: run folder} for Part B.
    """
    from fundiff import data, training

    images, labels = data.load_split(dataset, data_dir, train=True)
    kinds = {"denoiser": "denoiser", "time": "time", "class-b": "class"}
    cfgs = {role: training.preset_config(preset, kind, dataset=dataset, seed=seed) for role, kind in kinds.items()}
    folders = {role: out / "runs" / f"{dataset}-{cfg.kind}-{preset}" for role, cfg in cfgs.items()}
    todo = {r: c for r, c in cfgs.items() if _steps_done(folders[r]) < _total_steps(c, len(images))}
    if todo:
        est = sum(estimate_train_seconds(c, (images, labels), device) for c in todo.values())
        log(
            f"training {', '.join(c.kind for c in todo.values())} with --preset {preset}: about {est / 60:.1f} min "
            f"on this machine ({cpu_name()}, {torch.get_num_threads()} threads; estimated from timed steps)"
        )
    for role, cfg in todo.items():
        folder = folders[role]
        argv = ["train", cfg.kind, "--preset", preset, "--dataset", dataset, "--out", str(folder)]
        command = "fundiff " + provenance.portable_command(argv + ["--threads", str(torch.get_num_threads())])
        result = training.train(
            cfg,
            folder,
            data=(images, labels),
            device=device,
            resume=(folder / "state.json").is_file(),
            progress=False,
            extra_config={**provenance.run_info(cfg.precision, device), "command": command},
        )
        log(f"trained {cfg.kind}: {result.step} steps in {result.wall_s:.0f} s -> {folder}")
    return {role: str(folder) for role, folder in folders.items()}


def _steps_done(folder: Path) -> int:
    state = folder / "state.json"
    return len(json.loads(state.read_text()).get("losses", [])) if state.is_file() else 0
