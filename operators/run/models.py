"""One loaded model per process: loaded once per run, reused by later immediate runs in the App.

The engine (torch, transformers) is imported on first use, so listing or running the other
operators never pays for it.
"""

from __future__ import annotations

import threading

_lock = threading.Lock()
_cache: dict[tuple, object] = {}
# vllm: models: runs of this process using each managed server (its lease is released when none is left),
# and the runs (their params, by identity) that took one.
_managed_runs: dict[str, int] = {}
_holding: dict[int, object] = {}


def _is_managed(model: str) -> bool:
    return isinstance(model, str) and model.startswith("vllm:")


def get_marlin(model: str, *, device: str | None = None, revision: str | None = None, token: str | None = None,
               api_key: str | None = None, timeout_s: float | None = None, keep_server: bool = False):
    """The loaded ``Marlin`` (or ``RemoteMarlin`` for an ``openai://`` or ``vllm:`` server) for these
    arguments, loading it (and dropping any other) on first use.

    A ``vllm:`` model starts or reuses its server here; each call is one run using it, ended by
    :func:`release_marlin` (the last run of the last process stops a server a run started).
    """
    key = (model, device or None, revision or None, api_key or None, timeout_s)
    with _lock:
        if key not in _cache:
            from marlin_core.serving.backends import open_marlin

            for old_key in [k for k in _cache if not _managed_runs.get(k[0])]:
                _close(_cache.pop(old_key))
            _cache[key] = open_marlin(model, device=device or None, revision=revision or None, token=token,
                                      api_key=api_key or None, timeout_s=timeout_s, keep_server=keep_server)
        if _is_managed(model):
            _managed_runs[model] = _managed_runs.get(model, 0) + 1
            if keep_server and getattr(_cache[key], "lease", None) is not None:
                _cache[key].lease.keep = True
        return _cache[key]


def release_marlin(params) -> None:
    """The end of a run of ``params`` (no-op unless :func:`marlin_for` gave it a ``vllm:`` server): the
    server is let go of when this process's last run of it ends."""
    with _lock:
        if _holding.pop(id(params), None) is None:
            return
    put_marlin(params.model)


def put_marlin(model: str) -> None:
    """One use of :func:`get_marlin`'s ``vllm:`` ``model`` ended; the last one lets go of its server."""
    if not _is_managed(model):
        return
    with _lock:
        left = _managed_runs.get(model, 0) - 1
        if left > 0:
            _managed_runs[model] = left
            return
        _managed_runs.pop(model, None)
        for key in [k for k in _cache if k[0] == model]:
            _close(_cache.pop(key))


def _close(marlin) -> None:
    if hasattr(marlin, "close"):
        marlin.close()


def marlin_for(params):
    """The model a run's params name (:class:`operators.run.params.ModelParams`: model, device, revision,
    server settings and the secrets ``token`` / ``api_key`` the run carries). A ``vllm:`` run ends with
    :func:`release_marlin` (params).
    """
    marlin = get_marlin(params.model, device=params.device, revision=params.revision, token=params.token,
                        api_key=params.api_key, timeout_s=params.timeout_s, keep_server=params.keep_server)
    if _is_managed(params.model):
        with _lock:
            if id(params) in _holding:  # one run, one use: a second call gives back the extra count
                _managed_runs[params.model] -= 1
            _holding[id(params)] = params
    return marlin
