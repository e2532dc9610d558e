"""Debian's chromium driven by playwright, as the browser tests launch it."""
import os
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
# Root needs --no-sandbox; the closed network refuses chromium's background connections, so turn them off.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def sync_playwright():
    """playwright's entry point; a missing package or chromium fails on CI (.ci/run installs both) and skips elsewhere."""
    missing = None
    try:
        from playwright.sync_api import sync_playwright as entry
    except ImportError:
        missing = "the playwright package is missing: pip install -e '.[test]'"
    if missing is None and not Path(CHROMIUM).exists():
        missing = f"no {CHROMIUM}: install Debian's chromium (apt-get install chromium)"
    if missing:
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    return entry


def launch(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
