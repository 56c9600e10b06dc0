"""Marlin answered by an OpenAI-compatible server (vLLM) instead of weights in this process.

Modules: :mod:`.backends` (``open_marlin``: one entry point, in-process or server, chosen by the model
string), :mod:`.remote` (``RemoteMarlin``: the engine's methods over HTTP), :mod:`.chat_request` (the
chat body with reference-exact frames, and the answer read back), :mod:`.openai_http` (standard-library
HTTP with retries).

May import: :mod:`marlin_core.engine` (inputs and confidence, so both paths see the same frames and
score the same way), :mod:`marlin_core.video` and the foundation modules. Imported lazily, like the engine.
"""

from importlib import import_module

__all__ = ["API_KEY_ENV", "RemoteMarlin", "ServerSettings", "is_server_model", "open_marlin"]

_HOMES = {"API_KEY_ENV": ".backends", "open_marlin": ".backends", "is_server_model": ".openai_http",
          "RemoteMarlin": ".remote", "ServerSettings": ".remote"}


def __getattr__(name):
    if name in _HOMES:
        return getattr(import_module(_HOMES[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
