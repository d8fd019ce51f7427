"""The ``fundiff`` command: data, training, sampling, evaluation and every Part A technique."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from fundiff import DEFAULT_SEED
from fundiff.cli_common import Formatter as _Formatter
from fundiff.cli_common import add_device_threads as _add_common
from fundiff.cli_common import float_list as _float_list
from fundiff.cli_common import int_list as _int_list
from fundiff.cli_common import positive_int as _positive_int
from fundiff.errors import FundiffError


def build_parser() -> argparse.ArgumentParser:
    from fundiff.devices import PRECISIONS
    from fundiff.training import LR_SCHEDULES, PRESETS

    parser = argparse.ArgumentParser(prog="fundiff", description=__doc__, formatter_class=_Formatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    # data
    p = sub.add_parser(
        "data", help="make a dataset available offline (download or local fallbacks)", formatter_class=_Formatter
    )
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    f = dsub.add_parser("fetch", help="fetch and verify MNIST or Fashion-MNIST", formatter_class=_Formatter)
    f.add_argument("dataset", choices=("mnist", "fashion-mnist"), help="which dataset")
    f.add_argument("--data-dir", default=None, help="dataset folder (default: $FUNDIFF_DATA or ~/.cache/fundiff/data)")

    # train
    p = sub.add_parser(
        "train",
        help="train a one-step denoiser, a time- or a class-conditioned UNet",
        formatter_class=_Formatter,
        description="Train one of the write-up's Part B models. --preset paper is the write-up's recipe; flags override preset values.",
    )
    p.add_argument(
        "kind",
        choices=("denoiser", "time", "class", "classifier"),
        help="denoiser: one-step (sigma=0.5); time: DDPM eps(x_t,t); class: eps(x_t,t,c) with CFG dropout; classifier: the CNN that grades samples (`fundiff evaluate`)",
    )
    p.add_argument(
        "--preset",
        default=None,
        choices=tuple(PRESETS),
        help="paper (default): the write-up exactly; quick: fast CPU recipe; tiny: smoke test",
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
    p.add_argument("--epochs", type=_positive_int, default=None, help="override the preset's epochs")
    p.add_argument("--batch-size", type=_positive_int, default=None, help="override the preset's global batch size")
    p.add_argument("--lr", type=float, default=None, help="override the preset's Adam learning rate")
    p.add_argument("--lr-schedule", choices=LR_SCHEDULES, default=None, help="override the preset's LR schedule")
    p.add_argument("--hidden", type=_positive_int, default=None, help="override the preset's UNet hidden size D")
    p.add_argument(
        "--max-steps",
        type=_positive_int,
        default=None,
        help="stop after this many optimizer steps in total (short runs)",
    )
    p.add_argument(
        "--sigma", type=float, default=None, help="training noise level of the one-step denoiser (paper: 0.5)"
    )
    p.add_argument(
        "--ema",
        type=float,
        default=None,
        dest="ema_decay",
        help="EMA decay of the weights (e.g. 0.999); 0 turns it off",
    )
    p.add_argument(
        "--precision", choices=PRECISIONS, default=None, help="auto: bf16 autocast where the hardware supports it"
    )
    p.add_argument(
        "--channels-last", action=argparse.BooleanOptionalAction, default=None, help="NHWC memory format (default: on)"
    )
    p.add_argument(
        "--sample-epochs", type=_int_list, default=None, help="write sample grids after these epochs, e.g. 5,20"
    )
    p.add_argument("--save-every", type=int, default=None, help="checkpoint every N steps (and at every epoch end)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of data order, noise, init and grids")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_common(p, data=True)

    # sample
    p = sub.add_parser(
        "sample", help="sample images from a time- or class-conditioned model", formatter_class=_Formatter
    )
    p.add_argument("--model", required=True, help="run folder (or shipped model name)")
    p.add_argument("--n", type=_positive_int, default=8, help="samples (per class for a class model)")
    p.add_argument(
        "--class",
        dest="classes",
        nargs="+",
        default=None,
        metavar="K",
        help="classes to sample (index or name, e.g. 3 or sneaker; default: all)",
    )
    p.add_argument(
        "--guidance",
        type=float,
        default=None,
        help="CFG scale: eps_u + s (eps_c - eps_u); 0 unconditional, 1 conditional (class model default: 5)",
    )
    p.add_argument(
        "--steps", type=_positive_int, default=None, help="strided sampling with this many steps (default: all T)"
    )
    p.add_argument(
        "--eta", type=float, default=None, help="take DDIM steps with this eta instead of DDPM ancestral steps"
    )
    p.add_argument("--precision", choices=PRECISIONS, default="fp32", help="autocast precision of the UNet")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="sampling seed")
    p.add_argument("--out", required=True, help="a .png path (one grid) or a folder (a PNG per sample + grid.png)")
    _add_common(p)

    # denoise-sweep
    p = sub.add_parser(
        "denoise-sweep",
        help="one-step denoiser on test digits at several sigmas: figures + MSE/PSNR",
        formatter_class=_Formatter,
    )
    p.add_argument("--model", required=True, help="run folder of a `fundiff train denoiser` run (or shipped name)")
    p.add_argument(
        "--sigmas",
        type=_float_list,
        default=None,
        help="noise levels (default: the write-up's 0,0.2,0.4,0.5,0.6,0.8,1.0)",
    )
    p.add_argument("--n-show", type=_positive_int, default=8, help="test images shown per figure")
    p.add_argument("--n-eval", type=_positive_int, default=2000, help="test images used for MSE/PSNR")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="noise seed")
    p.add_argument("--out", default=None, help="output folder (default: RUN/sweep)")
    _add_common(p, data=True)
    # export
    p = sub.add_parser(
        "export",
        help="export a run as a small shipped model (EMA weights in bf16 + model card)",
        formatter_class=_Formatter,
    )
    p.add_argument("--model", required=True, help="run folder to export")
    p.add_argument("--name", required=True, help="name of the shipped model, e.g. mnist-class")
    p.add_argument("--dest", default=None, help="parent folder (default: fundiff's shipped-models folder)")
    p.add_argument("--eval-json", default=None, help="JSON written by `fundiff evaluate` to put in the model card")
    p.add_argument("--command-line", default=None, help="the training command, when the run did not record it")
    p.add_argument("--wall-s", type=float, default=None, help="training wall time, when the run did not record it")
    p.add_argument(
        "--note", default=None, help="a remark for the model card (e.g. how the machine was shared while training)"
    )

    from fundiff import cli_eval, cli_techniques

    handlers = cli_eval.register(sub, train_classifier=False) | cli_techniques.register(sub)
    for name, fn in handlers.items():
        sub.choices[name].set_defaults(handler=fn)
    return parser


# -- commands ---------------------------------------------------------------------------------
def _cmd_data(args) -> None:
    from fundiff import data

    root = data.fetch(args.dataset, args.data_dir)
    print(f"{args.dataset}: ready in {root}")


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
            x = x_test[:8].unsqueeze(1).float().div(255).to(device)
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
        from fundiff.schedules import NoiseSchedule

        schedule = NoiseSchedule.from_name(cfg.beta_schedule, cfg.T)
        den = UNetDenoiser(model, schedule, class_names=class_names)
        if cfg.kind == "class":
            prompts = [name for name in class_names for _ in range(4)]
            den = CFG(den, 5.0)
            rows = 10
        else:
            prompts, rows = [""] * 40, 4
        x = samplers.sample_from_noise(den, den.encode(prompts), ts.full(cfg.T), generator=g, device=device)
        io.save_grid(x.clamp(0, 1), run_dir / f"samples_epoch{epoch}.png", nrow=len(prompts) // rows, scale=2)

    return draw


def _cmd_train(args, argv: list[str] | None = None) -> None:

    from fundiff import data, training
    from fundiff.checkpoints import load_config
    from fundiff.devices import resolve_device

    if args.kind == "classifier":
        from fundiff.cli_eval import train_classifier_command

        if args.preset is not None:
            raise FundiffError(
                "--preset does not apply to a classifier; drop it (see `fundiff train classifier --help` for its options)"
            )
        return train_classifier_command(args, argv)
    args.preset = args.preset or "paper"
    out = Path(args.out or f"runs/{args.dataset}-{args.kind}-{args.preset}")
    overrides = {
        k: getattr(args, k)
        for k in (
            "epochs",
            "batch_size",
            "lr",
            "lr_schedule",
            "hidden",
            "max_steps",
            "sigma",
            "ema_decay",
            "precision",
            "channels_last",
            "sample_epochs",
            "save_every",
        )
    }
    if args.resume:
        saved = load_config(out)["train"]
        if saved["kind"] != args.kind:
            raise FundiffError(f"{out} holds a {saved['kind']!r} run, not {args.kind!r}")
        base = {k: v for k, v in saved.items() if k not in ("kind", "preset")}
        base["sample_epochs"] = tuple(base["sample_epochs"])
        base.update({k: v for k, v in overrides.items() if v is not None})
        cfg = training.TrainConfig(kind=args.kind, preset=saved["preset"], **base)
    else:
        cfg = training.preset_config(args.preset, args.kind, dataset=args.dataset, seed=args.seed, **overrides)
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
            **training.run_info(cfg, device),
            "command": "fundiff " + training.portable_command(sys.argv[1:] if argv is None else argv),
        },
    )
    if int(os.environ.get("RANK", "0")) == 0:
        from fundiff import io
        from fundiff.checkpoints import read_json

        losses = read_json(out / "state.json")["losses"]
        io.plot_loss(losses, out / "loss.png", title=f"{cfg.kind} UNet training loss ({cfg.dataset})")
        print(
            f"trained {cfg.kind} to step {result.step} in {result.wall_s:.1f} s ({result.images_per_s:.0f} images/s); final loss {losses[-1]:.4f}; run folder {out}"
        )


def _cmd_sample(args) -> None:
    import torch

    from fundiff import io, runs, samplers
    from fundiff import timesteps as ts
    from fundiff.devices import resolve_device, resolve_precision
    from fundiff.guidance import CFG
    from fundiff.prompts import class_index

    out = Path(args.out)
    if out.suffix and out.suffix.lower() != ".png":
        raise FundiffError(f"--out must be a .png file (one grid) or a folder, got {args.out!r}")
    device = resolve_device(args.device)
    den = runs.load_denoiser(args.model, device=device, autocast_dtype=resolve_precision(args.precision, device))
    T = den.schedule.T
    if args.steps is not None and args.steps > T:
        raise FundiffError(f"--steps must be at most T={T} for this model, got {args.steps}")
    timesteps = ts.full(T) if args.steps is None else ts.strided(T, steps=args.steps)
    if den.kind == "time":
        if args.classes or args.guidance is not None:
            raise FundiffError(
                "this is a time-conditioned model: it takes no --class or --guidance; use a class-conditioned model for those"
            )
        prompts, names, model = [""] * args.n, ["sample"], den
    else:
        ks = [class_index(str(c), den.class_names) for c in (args.classes or range(den.num_classes))]
        if any(k is None for k in ks):
            raise FundiffError("--class needs a class index or name, not an empty string")
        names = [den.class_names[k] for k in ks]
        prompts = [den.class_names[k] for k in ks for _ in range(args.n)]
        model = CFG(den, 5.0 if args.guidance is None else args.guidance)
    g = torch.Generator(device=device).manual_seed(args.seed)
    x = samplers.sample_from_noise(
        model, model.encode(prompts), timesteps, generator=g, eta=args.eta, device=device
    ).clamp(0, 1)
    nrow = args.n if den.kind == "class" else min(args.n, 10)
    if out.suffix.lower() == ".png":
        io.save_grid(x, out, nrow=nrow, scale=2)
        print(f"wrote {out} ({len(x)} samples, {len(timesteps)} steps)")
        return
    out.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(x):
        label = names[i // args.n] if den.kind == "class" else "sample"
        io.save_png(img, out / f"{label.replace('/', '-').replace(' ', '_')}_{i % args.n:03d}.png")
    io.save_grid(x, out / "grid.png", nrow=nrow, scale=2)
    print(f"wrote {len(x)} samples and grid.png to {out} ({len(timesteps)} steps)")


def _cmd_denoise_sweep(args) -> None:
    import torch

    from fundiff import data, io, runs
    from fundiff.checkpoints import atomic_write_json
    from fundiff.devices import resolve_device
    from fundiff.evaluation import SWEEP_SIGMAS, denoise_sweep

    device = resolve_device(args.device)
    model, cfg = runs.load(args.model, device=device)
    if model.config.kind != "denoiser":
        raise FundiffError(
            f"{args.model} is a {model.config.kind!r} model; denoise-sweep needs a one-step denoiser (`fundiff train denoiser`)"
        )
    sigmas = args.sigmas or SWEEP_SIGMAS
    if any(s < 0 for s in sigmas):
        raise FundiffError("--sigmas must be >= 0")
    dataset = cfg.get("train", {}).get("dataset", "mnist")
    x_test, _ = data.load_split(dataset, args.data_dir, train=False)
    x = x_test[: max(args.n_eval, args.n_show)].unsqueeze(1).float().div(255).to(device)
    g = torch.Generator(device=device).manual_seed(args.seed)
    rows, images = denoise_sweep(model, x, sigmas, generator=g)
    out = Path(args.out) if args.out else runs.resolve(args.model) / "sweep"
    out.mkdir(parents=True, exist_ok=True)
    n = args.n_show
    for s in sigmas:
        z, den = images[float(s)]
        io.save_labeled_grid(
            [x[:n], z[:n].clamp(0, 1), den[:n]],
            ["clean", f"noisy σ={s:g}", "denoised"],
            out / f"sigma_{s:g}.png",
            title=f"one-step denoiser, σ = {s:g}",
        )
    io.save_labeled_grid(
        [images[float(s)][1][:n] for s in sigmas],
        [f"σ={s:g}" for s in sigmas],
        out / "sweep.png",
        title="denoised outputs per σ (trained at σ=%g)" % cfg["train"]["sigma"],
    )
    io.save_labeled_grid(
        [images[float(s)][0][:n].clamp(0, 1) for s in sigmas],
        [f"σ={s:g}" for s in sigmas],
        out / "noising.png",
        title="z = x + σ ε",
    )
    atomic_write_json(out / "metrics.json", {"n_eval": len(x), "seed": args.seed, "rows": [r.__dict__ for r in rows]})
    print(f"{'sigma':>6} {'MSE':>9} {'PSNR dB':>8} {'noisy MSE':>10}")
    for r in rows:
        print(f"{r.sigma:>6.2f} {r.mse:>9.5f} {r.psnr:>8.2f} {r.mse_noisy:>10.5f}")
    print(f"figures and metrics.json in {out}")


def _cmd_export(args) -> None:
    from fundiff import runs
    from fundiff.checkpoints import read_json
    from fundiff.shipping import export_run

    if not args.name.replace("-", "").replace("_", "").isalnum():
        raise FundiffError(f"--name may hold letters, digits, '-' and '_' only, got {args.name!r}")
    evaluation = read_json(Path(args.eval_json)) if args.eval_json else None
    dest = Path(args.dest) if args.dest else runs.SHIPPED_DIR
    out = export_run(
        runs.resolve(args.model),
        dest / args.name,
        evaluation=evaluation,
        card_extra={"command": args.command_line, "wall_s": args.wall_s, "note": args.note},
    )
    print(f"exported {args.model} as {args.name} -> {out}")


COMMANDS = {
    "data": _cmd_data,
    "train": _cmd_train,
    "sample": _cmd_sample,
    "denoise-sweep": _cmd_denoise_sweep,
    "export": _cmd_export,
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    try:
        if args.command == "train":
            _cmd_train(args, argv)
        elif getattr(args, "handler", None) is not None:
            args.handler(args)
        else:
            COMMANDS[args.command](args)
    except FundiffError as e:
        print(f"fundiff: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fundiff: interrupted; the last checkpoint is kept (continue with --resume)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
