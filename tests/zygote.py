"""A process that imports FiftyOne, the plugin and the model once, then forks one child per operation.

The chaos and concurrency tests kill runs with ``kill -9`` and start many of them; starting Python,
FiftyOne, torch and the checkpoint for each would take most of the suite's time. A forked child starts
with all of it loaded and runs one operator through FiftyOne's executor, like a worker would.

Protocol (one JSON object per line): stdin ``{"uri", "dataset", "params"}`` → stdout ``{"pid"}``. The
child exits 0 when the operation succeeded, 1 otherwise (the error on stderr). Children are reaped
automatically (SIGCHLD ignored), so a killed child's pid is gone at once.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback


def _warm_up(model_dir: str, video: str) -> None:
    """One caption and one find on a throwaway dataset: the plugin and the model are loaded and cached."""
    import fiftyone as fo
    import fiftyone.operators as foo

    from fiftyone.plugins.context import build_plugin_contexts

    errors = [error for context in build_plugin_contexts() for error in context.errors]
    if errors or not any(op.uri == "@marlin/marlin/caption" for op in foo.list_operators()):
        raise RuntimeError(f"plugin not found in {os.environ.get('FIFTYONE_PLUGINS_DIR')}: {errors}")
    dataset = fo.Dataset()
    try:
        dataset.add_sample(fo.Sample(filepath=video))
        foo.execute_operator("@marlin/marlin/caption", dict(dataset=dataset, params=dict(model=model_dir)))
        foo.execute_operator("@marlin/marlin/find", dict(dataset=dataset, params=dict(model=model_dir,
                                                                                     queries=["red light"])))
    finally:
        dataset.delete()


def _child(request: dict) -> None:
    import fiftyone.operators as foo

    try:
        foo.execute_operator(request["uri"], dict(dataset=request["dataset"], params=request["params"]))
    except BaseException:  # noqa: BLE001 - reported through the exit code and stderr
        traceback.print_exc()
        os._exit(1)
    os._exit(0)


def main() -> None:
    model_dir, video = sys.argv[1], sys.argv[2]
    import torch

    torch.set_num_threads(1)
    _warm_up(model_dir, video)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            sys.stdin.close()
            # progress bars write partial lines; on the shared stdout they would break the pid replies
            os.dup2(2, 1)
            _child(request)
        print(json.dumps({"pid": pid}), flush=True)


if __name__ == "__main__":
    main()


class Zygote:
    """The test side: start the zygote, ask it for runs, wait for or kill them."""

    def __init__(self, model_dir, video, env: dict):
        import subprocess

        self.process = subprocess.Popen([sys.executable, __file__, str(model_dir), str(video)], env=env,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self._reply() == {"ready": True}

    def _reply(self) -> dict:
        return read_reply(self.process, "the zygote")

    def start(self, uri: str, dataset: str, **params) -> int:
        """Fork a child running ``uri`` on ``dataset``; return its pid."""
        self.process.stdin.write(json.dumps({"uri": uri, "dataset": dataset, "params": params}) + "\n")
        self.process.stdin.flush()
        return self._reply()["pid"]

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


def read_reply(process, name: str) -> dict:
    """The next JSON line on ``process``'s stdout (imports may print notices on stdout before it)."""
    for line in process.stdout:
        if "{" in line:
            return json.loads(line[line.index("{"):])
    raise RuntimeError(f"{name} ended (exit code {process.wait()})")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_until(predicate, pid: int | None = None, timeout_s: float = 120.0, poll_s: float = 0.002) -> bool:
    """Poll ``predicate`` until true; False when ``pid`` ended first (or the timeout passed)."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        if pid is not None and not alive(pid):
            return bool(predicate())
        time.sleep(poll_s)
    raise TimeoutError("the awaited database state never came")


def wait_exit(pid: int, timeout_s: float = 300.0) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while alive(pid):
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {pid} did not end")
        time.sleep(0.02)
