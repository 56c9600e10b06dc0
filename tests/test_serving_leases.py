"""Sharing and stopping managed servers (``vllm:`` models), on real processes without vLLM's start-up cost.

The "server" here is a real process group on 127.0.0.1 that answers ``/v1/models`` as vLLM does for
Marlin; the state file points at it, as after a ``vllm:`` run started one. What is checked is the
lease logic: reuse, the last user stops a server a run started, ``keep``, users that died, a server
that died, and that ``marlin serve``'s servers are never stopped by runs. The real vLLM start, reuse and
stop are in test_serving_managed.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from marlin_core.serving import managed
from marlin_core.serving import vllm_process as vp
from vllm_server import free_port

FAKE_VLLM = """
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        body = json.dumps({"object": "list", "data": [{"id": "marlin"}]}).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""
MODEL = "vllm:some/model"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(managed.CACHE_ENV, str(tmp_path))
    monkeypatch.setenv(vp.PYTHON_ENV, str(tmp_path / "no-python"))  # any attempt to start vLLM fails loudly
    return tmp_path


@pytest.fixture
def recorded(cache):
    """A live fake server recorded as started by a run; yields its state."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", FAKE_VLLM, str(port)], start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 30
    while vp.answers(url) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    state = managed.ServerState(model="some/model", url=url, pid=process.pid, port=port, owner="run",
                                log=str(cache / "x.log"))
    managed.state_path(MODEL).parent.mkdir(parents=True)
    managed.write_state(state, MODEL)
    yield state
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def test_a_run_reuses_the_recorded_server_and_the_last_user_stops_it(recorded):
    first, second = managed.acquire(MODEL), managed.acquire(MODEL)
    assert first.openai_model == second.openai_model == f"openai://127.0.0.1:{recorded.port}/v1/marlin"
    assert len(managed.read_state(MODEL).users) == 2
    first.release()
    assert vp.process_alive(recorded.pid) and len(managed.read_state(MODEL).users) == 1
    second.release()
    assert not vp.process_alive(recorded.pid) and managed.read_state(MODEL) is None


def test_keep_leaves_the_server_running(recorded):
    with managed.acquire(MODEL, keep=True):
        pass
    state = managed.read_state(MODEL)
    assert state.keep and state.users == [] and vp.process_alive(recorded.pid)


def test_users_that_died_without_leaving_are_pruned(recorded):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    recorded.users = [f"{dead.stdout.strip()}:gone"]
    managed.write_state(recorded, MODEL)
    managed.acquire(MODEL).release()
    assert not vp.process_alive(recorded.pid) and managed.read_state(MODEL) is None


def test_a_server_marlin_serve_owns_is_never_stopped_by_runs(recorded):
    recorded.owner = "serve"
    managed.write_state(recorded, MODEL)
    managed.acquire(MODEL).release()
    assert vp.process_alive(recorded.pid) and managed.read_state(MODEL).owner == "serve"


def test_a_recorded_server_that_died_is_forgotten_and_a_new_one_is_started(recorded):
    os.killpg(recorded.pid, signal.SIGKILL)
    with pytest.raises(vp.VllmNotInstalledError, match="vLLM is not installed"):
        managed.acquire(MODEL)  # it tried to start a new one (and there is no vLLM here)
    assert managed.read_state(MODEL) is None


def test_a_hung_server_is_stopped_and_replaced(recorded):
    os.killpg(recorded.pid, signal.SIGSTOP)  # alive, but answers nothing
    with pytest.raises(vp.VllmNotInstalledError):
        managed.acquire(MODEL)
    assert not vp.process_alive(recorded.pid)


def test_the_same_weights_named_two_ways_share_one_state_file(tmp_path, cache, monkeypatch):
    (tmp_path / "weights").mkdir()
    monkeypatch.chdir(tmp_path)
    assert managed.state_path("vllm:weights") == managed.state_path(f"vllm:{tmp_path / 'weights'}")
    assert managed.state_path("vllm:org/model") != managed.state_path("vllm:org/other")


def test_a_taken_port_is_named(cache):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert vp.port_problem("127.0.0.1", port).startswith(f"port {port} on 127.0.0.1 is taken")
    assert vp.port_problem("127.0.0.1", port) is None


@pytest.mark.parametrize(("log", "expected"), [
    ("INFO loading\nValueError: No available memory for the cache blocks. Try increasing "
     "`gpu_memory_utilization` when initializing the engine.\nRuntimeError: Engine core initialization failed. "
     "See root cause above. Failed core proc(s): {}\n",
     "ValueError: No available memory for the cache blocks."),
    ("OSError: some/model is not a local folder and is not a valid model identifier\n",
     "OSError: some/model is not a local folder"),
])
def test_vllms_own_last_error_line_is_kept(tmp_path, log, expected):
    (tmp_path / "server.log").write_text(log)
    assert vp.last_error_line(tmp_path / "server.log").startswith(expected)
    error = vp.start_error("some/model", tmp_path / "server.log", 1, vp.ServeOptions(gpu_memory_utilization=0.01))
    assert "\n" not in str(error)
    fits = "memory" not in log
    assert ("cannot fit some/model in the memory it may use (--gpu-memory-utilization 0.01" in str(error)) != fits
