"""The parameters of the model operators, read once from the request into one typed object each.

The request (App form or SDK call) gives a loose dict; :func:`marlin_params` fills the defaults and
converts types once, after :mod:`.validation` has checked them, so the rest of a run reads attributes
(``params.window_s``) instead of ``params.get("window_s") or DEFAULT``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from marlin_core.engine.loading import DEFAULT_MODEL
from marlin_core.windows import DEFAULT_WINDOW_S

from .identity import weights_identity

__all__ = ["CaptionParams", "FindParams", "ModelParams", "SAMPLING_PARAMS", "given"]

# Preprocessing options a user may change; None keeps the reference behaviour (marlin-facts.md).
SAMPLING_PARAMS = ("fps", "max_frames", "max_pixels")


def given(raw: dict, defaults: dict) -> dict:
    """The request's parameters over ``defaults`` (None or "" = not given)."""
    return {**defaults, **{k: v for k, v in raw.items() if v is not None and v != ""}}


def server_params(values: dict) -> dict:
    """``timeout_s`` and ``keep_server`` (server runs only; they do not change the answers, so they are
    neither recorded in the settings nor fingerprinted)."""
    timeout_s = values.get("timeout_s")
    return dict(timeout_s=float(timeout_s) if timeout_s not in (None, "") else None,
                keep_server=bool(values.get("keep_server")))


@dataclass(frozen=True)
class ModelParams:
    """What every model operator reads: model, bookkeeping fields, decoding and preprocessing."""

    model: str = DEFAULT_MODEL
    revision: str | None = None
    device: str | None = None  # None = best available
    batch_size: int | None = None  # None = automatic: 1 on a CPU, from free GPU memory on CUDA
    error_field: str = "marlin_error"
    run_key: str = ""
    max_new_tokens: int = 0
    window_s: float = DEFAULT_WINDOW_S
    overwrite: bool = False
    sampling: dict = field(default_factory=dict)  # the SAMPLING_PARAMS the user set
    token: str | None = field(default=None, repr=False)  # the plugin secret HF_TOKEN, never a parameter
    api_key: str | None = field(default=None, repr=False)  # the plugin secret MARLIN_API_KEY (openai:// servers)
    timeout_s: float | None = None  # how long one server request may wait (None: the client's default)
    keep_server: bool = False  # leave a vllm: server this run started running after the run

    @classmethod
    def common(cls, raw: dict, defaults: dict) -> dict:
        values = given(raw, defaults)
        device = values.get("device") or "auto"
        return dict(
            model=str(values.get("model") or DEFAULT_MODEL),
            revision=values.get("revision") or None,
            device=None if device == "auto" else str(device),
            batch_size=int(values["batch_size"]) if values.get("batch_size") else None,
            error_field=str(values["error_field"]),
            run_key=str(values["run_key"]),
            max_new_tokens=int(values["max_new_tokens"]),
            window_s=float(values.get("window_s") or DEFAULT_WINDOW_S),
            overwrite=bool(values.get("overwrite")),
            sampling={name: values[name] for name in SAMPLING_PARAMS if values.get(name) is not None},
            **server_params(values),
        )

    def engine_kwargs(self) -> dict:
        """What the engine's iterators take from these params (batching, decoding, windows, sampling)."""
        return dict(batch_size=self.batch_size, max_new_tokens=self.max_new_tokens, window_s=self.window_s,
                    **self.sampling)

    @cached_property
    def weights(self) -> str:
        """What the model is (:func:`.identity.weights_identity`), looked up once per params object."""
        return weights_identity(self.model, self.revision)

    def settings(self, prompt: str) -> dict:
        """The settings that determine the model's answer (recorded in the run, fingerprinted).

        ``weights`` is what the model is (:mod:`.identity`); the fingerprint uses it instead of the
        ``model`` / ``revision`` strings, which only say where the weights were found.
        """
        return {
            "model": self.model,
            "revision": self.revision,
            "weights": self.weights,
            "prompt": prompt,
            "max_new_tokens": self.max_new_tokens,
            "do_sample": False,
            "sampling": dict(self.sampling),
            "window_s": self.window_s,
        }


@dataclass(frozen=True)
class CaptionParams(ModelParams):
    events_field: str = "marlin_events"
    scene_field: str = "marlin_scene"
    caption_field: str = "marlin_caption"
    prompt: str | None = None

    @classmethod
    def read(cls, raw: dict, defaults: dict) -> CaptionParams:
        values = given(raw, defaults)
        return cls(**cls.common(raw, defaults), events_field=str(values["events_field"]),
                   scene_field=str(values["scene_field"]), caption_field=str(values["caption_field"]),
                   prompt=values.get("prompt") or None)

    @property
    def label_fields(self) -> tuple[str, ...]:
        return (self.events_field, self.scene_field, self.caption_field)


@dataclass(frozen=True)
class FindParams(ModelParams):
    find_field: str = "marlin_find"
    queries: tuple[str, ...] = ()

    @classmethod
    def read(cls, raw: dict, defaults: dict, queries: list[str]) -> FindParams:
        values = given(raw, defaults)
        return cls(**cls.common(raw, defaults), find_field=str(values["find_field"]), queries=tuple(queries))

    @property
    def not_found_field(self) -> str:
        return f"{self.find_field}_not_found"

    @property
    def label_fields(self) -> tuple[str, ...]:
        return (self.find_field, self.not_found_field)
