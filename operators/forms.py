"""Form pieces shared by the Marlin operators, and reading their parameters with defaults.

Every input has a default, so SDK callers (``execute_operator`` / the operator's ``__call__``) can
pass only what they change.
"""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from marlin_core.loading import DEFAULT_MODEL
from marlin_core.windows import DEFAULT_WINDOW_S

from .models import get_marlin

# Above this many videos the App proposes delegated execution (a worker) by default.
DELEGATE_ABOVE_SAMPLES = 5
DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")
# Preprocessing options a user may change; None keeps the reference behaviour (marlin-facts.md).
SAMPLING_PARAMS = ("fps", "max_frames", "max_pixels")


def execution_options(operator: foo.Operator, ctx) -> foo.executor.ExecutionOptions:
    """Immediate or delegated, proposing delegation for more than a handful of videos."""
    try:
        many = len(ctx.target_view()) > DELEGATE_ABOVE_SAMPLES
    except Exception:  # noqa: BLE001 - no view yet while the form is being built
        many = False
    return foo.executor.ExecutionOptions(
        allow_immediate_execution=True,
        allow_delegated_execution=True,
        default_choice_to_delegated=many,
    )


def model_inputs(inputs: types.Object) -> None:
    inputs.str(
        "model",
        default=DEFAULT_MODEL,
        label="Model",
        description="Hugging Face model id or a local folder with the weights (Marlin-2B is gated: log in first), "
                    "or openai://HOST:PORT/v1/NAME for a vLLM server (key: secret MARLIN_API_KEY).",
    )
    inputs.str("revision", default=None, label="Revision", description="Hub revision (branch, tag or commit).")
    device = types.Dropdown(label="Device")
    for choice in DEVICE_CHOICES:
        device.add_choice(choice, label=choice)
    inputs.enum(
        "device",
        device.values(),
        default="auto",
        view=device,
        label="Device",
        description="auto = CUDA with bfloat16 when available, else MPS, else CPU with float32.",
    )
    inputs.int(
        "batch_size",
        default=1,
        label="Batch size",
        description="Videos per generate call; raise it on a GPU with memory to spare.",
    )


def sampling_inputs(inputs: types.Object) -> None:
    inputs.float("fps", default=None, label="Frames per second",
                 description="Sampling rate; empty = 2.0, as Marlin was trained.")
    inputs.int("max_frames", default=None, label="Max frames",
               description="Frame cap per call; empty = the reference behaviour.")
    inputs.int("max_pixels", default=None, label="Max pixels per frame",
               description="Pixel cap per frame; empty = the reference behaviour.")
    inputs.float("window_s", default=DEFAULT_WINDOW_S, label="Window (seconds)",
                 description="Longer videos are processed in overlapping windows of this length.")


def field_input(inputs: types.Object, ctx, name: str, default: str, label: str, description: str) -> None:
    """A field-name input that warns before an existing field gets new values."""
    inputs.str(name, default=default, required=False, label=label, description=description)
    field = ctx.params.get(name) or default
    if ctx.dataset is not None and ctx.dataset.has_sample_field(field):
        inputs.view(
            f"{name}_exists",
            types.Notice(label=f"Field '{field}' exists: samples done with other settings get new values "
                               "there; samples already done with these settings are skipped."),
        )


def overwrite_input(inputs: types.Object) -> None:
    inputs.bool(
        "overwrite",
        default=False,
        label="Recompute done samples",
        description="By default, samples already done with the same settings are skipped.",
    )


def read_params(ctx, defaults: dict) -> dict:
    """The request's parameters over ``defaults`` (None = not given)."""
    return {**defaults, **{k: v for k, v in ctx.params.items() if v is not None}}


def read_device(ctx) -> str | None:
    device = ctx.params.get("device") or "auto"
    return None if device == "auto" else device


def read_token(ctx) -> str | None:
    """The Hugging Face token for the gated model: the plugin secret ``HF_TOKEN`` (never a parameter)."""
    return ctx.secrets.get("HF_TOKEN") or None


def read_sampling(ctx) -> dict:
    """The preprocessing options the user set (unset ones keep the reference defaults)."""
    return {name: ctx.params[name] for name in SAMPLING_PARAMS if ctx.params.get(name) is not None}


def model_settings(ctx, params: dict, prompt: str) -> dict:
    """The settings that determine the model's answer (recorded in the run, fingerprinted)."""
    return {
        "model": params.get("model") or DEFAULT_MODEL,
        "revision": params.get("revision"),
        "prompt": prompt,
        "max_new_tokens": int(params["max_new_tokens"]),
        "do_sample": False,
        "sampling": read_sampling(ctx),
        "window_s": float(params.get("window_s") or DEFAULT_WINDOW_S),
    }


def model_loader(ctx, settings: dict):
    """Load (or reuse) the model only when some sample needs it."""
    return lambda: get_marlin(settings["model"], device=read_device(ctx), revision=settings["revision"],
                              token=read_token(ctx))
