"""Form pieces shared by the Marlin operators, and reading their parameters with defaults.

A form leads with what a user must decide (the target, the model, the queries); output field names,
decoding and preprocessing knobs sit in a collapsed "Advanced" section, whose values arrive nested
under ``params["advanced"]``. :func:`flat_params` merges them back, so execute() and SDK callers
(``execute_operator`` / the operator's ``__call__``, which pass flat parameters) see one flat dict.
Every input has a default, so SDK callers pass only what they change.
"""

from __future__ import annotations

import os

import fiftyone.operators as foo
import fiftyone.operators.types as types

from marlin_core.engine.loading import DEFAULT_MODEL
from marlin_core.windows import DEFAULT_WINDOW_S

from ..run import scheduling, validation

ADVANCED = "advanced"
DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")
# The environment variable naming the model to propose when this dataset has no Marlin run yet.
MODEL_ENV = "MARLIN_MODEL"
# Inputs shown above the Advanced section.
TOP_LEVEL_PARAMS = frozenset({"model", "queries", "device", "overwrite"})


# --- reading parameters -------------------------------------------------------------------------

def flat_params(ctx) -> dict:
    """The request's parameters with the Advanced section merged in (a top-level value wins)."""
    params = dict(ctx.params or {})
    advanced = params.pop(ADVANCED, None) or {}
    merged = {k: v for k, v in advanced.items() if v is not None} if isinstance(advanced, dict) else {}
    merged.update({k: v for k, v in params.items() if v is not None})
    return merged


def read_params(ctx, defaults: dict) -> dict:
    """The request's parameters over ``defaults`` (None = not given)."""
    return {**defaults, **flat_params(ctx)}


def read_token(ctx) -> str | None:
    """The Hugging Face token for the gated model: the plugin secret ``HF_TOKEN`` (never a parameter)."""
    return ctx.secrets.get("HF_TOKEN") or None


def request_params(ctx) -> dict:
    """What execute() reads: the flat parameters, with the proposed model when none was given.

    SDK callers that pass no model get the same model the form proposes (:func:`default_model`).
    """
    params = flat_params(ctx)
    if not params.get("model"):
        params["model"] = default_model(ctx.dataset)
    return params


# --- the model to propose -----------------------------------------------------------------------

def last_model(dataset) -> str | None:
    """The model of the newest Marlin run recorded on ``dataset`` that did not fail, if any.

    Run records are read defensively: any custom run whose method starts with ``marlin.`` and whose
    config holds a model (``config.settings["model"]`` or ``config.model``) counts.
    """
    if dataset is None:
        return None
    newest = None
    for key in dataset.list_runs():
        try:
            info = dataset.get_run_info(key)
        except Exception:  # noqa: BLE001 - a record written by another version must not break the form
            continue
        config = info.config
        if not str(getattr(config, "method", "") or "").startswith("marlin."):
            continue
        if str(getattr(config, "status", "") or "").lower() == "failed":
            continue
        settings = getattr(config, "settings", None)
        model = (settings.get("model") if isinstance(settings, dict) else None) or getattr(config, "model", None)
        if isinstance(model, str) and model and (newest is None or (info.timestamp or 0) > newest[0]):
            newest = (info.timestamp or 0, model)
    return newest[1] if newest else None


def default_model(dataset) -> str:
    """The last model used on this dataset, else ``$MARLIN_MODEL``, else Marlin-2B on the hub."""
    return last_model(dataset) or os.environ.get(MODEL_ENV) or DEFAULT_MODEL


# --- form pieces ---------------------------------------------------------------------------------

def model_input(inputs: types.Object, ctx) -> None:
    inputs.str(
        "model",
        default=default_model(ctx.dataset),
        label="Model",
        description="Hugging Face model id or a local folder with the weights (Marlin-2B is gated: log in "
                    "first), openai://HOST:PORT/v1/NAME for a vLLM server (key: secret MARLIN_API_KEY), or "
                    "vllm:FOLDER_OR_ID for a vLLM server Marlin starts (or reuses) itself. "
                    f"Proposed: the last model used on this dataset, else ${MODEL_ENV}.",
    )


def queries_input(inputs: types.Object, ctx) -> None:
    """Queries as one-per-line text in the App; SDK callers may pass a list."""
    description = "Event descriptions to locate, one per line, e.g. 'a dog jumps over the fence'."
    if isinstance(ctx.params.get("queries"), (list, tuple)):
        inputs.list("queries", types.String(), default=[], label="Queries", description=description)
    else:
        inputs.str("queries", default="", label="Queries", description=description,
                   view=types.TextFieldView(multiline=True, rows=3, placeholder="a person walks\nthe light turns red"))


