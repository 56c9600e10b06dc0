"""``marlin serve MODEL``: a vLLM server for Marlin in the foreground, until Ctrl-C or SIGTERM.

Starts vLLM with the flags Marlin needs (:mod:`.vllm_process`), waits until ``/v1/models`` answers,
prints the ``openai://`` model string to use, and records itself in the state file of ``vllm:MODEL``
(:mod:`.managed`), so runs given ``model="vllm:MODEL"`` reuse it instead of starting their own.
Ctrl-C, SIGTERM or SIGHUP stop the whole process group (API server, engine core, workers) and remove
the state file. If vLLM exits by itself, so does this command, with vLLM's last error line.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import MarlinError
from . import managed
from . import vllm_process as vp

__all__ = ["serve"]


class _Stop(MarlinError):
    """Raised from the signal handler to leave the wait loop."""


def serve(model: str, options: vp.ServeOptions, *, say: Callable[[str], None] = print) -> int:
    """Serve ``model`` (a folder or hub id, with or without ``vllm:``) until stopped; the exit status.

    Raises:
        MarlinError: vLLM not installed, port taken, model does not fit, already served (one line each).
    """
    name = managed.served_model(model)
    key = managed.VLLM_PREFIX + name
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    state = None
    try:
        with managed.locked(key):
            running = managed.live_state(key)
            if running is not None:
                raise MarlinError(f"{name} is already served at {running.openai_model} (pid {running.pid}, "
                                  f"started by {'marlin serve' if running.owner == 'serve' else 'a run'}); "
                                  "use that address, or stop it first")
            say(f"starting vLLM for {name} (log: {managed.cache_dir() / 'servers'}) ...")
            started = time.monotonic()
            state = managed.launch(key, options, owner="serve")
            managed.write_state(state, key)
        say(f"ready in {time.monotonic() - started:.0f} s; use --model {state.openai_model} "
            f"(or model=\"{key}\", which reuses this server). Ctrl-C stops it.")
        sys.stdout.flush()
        while vp.process_alive(state.pid):
            time.sleep(0.5)
        raise vp.ServerStartError(f"vLLM exited: {vp.last_error_line(Path(state.log)) or 'no error in its log'} "
                                  f"(log {state.log})")
    except (KeyboardInterrupt, _Stop):
        say("stopping vLLM ...")
        return 0
    finally:
        if state is not None:
            vp.stop_group(state.pid)
            with managed.locked(key):
                current = managed.read_state(key)
                if current is not None and current.pid == state.pid:
                    managed.write_state(None, key)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _raise_stop(_signum, _frame) -> None:
    raise _Stop
