"""A real vLLM OpenAI-compatible server on 127.0.0.1, started from the vLLM venv (scripts/install-vllm.sh).

For the serving tests and benchmarks. Free of side effects on import (benchmarks use it without conftest).
The flags are the ones the README documents, plus what a 2-core CPU box needs (serving-facts):
``--gpu-memory-utilization`` is the fraction of RAM vLLM reserves on CPU, ``--enforce-eager`` skips
compilation. ``--trust-request-mm-kwargs`` lets each request carry its frames' timing
(``media_io_kwargs``) and ``do_resize=False`` (chat_request).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VLLM_PYTHON = REPO / ".cache" / "vllm-venv" / "bin" / "python"
SERVED_NAME = "marlin-tiny"
# First start on 2 busy cores: ~35-90 s (model load, memory profiling, engine start).
STARTUP_TIMEOUT_S = 300.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_command(model_dir: Path, port: int, served_name: str = SERVED_NAME) -> list[str]:
    """The command line that serves ``model_dir`` (README "Scaling out" has the GPU version)."""
    return [
        str(VLLM_PYTHON), "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(model_dir), "--served-model-name", served_name,
        "--host", "127.0.0.1", "--port", str(port),
        "--trust-request-mm-kwargs",
        "--gpu-memory-utilization", "0.2", "--enforce-eager", "--max-model-len", "8192",
        # The encoder cache is sized by this; a 15 s window of the test clips is 2160 video tokens (default 2048).
        "--max-num-batched-tokens", "8192",
    ]  # fmt: skip


@dataclass
class RunningServer:
    process: subprocess.Popen
    port: int
    log_path: Path
    served_name: str = SERVED_NAME

    @property
    def model(self) -> str:
        """The ``model`` string Marlin's CLI and operators take for this server."""
        return f"openai://127.0.0.1:{self.port}/v1/{self.served_name}"

    def stop(self) -> None:
        """SIGTERM the server's process group (API server, engine core, worker), then SIGKILL if needed."""
        if self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def start_server(model_dir: Path, log_path: Path, *, port: int | None = None) -> RunningServer:
    """Start vLLM on ``model_dir`` and wait until ``/v1/models`` answers.

    Raises:
        RuntimeError: the vLLM venv is missing, or the server died or did not come up (log tail included).
    """
    if not VLLM_PYTHON.is_file():
        raise RuntimeError(f"{VLLM_PYTHON} not found: run `bash scripts/install-vllm.sh` (make test does)")
    port = port or free_port()
    log = open(log_path, "w")
    env = dict(os.environ, VLLM_LOGGING_LEVEL="WARNING")
    process = subprocess.Popen(server_command(model_dir, port), stdout=log, stderr=subprocess.STDOUT,
                               env=env, start_new_session=True, cwd=str(log_path.parent))
    server = RunningServer(process, port, log_path)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        if _ready(port):
            return server
        time.sleep(2)
    server.stop()
    tail = "".join(log_path.read_text(errors="replace").splitlines(keepends=True)[-30:])
    raise RuntimeError(f"vLLM server on port {port} did not start (exit {process.poll()}); log {log_path}:\n{tail}")
