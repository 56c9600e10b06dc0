"""The sample loop shared by the model operators: what to skip, what failed, what was done.

A sample is saved the moment its result is written, so a crash or a kill loses at most the batch in
flight and a rerun resumes. A failure writes the cause to the error field of that sample only, and
never removes labels it had before.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import fiftyone as fo

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
    """One sample to process: its id, video path and duration-bearing metadata."""

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


def ensure_metadata(dataset: fo.Dataset, sample: fo.Sample) -> fo.VideoMetadata | None:
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
