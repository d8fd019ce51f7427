"""The ``fundiff`` command: data, training, sampling, evaluation and every Part A technique.

Each command group lives in its own module of this package with ``register(subparsers) -> {name: handler}``:
data (data fetch), train (train, incl. the classifier), sample (sample, denoise-sweep), export (export),
eval (evaluate), techniques (Part A), tour (tour), ui (ui); common holds the shared flags and validators.
"""

from __future__ import annotations

import argparse
import sys

from fundiff.cli.common import Formatter, Parser
from fundiff.errors import FundiffError
from fundiff.memory import keep_freed_memory


def build_parser() -> argparse.ArgumentParser:
    """The ``fundiff`` parser; every subcommand's namespace carries its ``handler(args)``."""
    from fundiff.cli import data, eval, export, sample, techniques, tour, train, ui

    parser = Parser(prog="fundiff", description=__doc__.split("\n\n")[0], formatter_class=Formatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (tour, data, train, sample, export, eval, techniques, ui):
        for name, handler in module.register(sub).items():
            sub.choices[name].set_defaults(handler=handler)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``fundiff ARGV`` (default: sys.argv[1:]); returns the exit status (2 for bad input)."""
    args = build_parser().parse_args(argv)
    args.argv = argv  # the command line as given, recorded by `train` in config.json
    keep_freed_memory()  # the command owns its process: reuse freed memory instead of page-faulting it back
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    try:
        args.handler(args)
    except FundiffError as e:
        print(f"fundiff: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hints = {"tour": " (rerun the same command to resume)", "train": " (continue with --resume)"}
        hint = "" if getattr(args, "kind", None) == "classifier" else hints.get(args.command, "")
        print(f"fundiff: interrupted; what was finished is kept{hint}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
