"""``fundiff tour``: the whole write-up as one HTML report (see :mod:`fundiff.tour`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from fundiff import DEFAULT_SEED
from fundiff.cli.common import Formatter, positive_int, seed_int

DESCRIPTION = """Run every section of the write-up in order -- Part A's techniques on a class-conditioned
model, Part B's noising process, one-step denoiser, sigma sweep, time- and class-conditioned models
-- and write a self-contained report DIR/index.html (images beside it, no network) and DIR/manifest.json.
Each section shows its figures, the `fundiff` command that reproduces it, its seed, wall time and the
evaluation numbers of the model used. Interrupted and rerun, it skips the sections already complete.
The default run (shipped models) takes a few minutes on 2 CPU cores."""


def register(subparsers: argparse._SubParsersAction) -> dict[str, Callable[[argparse.Namespace], None]]:
    """Add the ``tour`` subcommand to ``subparsers``; returns {"tour": handler}."""
    from fundiff.data import CLASS_DATASETS
    from fundiff.samplers import SAMPLERS
    from fundiff.training import PRESETS

    p = subparsers.add_parser(
        "tour",
        help="run the whole write-up and write one HTML report",
        description=DESCRIPTION,
        formatter_class=Formatter,
    )
    p.add_argument(
        "--out", default="out/tour", metavar="DIR", help="report folder: index.html, manifest.json, sections/"
    )
    p.add_argument(
        "--model",
        default=None,
        metavar="NAME|RUN",
        help="Part A's class-conditioned model: a shipped name or a `fundiff train class` run folder "
        "(default: mnist-class, or fashion-class with --dataset fashion-mnist); "
        "DeepFloyd IF: use the Part A commands",
    )
    p.add_argument("--dataset", choices=CLASS_DATASETS, default=None, help="pick the shipped model of this dataset")
    part_b = tuple(name for name, kinds in PRESETS.items() if {"denoiser", "time", "class"} <= set(kinds))
    p.add_argument(
        "--train",
        choices=part_b,
        default=None,
        metavar="PRESET",
        help=f"retrain Part B's denoiser, time and class models with this preset first ({', '.join(part_b)}); "
        "says up front how long it will take",
    )
    p.add_argument(
        "--text-model",
        default=None,
        metavar="NAME|RUN",
        help="the text-to-image model of the text sections (default: the shipped emoji; or a "
        "`fundiff train class --preset emoji` run)",
    )
    p.add_argument(
        "--fast-model",
        default=None,
        metavar="NAME|RUN",
        help="the few-step student of the last section (default: the shipped mnist-class-fast, or "
        "fashion-class-fast with --dataset fashion-mnist; or a `fundiff distill` run)",
    )
    p.add_argument(
        "--sampler",
        choices=tuple(SAMPLERS),
        default=None,
        help="sampler of every figure (default: each model's own, heun for flow-matching models, else ddpm)",
    )
    p.add_argument("--seed", type=seed_int, default=DEFAULT_SEED, help="seed of every figure (re-seeded per figure)")
    p.add_argument("--threads", type=positive_int, default=None, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, or auto (CUDA when available)")
    p.add_argument("--data-dir", default=None, help="dataset folder (default: $FUNDIFF_DATA or ~/.cache/fundiff/data)")
    return {"tour": _cmd_tour}


def _cmd_tour(args: argparse.Namespace) -> None:
    """The CLI's main() has set torch's threads from --threads and prints FundiffError as one line."""
    from fundiff.tour import run_tour

    run_tour(
        args.out,
        model=args.model,
        dataset=args.dataset,
        train=args.train,
        text_model=args.text_model,
        fast_model=args.fast_model,
        seed=args.seed,
        sampler=args.sampler,
        device=args.device,
        data_dir=args.data_dir,
        log=lambda line: print(line, flush=True),
    )
