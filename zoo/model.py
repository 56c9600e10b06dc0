"""Marlin as a FiftyOne zoo model: ``dataset.apply_model(model, label_field=...)`` writes the operators' labels.

A ``fom.Model`` + ``fom.SamplesMixin`` over the same engine and the same label conversion
(:mod:`operators.adapters.labels`) as the ``caption`` and ``find`` operators, with the same settings
fingerprint, so the labels are identical and a later operator run skips samples this model did.

FiftyOne 1.22's ``apply_model`` calls a video model's ``predict`` once per sample, with an open
``FFmpegVideoReader`` (``_apply_video_model`` in ``fiftyone/core/models.py``; ``batch_size`` is not
passed to video models): the model reads the file path from the reader and decodes the video with
Marlin's own preprocessing. ``predict_all`` batches ``batch_size`` videos per ``generate`` call for
callers that hand it several videos. A video that cannot be read raises, so ``skip_failures``
decides: skip it (labels it had stay) or stop.

Each ``apply_model`` call is a run with a record like the operators' (``marlin_runs``, and the FiftyOne
run ``marlin_zoo_<operation>`` on the dataset when it did not fail): ``apply_model`` enters the model as a
context manager around the samples, and ``predict`` receives each sample. ``output="labels"`` writes the
events without scene and caption, so those labels are marked and a caption operator run redoes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import fiftyone as fo
import fiftyone.core.models as fom

from marlin_core.contract import CAPTION_PROMPT, FIND_PROMPT_TEMPLATE
from marlin_core.serving.managed import is_vllm_model
from marlin_core.windows import DEFAULT_WINDOW_S

from ..operators.caption import DEFAULTS as CAPTION_DEFAULTS
from ..operators.caption import EVENTS_ONLY
from ..operators.find import DEFAULTS as FIND_DEFAULTS
from marlin_core.queries import parse_queries
from ..operators.adapters.labels import TEXT_HASHES, caption_to_detections, find_answers_to_detections
from ..operators.run.models import get_marlin, put_marlin
from ..operators.run.params import ModelParams
from ..operators.run.processing import checked_metadata
from ..operators.run.runs import RunRecord, settings_fingerprint

__all__ = ["OPERATIONS", "OUTPUTS", "MarlinModelSettings", "MarlinVideoModel"]

OPERATIONS = ("caption", "find")
# "labels": one TemporalDetections for ``label_field``; "fields": a dict whose keys, prefixed with
# ``label_field + "_"`` by FiftyOne, give the operators' field names (label_field="marlin" → marlin_events, ...).
OUTPUTS = ("labels", "fields")


@dataclass
class MarlinModelSettings:
    """Everything a zoo model run depends on; the defaults are the operators' defaults.

    Attributes:
        weights: the folder (or hub id) the weights are loaded from.
        operation: ``"caption"`` (events) or ``"find"`` (span of each query).
        queries: the event descriptions ``find`` locates (a list, or text with one per line).
        prompt: caption prompt replacing Marlin's canonical one (None: canonical).
        max_new_tokens: answer length cap (None: 2048 for caption, 64 for find).
        window_s: videos longer than this are processed in overlapping windows (seconds).
        fps, max_frames, max_pixels: preprocessing overrides (None: the reference behaviour).
        batch_size: videos per ``generate`` call in :meth:`MarlinVideoModel.predict_all`.
        device: ``cuda`` / ``mps`` / ``cpu``; None picks the best available.
        revision: hub revision when ``weights`` is a hub id.
        output: ``"labels"`` or ``"fields"`` (see ``OUTPUTS``).
    """

    weights: str
    operation: str = "caption"
    queries: list[str] = field(default_factory=list)
    prompt: str | None = None
    max_new_tokens: int | None = None
    window_s: float = DEFAULT_WINDOW_S
    fps: float | None = None
    max_frames: int | None = None
    max_pixels: int | None = None
    batch_size: int | None = None  # None = automatic (1 on a CPU, from free GPU memory on CUDA)
    device: str | None = None
    revision: str | None = None
    output: str = "labels"

    def __post_init__(self):
        self.queries = parse_queries(self.queries)
        if self.operation not in OPERATIONS:
            raise ValueError(f"operation must be one of {list(OPERATIONS)}, not {self.operation!r}")
        if self.output not in OUTPUTS:
            raise ValueError(f"output must be one of {list(OUTPUTS)}, not {self.output!r}")
        if self.operation == "find" and not self.queries:
            raise ValueError("operation='find' needs at least one query (queries=[...])")
        if self.max_new_tokens is None:
            defaults = CAPTION_DEFAULTS if self.operation == "caption" else FIND_DEFAULTS
            self.max_new_tokens = defaults["max_new_tokens"]
        if self.batch_size is not None and int(self.batch_size) < 1:
            raise ValueError(f"batch_size must be at least 1, not {self.batch_size!r}")
        if not isinstance(self.window_s, (int, float)) or self.window_s <= 0:
            raise ValueError(f"window_s must be a positive number of seconds, not {self.window_s!r}")

    @property
    def sampling(self) -> dict:
        """The preprocessing options that were set, as the operators pass them to the engine."""
        values = {"fps": self.fps, "max_frames": self.max_frames, "max_pixels": self.max_pixels}
        return {name: value for name, value in values.items() if value is not None}

    def operator_settings(self) -> dict:
        """The settings dict the operators record and fingerprint, built by the operators' own code."""
        prompt = (self.prompt or CAPTION_PROMPT) if self.operation == "caption" else FIND_PROMPT_TEMPLATE
        params = ModelParams(model=self.weights, revision=self.revision, max_new_tokens=int(self.max_new_tokens),
                             window_s=float(self.window_s), sampling=self.sampling)
        return params.settings(prompt)


