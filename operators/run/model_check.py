"""Can the model a run names be loaded? Checked in the form (marked invalid) and before any work starts.

Cheap checks only, so the form can ask on every change: a local folder must exist and hold a
``config.json``; a hub id must be in the local Hugging Face cache, or the hub must answer a TCP
connection within :data:`HUB_TIMEOUT_S` (the answer is kept :data:`HUB_CACHE_S`). Servers
(``openai://``, ``vllm:``) are checked by the serving backend when it connects.
"""

from __future__ import annotations

import os
import re
import socket
import time
from urllib.parse import urlparse

__all__ = ["HUB_TIMEOUT_S", "model_problem"]

HUB_TIMEOUT_S = 1.5
HUB_CACHE_S = 60.0
SERVER_PREFIXES = ("openai://", "vllm:", "http://", "https://")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_hub_answers: dict[str, tuple[float, bool]] = {}


def _hub_reachable() -> bool:
    """Whether the Hugging Face endpoint accepts a connection (bounded, cached)."""
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    cached = _hub_answers.get(endpoint)
    if cached is not None and time.monotonic() - cached[0] < HUB_CACHE_S:
        return cached[1]
    url = urlparse(endpoint)
    try:
        with socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)),
                                      timeout=HUB_TIMEOUT_S):
            reachable = True
    except OSError:
        reachable = False
    _hub_answers[endpoint] = (time.monotonic(), reachable)
    return reachable


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _cached_on_hub(repo_id: str, revision: str | None) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, "config.json", revision=revision or None)
    except Exception:  # noqa: BLE001 - a malformed id is simply not cached
        return False
    return isinstance(found, str)


def model_problem(model, revision: str | None = None) -> str | None:
    """Why ``model`` cannot be loaded here (one line), or None when it can (or a server will tell)."""
    if model is None:
        return None  # not given: the proposed model fills in
    name = str(model).strip()
    if not name:
        return "enter a model: a Hugging Face id (org/name) or a local folder with the weights"
    if name.startswith(SERVER_PREFIXES):
        return None
    path = os.path.expanduser(name)
    if os.path.exists(path):
        if not os.path.isdir(path):
            return f"'{name}' is a file; give the folder that holds config.json and the weights"
        if not os.path.isfile(os.path.join(path, "config.json")):
            return f"the folder '{name}' holds no config.json (not a model folder)"
        return None
    if name.startswith(("/", ".", "~")) or os.sep + os.sep in name or name.count("/") > 1 or not HUB_ID.match(name):
        return f"no folder '{name}' here (and it is not a Hugging Face id)"
    if _cached_on_hub(name, revision):
        return None
    if _offline():
        return f"'{name}' is not in the local Hugging Face cache and HF_HUB_OFFLINE is set"
    if not _hub_reachable():
        return (f"'{name}' is not in the local Hugging Face cache and the hub is unreachable: "
                "download it first or give a local folder")
    return None
