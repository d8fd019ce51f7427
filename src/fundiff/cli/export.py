"""``fundiff export``: a run folder as a small shipped model (bf16 EMA weights + model card)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from fundiff.cli.common import Formatter as _Formatter
from fundiff.cli.common import nonneg_float as _nonneg_float
from fundiff.errors import FundiffError


def register(sub) -> dict[str, Callable[[argparse.Namespace], None]]:
    """Add ``export`` to the subparsers ``sub``; returns {command name: handler(args)}."""
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
    p.add_argument(
        "--wall-s", type=_nonneg_float, default=None, help="training wall time, when the run did not record it"
    )
    p.add_argument(
        "--note", default=None, help="a remark for the model card (e.g. how the machine was shared while training)"
    )

    return {"export": _cmd_export}


def _cmd_export(args) -> None:
    """Export into --dest/--name: checked first, locked (one writer), written whole or not at all."""
    from fundiff.backends import runs
    from fundiff.checkpoints import read_json
    from fundiff.outputs import check_folder, folder_lock, staged_folder
    from fundiff.shipping import export_run

    if not args.name.replace("-", "").replace("_", "").isalnum():
        raise FundiffError(f"--name may hold letters, digits, '-' and '_' only, got {args.name!r}")
    dest = (Path(args.dest) if args.dest else runs.SHIPPED_DIR) / args.name
    check_folder(dest, flag="--dest")
    evaluation = read_json(Path(args.eval_json)) if args.eval_json else None
    run_dir = runs.resolve(args.model)
    with folder_lock(dest, doing="written", flag="--dest"), staged_folder(dest, flag="--dest") as staged:
        export_run(
            run_dir,
            staged.tmp,
            evaluation=evaluation,
            card_extra={"command": args.command_line, "wall_s": args.wall_s, "note": args.note},
            name=args.name,
        )
    print(f"exported {args.model} as {args.name} -> {dest}")