def run_inputs(inputs: types.Object) -> None:
    """Device and overwrite: the two run options a user changes often."""
    device = types.Dropdown(label="Device")
    for choice in DEVICE_CHOICES:
        device.add_choice(choice, label=choice)
    inputs.enum("device", device.values(), default="auto", view=device, label="Device",
                description="auto = CUDA with bfloat16 when available, else MPS, else CPU with float32.")
    inputs.bool("overwrite", default=False, label="Recompute done samples",
                description="By default, samples already done with the same settings are skipped. Labels you "
                            "made or corrected are kept either way; this also lets Marlin add its labels to a "
                            "field holding only yours (ground truth, say), beside them.")


def advanced_section(inputs: types.Object, expanded: bool = False) -> types.Object:
    """The collapsed "Advanced" section (``expanded`` when one of its inputs is invalid)."""
    advanced = types.Object()
    inputs.define_property(ADVANCED, advanced, view=types.ObjectView(
        label="Advanced: output fields, decoding, preprocessing", collapsible=True, default_expanded=expanded))
    return advanced


def model_advanced_inputs(advanced: types.Object, defaults: dict, max_new_tokens_description: str) -> None:
    """Revision, batching, bookkeeping fields, decoding and preprocessing knobs."""
    advanced.str("revision", default=None, label="Revision", description="Hub revision (branch, tag or commit).")
    advanced.int("batch_size", default=None, label="Batch size",
                 description="Videos per generate call; empty = automatic (1 on a CPU, from free GPU memory on "
                             "CUDA).")
    advanced.int("max_new_tokens", default=defaults["max_new_tokens"], label="Max new tokens",
                 description=max_new_tokens_description)
    advanced.float("fps", default=None, label="Frames per second",
                   description="Sampling rate; empty = 2.0, as Marlin was trained.")
    advanced.int("max_frames", default=None, label="Max frames",
                 description="Frame cap per call; empty = the reference behaviour.")
    advanced.int("max_pixels", default=None, label="Max pixels per frame",
                 description="Pixel cap per frame; empty = the reference behaviour.")
    advanced.float("window_s", default=DEFAULT_WINDOW_S, label="Window (seconds)",
                   description="Longer videos are processed in overlapping windows of this length.")
    advanced.float("timeout_s", default=None, label="Server timeout (seconds)",
                   description="openai:// and vllm: models: how long one request may wait for the server's answer; "
                               "empty = 120.")
    advanced.bool("keep_server", default=False, label="Keep the vLLM server running",
                  description="vllm: models: leave a server this run started running afterwards (later runs reuse "
                              "it); by default it stops with the run.")
    advanced.str("error_field", default=defaults["error_field"], label="Error field",
                 description="Per-sample error messages (bad file, failed generation) go here.")
    advanced.str("run_key", default=defaults["run_key"], label="Run key",
                 description="Name of the FiftyOne run that records the settings (list_runs / get_run_info).")


def field_name_input(advanced: types.Object, name: str, default: str, label: str, description: str) -> None:
    advanced.str(name, default=default, label=label, description=description)


def existing_fields_notice(inputs: types.Object, dataset, fields: list[str]) -> None:
    """One notice naming the output fields that already exist, and what happens to them."""
    existing = [field for field in dict.fromkeys(fields) if field and dataset is not None
                and dataset.has_sample_field(field)]
    if existing:
        inputs.view("existing_fields", types.Notice(
            label=f"Existing fields: {', '.join(existing)}",
            description="Samples already done with these settings are skipped; the others get new values "
                        "there. Turn on 'Recompute done samples' to redo them all. Labels you added or "
                        "corrected there are kept either way.",
        ))


def form_problems(operation: str, params: dict, dataset) -> dict[str, str]:
    """``{param name: reason}`` for the parameters that would make the run fail (see :mod:`.validation`)."""
    return validation.problems(operation, params, dataset)


def opens_advanced(problems: dict[str, str]) -> bool:
    """Whether an invalid input sits in the Advanced section (the form then opens it)."""
    return any(name not in TOP_LEVEL_PARAMS for name in problems)


def mark_invalid(inputs: types.Object, problems: dict[str, str]) -> None:
    """Mark each named input invalid with its reason: the App shows it and disables Execute."""
    advanced = inputs.properties.get(ADVANCED)
    for name, reason in problems.items():
        prop = inputs.properties.get(name)
        if prop is None and advanced is not None:
            prop = advanced.type.properties.get(name)
        if prop is None:  # a parameter without an input of its own (an SDK-only one)
            inputs.view(f"problem_{name}", types.Error(label=f"{name}: {reason}"))
            continue
        prop.invalid = True
        prop.error_message = reason


def execution_options(operator: foo.Operator, ctx) -> foo.executor.ExecutionOptions:
    """Immediate or Schedule (see :mod:`.scheduling`)."""
    return scheduling.execution_options(ctx, flat_params(ctx))
