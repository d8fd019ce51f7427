"""Argument types, the help formatter and flags shared by all ``fundiff`` subcommands."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults, except None (the help text says what happens then); "" is shown as ''."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is argparse.SUPPRESS:
            return action.help or ""
        if action.default == "":
            return f"{action.help} (default: '')"
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line: "fundiff CMD: error: ... (see fundiff CMD --help)"."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def number(
    kind: type,
    *,
    low: float | None = None,
    high: float | None = None,
    above: float | None = None,
    below: float | None = None,
    odd: bool = False,
    what: str = "",
) -> Callable[[str], int | float]:
    """An argparse type: a finite ``kind`` (int or float), low <= value <= high, above < value < below, maybe odd.

    ``what`` ("a number in [0, 1)") is how the error names the allowed values.
    """
    what = what or f"a {'whole ' if kind is int else ''}number"

    def ok(value) -> bool:
        return (
            math.isfinite(value)
            and (low is None or value >= low)
            and (high is None or value <= high)
            and (above is None or value > above)
            and (below is None or value < below)
            and not (odd and value % 2 == 0)
        )

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


positive_int = number(int, low=1, what="an integer >= 1")
nonneg_int = number(int, low=0, what="an integer >= 0")
odd_int = number(int, low=1, odd=True, what="an odd integer >= 1")
positive_float = number(float, above=0, what="a number > 0")
nonneg_float = number(float, low=0, what="a number >= 0")
finite_float = number(float, what="a finite number")
unit_float = number(float, low=0, below=1, what="a number in [0, 1)")
seed_int = number(int, low=0, high=2**63 - 1, what="an integer in 0..2^63-1")


def int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 5,20, got {text!r}") from None


def nonneg_float_list(text: str) -> tuple[float, ...]:
    values = float_list(text)
    if any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers >= 0 like 0,0.5,1, got {text!r}")
    return values


def float_list(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers like 0,0.5,1, got {text!r}") from None
    if not values or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated finite numbers like 0,0.5,1, got {text!r}")
    return values


def add_device_threads(p: argparse.ArgumentParser, *, data: bool = False) -> None:
    """--threads and --device (and --data-dir) as every compute command has them."""
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="CPU threads for torch (default: torch's choice, usually all cores)",
    )
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, or auto (CUDA when available)")
    if data:
        p.add_argument(
            "--data-dir", default=None, help="dataset folder (default: $FUNDIFF_DATA or ~/.cache/fundiff/data)"
        )


SAMPLER_HELP = (
    "update rule: ddpm ancestral steps, ddim, dpm++ (DPM-Solver++(2M), deterministic, good from 8 steps), "
    "euler/heun: ODE in flow time; heun: 2 denoiser calls per step (default: the model's, heun for "
    "flow-matching models, else ddpm)"
)


def add_sampler_options(p: argparse.ArgumentParser) -> None:
    """--sampler (choices from fundiff.samplers' registry) and --eta, for every command that samples."""
    from fundiff.samplers import SAMPLERS

    p.add_argument(
        "--sampler",
        choices=tuple(SAMPLERS),
        default=None,
        help=SAMPLER_HELP,
    )
    p.add_argument(
        "--eta",
        type=number(float, low=0, high=1, what="a number in [0, 1]"),
        default=None,
        help="DDIM's eta: 0 deterministic, 1 DDPM-like variance (implies --sampler ddim; default 0)",
    )


def sampler_from_args(args: argparse.Namespace, default):
    """The Sampler that --sampler / --eta name; neither: ``default``, a Denoiser (its default sampler,
    samplers.default_sampler_of) or a sampler name. A one-line error for --eta with a sampler that takes none,
    whatever ``default`` is, so ``sampler_from_args(args, DEFAULT_SAMPLER)`` checks the flags before a model loads.
    """
    from fundiff.samplers import default_sampler_of, get_sampler

    if args.sampler is None and args.eta is None:
        return get_sampler(default if isinstance(default, str) else default_sampler_of(default))
    return get_sampler(args.sampler or "ddim", eta=args.eta)


def add_timestep_options(p: argparse.ArgumentParser) -> None:
    """--steps / --stride, for every command that samples; neither: the model's default (fundiff.timesteps.for_model:
    the write-up's stride scaled to T, 35 steps; a course-flow model's every step, as the course samples).
    Resolved by fundiff.timesteps.resolve."""
    steps = p.add_mutually_exclusive_group()
    steps.add_argument(
        "--steps",
        type=positive_int,
        default=None,
        help="this many evenly spaced timesteps, T-1 down to 0 (a distilled student: from T-1 down, evenly spaced "
        "in flow time; default: the write-up's stride 30 of T = 1000 scaled to the model's T: 35 steps; a --preset "
        "course-flow model: all T, as the course samples; a distilled student: its own, e.g. 2)",
    )
    steps.add_argument(
        "--stride",
        type=positive_int,
        default=None,
        help="instead of --steps: every stride-th timestep T-1, T-1-stride, ..., 0",
    )


PRECISION_HELP = (
    "UNet arithmetic: auto = the fastest of fp32 / bf16 autocast, with or without channels-last, timed once on "
    "this machine for this model and thread count and cached ($FUNDIFF_CACHE, else ~/.cache/fundiff); fp32 or bf16 "
    "to force one"
)


def add_precision_option(p: argparse.ArgumentParser, *, default: str = "auto") -> None:
    """--precision for commands that run a diffusion model."""
    from fundiff.devices import PRECISIONS

    p.add_argument("--precision", choices=PRECISIONS, default=default, help=PRECISION_HELP)
