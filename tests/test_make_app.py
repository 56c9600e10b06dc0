"""`make app` (scripts/app.sh) with real processes: the App, then a real delegated worker on the same
database; a worker that dies at start-up is reported with its log's last line; a second `make app` on a
port in use starts nothing and leaves the first App and its worker running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import fiftyone as fo
import pytest

from app_browser import _env, free_port

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "app.sh"


@pytest.fixture(scope="module")
def app_dataset():
    dataset = fo.Dataset(f"marlin-make-app-{uuid.uuid4().hex[:8]}", persistent=True)
    yield dataset
    dataset.delete()


def start(dataset, port: int, cwd: Path, **env) -> subprocess.Popen:
    return subprocess.Popen(["bash", str(SCRIPT), sys.executable, dataset.name, str(port), "127.0.0.1"],
                            cwd=cwd, env=_env({**env}), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def read_until(process: subprocess.Popen, text: str, timeout_s: float = 180.0) -> str:
    seen = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if text in line:
            return "".join(seen)
    raise AssertionError(f"{text!r} never printed: {''.join(seen)}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_make_app_starts_a_live_worker_and_a_second_one_leaves_it_alone(app_dataset, tmp_path):
    port = free_port()
    first = start(app_dataset, port, tmp_path)
    try:
        out = read_until(first, "delegated worker running")
        assert "WARNING" not in out
        second = subprocess.run(["bash", str(SCRIPT), sys.executable, app_dataset.name, str(port), "127.0.0.1"],
                                cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120)
        assert second.returncode == 1 and "already serves" in second.stderr
        urllib.request.urlopen(f"http://127.0.0.1:{port}", timeout=10).read(1)  # the first App still answers
        worker_pid = int(out.split("(pid ")[1].split(",")[0])
        os.kill(worker_pid, 0)  # and its worker still runs
    finally:
        stop(first)


def test_make_app_says_plainly_when_the_worker_dies(app_dataset, tmp_path):
    cli = Path(sys.executable).with_name("fiftyone")
    process = start(app_dataset, free_port(), tmp_path, MARLIN_WORKER_CMD=f"{cli} delegated launch --no-such-flag")
    try:
        out = read_until(process, "last line")
        assert "delegated worker exited at start-up" in out and "unrecognized arguments" in out
    finally:
        stop(process)
