"""The sample loop shared by the model operators: what to skip, what failed, what was done.

:func:`run_model` is a generator of :class:`Progress` that returns the run's summary; the operator
turns the progress into App events (immediate runs) or ``ctx.set_progress`` (delegated runs).

Safety rules it keeps:

* a sample is written the moment its result is ready, through :func:`.writes.update_sample` (a
  compare-and-swap on the changed fields), so a kill loses at most the sample in flight, a rerun
  resumes, and a concurrent run's answers are merged rather than overwritten;
* a failure writes the cause to that sample's error field only and never removes labels it had before;
  anything about one sample (file, metadata, result) becomes that sample's error, never the run's;
* labels Marlin did not make, or that the user changed, are kept, ``overwrite`` or not
  (:func:`..adapters.labels.marlin_owns`); a sample whose labels are all someone else's is left alone
  unless ``overwrite`` (the operator's ``todo`` says ``UNTOUCHED``);
* the run has a record from its first moment (:class:`.runs.RunRecord`), ended as completed, failed
  or interrupted (a delegated run marked failed/cancelled stops between samples); a run in which every
  sample it tried failed (a dead server) is ``failed``, so it never replaces the record of the labels.
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field

import fiftyone as fo

from marlin_core.errors import VideoError
from marlin_core.video import probe
from marlin_core.windows import WindowStore

from .file_metadata import probe_metadata
from .runs import RunRecord
from .writes import update_sample

__all__ = ["Job", "Outcome", "Progress", "UNTOUCHED", "checked_metadata", "error_message", "partial_field",
           "run_model"]

# The App shows the result of a run; keep the lists it carries short.
MAX_REPORTED = 20
# ``todo`` returns this for a sample whose fields hold labels Marlin did not make (kept).
UNTOUCHED = object()
# Stored metadata further than this from the file's is stale (one frame at 10 fps).
STALE_TOLERANCE_S = 0.1


@dataclass
class Outcome:
    """Counts of one run, returned to the App and to SDK callers."""

    done: int = 0
    skipped: int = 0
    failed: int = 0
    untouched: list[str] = field(default_factory=list)  # samples whose non-Marlin labels were kept
    errors: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        self.failed += 1
        if len(self.errors) < MAX_REPORTED:
            self.errors.append(message)

    def as_dict(self) -> dict:
        return {"done": self.done, "skipped": self.skipped, "failed": self.failed,
                "untouched": len(self.untouched), "untouched_samples": self.untouched[:MAX_REPORTED],
                "errors": list(self.errors)}


@dataclass
class Job:
    """One sample to process: its id, video path, checked metadata and the operation's ``todo`` payload."""

    sample_id: str
    filepath: str
    metadata: fo.VideoMetadata
    payload: object = None


@dataclass(frozen=True)
class Progress:
    """Where a run is: fraction in [0, 1] and a line such as ``3/8 /data/a.mp4 (window 2/5)``."""

    fraction: float
    label: str


class Interrupted(Exception):
    """The run was asked to stop (a delegated operation marked failed, or the App went away)."""


