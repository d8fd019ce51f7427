"""The web UI end to end in a real browser: headless Debian Chromium driven by Playwright's Python package.

It starts fundiff.ui on a free local port (shipped mnist-class, 3 steps, synthetic test images), runs
SDEdit on the empty canvas (a message, no traceback), draws a digit on the drawing pad with the mouse, runs
SDEdit, redoes it live on one more stroke, paints a mask over the test image and runs inpainting, then the
other tabs (sampling with 1 sample per digit), and checks that each shows a result and that the page asked
nothing of any host but the app.
Set-up as tests/test_report_browser.py (no browser download; never `playwright install`).
FUNDIFF_UI_SCREENSHOTS=DIR also saves DIR/ui-TAB.png with the default steps and sample counts (the
write-up's stride) for nicer pictures: `FUNDIFF_UI_SCREENSHOTS=docs pytest tests/test_ui_browser.py`.
"""

import os
from pathlib import Path
from urllib.parse import urlparse

import pytest

from helpers import synthetic_data
from test_report_browser import CHROMIUM, CHROMIUM_ARGS, require_browser
from test_ui import start_app

VIEWPORT = {"width": 1280, "height": 1400}
RESULT_TIMEOUT_MS = 60_000
DOCS_TIMEOUT_MS = 600_000  # the screenshots' default sizes: 100 CFG digits over 35 Heun steps on one thread, ~2 min
pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")  # gradio's own use of pandas 3


@pytest.fixture
def browser_and_app(tmp_path, monkeypatch):
    pytest.importorskip("gradio", reason="the web UI needs gradio: pip install 'fundiff[ui]'")
    require_browser()  # skips, or fails under FUNDIFF_REQUIRE_BROWSER=1, without Playwright or Chromium
    from fundiff import data

    docs = os.environ.get("FUNDIFF_UI_SCREENSHOTS")
    docs = Path(docs).resolve() if docs else None
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    if docs is None:
        monkeypatch.setattr(data, "load_split", lambda name, root=None, train=True: synthetic_data(8, seed=3))
    else:  # the pictures for the docs use the real MNIST test set, from the default data folder (`fundiff data
        monkeypatch.delenv("FUNDIFF_DATA")  # fetch mnist` first), not the empty one every other test gets
    monkeypatch.chdir(tmp_path)  # the page and the commands show out/ui/RUN as a user would see them
    demo, url, _ = start_app(Path("out/ui"), steps=None if docs else 3)
    try:
        yield url, [tmp_path] + ([docs] if docs else [])
    finally:
        demo.close()


def _strokes(page, selector: str, strokes: list[list[tuple[float, float]]]) -> None:
    """Draw with the mouse on the drawing pad in ``selector`` (ui/pad.py): each stroke a list of (x, y) fractions
    of its canvas, which is the whole image."""
    canvas = page.locator(f"{selector} canvas").first
    canvas.wait_for(state="visible")
    box = canvas.bounding_box()
    for stroke in strokes:
        (x, y), *rest = stroke
        page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"])
        page.mouse.down()
        for x, y in rest:
            page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"], steps=3)
        page.mouse.up()


def _run_tab(page, name: str, shots: list[Path]) -> None:
    """Press the tab's button, wait for its result image, and screenshot the page as ui-NAME.png."""
    timeout = RESULT_TIMEOUT_MS if len(shots) == 1 else DOCS_TIMEOUT_MS
    page.locator(f"#{name}-run").click()
    page.locator(f"#{name}-result img").first.wait_for(state="visible", timeout=timeout)
    page.locator(f"#{name}-status").get_by_text("done in").wait_for(timeout=timeout)
    for folder in shots:
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / f"ui-{name}.png"), full_page=True)


@pytest.mark.slow
def test_draw_sdedit_then_paint_and_inpaint_in_chromium(browser_and_app):
    from playwright.sync_api import sync_playwright

    url, shots = browser_and_app
    host = urlparse(url).netloc
    foreign, errors = [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.on("request", lambda req: foreign.append(req.url) if urlparse(req.url).netloc not in (host, "") else 0)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(url, wait_until="networkidle")

            page.get_by_role("tab", name="SDEdit").click()
            page.locator("#sdedit-run").click()  # nothing drawn yet: a message in the page, no traceback
            page.get_by_text("the canvas is empty").first.wait_for(state="visible", timeout=RESULT_TIMEOUT_MS)
            assert page.get_by_text("Traceback").count() == 0
            page.locator(".toast-close").first.click()  # the message closes (and stays out of the screenshots)
            page.get_by_text("the canvas is empty").first.wait_for(state="hidden")
            seven = [[(0.25, 0.2), (0.75, 0.2)], [(0.75, 0.2), (0.45, 0.85)]]
            _strokes(page, "#sdedit-sketch", seven)
            _run_tab(page, "sdedit", shots)
            page.locator("#sdedit-live input").check()  # live: a stroke redoes SDEdit at i_start, no files
            live = page.locator("#sdedit-status").get_by_text("live: SDEdit from i_start")
            _strokes(page, "#sdedit-sketch", [[(0.35, 0.5), (0.65, 0.5)]])
            live.wait_for(timeout=RESULT_TIMEOUT_MS // 3)
            page.locator("#sdedit-live input").uncheck()

            page.get_by_role("tab", name="inpainting").click()
            page.locator("#inpaint-editor img.pad-bg").wait_for(state="visible")  # the test image under the pad
            _strokes(page, "#inpaint-editor", [[(0.05, y), (0.95, y)] for y in (0.1, 0.25, 0.4)])
            _run_tab(page, "inpaint", shots)

            for tab, name in [("sampling", "sampling"), ("visual anagrams", "anagram"), ("hybrid images", "hybrid")]:
                page.get_by_role("tab", name=tab).click()
                if name == "sampling" and len(shots) == 1:  # 1 sample per digit (20 images), not the default's 100
                    page.locator("#sampling-n input[type=number]").fill("1")
                    page.locator("#sampling-n input[type=number]").press("Enter")
                _run_tab(page, name, shots)
        finally:
            browser.close()
    assert foreign == [] and errors == []
    names = ("sdedit", "inpaint", "sampling", "anagram", "hybrid")
    assert all((shots[0] / f"ui-{n}.png").stat().st_size > 10_000 for n in names)
