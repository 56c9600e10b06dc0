"""One entry point for "the model" whatever runs it: local weights (``Marlin``) or a server (``RemoteMarlin``).

A model string of the form ``openai://host:port/v1/<name>`` (or ``openai+https://...``) means an
OpenAI-compatible server (vLLM) serving Marlin under ``<name>``; ``vllm:PATH_OR_ID`` a vLLM server
Marlin starts (or reuses) itself (:mod:`.managed`); anything else is a hub id or a folder.
The CLI, the operators and the zoo model call :func:`open_marlin`, so all accept each form.
"""

from __future__ import annotations

import os

from .managed import is_vllm_model
from .openai_http import is_server_model

__all__ = ["API_KEY_ENV", "is_remote_model", "is_server_model", "open_marlin"]

# Where the CLI reads the server's API key from (the operators read the plugin secret of the same name).
API_KEY_ENV = "MARLIN_API_KEY"


def is_remote_model(model: str | None) -> bool:
    """True when ``model`` is answered by a server (``openai://...`` or ``vllm:...``), not local weights."""
    return is_server_model(model) or is_vllm_model(model)


def open_marlin(model: str, *, device: str | None = None, revision: str | None = None, token: str | None = None,
                api_key: str | None = None, max_concurrent: int | None = None, timeout_s: float | None = None,
                keep_server: bool = False, serve_options=None):
    """``RemoteMarlin`` for a server, else ``Marlin.from_pretrained`` (device, revision, token apply).

    For ``vllm:PATH_OR_ID`` the server is reused or started first (this call waits until it answers);
    ``close()`` the result (or use it as a context manager) to stop a server it started.

    Args:
        api_key: the server's key (default: the ``MARLIN_API_KEY`` environment variable, if set).
        max_concurrent: requests in flight at once against a server (default: ServerSettings').
        timeout_s: how long one server request may wait for its answer (default: ServerSettings').
        keep_server: leave a ``vllm:`` server this call started running after ``close()``.
        serve_options: :class:`.vllm_process.ServeOptions` for a ``vllm:`` server started here.
    """
    settings = {name: value for name, value in (("max_concurrent", max_concurrent), ("timeout_s", timeout_s))
                if value is not None}
    if is_vllm_model(model):
        from .managed import acquire
        from .remote import RemoteMarlin

        lease = acquire(model, serve_options, keep=keep_server)
        try:
            remote = RemoteMarlin.from_url(lease.openai_model, **settings)
        except BaseException:
            lease.release()
            raise
        remote.name_or_path, remote.lease = model, lease
        return remote
    if is_server_model(model):
        from .remote import RemoteMarlin

        return RemoteMarlin.from_url(model, api_key=api_key or os.environ.get(API_KEY_ENV) or None, **settings)
    from ..engine.marlin import Marlin

    return Marlin.from_pretrained(model, device=device, revision=revision, token=token)
