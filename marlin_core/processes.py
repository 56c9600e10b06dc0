"""Whether a process still runs, for records that name a pid (managed vLLM servers, the plugin's runs).

Foundation layer: imported by ``serving`` and by the plugin's run records alike.
"""

from __future__ import annotations

import os

__all__ = ["process_alive"]


def process_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie child of this process counts as ended)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass  # not our child: ask the kernel
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
