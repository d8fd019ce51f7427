"""``fundiff train``: the write-up's Part B models (denoiser, time, class) and the grading classifier.

``fundiff train classifier`` routes to :func:`train_classifier_command`.
The handler receives the command line as ``args.argv`` (None: ``sys.argv[1:]``) and records it
in the run's config.json.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from fundiff import DEFAULT_GUIDANCE, DEFAULT_SEED
from fundiff.cli.common import Formatter as _Formatter
from fundiff.cli.common import add_device_threads as _add_common
from fundiff.cli.common import int_list as _int_list
from fundiff.cli.common import nonneg_float as _nonneg_float
from fundiff.cli.common import nonneg_int as _nonneg_int
from fundiff.cli.common import positive_float as _positive_float
from fundiff.cli.common import positive_int as _positive_int
from fundiff.cli.common import seed_int as _seed_int
from fundiff.cli.common import unit_float as _unit_float
from fundiff.errors import FundiffError


def register(sub) -> dict[str, Callable[[argparse.Namespace], None]]:
    """Add ``train`` to the subparsers ``sub``; returns {command name: handler(args)}."""
    from fundiff.training import PRESETS

    p = sub.add_parser(
        "train",
        help="train a one-step denoiser, a time- or a class-conditioned UNet",
        formatter_class=_Formatter,
        description="Train one of the write-up's Part B models. --preset paper is the write-up's recipe; flags "
        "override preset values.",
    )
    p.add_argument(
        "kind",
        choices=("denoiser", "time", "class", "classifier"),
        help="denoiser: one-step (sigma=0.5); time: eps(x_t,t) (or --objective v / flow); class: eps(x_t,t,c) with "
        "CFG dropout; classifier: "
        "the CNN that grades samples (`fundiff evaluate`)",
    )
    p.add_argument(
        "--preset",
        default=None,
        choices=tuple(PRESETS),
        help="paper (default): the write-up exactly (DDPM, fp32); quick: fast CPU DDPM recipe (3 epochs); flow: "
        "flow matching, 10 epochs, the shipped models' recipe (~30 min on 2 cores); tiny: smoke test",
    )
    p.add_argument(
        "--dataset", default="mnist", choices=("mnist", "fashion-mnist"), help="training data (train split only)"
    )
    p.add_argument(
        "--out",
        default=None,
        help="run folder (default: runs/DATASET-KIND-PRESET; classifier: runs/DATASET-classifier)",
    )
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped")
    _add_overrides(p)
    p.add_argument("--seed", type=_seed_int, default=DEFAULT_SEED, help="seed of data order, noise, init and grids")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_common(p, data=True)
    return {"train": _handle_train}


def _add_overrides(p: argparse.ArgumentParser) -> None:
    """The flags that override a preset's TrainConfig values (None: the preset's)."""
    from fundiff.denoisers import OBJECTIVES
    from fundiff.devices import PRECISIONS
    from fundiff.flow import TIME_LAWS
    from fundiff.schedules import BETA_SCHEDULES
    from fundiff.training import LOSS_WEIGHTS, LR_SCHEDULES

    p.add_argument("--epochs", type=_positive_int, default=None, help="override the preset's epochs")
    p.add_argument("--batch-size", type=_positive_int, default=None, help="override the preset's global batch size")
    p.add_argument("--lr", type=_positive_float, default=None, help="override the preset's Adam learning rate")
    p.add_argument("--lr-schedule", choices=LR_SCHEDULES, default=None, help="override the preset's LR schedule")
    p.add_argument("--hidden", type=_positive_int, default=None, help="override the preset's UNet hidden size D")
    p.add_argument(
        "--max-steps",
        type=_positive_int,
        default=None,
        help="stop after this many optimizer steps in total (short runs)",
    )
    p.add_argument(
        "--sigma", type=_nonneg_float, default=None, help="training noise level of the one-step denoiser (paper: 0.5)"
    )
    p.add_argument(
        "--ema",
        type=_unit_float,
        default=None,
        dest="ema_decay",
        help="EMA decay of the weights (e.g. 0.999); 0 turns it off",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=None,
        help="auto: the faster of fp32 / bf16 autocast (and channels-last), timed once per machine and cached",
    )
    p.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="NHWC memory format (default: timed with --precision auto, else on)",
    )
    p.add_argument(
        "--sample-epochs", type=_int_list, default=None, help="write sample grids after these epochs, e.g. 5,20"
    )
    p.add_argument(
        "--save-every", type=_nonneg_int, default=None, help="checkpoint every N steps (and at every epoch end)"
    )
    p.add_argument(
        "--objective",
        choices=OBJECTIVES,
        default=None,
        help="what a time/class UNet learns: eps (write-up, DDPM), v (v-prediction), flow (flow matching: "
        "velocity on the straight noise-data path; sample with --sampler heun or euler)",
    )
    p.add_argument(
        "--loss-weight", choices=LOSS_WEIGHTS, default=None, help="eps/v loss weighting: none or min-snr (gamma 5)"
    )
    p.add_argument(
        "--flow-times", choices=TIME_LAWS, default=None, help="flow matching's training times (default uniform)"
    )
    p.add_argument(
        "--beta-schedule", choices=BETA_SCHEDULES, default=None, help="DDPM noise schedule (write-up: linear)"
    )
    p.add_argument(
        "--T", type=_positive_int, default=None, dest="T", help="diffusion steps, or flow grid points for sampling"
    )


def _handle_train(args: argparse.Namespace) -> None:
    _cmd_train(args, getattr(args, "argv", None))


def _training_figures(cfg, device, class_names, data_dir):
    """on_epoch_end callback: loss curve every epoch, sample grids after cfg.sample_epochs."""
    import torch

    from fundiff import io
    from fundiff.checkpoints import read_json

    def draw(model, epoch: int, run_dir: Path) -> None:
        state = read_json(run_dir / "state.json")
        io.plot_loss(state["losses"], run_dir / "loss.png", title=f"{cfg.kind} UNet training loss ({cfg.dataset})")
        if epoch not in cfg.sample_epochs:
            return
        model.eval()
        g = torch.Generator(device=device).manual_seed(cfg.seed)
        if cfg.kind == "denoiser":
            from fundiff import data as data_lib

            x_test, _ = data_lib.load_split(cfg.dataset, data_dir, train=False)
            x = data_lib.to_unit_float(x_test[:8], device)
            z = x + cfg.sigma * torch.randn(x.shape, generator=g, device=device)
            with torch.no_grad():
                out = model(z).clamp(0, 1)
            io.save_labeled_grid(
                [x, z.clamp(0, 1), out],
                ["clean", f"noisy σ={cfg.sigma}", "denoised"],
                run_dir / f"denoised_epoch{epoch}.png",
                title=f"epoch {epoch}",
            )
            return
        from fundiff import samplers
        from fundiff import timesteps as ts
        from fundiff.denoisers import UNetDenoiser
        from fundiff.guidance import CFG
        from fundiff.training import schedule_of_config

        den = UNetDenoiser(model, schedule_of_config(cfg), class_names=class_names, objective=cfg.objective)
        if cfg.kind == "class":
            prompts = [name for name in class_names for _ in range(4)]
            den = CFG(den, DEFAULT_GUIDANCE)
            rows = 10
        else:
            prompts, rows = [""] * 40, 4
        steps = ts.full(cfg.T) if cfg.objective != "flow" else ts.strided(cfg.T, steps=min(cfg.T, 50))
        sampler = samplers.default_sampler_of(den)  # heun for a flow model, else ddpm
        x = samplers.sample_from_noise(den, den.encode(prompts), steps, generator=g, device=device, sampler=sampler)
        io.save_grid(x.clamp(0, 1), run_dir / f"samples_epoch{epoch}.png", nrow=len(prompts) // rows, scale=2)

    return draw


_OVERRIDES = (  # `fundiff train` flags that override a preset value (None: keep the preset's)
    "epochs", "batch_size", "lr", "lr_schedule", "hidden", "max_steps", "sigma", "ema_decay", "precision",
    "channels_last", "sample_epochs", "save_every", "objective", "loss_weight", "flow_times", "beta_schedule", "T",
)  # fmt: skip


def _train_config(args: argparse.Namespace, out: Path):
    """The TrainConfig of a new run (preset + flags) or of the run in ``out`` to resume (its config + flags)."""
    from fundiff import training
    from fundiff.checkpoints import load_config

    overrides = {k: getattr(args, k) for k in _OVERRIDES}
    if not args.resume:
        return training.preset_config(args.preset, args.kind, dataset=args.dataset, seed=args.seed, **overrides)
    saved = load_config(out)["train"]
    if saved["kind"] != args.kind:
        raise FundiffError(f"{out} holds a {saved['kind']!r} run, not {args.kind!r}")
    base = {k: v for k, v in saved.items() if k not in ("kind", "preset")}
    base["sample_epochs"] = tuple(base["sample_epochs"])
    base.update({k: v for k, v in overrides.items() if v is not None})
    return training.TrainConfig(kind=args.kind, preset=saved["preset"], **base)


def _cmd_train(args, argv: list[str] | None = None) -> None:
    from fundiff import data, provenance, training
    from fundiff.devices import resolve_device

    if args.kind == "classifier":
        if args.preset is not None:
            raise FundiffError(
                "--preset does not apply to a classifier; drop it "
                "(see `fundiff train classifier --help` for its options)"
            )
        return train_classifier_command(args, argv)
    args.preset = args.preset or "paper"
    out = Path(args.out or f"runs/{args.dataset}-{args.kind}-{args.preset}")
    cfg = _train_config(args, out)
    device = resolve_device(args.device)
    images, labels = data.load_split(cfg.dataset, args.data_dir, train=True)
    class_names = data.CLASS_NAMES[cfg.dataset]
    result = training.train(
        cfg,
        out,
        data=(images, labels),
        device=device,
        resume=args.resume,
        progress=not args.no_progress,
        on_epoch_end=_training_figures(cfg, device, class_names, args.data_dir),
        extra_config={
            **provenance.run_info(cfg.precision, device),
            "command": "fundiff " + provenance.portable_command(sys.argv[1:] if argv is None else argv),
        },
    )
    if int(os.environ.get("RANK", "0")) == 0:
        from fundiff import io
        from fundiff.checkpoints import read_json

        losses = read_json(out / "state.json")["losses"]
        io.plot_loss(losses, out / "loss.png", title=f"{cfg.kind} UNet training loss ({cfg.dataset})")
        print(
            f"trained {cfg.kind} to step {result.step} in {result.wall_s:.1f} s ({result.images_per_s:.0f} images/s); "
            f"final loss {losses[-1]:.4f}; run folder {out}"
        )


# `fundiff train` options that mean nothing for a classifier (rejected when routed here)
_DIFFUSION_ONLY = (
    "resume",
    "lr_schedule",
    "hidden",
    "sigma",
    "ema_decay",
    "channels_last",
    "sample_epochs",
    "save_every",
    "objective",
    "loss_weight",
    "flow_times",
    "beta_schedule",
    "T",
)


def train_classifier_command(args: argparse.Namespace, argv: list[str] | None = None) -> None:
    """Train the evaluation classifier from the parsed options of `fundiff train classifier`.

    Options left None (as `fundiff train` leaves its overrides) take ClassifierTrainConfig's defaults.
    ``argv`` (default sys.argv[1:]) is recorded in config.json as the command that trained it.
    """
    from fundiff import data
    from fundiff.classify import ClassifierTrainConfig, train_classifier
    from fundiff.devices import resolve_device
    from fundiff.provenance import portable_command, run_info

    unset = {"resume": False}  # store_true flags are False when not given; the others are None
    given = [name for name in _DIFFUSION_ONLY if getattr(args, name, None) not in (None, unset.get(name))]
    if given:
        flags = ", ".join("--" + g.replace("_", "-") for g in given)
        raise FundiffError(
            f"{flags} {'does' if len(given) == 1 else 'do'} not apply to a classifier; drop "
            f"{'it' if len(given) == 1 else 'them'}"
        )
    values = {
        k: getattr(args, k, None) for k in ("dataset", "epochs", "batch_size", "lr", "max_steps", "precision", "seed")
    }
    cfg = ClassifierTrainConfig(**{k: v for k, v in values.items() if v is not None})
    out = Path(args.out or f"runs/{cfg.dataset}-classifier")
    device = resolve_device(getattr(args, "device", None))
    train_split = data.load_split(cfg.dataset, getattr(args, "data_dir", None), train=True)
    test_split = data.load_split(cfg.dataset, getattr(args, "data_dir", None), train=False)
    command = "fundiff " + portable_command(sys.argv[1:] if argv is None else argv)
    progress = not getattr(args, "no_progress", False)
    result = train_classifier(
        cfg, out, data=train_split, test_data=test_split, device=device, progress=progress,
        extra_config={**run_info(cfg.precision, device), "command": command},
    )  # fmt: skip
    worst = min(range(len(result.test_accuracy_per_class)), key=lambda k: result.test_accuracy_per_class[k])
    names = data.CLASS_NAMES[cfg.dataset]
    print(
        f"trained the {cfg.dataset} classifier ({result.step} steps, {result.wall_s:.0f} s): test accuracy "
        f"{result.test_accuracy:.4f} "
        f"(worst class {names[worst]}: {result.test_accuracy_per_class[worst]:.4f}); run folder {out}"
    )
