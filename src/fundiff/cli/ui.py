"""``fundiff ui``: the web UI (fundiff.ui, gradio) as a subcommand.

gradio is an optional dependency (``pip install 'fundiff[ui]'``); it is imported only when the
command runs, so the rest of the CLI works without it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from fundiff.cli.common import Formatter, add_precision_option, positive_int
from fundiff.cli.common import number as _number
from fundiff.errors import FundiffError

DEFAULT_MODEL = "mnist-class"
port_int = _number(int, low=1, high=65535, what="a port number in 1..65535")


def register(subparsers) -> dict[str, Callable[[argparse.Namespace], None]]:
    """Add ``ui`` to ``subparsers``; returns {"ui": handler(args)}."""
    p = subparsers.add_parser(
        "ui",
        help="a local web app: draw, paint a mask, pick prompts, and watch the model denoise",
        description="Starts a gradio web app on this machine (127.0.0.1 by default) with one tab per technique: "
        "sampling with CFG, SDEdit of a drawing or an upload, inpainting with a painted mask, visual anagrams, "
        "hybrid images. Every run writes its figure, its images and a manifest (with the `fundiff` command that "
        "reproduces it) into --out. One run at a time; analytics off. Needs gradio: pip install 'fundiff[ui]'.",
        formatter_class=Formatter,
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on; 0.0.0.0 serves the whole network: anyone who can reach the port can use the UI "
        "(add --auth)",
    )
    p.add_argument(
        "--auth",
        type=auth_pair,
        default=None,
        metavar="USER:PASS",
        help="ask for this user name and password before the page opens (gradio's login; plain HTTP, so on a "
        "trusted network still)",
    )
    p.add_argument("--port", type=port_int, default=None, help="port (default: the first free one from 7860)")
    p.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="model selected first: a shipped name, a run folder, or the --if model",
    )
    p.add_argument(
        "--runs",
        default=None,
        metavar="DIR",
        help="also offer the time/class run folders in DIR (DIR itself and its subfolders), e.g. runs",
    )
    p.add_argument(
        "--if",
        dest="if_model",
        default=None,
        metavar="MODEL",
        help="also offer DeepFloyd IF stage I: a diffusers folder or a hub id such as DeepFloyd/IF-I-XL-v1.0",
    )
    p.add_argument("--embeddings", default=None, metavar="FILE", help="DeepFloyd IF: precomputed T5 prompt embeddings")
    p.add_argument(
        "--steps",
        type=positive_int,
        default=None,
        help="start value of the steps field (default: the write-up's stride, 35 steps)",
    )
    p.add_argument("--out", default="out/ui", help="folder for the runs' figures, images and manifests")
    p.add_argument(
        "--data-dir",
        default=None,
        help="dataset folder for test images (default: $FUNDIFF_DATA or ~/.cache/fundiff/data)",
    )
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, or auto (CUDA when available)")
    p.add_argument("--threads", type=positive_int, default=None, help="CPU threads for torch (default: torch's choice)")
    add_precision_option(p)
    return {"ui": _cmd_ui}


def auth_pair(text: str) -> tuple[str, str]:
    """An argparse type: USER:PASS (both non-empty; the password may hold ':')."""
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise argparse.ArgumentTypeError("expected USER:PASS, a user name and a password joined by ':'")
    return user, password


def check_host(host: str) -> bool:
    """Whether ``host`` reaches beyond this machine (False: loopback only); a name that does not resolve or an
    address that is not this machine's is a one-line FundiffError."""
    import ipaddress
    import socket

    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise FundiffError(
            f"--host {host!r} is neither an IP address nor a host name this machine can resolve; use 127.0.0.1 "
            "(this machine only) or 0.0.0.0 (every network)"
        ) from None
    for family, _, _, _, addr in infos:
        try:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.bind((addr[0], 0))
        except OSError as e:
            raise FundiffError(
                f"--host {host} ({addr[0]}) is not an address of this machine ({e.strerror}); use 127.0.0.1 or "
                "0.0.0.0, or one of this machine's own addresses"
            ) from None
    return not all(ipaddress.ip_address(addr[0].split("%")[0]).is_loopback for *_, addr in infos)


def exposure_notice(host: str, auth: tuple[str, str] | None) -> str:
    """What the console and the page say about a UI served beyond loopback."""
    if auth:
        return f"the UI listens on {host}, beyond this machine: only the --auth login keeps others out, over plain HTTP"
    return (
        f"the UI listens on {host}, beyond this machine: anyone who can reach the port can use it and download its "
        "runs; add --auth USER:PASS or serve on 127.0.0.1"
    )


def config_from_args(args: argparse.Namespace):
    """The UIConfig that the flags describe (the chosen model must be among the offered ones)."""
    from fundiff.ui import UIConfig, diffusion_models

    models = diffusion_models(args.runs, args.if_model)
    model = args.model
    if model not in models:  # a run folder or IF id given directly: offer it too
        if model == DEFAULT_MODEL:
            raise FundiffError(
                f"model {DEFAULT_MODEL!r} is not installed: train one with `fundiff train class --preset quick` and "
                "pass --model runs/mnist-class-quick"
            )
        models.append(model)
    if args.embeddings and not args.if_model:
        raise FundiffError("--embeddings applies to the --if model; give --if MODEL too")
    options = {args.if_model: {"embeddings": args.embeddings}} if args.embeddings else {}
    return UIConfig(
        models=tuple(models),
        model=model,
        steps=args.steps,
        device=args.device,
        precision=args.precision,
        out=Path(args.out),
        data_dir=args.data_dir,
        model_options=options,
    )


def _cmd_ui(args: argparse.Namespace) -> None:
    exposed = check_host(args.host)  # before gradio loads: a wrong --host is told at once
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # this process is the app's: no telemetry, set before import
    try:
        from fundiff import ui
    except ImportError as e:
        raise FundiffError(f"the web UI needs gradio ({e}); install it with: pip install 'fundiff[ui]'") from None
    notice = exposure_notice(args.host, args.auth) if exposed else ""
    if notice:
        print(f"fundiff: warning: {notice}", file=sys.stderr)
    config = replace(config_from_args(args), notice=notice)
    demo = ui.build(config)
    url = ui.launch(demo, config, host=args.host, port=args.port, auth=args.auth)
    print(f"fundiff ui: open {url} (Ctrl-C stops it); models {', '.join(config.models)}; runs go to {config.out}")
    demo.block_thread()
