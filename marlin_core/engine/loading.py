"""Loading Marlin (or any Qwen3.5 video checkpoint) through transformers' native classes.

One place decides the device and dtype and turns the many ways a hub download can fail into one
:class:`ModelLoadError` that says what to do: log in for the gated model, or point at a local folder.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

import torch

from ..defaults import DEFAULT_MODEL
from ..errors import ModelLoadError, error_summary

__all__ = [
    "DEFAULT_MODEL",
    "load_model_and_processor",
    "looks_local",
    "pick_device",
    "pick_dtype",
    "resolve_local_files_only",
]

# Seconds to wait for the hub before concluding there is no network (transformers itself retries
# for ~25 s before failing, with a message that does not mention local weights).
HUB_CONNECT_TIMEOUT_S = 3.0


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """The requested device, else CUDA, else Apple MPS, else CPU."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(device: torch.device, dtype: str | torch.dtype | None = None) -> torch.dtype:
    """bfloat16 on CUDA (what Marlin was trained and validated in), float16 on MPS, float32 on CPU."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str) and dtype != "auto":
        try:
            return getattr(torch, dtype)
        except AttributeError:
            raise ModelLoadError(f"unknown dtype {dtype!r}: use bfloat16, float16 or float32") from None
    return {"cuda": torch.bfloat16, "mps": torch.float16}.get(device.type, torch.float32)


def _hub_reachable() -> bool:
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = urlparse(endpoint).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=HUB_CONNECT_TIMEOUT_S).close()
        return True
    except OSError:
        return False


def _is_cached(repo_id: str, revision: str | None) -> bool:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    return isinstance(found, str)


def looks_local(name_or_path: str) -> bool:
    """A folder path rather than a hub id (``owner/name``)."""
    return name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1 or Path(name_or_path).exists()


def resolve_local_files_only(name_or_path: str, revision: str | None, local_files_only: bool | None) -> bool:
    """Decide whether to skip the network, failing fast (with advice) when it is needed but absent."""
    if looks_local(name_or_path):
        if not (Path(name_or_path).expanduser() / "config.json").is_file():
            raise ModelLoadError(_advice(name_or_path, "no such folder, or it holds no config.json"))
        return bool(local_files_only)
    if local_files_only is not None:
        return local_files_only
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False"):
        return True
    if _hub_reachable():
        return False
    if _is_cached(name_or_path, revision):
        return True
    raise ModelLoadError(_advice(name_or_path, "the Hugging Face hub cannot be reached and the model is not cached"))


def _advice(name_or_path: str, cause: str) -> str:
    if looks_local(name_or_path):
        return f"cannot load model from {name_or_path!r}: {cause}. Check that the folder exists and holds config.json."
    return (
        f"cannot load model {name_or_path!r}: {cause}. "
        f"{DEFAULT_MODEL} is gated: accept its license on https://huggingface.co/{DEFAULT_MODEL} and run "
        "`hf auth login`, or download it where you have network (`hf download NemoStation/Marlin-2B "
        "--local-dir ./Marlin-2B`) and point at the folder (MODEL=./Marlin-2B, --model ./Marlin-2B, "
        "or the operator's `model` parameter)."
    )


def load_model_and_processor(
    name_or_path: str = DEFAULT_MODEL,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    revision: str | None = None,
    local_files_only: bool | None = None,
    attn_implementation: str | None = None,
    trust_remote_code: bool = False,
    token: str | None = None,
):
    """Load ``(model, processor, device)`` with ``AutoModelForImageTextToText`` / ``AutoProcessor``.

    Raises:
        ModelLoadError: the model is absent, gated, unreachable or not a video-language checkpoint.
    """
    from transformers import AutoModelForImageTextToText, AutoProcessor

    name_or_path = str(Path(name_or_path).expanduser()) if looks_local(str(name_or_path)) else str(name_or_path)
    target = pick_device(device)
    offline = resolve_local_files_only(name_or_path, revision, local_files_only)
    common = dict(revision=revision, local_files_only=offline, trust_remote_code=trust_remote_code, token=token)
    model_kwargs = dict(common, dtype=pick_dtype(target, dtype))
    if attn_implementation:
        model_kwargs["attn_implementation"] = attn_implementation
    try:
        processor = AutoProcessor.from_pretrained(name_or_path, **common)
        model = AutoModelForImageTextToText.from_pretrained(name_or_path, **model_kwargs)
    except (OSError, ValueError, EnvironmentError) as error:
        raise ModelLoadError(_advice(name_or_path, error_summary(error))) from error
    model.to(target).eval()
    return model, processor, target

