"""The FiftyOne remote-zoo entry points for Marlin (``manifest.json`` at the repo root points here).

FiftyOne imports the source's top-level ``__init__.py`` and calls ``download_model(model_name,
model_path)``, ``load_model(model_name, model_path, **kwargs)`` and, for the App's zoo operator,
``resolve_input(model_name, ctx)`` and ``parse_parameters(model_name, ctx, params)``
(``fiftyone/zoo/models/__init__.py``); the plugin's ``__init__.py`` forwards them here.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["download_model", "load_model", "parse_parameters", "resolve_input", "weights_present"]


def weights_present(model_path: str | Path) -> bool:
    """True when ``model_path`` already holds a checkpoint (downloaded, or local weights linked there)."""
    return (Path(model_path) / "config.json").is_file()


def download_model(model_name: str, model_path: str) -> None:
    """Download the weights of ``model_name`` (a hub id) into ``model_path``, unless a checkpoint is there.

    FiftyOne 1.22 calls this on every ``load_zoo_model`` when the model is a folder (its "downloaded"
    check looks for a file), so a checkpoint already at ``model_path`` (downloaded before, or local
    weights linked there: see the README) is used as it is, without a network call.
    Marlin-2B is gated: accept its terms on huggingface.co, then ``hf auth login`` or set ``HF_TOKEN``.
    """
    if weights_present(model_path):
        return
    from huggingface_hub import snapshot_download

    from marlin_core.errors import ModelLoadError

    try:
        snapshot_download(repo_id=model_name, local_dir=model_path)
    except Exception as error:  # noqa: BLE001 - one actionable line instead of the hub's stack
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ModelLoadError(
            f"cannot download {model_name} to {model_path}: {first_line}. Marlin-2B is gated: accept its terms "
            "on huggingface.co, then `hf auth login` (or set HF_TOKEN); or link local weights to that path"
        ) from error


def load_model(model_name: str, model_path: str, **kwargs):
    """A :class:`~.model.MarlinVideoModel` over the weights in ``model_path``, for ``apply_model``.

    Args:
        model_name: the zoo name (``NemoStation/Marlin-2B``).
        model_path: the folder holding the weights (downloaded by :func:`download_model`, or linked).
        **kwargs: :class:`~.model.MarlinModelSettings` fields (``operation``, ``queries``, ``batch_size``,
            ``max_new_tokens``, ``window_s``, ``fps``, ``max_frames``, ``max_pixels``, ``device``,
            ``output``, ...); ``backend="vllm"`` serves the weights with a vLLM server Marlin starts (or
            reuses) for the ``apply_model`` and stops after it (``model="vllm:..."`` elsewhere).
    """
    from .model import MarlinModelSettings, MarlinVideoModel

    backend = kwargs.pop("backend", None)
    if backend not in (None, "transformers", "vllm"):
        raise ValueError(f"backend must be 'transformers' or 'vllm', not {backend!r}")
    weights = ("vllm:" if backend == "vllm" else "") + str(Path(model_path))
    return MarlinVideoModel(MarlinModelSettings(weights=weights, **kwargs))


def resolve_input(model_name: str, ctx):
    """The zoo operator's form for Marlin's parameters (operation, queries, lengths, preprocessing)."""
    import fiftyone.operators.types as types

    from .model import OPERATIONS

    inputs = types.Object()
    operation = types.RadioGroup()
    for choice in OPERATIONS:
        operation.add_choice(choice, label={"caption": "Caption (events)", "find": "Find (query spans)"}[choice])
    inputs.enum("operation", operation.values(), default="caption", view=operation, label="Operation",
                description="Caption writes time-ranged events; find writes when each query happens.")
    if ctx.params.get("operation") == "find":
        inputs.list("queries", types.String(), default=[], label="Queries",
                    description="Event descriptions to locate, e.g. 'a dog jumps over the fence'.")
    inputs.int("max_new_tokens", default=None, label="Max new tokens",
               description="Empty = 2048 for caption, 64 for find.")
    inputs.float("window_s", default=120.0, label="Window (seconds)",
                 description="Longer videos are processed in overlapping windows of this length.")
    inputs.float("fps", default=None, label="Frames per second", description="Empty = 2.0, as Marlin was trained.")
    return types.Property(inputs)


def parse_parameters(model_name: str, ctx, params: dict) -> None:
    """Tidy the form's values in place: queries deduplicated, unset numbers dropped (defaults apply)."""
    from marlin_core.queries import parse_queries

    if "queries" in params:
        params["queries"] = parse_queries(params["queries"])
    for name in ("max_new_tokens", "fps"):
        if params.get(name) is None:
            params.pop(name, None)
