"""The tour's report opened in a real browser: headless Debian Chromium driven by Playwright's Python package.

Set-up (no browser download; never `playwright install`): `apt-get install -y chromium` and
`pip install playwright`. Skipped with the reason when either is missing, unless FUNDIFF_REQUIRE_BROWSER=1
(as `make test` sets it): then that reason is a failure, so a run that should drive the browser never
passes without it.
The tiny tour's report is opened by tests/test_tour.py (which builds that tour once for its module);
FUNDIFF_TOUR_REPORT=DIR/index.html checks a real one here, and FUNDIFF_TOUR_SCREENSHOT=PATH also saves its
screenshot there (docs/tour-report.png).
"""

import os
import shutil
from pathlib import Path

import pytest

from fundiff import tour

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-gpu",
    "--disable-component-update",
    "--no-first-run",
]
VIEWPORT = {"width": 1200, "height": 2000}
REQUIRE_BROWSER = "FUNDIFF_REQUIRE_BROWSER"  # "1": a missing browser fails the browser tests instead of skipping


def require_browser() -> None:
    """Skip the calling test with the reason when Playwright's package or Chromium is missing; fail it with the
    reason instead when $FUNDIFF_REQUIRE_BROWSER is 1."""
    reason = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        reason = "Playwright's Python package is missing: pip install playwright"
    has_chromium = (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)) or shutil.which("chromium")
    if reason is None and not has_chromium:
        reason = f"no Chromium at {CHROMIUM}: apt-get install -y chromium (Debian's package; no browser download)"
    if reason is None:
        return
    if os.environ.get(REQUIRE_BROWSER) == "1":
        pytest.fail(f"{reason} ({REQUIRE_BROWSER}=1: this run must drive the browser)", pytrace=False)
    pytest.skip(reason)


def open_report(index: Path, screenshots: list[Path]) -> dict:
    """Load ``index`` in headless Chromium; return its images, section ids, console errors and failed requests."""
    from playwright.sync_api import sync_playwright

    errors, failed = [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("requestfailed", lambda req: failed.append(req.url))
            page.goto(index.resolve().as_uri(), wait_until="load")
            images = page.eval_on_selector_all(
                "img", "els => els.map(e => ({src: e.getAttribute('src'), complete: e.complete, w: e.naturalWidth}))"
            )
            ids = page.eval_on_selector_all("section[id]", "els => els.map(e => e.id)")
            nav = page.eval_on_selector_all("nav a", "els => els.map(e => e.getAttribute('href'))")
            for path in screenshots:
                path.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(path))
        finally:
            browser.close()
    return {"images": images, "ids": ids, "nav": nav, "errors": errors, "failed": failed}


def assert_report_is_whole(seen: dict, shots: list[Path]) -> None:
    """What open_report saw is the whole report: every section and contents link, every image loaded, no error."""
    assert seen["errors"] == [] and seen["failed"] == []
    assert seen["ids"] == list(tour.SECTION_IDS)
    assert seen["nav"] == [f"#{s}" for s in tour.SECTION_IDS]
    assert len(seen["images"]) >= len(tour.SECTION_IDS)
    broken = [img["src"] for img in seen["images"] if not (img["complete"] and img["w"] > 0)]
    assert broken == []
    assert all(p.stat().st_size > 10_000 for p in shots)


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("FUNDIFF_TOUR_REPORT"),
    reason="set FUNDIFF_TOUR_REPORT=DIR/index.html (the tiny tour's report is checked by tests/test_tour.py)",
)
def test_a_given_report_opens_in_chromium_with_every_image_and_section():
    require_browser()
    shots = [Path(os.environ["FUNDIFF_TOUR_SCREENSHOT"])] if os.environ.get("FUNDIFF_TOUR_SCREENSHOT") else []
    assert_report_is_whole(open_report(Path(os.environ["FUNDIFF_TOUR_REPORT"]), shots), shots)
