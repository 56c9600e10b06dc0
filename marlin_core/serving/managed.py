"""``model="vllm:PATH_OR_ID"``: a vLLM server Marlin starts, shares and stops itself.

One small state file per model under the cache folder (``$MARLIN_CACHE_DIR``, else
``$XDG_CACHE_HOME/marlin``, else ``~/.cache/marlin``; ``servers/<hash>.json``) says where its server
is: URL, process-group id, model, who started it (``marlin serve`` or a run) and which processes use it.
A run that asks for ``vllm:M`` takes a lease: under a file lock it reuses the live server of the state
file (``marlin serve M`` or another run's), else starts one, waits for ``/v1/models``, and records
itself. Leaving, it removes itself; the last user of a server a run started stops it (the whole
process group) unless the run asked to keep it. ``marlin serve`` servers are only stopped by
``marlin serve`` itself. Users that died without leaving (``kill -9``) are pruned by pid, so their
server is stopped by the next user that leaves, or reused by the next run.

Two runs at once share one server: the second waits on the lock while the first starts it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import MarlinError
from . import vllm_process as vp

__all__ = ["VLLM_PREFIX", "Lease", "ServerState", "acquire", "cache_dir", "is_vllm_model", "read_state",
           "served_model", "state_path"]

VLLM_PREFIX = "vllm:"
CACHE_ENV = "MARLIN_CACHE_DIR"


def is_vllm_model(model: str | None) -> bool:
    """True for ``vllm:PATH_OR_ID`` model strings."""
    return isinstance(model, str) and model.startswith(VLLM_PREFIX) and bool(model[len(VLLM_PREFIX):].strip())


def served_model(model: str) -> str:
    """What vLLM is asked to load for ``vllm:PATH_OR_ID``: an absolute folder when it exists, else the hub id."""
    name = model[len(VLLM_PREFIX):].strip() if model.startswith(VLLM_PREFIX) else model
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else name


def cache_dir() -> Path:
    """Marlin's cache folder (see the module docstring)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "marlin"


def state_path(model: str) -> Path:
    """The state file of the server for ``model`` (a ``vllm:`` string or what it names)."""
    digest = hashlib.sha1(served_model(model).encode()).hexdigest()[:16]
    return cache_dir() / "servers" / f"{digest}.json"


@dataclass
class ServerState:
    """One managed server: ``url`` (``http://host:port/v1``), ``pid`` (leader of its process group)."""

    model: str
    url: str
    pid: int
    port: int
    owner: str  # "serve" (marlin serve) or "run" (started for a vllm: run)
    log: str
    users: list[str] = field(default_factory=list)  # "pid:token", one per lease
    keep: bool = False

    @property
    def openai_model(self) -> str:
        """The ``openai://`` model string that reaches this server."""
        return f"openai://{self.url.split('://', 1)[1]}/{vp.SERVED_NAME}"

    def alive(self) -> bool:
        return vp.process_alive(self.pid) and vp.SERVED_NAME in (vp.answers(self.url) or [])


def read_state(model: str) -> ServerState | None:
    """The recorded server for ``model``, or None (no file, or an unreadable one)."""
    try:
        return ServerState(**json.loads(state_path(model).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def write_state(state: ServerState | None, model: str) -> None:
    path = state_path(model)
    if state is None:
        path.unlink(missing_ok=True)
        return
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(json.dumps(asdict(state)))
    os.replace(temporary, path)


@contextmanager
def locked(model: str):
    """Hold the lock of ``model``'s state file (other processes wait; released if this one dies)."""
    path = state_path(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def launch(model: str, options: vp.ServeOptions, owner: str) -> ServerState:
    """Start vLLM for ``model`` (a ``vllm:`` string or what it names) and wait for it; call under the lock.

    Raises:
        VllmNotInstalledError, ServerStartError: one line each (port taken, model does not fit, ...).
    """
    name = served_model(model)
    install = vp.find_vllm()
    options = vp.effective(install, options)
    port = options.port or vp.free_port(options.host)
    if (problem := vp.port_problem(options.host, port)) is not None:
        raise vp.ServerStartError(problem)
    log = cache_dir() / "servers" / f"{state_path(model).stem}-{port}.log"
    process = vp.start(install, name, port, options, log)
    url = f"http://{options.host}:{port}/v1"
    try:
        vp.wait_ready(process, url, name, log, options)
    except BaseException:
        vp.stop_group(process.pid)
        raise
    return ServerState(model=name, url=url, pid=process.pid, port=port, owner=owner, log=str(log))


def live_state(model: str) -> ServerState | None:
    """The recorded server when it still answers; a dead one's state file is removed. Call under the lock."""
    state = read_state(model)
    if state is None:
        return None
    if state.alive():
        return state
    if vp.process_alive(state.pid):  # hung or half-dead: do not leave it holding memory
        vp.stop_group(state.pid)
    write_state(None, model)
    return None


def _live(users: list[str]) -> list[str]:
    """The users whose process still runs."""
    return [user for user in users if vp.process_alive(int(str(user).split(":", 1)[0]))]


class Lease:
    """This process's use of a managed server; :meth:`release` when the run ends (also a context manager)."""

    def __init__(self, model: str, state: ServerState, keep: bool, user: str):
        self.model, self.state, self.keep, self.user = model, state, keep, user
        self.released = False

    @property
    def openai_model(self) -> str:
        return self.state.openai_model

    def release(self) -> None:
        """Stop using the server; the last user stops a server a run started (unless kept)."""
        if self.released:
            return
        self.released = True
        with locked(self.model):
            state = read_state(self.model)
            if state is None or state.pid != self.state.pid:
                return
            state.users = [user for user in _live(state.users) if user != self.user]
            state.keep = state.keep or self.keep
            if state.users or state.owner != "run" or state.keep:
                write_state(state, self.model)
                return
            vp.stop_group(state.pid)
            write_state(None, self.model)

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, *_exc) -> None:
        self.release()


def acquire(model: str, options: vp.ServeOptions | None = None, *, keep: bool = False) -> Lease:
    """A lease on the server for ``vllm:PATH_OR_ID``: the running one, else a new one (started and ready).

    Raises:
        MarlinError: not a ``vllm:`` model, vLLM not installed, or the server did not start (one line).
    """
    if not is_vllm_model(model):
        raise MarlinError(f"model {model!r}: use vllm:PATH_OR_HUB_ID for a server Marlin starts itself")
    started = time.monotonic()
    with locked(model):
        state = live_state(model)
        if state is None:
            state = launch(model, options or vp.ServeOptions(), owner="run")
        user = f"{os.getpid()}:{uuid.uuid4().hex[:8]}"
        state.users = _live(state.users) + [user]
        state.keep = state.keep or keep
        write_state(state, model)
    lease = Lease(model, state, keep, user)
    lease.waited_s = time.monotonic() - started
    return lease
