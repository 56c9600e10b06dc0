"""A real FiftyOne App server, a real delegated worker and Debian's Chromium driven by Playwright.

Playwright's own browser download needs the network; the tests launch the system ``chromium``
(``scripts/install.sh`` installs it) through ``executable_path``. The App server and the worker
are separate processes on the tests' database and plugin folder (inherited environment), exactly
as ``make app`` runs them for a user.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--no-first-run"]
# What Schedule needs in FiftyOne 1.22 (orchestrator registration is an Enterprise feature).
APP_ENV = {"FIFTYONE_ALLOW_LEGACY_ORCHESTRATORS": "true", "FIFTYONE_DO_NOT_TRACK": "true"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


REPO = Path(__file__).resolve().parents[1]


def _env(extra: dict | None = None) -> dict:
    """The tests' environment (database, plugins folder), importing this checkout's ``marlin_core``."""
    python_path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, **APP_ENV, "PYTHONPATH": python_path, **(extra or {})}


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def app_server(log_path: Path, env: dict | None = None):
    """The App's server (``fiftyone.server.main``) on a free port; yields its base URL."""
    port = free_port()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "fiftyone.server.main", "--port", str(port), "--address", "127.0.0.1"],
            stdout=log, stderr=subprocess.STDOUT, env=_env(env),
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"App server exited: {log_path.read_text()[-2000:]}")
                try:
                    urllib.request.urlopen(url, timeout=2).read(1)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"App server did not start: {log_path.read_text()[-2000:]}")
                    time.sleep(0.5)
            yield url
        finally:
            _stop(process)


@contextmanager
def delegated_worker(log_path: Path, env: dict | None = None):
    """``fiftyone delegated launch``: runs scheduled operations as they are queued."""
    cli = Path(sys.executable).with_name("fiftyone")
    with open(log_path, "wb") as log:
        process = subprocess.Popen([str(cli), "delegated", "launch"], stdout=log, stderr=subprocess.STDOUT,
                                   env=_env(env))
        try:
            yield process
        finally:
            _stop(process)


@contextmanager
def chromium_page(width: int = 1600, height: int = 1000):
    """A Playwright page in the system Chromium (no Playwright browser download)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()


def dismiss_popups(page) -> None:
    """Close the Enterprise promotion (and a cookie banner, if one shows) so screenshots show the App."""
    page.locator('[data-cy="looker"]').first.wait_for(timeout=120_000)
    for text in ("Dismiss", "Reject all", "Decline"):
        target = page.get_by_text(text, exact=True)
        try:
            target.first.wait_for(state="visible", timeout=3000 if text == "Dismiss" else 500)
        except Exception:  # noqa: BLE001 - not shown in this App build
            continue
        target.first.click()
