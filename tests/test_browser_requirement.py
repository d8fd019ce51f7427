"""The browser tests' gate: skip without Chromium, but fail (with the reason) under FUNDIFF_REQUIRE_BROWSER=1,
which `make test` sets so that a machine without the browser cannot pass it silently."""

import sys

import pytest

import test_report_browser as browser


@pytest.fixture
def no_chromium(monkeypatch, tmp_path):
    monkeypatch.setattr(browser, "CHROMIUM", str(tmp_path / "chromium"))
    monkeypatch.setattr(browser.shutil, "which", lambda name: None)


def test_a_missing_chromium_skips_with_the_reason(no_chromium, monkeypatch):
    monkeypatch.delenv(browser.REQUIRE_BROWSER, raising=False)
    with pytest.raises(pytest.skip.Exception, match="no Chromium at .*apt-get install -y chromium"):
        browser.require_browser()
    monkeypatch.setenv(browser.REQUIRE_BROWSER, "0")  # only 1 requires it
    with pytest.raises(pytest.skip.Exception):
        browser.require_browser()


def test_a_missing_chromium_fails_with_the_reason_when_required(no_chromium, monkeypatch):
    monkeypatch.setenv(browser.REQUIRE_BROWSER, "1")
    with pytest.raises(pytest.fail.Exception, match="no Chromium at .*FUNDIFF_REQUIRE_BROWSER=1"):
        browser.require_browser()


def test_a_missing_playwright_fails_with_the_reason_when_required(monkeypatch):
    monkeypatch.setitem(sys.modules, "playwright.sync_api", None)  # import raises ImportError
    monkeypatch.setenv(browser.REQUIRE_BROWSER, "1")
    with pytest.raises(pytest.fail.Exception, match="Playwright's Python package is missing"):
        browser.require_browser()
    monkeypatch.delenv(browser.REQUIRE_BROWSER)
    with pytest.raises(pytest.skip.Exception, match="pip install playwright"):
        browser.require_browser()


def test_an_installed_browser_passes_the_gate(monkeypatch, tmp_path):
    import types

    exe = tmp_path / "chromium"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.setattr(browser, "CHROMIUM", str(exe))
    for name in ("playwright", "playwright.sync_api"):  # as if installed, whether or not it is
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setenv(browser.REQUIRE_BROWSER, "1")
    browser.require_browser()  # neither skips nor fails