def error_message(filepath: str, error: BaseException) -> str:
    """One line naming the file and the cause; video errors already name their file."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text if filepath in text else f"{filepath}: {type(error).__name__}: {text}"


def partial_field(field_name: str) -> str:
    """Where the finished windows of a long video wait until the whole video is done."""
    return f"{field_name}_partial"


def _complete(metadata) -> bool:
    return metadata is not None and all(
        getattr(metadata, name, None) for name in ("duration", "frame_rate", "total_frame_count"))


def checked_metadata(sample: fo.Sample) -> tuple[fo.VideoMetadata, bool]:
    """The sample's metadata as the file says it is, and whether the stored copy must be replaced.

    Stored metadata that is missing, incomplete or disagrees with the file (another file was copied in
    place, a hand-written value) is recomputed; labels are converted to frames with the file's numbers.
    The file is probed once per version of it in this process (:mod:`.file_metadata`).

    Raises:
        ValueError: the file cannot be read as a video (becomes that sample's error).
    """
    try:
        fresh = probe_metadata(sample.filepath)
    except Exception as error:  # noqa: BLE001 - ffprobe's failures have no common type
        raise ValueError(f"cannot read video metadata ({_metadata_failure(sample.filepath, error)})") from error
    if not _complete(fresh):
        raise ValueError("cannot read video metadata (no duration, frame rate or frame count)")
    stored = sample.metadata
    if _complete(stored) and isinstance(stored, fo.VideoMetadata) \
            and stored.total_frame_count == fresh.total_frame_count \
            and math.isclose(stored.duration, fresh.duration, abs_tol=STALE_TOLERANCE_S):
        return stored, False
    return fresh, True


def _metadata_failure(path: str, error: Exception) -> str:
    """Why ffprobe failed, in one line.

    The library's own diagnosis of the file comes first (missing, empty, not a video, no video stream);
    else ffprobe's whole message on one line (it starts with the command and puts the cause on later
    lines, which a first-line summary cuts off).
    """
    try:
        probe(path)
    except VideoError as diagnosis:
        return str(diagnosis)
    except Exception:  # noqa: BLE001 - the diagnosis is best effort; ffprobe's own words follow
        pass
    return f"{type(error).__name__}: {' '.join(str(error).replace(chr(92) + 'n', ' ').split())}"


def _unprocessable(sample: fo.Sample) -> str | None:
    media_type = getattr(sample, "media_type", None)
    return None if media_type == "video" else f"not a video sample (media type {media_type!r})"


class SampleWindowStore(WindowStore):
    """:class:`marlin_core.windows.WindowStore` on a sample: a killed run resumes at the window level.

    The windows are kept only for the settings fingerprint they were made with; the field is
    cleared when the video's labels are written.
    """

    def __init__(self, dataset: fo.Dataset, sample_id: str, field_name: str, fingerprint: str):
        self.dataset, self.sample_id, self.field, self.fingerprint = dataset, sample_id, field_name, fingerprint

    def _partial(self, sample) -> dict | None:
        partial = sample[self.field] if sample.has_field(self.field) else None
        return partial if partial and partial.get("fingerprint") == self.fingerprint else None

    def load(self) -> dict:
        partial = self._partial(self.dataset[self.sample_id])
        return {(start_s, end_s): result for start_s, end_s, result in (partial or {}).get("windows", [])}

    def save(self, window, result) -> None:
        def add(sample):
            partial = self._partial(sample) or {"fingerprint": self.fingerprint, "windows": []}
            return {self.field: dict(partial, windows=partial["windows"] + [[window[0], window[1], result]])}

        update_sample(self.dataset, self.sample_id, add)


def _pump(results: Iterator, events: queue.Queue, stop: threading.Event) -> None:
    """Move the engine's results into ``events`` (run in a thread, so window progress can be shown live)."""
    try:
        for item in results:
            events.put(("result", item))
            if stop.is_set():
                break
    except BaseException as error:  # noqa: BLE001 - handed to the consumer, which raises it
        events.put(("error", error))
    events.put(("end", None))


def run_model(ctx, operator, params, view, record: RunRecord,
              should_stop: Callable[[], bool]) -> Generator[Progress, None, dict]:
    """Scan ``view``, run the model on the samples that need it, write each sample as soon as it is done.

    ``operator`` provides the template methods ``todo``, ``results``, ``updates``, ``window_fingerprint``,
    ``load_model`` and ``output_fields`` (see :class:`.base.ModelOperator`).

    Returns (as the generator's value):
        ``{"done", "skipped", "failed", "untouched", "untouched_samples", "errors", "run_key", "status"}``.
    """
    dataset = view._root_dataset
    outcome, jobs = Outcome(), []
    for sample in view.iter_samples():
        reason = _unprocessable(sample)
        if reason is None:
            try:
                payload = operator.todo(sample, params)
                if payload is None:
                    outcome.skipped += 1
                    continue
                if payload is UNTOUCHED:
                    outcome.untouched.append(sample.filepath)
                    continue
                metadata, stale = checked_metadata(sample)
                if stale:
                    update_sample(dataset, sample.id, lambda _s, m=metadata: {"metadata": m})
                jobs.append(Job(sample.id, sample.filepath, metadata, payload))
                continue
            except Exception as error:  # noqa: BLE001 - one sample's problem is that sample's error
                reason = error_message(sample.filepath, error)
        _fail(dataset, sample.id, sample.filepath, reason, operator.OPERATION, params, outcome)
    record.heartbeat(outcome.as_dict())

    status = "completed"
    if jobs:
        yield Progress(0.0, f"0/{len(jobs)} loading the model")
        marlin = operator.load_model(params)
        record.set_model(marlin)
        try:
            yield from _process(ctx, operator, params, dataset, jobs, marlin, record, outcome, should_stop)
        except Interrupted:
            status = "interrupted"
    if status == "completed" and outcome.failed and not outcome.done:
        status = "failed"  # nothing written: the labels are still those of an earlier run (runs.RunRecord)
    return dict(outcome.as_dict(), run_key=params.run_key, status=status)


