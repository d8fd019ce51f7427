"""The ``fundiff`` command: data, training, sampling, evaluation and every Part A technique.

Each command group lives in its own module of this package with ``register(subparsers) -> {name: handler}``:
data (data fetch), train (train, incl. the classifier), sample (sample, denoise-sweep), export (export),
eval (evaluate), techniques (Part A), tour (tour), ui (ui); common holds the shared flags and validators.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from fundiff.cli.common import Formatter, Parser
from fundiff.errors import FundiffError
from fundiff.memory import keep_freed_memory
from fundiff.outputs import os_error_message


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
    """Run ``fundiff ARGV`` (default: sys.argv[1:]); returns the exit status (2 for bad input or an OS error of
    writing, 130 when interrupted).

    Errors are one line: a FundiffError as it is, an OS error (full disk, permission, read-only file system, a
    file in the way) as fundiff.outputs.os_error_message says. SIGTERM is taken as Ctrl-C (KeyboardInterrupt),
    so training keeps its last checkpoint and temporary outputs are removed."""
    args = build_parser().parse_args(argv)
    args.argv = argv  # the command line as given, recorded by `train` in config.json
    keep_freed_memory()  # the command owns its process: reuse freed memory instead of page-faulting it back
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    with _sigterm_as_interrupt():
        try:
            args.handler(args)
        except FundiffError as e:
            print(f"fundiff: error: {e}", file=sys.stderr)
            return 2
        except OSError as e:
            message = os_error_message(e, flag="--dest" if args.command == "export" else "--out")
            if message is None:
                raise
            print(f"fundiff: error: {message}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            hints = {"tour": " (rerun the same command to resume)", "train": " (continue with --resume)"}
            hint = "" if getattr(args, "kind", None) == "classifier" else hints.get(args.command, "")
            print(f"fundiff: interrupted; what was finished is kept{hint}", file=sys.stderr)
            return 130
    return 0


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While the command runs, SIGTERM raises KeyboardInterrupt (in the main thread; the old handler comes back)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
