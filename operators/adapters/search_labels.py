"""FiftyOne adapter for search: captions from samples, moments to labels, and the ranked clips view.

A search writes one ``TemporalDetection`` per (video, query) answer into a ``TemporalDetections`` field
(default ``marlin_search``): label and ``query`` = the query, ``confidence`` and ``score`` = the presence
score, its pieces (``events_relevance``, ``scene_relevance``, ``agreement``, ``time_confidence``), ``present``
(score >= threshold), the span in seconds, Marlin's raw answer, the search's name and the id of the run
that wrote it. Detections of other searches in the same field, and labels Marlin did not make, are kept.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import time

import fiftyone as fo
import fiftyone.core.odm as foo_odm
import pymongo.errors
from fiftyone import ViewField as F

from collections.abc import Callable
from dataclasses import dataclass

from marlin_core.search.caption_index import CaptionedEvent, CaptionedVideo
from marlin_core.search.library import Moment

from .labels import detection_span_s, find_to_detection, is_marlin_label, stamp

__all__ = ["SEARCH_ATTRIBUTES", "captioned_videos", "declare_search_attributes", "foreign_samples", "MomentWriter",
           "ranked_clips_view", "remove_search", "replace_search", "samples_with_search", "save_view"]

# Prefix of the errors a search writes (another operation's error is left alone).
OPERATION = "search"
# Attributes a user filters the results on in the App's sidebar (declared in the dataset's schema).
SEARCH_ATTRIBUTES = ("query", "score", "present", "search")


def captioned_videos(view, events_field: str, scene_field: str) -> tuple[list[CaptionedVideo], list[str]]:
    """``(captioned videos, ids of the samples without captions)`` of ``view``; video ids are sample ids."""
    schema = view.get_field_schema()
    if events_field not in schema:
        return [], view.values("id")
    fields = [events_field] + ([scene_field] if scene_field in schema else [])
    videos, missing = [], []
    for sample in view.select_fields(fields + ["metadata"]).iter_samples():
        labels = sample[events_field]
        if labels is None:
            missing.append(sample.id)
            continue
        events = []
        for detection in labels.detections:
            try:
                start_s, end_s = detection_span_s(detection, sample.metadata)
            except ValueError:  # no seconds stored and no metadata to convert frames: the text still counts
                start_s = end_s = 0.0
            events.append(CaptionedEvent(start_s, end_s, detection.label or ""))
        scene = sample[scene_field] if scene_field in schema else None
        videos.append(CaptionedVideo(sample.id, str(scene or ""), tuple(events)))
    return videos, missing


@dataclass(frozen=True)
class MomentWriter:
    """Writes one search run's answers to samples: scored detections, or the sample's error.

    Every write is a compare-and-swap on the fields it changes (:func:`operators.run.writes.update_sample`,
    passed in as ``update`` since adapters sit below the run machinery), so two searches writing the same
    sample at once each keep the other's detections.

    Attributes:
        search: the search's name (its saved view).
        run_id: this run's id (the saved view keeps only its detections).
        field: the ``TemporalDetections`` results field.
        error_field: the per-sample error field.
        threshold: presence score a moment needs to be ``present``.
        fingerprint: the find settings' fingerprint (``marlin_settings`` on each detection).
        score: ``(sample id, find answer) -> Moment | None``.
        update: ``(dataset, sample id, change) -> bool``, the compare-and-swap write.
    """

    search: str
    run_id: str
    field: str
    error_field: str
    threshold: float
    fingerprint: str
    score: Callable[[str, dict], Moment | None]
    update: Callable

    def detection(self, sample_id: str, answer: dict, metadata: fo.VideoMetadata) -> fo.TemporalDetection | None:
        """One find answer as a scored detection, or None when it has no usable span.

        The span is first sanitised to the video (clamped, swapped), then scored, so the score
        describes the span the label shows.
        """
        detection, _ = find_to_detection(answer, metadata, self.fingerprint)
        if detection is None:
            return None
        presence = self.score(sample_id, dict(answer, span=(detection.start_s, detection.end_s))).presence
        detection.confidence = presence.score
        for name, value in {
            "query": answer["query"], "score": presence.score, "present": presence.score >= self.threshold,
            "events_relevance": presence.events, "scene_relevance": presence.scene, "agreement": presence.agreement,
            "time_confidence": presence.confidence, "search": self.search, "search_run": self.run_id,
        }.items():
            detection[name] = value
        return stamp(detection)  # Marlin's as it is now, score included: a later run may replace it

    def write(self, dataset: fo.Dataset, sample_id: str, answers: list[dict],
              metadata: fo.VideoMetadata) -> tuple[list[fo.TemporalDetection], list[dict]]:
        """Replace this search's detections on the sample with the scored answers and clear its error.

        Returns:
            ``(detections written, answers without a readable span)``; the latter are not written.
        """
        scored = [(answer, self.detection(sample_id, answer, metadata)) for answer in answers]
        detections = [detection for _, detection in scored if detection is not None]

        def change(sample):
            updates = {self.field: replace_search(sample, self.field, self.search, detections)}
            error = sample[self.error_field] if sample.has_field(self.error_field) else None
            if str(error or "").startswith(f"{OPERATION}:"):
                updates[self.error_field] = None
            return updates

        self.update(dataset, sample_id, change)
        return detections, [answer for answer, detection in scored if detection is None]

    def fail(self, dataset: fo.Dataset, sample_id: str, message: str) -> None:
        """Write the cause to the sample's error field; its labels stay as they were."""
        self.update(dataset, sample_id, lambda _sample: {self.error_field: f"{OPERATION}: {message}"})


