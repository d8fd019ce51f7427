"""``fundiff sample`` (images from a time- or class-conditioned model) and ``fundiff denoise-sweep``
(the one-step denoiser at several noise levels)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from fundiff import DEFAULT_SEED
from fundiff.cli.common import Formatter as _Formatter
from fundiff.cli.common import add_device_threads as _add_common
from fundiff.cli.common import add_precision_option, add_sampler_options, add_timestep_options, sampler_from_args
from fundiff.cli.common import finite_float as _finite_float
from fundiff.cli.common import nonneg_float_list as _nonneg_float_list
from fundiff.cli.common import positive_int as _positive_int
from fundiff.cli.common import seed_int as _seed_int
from fundiff.errors import FundiffError

# Samples drawn at once: any --n runs in the memory of this many (CFG: twice as many UNet inputs, ~2 MiB each
# for hidden 64 at 28x28, fundiff.memory). Up to this many samples in all, the pictures are exactly those of one
# call; above it, each batch draws its x_T after the previous batch's steps (same seed, same pictures).
SAMPLE_BATCH = 256
GRID_MAX = 1000  # samples one grid picture shows at most


def register(sub) -> dict[str, Callable[[argparse.Namespace], None]]:
    """Add ``sample`` and ``denoise-sweep`` to the subparsers ``sub``; returns {command name: handler(args)}."""
    from fundiff import DEFAULT_GUIDANCE

    p = sub.add_parser(
        "sample", help="sample images from a time- or class-conditioned model", formatter_class=_Formatter
    )
    p.add_argument(
        "--model",
        required=True,
        help="shipped model name, or a model folder (./NAME for a local folder named like one)",
    )
    p.add_argument("--n", type=_positive_int, default=8, help="samples (per class for a class model)")
    p.add_argument(
        "--class",
        dest="classes",
        nargs="+",
        default=None,
        metavar="K",
        help="classes to sample, as prompts naming them (e.g. 3, seven, sneaker), or any text for a text model "
        "(emoji: 'a rocket ship'); default: the model's default prompts (every class)",
    )
    p.add_argument(
        "--guidance",
        type=_finite_float,
        default=None,
        help="CFG scale: eps_u + s (eps_c - eps_u); 0 unconditional, 1 conditional "
        f"(class model default: {DEFAULT_GUIDANCE:g}; a distilled model: its own)",
    )
    add_timestep_options(p)
    add_sampler_options(p)
    add_precision_option(p)
    p.add_argument("--seed", type=_seed_int, default=DEFAULT_SEED, help="sampling seed")
    p.add_argument(
        "--animate",
        action="store_true",
        help=f"also write the grid's animation (GRID.gif beside a .png --out, grid.gif in a folder): one frame per "
        f"denoising step, x_t beside x̂_0 (fundiff.animation; one batch: {SAMPLE_BATCH} samples at most)",
    )
    p.add_argument(
        "--out",
        required=True,
        help=f"a .png path (one grid, {GRID_MAX} samples at most) or a folder (a PNG per sample, any --n, drawn "
        f"{SAMPLE_BATCH} at a time, + grid.png of up to {GRID_MAX})",
    )
    _add_common(p)

    p = sub.add_parser(
        "denoise-sweep",
        help="one-step denoiser on test digits at several sigmas: figures + MSE/PSNR",
        formatter_class=_Formatter,
    )
    p.add_argument("--model", required=True, help="run folder of a `fundiff train denoiser` run (or shipped name)")
    p.add_argument(
        "--sigmas",
        type=_nonneg_float_list,
        default=None,
        help="noise levels (default: the write-up's 0,0.2,0.4,0.5,0.6,0.8,1.0)",
    )
    p.add_argument("--n-show", type=_positive_int, default=8, help="test images shown per figure")
    p.add_argument("--n-eval", type=_positive_int, default=2000, help="test images used for MSE/PSNR")
    p.add_argument("--seed", type=_seed_int, default=DEFAULT_SEED, help="noise seed")
    p.add_argument("--out", default=None, help="output folder (default: RUN/sweep; out/NAME/sweep for a shipped model)")
    _add_common(p, data=True)
    return {"sample": _cmd_sample, "denoise-sweep": _cmd_denoise_sweep}


def _cmd_sample(args) -> None:
    """Sample into --out: written into a temporary sibling that takes its place at the end (fundiff.outputs),
    one batch of SAMPLE_BATCH at a time, so any --n fits a fixed memory (a folder --out; a grid of at most
    GRID_MAX samples)."""
    from fundiff.devices import resolve_device
    from fundiff.outputs import staged_file, staged_folder

    out = Path(args.out)
    if out.suffix and out.suffix.lower() != ".png":
        raise FundiffError(f"--out must be a .png file (one grid) or a folder, got {args.out!r}")
    grid = out.suffix.lower() == ".png"
    with staged_file(out, suffixes=(".png",)) if grid else staged_folder(out) as staged:  # checked before work
        drawn, shown, steps = _samples(args, resolve_device(args.device), staged.tmp, grid=grid)
    if args.animate:
        print(f"animation: {out.with_suffix('.gif') if grid else out / 'grid.gif'} ({steps} steps)")
    if grid:
        print(f"wrote {out} ({shown} samples, {steps} steps)")
    else:
        more = f" (grid.png shows {shown})" if shown < drawn else ""
        print(f"wrote {drawn} samples and grid.png to {out}{more} ({steps} steps)")


def _samples(args, device, target: Path, *, grid: bool) -> tuple[int, int, int]:
    """Draw the `sample` flags' samples batch by batch into ``target`` (the grid PNG, or a folder of PNGs plus
    grid.png); returns (samples drawn, samples in the grid, steps)."""
    import torch

    from fundiff import io, samplers
    from fundiff import timesteps as ts
    from fundiff.backends import runs
    from fundiff.guidance import CFG, scale_for

    sampler_from_args(args, samplers.DEFAULT_SAMPLER)  # --sampler / --eta are checked before the model loads
    den = runs.load_denoiser(args.model, device=device, precision=args.precision)
    timesteps = ts.for_model(den, steps=args.steps, stride=args.stride)
    if not den.conditional:
        if args.classes or args.guidance is not None:
            raise FundiffError(
                "this is an unconditional (time-conditioned) model: it takes no --class or --guidance; "
                "use a class-conditioned model for those"
            )
        prompts, names, model = [""] * args.n, ["sample"], den
    else:
        chosen = [str(c) for c in args.classes] if args.classes else list(den.default_prompts)
        names = [den.describe_prompt(c) for c in chosen]
        if not all(names):
            raise FundiffError("--class needs a class index or name, not an empty string")
        prompts = [c for c in chosen for _ in range(args.n)]
        model = CFG(den, scale_for(den, args.guidance))
    sampler = sampler_from_args(args, den)
    if args.animate and len(prompts) > SAMPLE_BATCH:
        raise FundiffError(
            f"--animate records one batch of at most {SAMPLE_BATCH} samples, and this asks for {len(prompts)}: use a "
            f"smaller --n (or fewer --class), or drop --animate"
        )
    per_row = args.n if den.conditional else min(args.n, 10)
    shown = args.n if den.conditional else len(prompts)  # per class (class model) / in all: what the grid holds
    if len(prompts) > GRID_MAX:
        if grid:
            most = GRID_MAX // len(names) if den.conditional else GRID_MAX
            raise FundiffError(
                f"a grid of {len(prompts)} samples is more than one picture can show ({GRID_MAX} at most): use "
                f"--n {most} or less, or give --out a folder (a PNG per sample, any --n)"
            )
        shown = max(1, GRID_MAX // len(names)) if den.conditional else GRID_MAX
        per_row = shown if den.conditional else per_row
    g = torch.Generator(device=device).manual_seed(args.seed)
    kept = []
    recorder = None
    if args.animate:
        from fundiff.animation import Recorder

        recorder = Recorder(den.value_range)
    for start in range(0, len(prompts), SAMPLE_BATCH):  # one batch: the same draws as a single call
        batch = prompts[start : start + SAMPLE_BATCH]
        x = samplers.sample_from_noise(
            model, model.encode(batch), timesteps, generator=g, sampler=sampler, device=device, on_step=recorder
        ).clamp(0, 1)
        for i, img in enumerate(x, start):
            if (i % args.n if den.conditional else i) < shown:
                kept.append(img.cpu())
            if not grid:
                label = names[i // args.n] if den.conditional else "sample"
                io.save_png(img, target / f"{label.replace('/', '-').replace(' ', '_')}_{i % args.n:03d}.png")
        del x  # a batch's samples are written and freed before the next is drawn
    grid_x = torch.stack(kept)
    io.save_grid(grid_x, target if grid else target / "grid.png", nrow=per_row, scale=2)
    if recorder is not None:  # the whole batch, laid out as the grid
        recorder.save(target.with_suffix(".gif") if grid else target / "grid.gif", nrow=per_row)
    return len(prompts), len(grid_x), len(timesteps)


def _cmd_denoise_sweep(args) -> None:
    from fundiff.backends import runs
    from fundiff.outputs import staged_folder

    out = Path(args.out) if args.out else runs.default_output(args.model, "sweep")
    with staged_folder(out) as staged:  # checked before work; written whole or not at all
        rows = _denoise_sweep(args, staged.tmp)
    print(f"{'sigma':>6} {'MSE':>9} {'PSNR dB':>8} {'noisy MSE':>10}")
    for r in rows:
        print(f"{r.sigma:>6.2f} {r.mse:>9.5f} {r.psnr:>8.2f} {r.mse_noisy:>10.5f}")
    print(f"figures and metrics.json in {out}")


def _denoise_sweep(args, out: Path) -> list:
    """Run the sweep of the `denoise-sweep` flags and write its figures and metrics.json into ``out``; its rows."""
    import torch

    from fundiff import data, io
    from fundiff.atomic import atomic_write_json
    from fundiff.backends import runs
    from fundiff.devices import resolve_device
    from fundiff.evaluation import SWEEP_SIGMAS, denoise_sweep

    device = resolve_device(args.device)
    model, cfg = runs.load(args.model, device=device)
    if model.config.kind != "denoiser":
        raise FundiffError(
            f"{args.model} is a {model.config.kind!r} model; denoise-sweep needs a one-step denoiser (`fundiff train "
            "denoiser`)"
        )
    sigmas = args.sigmas or SWEEP_SIGMAS
    x_test, _ = data.load_split(runs.dataset_of(cfg), args.data_dir, train=False)
    x = data.to_unit_float(x_test[: max(args.n_eval, args.n_show)], device)
    g = torch.Generator(device=device).manual_seed(args.seed)
    rows, images = denoise_sweep(model, x, sigmas, generator=g)
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
    return rows
