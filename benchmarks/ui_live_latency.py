"""The web UI's live mode, timed in a real browser: from a stroke's mouse-up to the updated picture.

    python benchmarks/ui_live_latency.py --threads 2 --model mnist-class-fast --strokes 10

Starts ``fundiff ui`` with the model at its default settings (steps, sampler, CFG) on a free local port,
opens it in headless Debian Chromium (Playwright, no browser download), ticks "live" in the SDEdit tab,
draws --strokes strokes (after an untimed one) on the drawing pad one at a time, and for each waits
until the status line reports the new update; then the same with the inpainting tab's mask. Prints, per
tab, the median and the worst wall time from mouse-up to the status change (what the user waits: the
pad's PNG, gradio's queue, the model and the picture), and the server's own share (the milliseconds
the status line reports).
The MNIST test set is read from the default data folder (`fundiff data fetch mnist` first).
"""

from __future__ import annotations

import argparse
import re
import socket
import statistics
import tempfile
import time
from pathlib import Path

import torch

from _common import cpu_description

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-gpu", "--no-first-run"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _canvas(page, selector: str):
    """The drawing pad's canvas (fundiff/ui/pad.py), which is the whole image: (left, top, side)."""
    canvas = page.locator(f"{selector} canvas").first
    canvas.wait_for(state="visible")
    box = canvas.bounding_box()
    return box["x"], box["y"], min(box["width"], box["height"])


def _draw(page, tab: str, stroke: list[tuple[float, float]]) -> None:
    left, top, side = _canvas(page, f"#{tab}-{'sketch' if tab == 'sdedit' else 'editor'}")
    (x, y), *rest = stroke
    page.mouse.move(left + x * side, top + y * side)
    page.mouse.down()
    for x, y in rest:
        page.mouse.move(left + x * side, top + y * side, steps=3)
    page.mouse.up()


def _timed_strokes(page, tab: str, strokes: list[list[tuple[float, float]]]) -> tuple[list[float], list[float]]:
    """Each stroke drawn, then the wait for a new x0_hat picture, loaded, beside a "live:" status (the status alone
    can repeat: two runs of the same milliseconds): (browser ms per stroke, server ms per stroke)."""
    status = page.locator(f"#{tab}-status")
    left, top, side = _canvas(page, f"#{tab}-{'sketch' if tab == 'sdedit' else 'editor'}")
    waits, server = [], []
    for stroke in strokes:
        picture = page.locator(f"#{tab}-live img")
        before_src = picture.first.get_attribute("src") if picture.count() else ""
        (x, y), *rest = stroke
        page.mouse.move(left + x * side, top + y * side)
        page.mouse.down()
        for x, y in rest:
            page.mouse.move(left + x * side, top + y * side, steps=3)
        t0 = time.perf_counter()
        page.mouse.up()
        page.wait_for_function(
            "([sel, pic, src]) => { const t = document.querySelector(sel).innerText;"
            " const i = document.querySelector(pic);"
            " return t.startsWith('live:') && / in \\d+ ms/.test(t)"
            " && i !== null && i.src !== src && i.complete; }",
            arg=[f"#{tab}-status", f"#{tab}-live img", before_src or ""],
            timeout=60_000,
            polling=5,
        )
        waits.append(1000 * (time.perf_counter() - t0))
        server.append(float(re.search(r" in (\d+) ms", status.inner_text()).group(1)))
    return waits, server


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mnist-class-fast")
    ap.add_argument("--strokes", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from playwright.sync_api import sync_playwright

    from fundiff import ui

    out = Path(tempfile.mkdtemp(prefix="fundiff-live-"))
    config = ui.UIConfig(models=(args.model,), model=args.model, out=out)
    demo = ui.build(config)
    url = ui.launch(demo, config, host="127.0.0.1", port=_free_port())
    print(cpu_description())
    print(f"model={args.model} threads={torch.get_num_threads()} torch={torch.__version__} strokes={args.strokes}")
    lines = [[(0.2 + 0.6 * k / max(1, args.strokes - 1), 0.15), (0.5, 0.85)] for k in range(args.strokes)]
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            page.goto(url, wait_until="networkidle")
            print(
                "| tab | strokes | browser: median ms | browser: worst ms | server: median ms |\n|---|---|---|---|---|"
            )
            for tab, name in (("SDEdit", "sdedit"), ("inpainting", "inpaint")):
                page.get_by_role("tab", name=tab).click()
                page.locator(f"#{name}-live input").check()
                _draw(page, name, [(0.05, 0.95), (0.1, 0.95)])  # untimed: the first run loads the model
                page.wait_for_timeout(3000)
                waits, server = _timed_strokes(page, name, lines)
                print(f"| {name} | {len(waits)} | {statistics.median(waits):.0f} | {max(waits):.0f} | "
                      f"{statistics.median(server):.0f} |", flush=True)  # fmt: skip
            browser.close()
    finally:
        demo.close()


if __name__ == "__main__":
    main()
