"""The ``fundiff`` command: data, training, sampling, evaluation and every Part A technique.

Each command group lives in its own module of this package with ``register(subparsers) -> {name: handler}``:
data (data fetch), train (train, incl. the classifier; distill), sample (sample, denoise-sweep), export (export),
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
    writing, 1 out of memory, 130 when interrupted).

    Errors are one line: a FundiffError as it is, an OS error (full disk, permission, read-only file system, a
    file in the way) as fundiff.outputs.os_error_message says. SIGTERM is taken as Ctrl-C (KeyboardInterrupt),
    so training keeps its last checkpoint and temporary outputs are removed."""
    args = build_parser().parse_args(argv)
    args.argv = argv  # the command line as given, recorded by `train` in config.json
    keep_freed_memory()  # the command owns its process: reuse freed memory instead of page-faulting it back
    _one_line_warnings()
    if getattr(args, "threads", None):
        import torch

        _warn_threads(args.threads)
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
        except (MemoryError, RuntimeError) as e:  # torch.OutOfMemoryError is a RuntimeError
            if not _out_of_memory(e):
                raise
            print(f"fundiff: error: {_out_of_memory_message(e, args)}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            hints = {
                "tour": " (rerun the same command to resume)",
                "train": " (continue with --resume)",
                "distill": " (continue with --resume)",
            }
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


def _one_line_warnings() -> None:
    """Print FundiffWarnings as "fundiff: warning: MESSAGE" (one line); other warnings as Python prints them."""
    import warnings

    from fundiff.errors import FundiffWarning

    default = warnings.showwarning
    if getattr(default, "fundiff_one_line", False):  # installed by an earlier main() in this process
        return

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, FundiffWarning):
            print(f"fundiff: warning: {str(message).splitlines()[0]}", file=file or sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    show.fundiff_one_line = True
    warnings.showwarning = show


def _warn_threads(threads: int) -> None:
    """A one-line warning when --threads asks for more threads than this process has CPU cores."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or threads)
    if threads > cores:
        print(
            f"fundiff: warning: --threads {threads} is more than the {cores} CPU cores this process may use; "
            f"oversubscribed threads run several times slower, use --threads {cores} or less",
            file=sys.stderr,
        )


def _out_of_memory(e: BaseException) -> bool:
    """Whether ``e`` is running out of memory: MemoryError, torch.OutOfMemoryError, or a RuntimeError that says so
    (PyTorch's CPU allocator: "DefaultCPUAllocator: not enough memory", CUDA: "CUDA out of memory")."""
    if isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError":
        return True
    text = str(e).lower()
    return "out of memory" in text or "not enough memory" in text


def _out_of_memory_message(e: BaseException, args: argparse.Namespace) -> str:
    """One line for an out-of-memory error: what ran out, and the flag that sizes the work."""
    first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
    flags = [f for f in ("--batch-size", "--n", "--hidden") if getattr(args, f[2:].replace("-", "_"), None)]
    fix = f"lower {' or '.join(flags)}" if flags else "use smaller inputs"
    return f"out of memory during `fundiff {args.command}` ({first}); {fix}, or free memory / use another --device"


if __name__ == "__main__":
    sys.exit(main())
