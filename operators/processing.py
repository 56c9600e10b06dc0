"""The sample loop shared by the model operators: what to skip, what failed, what was done.

A sample is saved the moment its result is written, so a crash or a kill loses at most the batch in
flight and a rerun resumes. A failure writes the cause to the error field of that sample only, and
never removes labels it had before.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import fiftyone as fo

from .runs import record_run

# The App shows the result of a run; keep the list of errors it carries short.
MAX_REPORTED_ERRORS = 20


@dataclass
class Outcome:
    """Counts of one run, returned to the App and to SDK callers."""

    done: int = 0
    skipped: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        self.failed += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(message)

    def as_dict(self) -> dict:
        return {"done": self.done, "skipped": self.skipped, "failed": self.failed, "errors": list(self.errors)}


@dataclass
class Job:
    """One sample to process: its id, its video path and what to do with it (the operation's ``todo`` payload)."""

    sample_id: str
    filepath: str
    payload: object = None


def unprocessable_reason(sample: fo.Sample) -> str | None:
    """Why Marlin cannot run on this sample, or None (file problems are found by the decoder)."""
    media_type = getattr(sample, "media_type", None)
    if media_type != "video":
        return f"not a video sample (media type {media_type!r})"
    return None


def write_error(sample: fo.Sample, error_field: str, operation: str, message: str) -> None:
    sample[error_field] = f"{operation}: {message}"
    sample.save()


def clear_error(sample: fo.Sample, error_field: str, operation: str) -> None:
    """Remove this operation's earlier error (another operation's error stays)."""
    if sample.has_field(error_field) and (sample[error_field] or "").startswith(f"{operation}:"):
        sample[error_field] = None


def error_message(filepath: str, error: BaseException) -> str:
    """One line naming the file and the cause; video errors already name their file."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text if filepath in text else f"{filepath}: {type(error).__name__}: {text}"


def ensure_metadata(sample: fo.Sample) -> fo.VideoMetadata | None:
    """The sample's video metadata, computed when missing (None when the file cannot be read)."""
    if sample.metadata is None:
        sample.compute_metadata()
        sample.save()
    return sample.metadata


def partial_field(field: str) -> str:
    """Where the finished windows of a long video wait until the whole video is done."""
    return f"{field}_partial"


class SampleWindowStore:
    """:class:`marlin_core.windows.WindowStore` on a sample: a killed run resumes at the window level.

    The windows are kept only for the settings fingerprint they were made with; the field is
    cleared when the video's labels are written.
    """

    def __init__(self, dataset: fo.Dataset, sample_id: str, field: str, fingerprint: str):
        self.dataset, self.sample_id, self.field, self.fingerprint = dataset, sample_id, field, fingerprint

    def _partial(self, sample) -> dict | None:
        partial = sample[self.field] if sample.has_field(self.field) else None
        return partial if partial and partial.get("fingerprint") == self.fingerprint else None

    def load(self) -> dict:
        partial = self._partial(self.dataset[self.sample_id])
        return {(start_s, end_s): result for start_s, end_s, result in (partial or {}).get("windows", [])}

    def save(self, window, result) -> None:
        sample = self.dataset[self.sample_id]
        partial = self._partial(sample) or {"fingerprint": self.fingerprint, "windows": []}
        partial["windows"].append([window[0], window[1], result])
        sample[self.field] = partial
        sample.save()


def window_hooks(ctx, dataset: fo.Dataset, jobs: list[Job], field: str, fingerprint_of):
    """``(window_progress, window_store)`` callbacks for the engine's iterators over ``jobs``.

    Progress counts windows inside the current video; the store keeps each finished window on
    the sample under ``partial_field(field)``.
    """
    index_of = {job.filepath: index for index, job in enumerate(jobs)}
    job_of = {job.filepath: job for job in jobs}

    def progress(video, done: int, total: int) -> None:
        index = index_of[str(video)]
        ctx.set_progress(progress=(index + done / total) / len(jobs),
                         label=f"{index}/{len(jobs)} {video} (window {done}/{total})")

    def store(video) -> SampleWindowStore:
        job = job_of[str(video)]
        return SampleWindowStore(dataset, job.sample_id, partial_field(field), fingerprint_of(job))

    return progress, store


@dataclass
class ModelRun:
    """What one model operator does differently; :func:`execute_model_run` does the rest.

    Attributes:
        operation: ``"caption"`` or ``"find"`` (prefix of its error messages, name of its run method).
        field: the labels field (finished windows of long videos wait beside it).
        error_field: where per-sample errors go.
        run_key: the FiftyOne run recording ``settings``.
        settings: everything that determines the answer (recorded, fingerprinted).
        todo: the sample's job payload, or None when it is already done with these settings.
        results: ``(marlin, jobs, window_progress, window_store) -> iterator of (video, result | error)``.
        write: set the sample's fields from a result (``(sample, result, metadata, job)``; no save).
        window_fingerprint: the fingerprint finished windows of a job are kept under.
    """

    operation: str
    field: str
    error_field: str
    run_key: str
    settings: dict
    todo: Callable[[fo.Sample], object | None]
    results: Callable
    write: Callable[[fo.Sample, object, fo.VideoMetadata, Job], None]
    window_fingerprint: Callable[[Job], str]


def execute_model_run(ctx, view, run: ModelRun, load_model: Callable[[], object]) -> dict:
    """Scan ``view``, run the model on the samples that need it, save each sample as soon as it is done.

    Returns:
        ``{"done", "skipped", "failed", "errors", "run_key"}``.
    """
    record_run(view, run.run_key, run.operation, run.settings)
    outcome, jobs = Outcome(), []
    for sample in view.iter_samples():
        reason = unprocessable_reason(sample)
        if reason:
            outcome.fail(f"{sample.filepath}: {reason}")
            write_error(sample, run.error_field, run.operation, reason)
            continue
        payload = run.todo(sample)
        if payload is None:
            outcome.skipped += 1
            continue
        jobs.append(Job(sample.id, sample.filepath, payload))

    if jobs:
        window_progress, window_store = window_hooks(ctx, ctx.dataset, jobs, run.field, run.window_fingerprint)
        results = run.results(load_model(), jobs, window_progress, window_store)
        for index, (job, (_, result)) in enumerate(zip(jobs, results), start=1):
            _store_result(ctx.dataset[job.sample_id], job, result, run, outcome)
            ctx.set_progress(progress=index / len(jobs), label=f"{index}/{len(jobs)} {job.filepath}")

    record_run(view, run.run_key, run.operation, run.settings, outcome.as_dict())
    if not ctx.delegated:
        ctx.trigger("reload_dataset")
    return dict(outcome.as_dict(), run_key=run.run_key)


def _store_result(sample: fo.Sample, job: Job, result, run: ModelRun, outcome: Outcome) -> None:
    """Write one result and save the sample, or record why it failed (labels left as they were)."""
    if isinstance(result, BaseException):
        message = error_message(job.filepath, result)
    elif (metadata := ensure_metadata(sample)) is None:
        message = f"{job.filepath}: cannot read video metadata"
    else:
        run.write(sample, result, metadata, job)
        if sample.has_field(partial_field(run.field)):
            sample[partial_field(run.field)] = None
        clear_error(sample, run.error_field, run.operation)
        sample.save()
        outcome.done += 1
        return
    outcome.fail(message)
    write_error(sample, run.error_field, run.operation, message)
