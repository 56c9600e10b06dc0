"""Command-line runs forked from one process that has already imported what ``python -m marlin_core`` imports.

A CLI process spends ~2.5 s of CPU importing torch, torchcodec and transformers before it reads its first
argument, and the CLI tests start about thirty: more than a minute of the suite's two cores. A child forked
from this server is still a process of its own: its own argv, stdout, stderr and exit code, and the CLI's
``main`` from the top (argument parsing, input checks, model loading, decoding, output). Only the
interpreter's start-up and the imports are shared. What that cannot cover, the ``python -m marlin_core``
entry point itself and what imports print before ``--quiet`` takes effect, the tests still check with a
fresh interpreter (``test_cli.fresh_cli``).

The server never runs a torch operation, so forking is safe (no thread pool or allocator state to inherit).

Protocol (one JSON object per line): stdin ``{"argv", "stdout", "stderr", "timeout"}`` (two file paths for the
child's output) → stdout ``{"returncode"}`` when the child has ended (``-9``: killed after ``timeout`` seconds).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

# What a caption or find run imports on its way to the model (see ``python -X importtime -m marlin_core``).
PRELOAD = ("marlin_core.cli", "marlin_core.serving.backends", "marlin_core.engine", "marlin_core.video",
           "torchcodec.decoders", "transformers", "transformers.models.qwen3_5.modeling_qwen3_5",
           "transformers.models.qwen3_vl.video_processing_qwen3_vl")


def _child(request: dict) -> None:
    """The forked child: stdout/stderr to the request's files, then the CLI's ``main`` exactly as run."""
    for fd, path, flags in ((0, os.devnull, os.O_RDONLY), (1, request["stdout"], os.O_WRONLY | os.O_CREAT),
                            (2, request["stderr"], os.O_WRONLY | os.O_CREAT)):
        target = os.open(path, flags, 0o644)
        os.dup2(target, fd)
        os.close(target)
    code = 1
    try:
        from marlin_core.cli import main

        sys.argv = ["marlin_core", *request["argv"]]
        code = main(request["argv"])
    except SystemExit as stop:  # argparse's own exits (--help: 0, a bad choice: 2), as the interpreter maps them
        code = 0 if stop.code is None else stop.code if isinstance(stop.code, int) else 1
    except BaseException:  # noqa: BLE001 - shown on the child's stderr, as an uncaught error would be
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def main() -> None:
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(request)
        print(json.dumps({"returncode": _wait(pid, request["timeout"])}), flush=True)


def _wait(pid: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, 9)
        time.sleep(0.01)


if __name__ == "__main__":
    main()


class CliFork:
    """The test side: ``run(*args)`` returns a ``subprocess.CompletedProcess`` like ``subprocess.run`` would."""

    def __init__(self, env: dict, folder: Path):
        self.folder = folder
        self.count = 0
        self.process = subprocess.Popen([sys.executable, __file__], env=env, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)
        assert self._reply() == {"ready": True}

    def _reply(self) -> dict:
        from zygote import read_reply  # the zygote's protocol reader: the same JSON lines

        return read_reply(self.process, "the CLI fork server")

    def run(self, *args, timeout: float = 300) -> subprocess.CompletedProcess:
        self.count += 1
        out, err = (self.folder / f"{self.count}.{name}" for name in ("stdout", "stderr"))
        argv = [str(arg) for arg in args]
        request = {"argv": argv, "stdout": str(out), "stderr": str(err), "timeout": timeout}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        code = self._reply()["returncode"]
        if code == -9:
            raise subprocess.TimeoutExpired(["marlin_core", *argv], timeout, out.read_text(), err.read_text())
        return subprocess.CompletedProcess(["marlin_core", *argv], code, out.read_text(), err.read_text())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)