def _process(ctx, operator, params, dataset, jobs, marlin, record, outcome, should_stop):
    """Run the engine over ``jobs`` (keyed by sample id) in a thread; write each result as it comes."""
    events: queue.Queue = queue.Queue()
    stop = threading.Event()
    total = len(jobs)
    position = {job.sample_id: index for index, job in enumerate(jobs)}
    job_of = {job.sample_id: job for job in jobs}

    def window_progress(sample_id, done: int, total_windows: int) -> None:
        index = position[sample_id]
        events.put(("progress", Progress((index + done / total_windows) / total,
                                         f"{index}/{total} {job_of[sample_id].filepath} "
                                         f"(window {done}/{total_windows})")))
        record.heartbeat()

    def window_store(sample_id) -> SampleWindowStore:
        return SampleWindowStore(dataset, sample_id, partial_field(operator.window_field(params)),
                                 operator.window_fingerprint(job_of[sample_id], params))

    results = operator.results(marlin, jobs, params, window_progress, window_store)
    worker = threading.Thread(target=_pump, args=(results, events, stop), daemon=True)
    worker.start()
    index = 0
    try:
        while True:
            kind, item = events.get()
            if kind == "progress":
                yield item
            elif kind == "error":
                raise item
            elif kind == "end":
                return
            else:
                sample_id, result = item
                job = job_of[sample_id]
                index += 1
                _store_result(dataset, job, result, operator, params, outcome)
                record.heartbeat(outcome.as_dict())
                yield Progress(index / total, f"{index}/{total} {job.filepath}")
                if index < total and should_stop():
                    raise Interrupted
    finally:
        stop.set()


def _store_result(dataset, job: Job, result, operator, params, outcome: Outcome) -> None:
    """Write one result, or record why it failed (labels left as they were)."""
    if isinstance(result, BaseException):
        _fail(dataset, job.sample_id, job.filepath, error_message(job.filepath, result), operator.OPERATION,
              params, outcome)
        return
    error_field = params.error_field
    partial = partial_field(operator.window_field(params))

    def change(sample):
        updates = operator.updates(sample, result, job, params)
        if sample.has_field(partial) and sample[partial] is not None:
            updates[partial] = None
        error = sample[error_field] if sample.has_field(error_field) else None
        if (error or "").startswith(f"{operator.OPERATION}:"):
            updates[error_field] = None
        return updates

    try:
        update_sample(dataset, job.sample_id, change)
    except Exception as error:  # noqa: BLE001 - a result that cannot be written is that sample's error
        _fail(dataset, job.sample_id, job.filepath, error_message(job.filepath, error), operator.OPERATION,
              params, outcome)
        return
    outcome.done += 1


def _fail(dataset, sample_id, filepath, message, operation, params, outcome: Outcome) -> None:
    """Count the failure and write it to the sample's error field (nothing else of the sample changes)."""
    outcome.fail(message if filepath in message else f"{filepath}: {message}")
    update_sample(dataset, sample_id, lambda _sample: {params.error_field: f"{operation}: {message}"})
