"""One entry point for "the model" whatever runs it: local weights (``Marlin``) or a server (``RemoteMarlin``).

A model string of the form ``openai://host:port/v1/<name>`` (or ``openai+https://...``) means an
OpenAI-compatible server (vLLM) serving Marlin under ``<name>``; anything else is a hub id or a folder.
The CLI and the operators call :func:`open_marlin`, so both accept either.
"""

from __future__ import annotations

import os

from .openai_http import is_server_model

__all__ = ["API_KEY_ENV", "is_server_model", "open_marlin"]

# Where the CLI reads the server's API key from (the operators read the plugin secret of the same name).
API_KEY_ENV = "MARLIN_API_KEY"


def open_marlin(model: str, *, device: str | None = None, revision: str | None = None, token: str | None = None,
                api_key: str | None = None, max_concurrent: int | None = None):
    """``RemoteMarlin`` for a server address, else ``Marlin.from_pretrained`` (device, revision, token apply).

    Args:
        api_key: the server's key (default: the ``MARLIN_API_KEY`` environment variable, if set).
        max_concurrent: requests in flight at once against a server (default: ServerSettings').
    """
    if is_server_model(model):
        from .remote import RemoteMarlin

        settings = {} if max_concurrent is None else {"max_concurrent": max_concurrent}
        return RemoteMarlin.from_url(model, api_key=api_key or os.environ.get(API_KEY_ENV) or None, **settings)
    from ..engine.marlin import Marlin

    return Marlin.from_pretrained(model, device=device, revision=revision, token=token)
