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


def number(kind: type, *, low: float | None = None, odd: bool = False, what: str = "") -> Callable[[str], int | float]:
    """An argparse type: a finite ``kind`` (int or float) >= ``low``, optionally odd."""
    what = what or f"a {'whole ' if kind is int else ''}number"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not math.isfinite(value) or (low is not None and value < low) or (odd and value % 2 == 0):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


positive_int = number(int, low=1, what="an integer >= 1")
nonneg_int = number(int, low=0, what="an integer >= 0")
odd_int = number(int, low=1, odd=True, what="an odd integer >= 1")
positive_float = number(float, low=1e-12, what="a number > 0")
finite_float = number(float, what="a finite number")


def int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 5,20, got {text!r}") from None


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
