"""One loaded model per process: loaded once per run, reused by later immediate runs in the App.

The engine (torch, transformers) is imported on first use, so listing or running the other
operators never pays for it.
"""

from __future__ import annotations

import threading

_lock = threading.Lock()
_cache: dict[tuple, object] = {}


def get_marlin(model: str, *, device: str | None = None, revision: str | None = None, token: str | None = None,
               api_key: str | None = None):
    """The loaded ``Marlin`` (or ``RemoteMarlin`` for an ``openai://`` server) for these arguments, loading it
    (and dropping any other) on first use."""
    key = (model, device or None, revision or None, api_key or None)
    with _lock:
        if key not in _cache:
            from marlin_core.serving.backends import open_marlin

            _cache.clear()
            _cache[key] = open_marlin(model, device=device or None, revision=revision or None, token=token,
                                      api_key=api_key or None)
        return _cache[key]


def marlin_for(params):
    """The model a run's params name (:class:`operators.run.params.ModelParams`: model, device, revision and
    the secrets ``token`` / ``api_key`` the run carries)."""
    return get_marlin(params.model, device=params.device, revision=params.revision, token=params.token,
                      api_key=params.api_key)
