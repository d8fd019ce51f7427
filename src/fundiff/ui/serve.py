"""Serving the page: one queue slot for sampling, no analytics, no share link, loopback unless told."""

from __future__ import annotations

import atexit
import errno
from contextlib import ExitStack
from pathlib import Path

import gradio as gr

from fundiff.errors import FundiffError
from fundiff.outputs import check_folder, folder_lock
from fundiff.ui.app import UIConfig

SYSTEM_FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]  # the default theme would fetch Google fonts


def launch(
    demo: gr.Blocks,
    config: UIConfig,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    auth: tuple[str, str] | None = None,
) -> str:
    """Serve ``demo`` on host:port (port None: the first free one from 7860) in background threads, with one
    queue slot for sampling, no analytics, no share link, no monitoring, no MCP server and no web fonts.

    ``auth`` (user, password): gradio's login page before the app. A start that fails (e.g. a busy port) is a
    one-line FundiffError and leaves no folder it made for ``config.out``.

    Returns the local URL; ``demo.block_thread()`` waits (until Ctrl-C), ``demo.close()`` stops it.
    Every file under ``config.out`` can be downloaded, so it must not be (or contain) the working folder, the
    home folder or /; it is checked (fundiff.outputs.check_folder) and locked until ``demo.close()`` (one UI per
    folder; a second stops at once). A failed start leaves no new folder."""
    out = config.out.resolve()
    for broad in (Path.cwd().resolve(), Path.home().resolve(), Path(out.anchor)):
        if out == broad or out in broad.parents:
            raise FundiffError(
                f"--out {config.out} would let the page serve every file under {out}; give a folder of its own "
                "(default out/ui)"
            )
    check_folder(config.out)
    lock = ExitStack()
    lock.enter_context(folder_lock(config.out, doing="served"))  # makes the folder
    try:
        demo.queue(default_concurrency_limit=1)
        _, url, _ = demo.launch(
            server_name=host,
            server_port=port,
            share=False,
            inbrowser=False,
            prevent_thread_lock=True,
            allowed_paths=[str(config.out.resolve())],
            enable_monitoring=False,
            mcp_server=False,
            ssr_mode=False,
            quiet=True,
            auth=auth,
            show_error=False,
            max_file_size="20mb",
            footer_links=[],
            run_history=False,
            theme=gr.themes.Default(font=SYSTEM_FONTS, font_mono=["ui-monospace", "monospace"]),
        )
    except OSError as e:  # e.g. the port is taken (gradio: "Cannot find empty port in range ...")
        lock.close()  # and the folder the lock made, still empty, goes
        where = f"{host}:{port}" if port else f"{host} (no free port from 7860 on)"
        if e.errno not in (None, errno.EADDRINUSE) and e.strerror:
            raise FundiffError(f"cannot serve on {where}: {e.strerror}; check --host and --port") from None
        raise FundiffError(f"cannot serve on {where}: the port is in use; pick another --port") from None
    except BaseException:
        lock.close()
        raise
    close = demo.close

    def close_and_unlock(*args, **kwargs):
        try:
            return close(*args, **kwargs)
        finally:
            lock.close()

    demo.close = close_and_unlock
    atexit.register(lock.close)  # Ctrl-C in demo.block_thread() stops the server without demo.close()
    return url
