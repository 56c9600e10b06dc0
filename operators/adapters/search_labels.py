"""FiftyOne adapter for search: captions from samples, moments to labels, and the ranked clips view.

A search writes one ``TemporalDetection`` per (video, query) answer into a ``TemporalDetections`` field
(default ``marlin_search``): label and ``query`` = the query, ``confidence`` and ``score`` = the presence
score, its pieces (``events_relevance``, ``scene_relevance``, ``agreement``, ``time_confidence``), ``present``
(score >= threshold), the span in seconds, Marlin's raw answer, the search's name and the id of the run
that wrote it. Detections of other searches in the same field are kept.
"""

from __future__ import annotations

import fiftyone as fo
from fiftyone import ViewField as F

from collections.abc import Callable
from dataclasses import dataclass

from marlin_core.search.caption_index import CaptionedEvent, CaptionedVideo
from marlin_core.search.library import Moment

from .labels import detection_span_s, find_to_detection

__all__ = ["SEARCH_ATTRIBUTES", "captioned_videos", "declare_search_attributes", "MomentWriter",
           "ranked_clips_view", "remove_search", "replace_search"]

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

    Attributes:
        search: the search's name (its saved view).
        run_id: this run's id (the saved view keeps only its detections).
        field: the ``TemporalDetections`` results field.
        error_field: the per-sample error field.
        threshold: presence score a moment needs to be ``present``.
        fingerprint: the find settings' fingerprint (``marlin_settings`` on each detection).
        score: ``(sample id, find answer) -> Moment | None``.
    """

    search: str
    run_id: str
    field: str
    error_field: str
    threshold: float
    fingerprint: str
    score: Callable[[str, dict], Moment | None]

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
        return detection

    def write(self, sample: fo.Sample, answers: list[dict], metadata: fo.VideoMetadata) -> list[fo.TemporalDetection]:
        """Replace this search's detections on the sample with the scored answers, clear its error, save."""
        detections = [d for d in (self.detection(sample.id, a, metadata) for a in answers) if d is not None]
        replace_search(sample, self.field, self.search, detections)
        if sample.has_field(self.error_field) and str(sample[self.error_field] or "").startswith(f"{OPERATION}:"):
            sample[self.error_field] = None
        sample.save()
        return detections

    def fail(self, sample: fo.Sample, message: str) -> None:
        """Write the cause to the sample's error field; its labels stay as they were."""
        sample[self.error_field] = f"{OPERATION}: {message}"
        sample.save()


def _of_search(detection: fo.TemporalDetection, search: str) -> bool:
    return detection.has_field("search") and detection.get_field("search") == search


def replace_search(sample: fo.Sample, field: str, search: str, detections: list[fo.TemporalDetection]) -> None:
    """Put ``detections`` in the sample's field in place of the earlier ones of ``search`` (others kept)."""
    labels = sample[field] if sample.has_field(field) else None
    kept = [d for d in (labels.detections if labels is not None else []) if not _of_search(d, search)]
    sample[field] = fo.TemporalDetections(detections=kept + detections)


def remove_search(collection, field: str, search: str, keep_run: str, skip_ids: set[str]) -> int:
    """Drop ``search``'s detections of earlier runs (not ``keep_run``) outside ``skip_ids``; returns samples changed.

    Samples in ``skip_ids`` (whose search failed this time) keep their earlier answers.
    """
    if field not in collection.get_field_schema():
        return 0
    stale = collection.filter_labels(field, (F("search") == search) & (F("search_run") != keep_run))
    changed = 0
    for sample in collection.select(stale.values("id")).iter_samples(autosave=True):
        if sample.id in skip_ids:
            continue
        sample[field].detections = [
            d for d in sample[field].detections if not _of_search(d, search) or d.get_field("search_run") == keep_run
        ]
        changed += 1
    return changed


def ranked_clips_view(dataset: fo.Dataset, field: str, run_id: str, *, present_only: bool = True):
    """One clip per moment of run ``run_id``, best presence score first (absent moments left out).

    The field is declared when no search wrote it yet, so a search that found nothing still has its view.
    """
    if field not in dataset.get_field_schema():
        dataset.add_sample_field(field, fo.EmbeddedDocumentField, embedded_doc_type=fo.TemporalDetections)
    keep = F("search_run") == run_id
    if present_only:
        keep = keep & (F("present") == True)  # noqa: E712 - a ViewExpression, not a Python comparison
    return (dataset.filter_labels(field, keep)
            .to_clips(field)
            .sort_by(F(f"{field}.confidence"), reverse=True))


def declare_search_attributes(dataset: fo.Dataset, field: str) -> None:
    """Declare :data:`SEARCH_ATTRIBUTES` of ``field`` so the App's sidebar can filter on them."""
    if field not in dataset.get_field_schema():
        return
    dynamic = dataset.get_dynamic_field_schema(fields=[field])
    wanted = {path: spec for path, spec in dynamic.items() if path.rsplit(".", 1)[-1] in SEARCH_ATTRIBUTES}
    if wanted:
        dataset.add_dynamic_sample_fields(fields=wanted)