def _of_search(detection: fo.TemporalDetection, search: str) -> bool:
    """Whether Marlin wrote ``detection`` for the search named ``search`` (a label someone made never is)."""
    return detection.has_field("search") and detection.get_field("search") == search and is_marlin_label(detection)


def replace_search(sample: fo.Sample, field: str, search: str,
                   detections: list[fo.TemporalDetection]) -> fo.TemporalDetections:
    """The sample's field with ``detections`` in place of the earlier ones of ``search`` (all others kept).

    ``sample`` is read only (a fresh copy from :func:`update_sample`); the new value is returned.
    """
    labels = sample[field] if sample.has_field(field) else None
    kept = [d for d in (labels.detections if labels is not None else []) if not _of_search(d, search)]
    labels = labels if labels is not None else fo.TemporalDetections()
    labels.detections = kept + list(detections)
    return labels


def samples_with_search(collection, field: str, search: str) -> list[str]:
    """The ids of the samples of ``collection`` holding Marlin's results of the search named ``search``."""
    if field not in collection.get_field_schema():
        return []
    return collection.match(F(f"{field}.detections").filter(
        (F("search") == search) & F("marlin_settings").exists()).length() > 0).values("id")


def foreign_samples(collection, field: str) -> tuple[int, int]:
    """``(samples holding Marlin's labels in field, samples holding labels Marlin did not make there)``.

    A label is Marlin's when it carries the settings fingerprint Marlin stamps (:func:`.labels.is_marlin_label`).
    """
    if field not in collection.get_field_schema():
        return 0, 0
    marlin = F(f"{field}.detections").filter(F("marlin_settings").exists()).length() > 0
    foreign = F(f"{field}.detections").filter(~F("marlin_settings").exists()).length() > 0
    return len(collection.match(marlin)), len(collection.match(foreign))


def remove_search(collection, field: str, search: str, keep_run: str, skip_ids: set[str], update) -> int:
    """Drop ``search``'s detections of earlier runs (not ``keep_run``) from ``collection``'s samples only.

    Samples in ``skip_ids`` (whose search failed this time) keep their earlier answers; samples outside
    ``collection`` (the view searched) are never touched. Each sample is changed with ``update``
    (compare-and-swap). Returns the samples changed.
    """
    if field not in collection.get_field_schema():
        return 0
    dataset = collection._root_dataset
    stale = collection.filter_labels(field, (F("search") == search) & (F("search_run") != keep_run))
    changed = 0
    for sample_id in stale.values("id"):
        if sample_id in skip_ids:
            continue

        def change(sample):
            labels = sample[field] if sample.has_field(field) else None
            if labels is None:
                return None
            kept = [d for d in labels.detections
                    if not _of_search(d, search) or d.get_field("search_run") == keep_run]
            if len(kept) == len(labels.detections):
                return None
            labels.detections = kept
            return {field: labels}

        changed += bool(update(dataset, sample_id, change))
    return changed


def ranked_clips_view(dataset: fo.Dataset, field: str, search: str, *, present_only: bool = True):
    """One clip per moment of the search named ``search``, best presence score first (absent ones left out).

    All runs of that name count (the shards of one search, and earlier results outside the view searched
    last). The field is declared when no search wrote it yet, so a search that found nothing still has its view.
    """
    if field not in dataset.get_field_schema():
        dataset.add_sample_field(field, fo.EmbeddedDocumentField, embedded_doc_type=fo.TemporalDetections)
    keep = F("search") == search
    if present_only:
        keep = keep & (F("present") == True)  # noqa: E712 - a ViewExpression, not a Python comparison
    return (dataset.filter_labels(field, keep)
            .to_clips(field)
            .sort_by(F(f"{field}.confidence"), reverse=True))


# A held lock older than this was left by a killed process (saving a view takes milliseconds).
LOCK_STALE_S = 60.0


@contextlib.contextmanager
def _saved_views_lock(dataset: fo.Dataset, timeout_s: float = 120.0):
    """Serialise saved-view writes on ``dataset`` across processes (a document in ``marlin_locks``).

    FiftyOne's ``save_view`` re-reads the dataset's list of saved views, appends, and writes the whole
    list back: two processes saving views at the same moment can drop one. Marlin's own writers take
    this lock around it; a lock whose holder was killed expires after :data:`LOCK_STALE_S`.
    """
    locks = foo_odm.get_db_conn()["marlin_locks"]
    key = f"saved_views:{dataset._doc.id}"
    deadline = time.monotonic() + timeout_s
    while True:
        now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        locks.delete_one({"_id": key, "taken_at": {"$lt": now - datetime.timedelta(seconds=LOCK_STALE_S)}})
        try:
            locks.insert_one({"_id": key, "taken_at": now, "pid": os.getpid()})
            break
        except pymongo.errors.DuplicateKeyError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"dataset {dataset.name!r}: another process kept saving views") from None
            time.sleep(0.05)
    try:
        yield
    finally:
        locks.delete_one({"_id": key, "pid": os.getpid()})


def save_view(dataset: fo.Dataset, name: str, view) -> None:
    """Save ``view`` as ``name`` (replacing a saved view of that name) without losing another process's view."""
    with _saved_views_lock(dataset):
        dataset.reload()
        dataset.save_view(name, view, overwrite=True)


def declare_search_attributes(dataset: fo.Dataset, field: str) -> None:
    """Declare :data:`SEARCH_ATTRIBUTES` of ``field`` so the App's sidebar can filter on them."""
    if field not in dataset.get_field_schema():
        return
    dynamic = dataset.get_dynamic_field_schema(fields=[field])
    wanted = {path: spec for path, spec in dynamic.items() if path.rsplit(".", 1)[-1] in SEARCH_ATTRIBUTES}
    if wanted:
        dataset.add_dynamic_sample_fields(fields=wanted)