def _filepath(arg) -> str:
    """The video file of a ``predict`` argument: FiftyOne's video reader, or a path."""
    return str(getattr(arg, "inpath", arg))


class MarlinVideoModel(fom.SamplesMixin, fom.Model):
    """Marlin-2B over video samples: ``caption`` → events, ``find`` → one detection per query found."""

    def __init__(self, settings: MarlinModelSettings, marlin=None):
        fom.SamplesMixin.__init__(self)
        self.settings = settings
        self._own_marlin = marlin is None
        self.marlin = marlin if marlin is not None else self._get_marlin()
        self.fingerprint = settings_fingerprint(settings.operator_settings())
        self._record: RunRecord | None = None
        self._outcome: dict = {}

    # ------------------------------------------------------------------ a run per apply_model

    def __enter__(self):
        self._record, self._outcome = None, {"done": 0, "skipped": 0, "failed": 0, "errors": []}
        if self.marlin is None:  # a vllm: server let go of by the previous apply_model
            self.marlin = self._get_marlin()
        return self

    def __exit__(self, kind, error, traceback):
        """The end of an ``apply_model``: its run record is finished, and a ``vllm:`` server started for it
        stops (a later one restarts it)."""
        try:
            self._finish_record(kind, error)
        finally:
            if self._own_marlin and is_vllm_model(self.settings.weights):
                put_marlin(self.settings.weights)
                self.marlin = None
        return False

    def _finish_record(self, kind, error) -> None:
        record, self._record = self._record, None
        outcome, self._outcome = self._outcome, {}
        if record is None:
            return
        if kind is not None:
            status = "interrupted" if issubclass(kind, KeyboardInterrupt) else "failed"
            record.finish(status, outcome, f"{kind.__name__}: {error}")
        elif outcome["failed"] and not outcome["done"]:
            record.finish("failed", outcome, f"every sample failed ({outcome['failed']}): {outcome['errors'][0]}")
        else:
            record.finish("completed", outcome)

    def _note(self, sample, error: BaseException | None) -> None:
        """Count one ``apply_model`` sample in the run record (started on the first one)."""
        if sample is None or not self._outcome:
            return
        if self._record is None:
            settings = dict(self.settings.operator_settings(), output=self.settings.output,
                            queries=list(self.settings.queries))
            self._record = RunRecord(sample._dataset, f"marlin_zoo_{self.settings.operation}",
                                     f"zoo_{self.settings.operation}", settings).start()
            self._record.set_model(self.marlin)
        if error is None:
            self._outcome["done"] += 1
        else:
            self._outcome["failed"] += 1
            if len(self._outcome["errors"]) < 20:
                self._outcome["errors"].append(f"{sample.filepath}: {error}")
        self._record.heartbeat(dict(self._outcome))

    def _get_marlin(self):
        return get_marlin(self.settings.weights, device=self.settings.device, revision=self.settings.revision)

    @property
    def media_type(self) -> str:
        return "video"

    @property
    def ragged_batches(self) -> bool:
        return True  # videos differ in length and size; the engine pads them itself

    @property
    def transforms(self):
        return None

    @property
    def preprocess(self) -> bool:
        return False

    @preprocess.setter
    def preprocess(self, value) -> None:
        pass  # decoding and resizing are Marlin's own (marlin_core.video); FiftyOne's transforms do not apply

    def predict(self, arg, sample=None):
        """Labels for one video (an ``FFmpegVideoReader`` from ``apply_model``, or a path); raises on failure."""
        try:
            labels = self.predict_all([arg], samples=None if sample is None else [sample])[0]
        except Exception as error:
            self._note(sample, error)
            raise
        self._note(sample, None)
        return labels

    def predict_all(self, args, samples=None) -> list:
        """Labels for several videos, ``batch_size`` per ``generate`` call (caption); raises the first failure."""
        paths = [_filepath(arg) for arg in args]
        for sample in samples or []:
            if getattr(getattr(sample, "_dataset", None), "_is_clips", False):
                raise ValueError(f"{sample.filepath}: clip views are not supported (the model reads whole "
                                 "videos); run on the videos, then make clips from the labels")
        labels = []
        for index, (path, (_, result)) in enumerate(zip(paths, self._results(paths))):
            if isinstance(result, BaseException):
                raise result
            labels.append(self._labels(result, self._metadata(path, samples[index] if samples else None)))
        return labels

    def _results(self, paths: list[str]):
        settings = self.settings
        common = dict(max_new_tokens=settings.max_new_tokens, window_s=settings.window_s, **settings.sampling)
        if settings.operation == "caption":
            return self.marlin.iter_captions(paths, batch_size=settings.batch_size, prompt=settings.prompt, **common)
        return self.marlin.iter_finds([(path, settings.queries) for path in paths], **common)

    @staticmethod
    def _metadata(path: str, sample) -> fo.VideoMetadata:
        """The sample's metadata as the operators get it, or the file's when there is no sample."""
        if sample is None:
            return fo.VideoMetadata.build_for(path)
        try:
            metadata, _ = checked_metadata(sample)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from error
        return metadata

    def _labels(self, result, metadata: fo.VideoMetadata):
        if self.settings.operation == "caption":
            events = caption_to_detections(result, metadata, self.fingerprint)
            if self.settings.output == "labels":
                events.set_field(EVENTS_ONLY, True)  # no scene or caption beside them: not a whole caption
                for attribute in TEXT_HASHES.values():
                    events.set_field(attribute, None)
                return events
            return {"events": events, "scene": result["scene"], "caption": result["caption"]}
        found, not_found = find_answers_to_detections(result, metadata, self.fingerprint)
        if self.settings.output == "labels":
            return found
        return {"find": found, "find_not_found": not_found}
