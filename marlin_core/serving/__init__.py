"""Marlin answered by an OpenAI-compatible server (vLLM) instead of weights in this process.

Modules: :mod:`.backends` (``open_marlin``: one entry point, in-process or server, chosen by the model
string), :mod:`.managed` (``vllm:`` models: a server started, shared and stopped by Marlin),
:mod:`.vllm_process` (the vLLM command line, start, readiness, stop), :mod:`.serve` (``marlin serve``),
:mod:`.remote` (``RemoteMarlin``: the engine's methods over HTTP), :mod:`.chat_request` (the
chat body with reference-exact frames, and the answer read back), :mod:`.openai_http` (standard-library
HTTP with retries).

May import: :mod:`marlin_core.engine` (inputs and confidence, so both paths see the same frames and
score the same way), :mod:`marlin_core.video` and the foundation modules. Imported lazily, like the engine.
"""

from importlib import import_module

__all__ = ["API_KEY_ENV", "RemoteMarlin", "ServerSettings", "is_remote_model", "is_server_model", "is_vllm_model",
           "open_marlin"]

_HOMES = {"API_KEY_ENV": ".backends", "open_marlin": ".backends", "is_server_model": ".openai_http",
          "is_remote_model": ".backends", "is_vllm_model": ".managed",
          "RemoteMarlin": ".remote", "ServerSettings": ".remote"}


def __getattr__(name):
    if name in _HOMES:
        return getattr(import_module(_HOMES[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
