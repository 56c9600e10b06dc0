"""FiftyOne adapter: Marlin results (seconds) → ``TemporalDetection`` labels (1-based inclusive frames).

The only place where seconds become frames. Times are sanitised first (clamped to the video, swapped
when reversed, empty ones dropped) and what was changed is returned so the operator can record it.

Ownership is per label: every detection Marlin writes carries ``marlin_hash``, a hash of its content as
written (:func:`content_hash`). A detection whose content no longer matches it (the user corrected it), or
that has none (the user added it), is the user's: :func:`marlin_owns` says which, and every writer keeps
the user's labels. The scene and raw caption strings are owned the same way through hashes on the events
container (:func:`owns_text`). Labels written before hashes existed count as the user's (kept).
"""

from __future__ import annotations

import hashlib
import json

import fiftyone as fo

from marlin_core.sanitize import sanitize_events, sanitize_span

from .display import time_range_text


# The attribute holding a label's content hash as Marlin wrote it.
MARLIN_HASH = "marlin_hash"
# The attributes Marlin sets on a detection; hashed with its label, support and confidence.
HASHED_ATTRIBUTES = ("start_s", "end_s", "time_range", "raw", "format_ok", "marlin_settings")
# Container attributes: hashes of the scene / raw caption strings as Marlin wrote them (None: not Marlin's).
TEXT_HASHES = {"scene": "marlin_scene_hash", "caption": "marlin_caption_hash"}


def _attribute(label, name: str):
    return label.get_field(name) if label.has_field(name) else None


def content_hash(detection: fo.TemporalDetection) -> str:
    """A hash of what the user sees and may edit: label, support, confidence and Marlin's attributes."""
    values = {"label": detection.label, "support": [int(v) for v in detection.support or []],
              "confidence": detection.confidence}
    values.update({name: _attribute(detection, name) for name in HASHED_ATTRIBUTES})
    return hashlib.sha1(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]


def stamp(detection: fo.TemporalDetection) -> fo.TemporalDetection:
    """Mark ``detection`` as Marlin's as it is now (call after its last change)."""
    detection.set_field(MARLIN_HASH, content_hash(detection))
    return detection


def marlin_owns(detection) -> bool:
    """Whether Marlin may replace this detection: it made it and nobody changed it since."""
    if detection is None or not hasattr(detection, "has_field"):
        return False
    stored = _attribute(detection, MARLIN_HASH)
    return stored is not None and stored == content_hash(detection)


def user_detections(labels) -> list:
    """The detections of ``labels`` that are the user's (made or edited by hand): every writer keeps these."""
    return [d for d in (labels.detections if labels is not None else []) if not marlin_owns(d)]


def text_hash(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def owns_text(events, kind: str, text) -> bool:
    """Whether the ``kind`` string (``scene``/``caption``) beside ``events`` is Marlin's: empty, or as written."""
    if text in (None, ""):
        return True
    stored = _attribute(events, TEXT_HASHES[kind]) if events is not None and hasattr(events, "has_field") else None
    return stored is not None and stored == text_hash(str(text))


def _detection(from_s: float, to_s: float, metadata: fo.VideoMetadata, **attributes) -> fo.TemporalDetection:
    """``[from_s, to_s]`` seconds → a detection whose support lies inside ``[1, total_frame_count]``.

    It also carries ``time_range`` (e.g. ``"12.0–15.5 s"``): the App shows frames, users think in seconds.
    """
    attributes.setdefault("time_range", time_range_text(from_s, to_s))
    detection = fo.TemporalDetection.from_timestamps([from_s, to_s], metadata=metadata, **attributes)
    first, last = detection.support
    total = metadata.total_frame_count or last
    detection.support = [min(max(1, first), total), min(max(first, last), total)]
    return detection


def events_to_detections(
    events: list[dict], metadata: fo.VideoMetadata, settings_hash: str
) -> tuple[fo.TemporalDetections, list[str]]:
    """Caption events → ``TemporalDetections`` (label = description, confidence, seconds kept as attributes).

    Returns:
        the labels and the list of sanitising changes (empty when the model's times were clean).
    """
    clean, changes = sanitize_events(events, metadata.duration or None)
    detections = [
        _detection(
            event["start"],
            event["end"],
            metadata,
            label=event["description"],
            confidence=event.get("confidence"),
            start_s=float(event["start"]),
            end_s=float(event["end"]),
        )
        for event in clean
    ]
    detections = [stamp(detection) for detection in detections]
    return fo.TemporalDetections(detections=detections, marlin_settings=settings_hash), changes


def caption_to_detections(result: dict, metadata: fo.VideoMetadata, settings_hash: str) -> fo.TemporalDetections:
    """A caption result → the events field's labels, flagged ``format_ok`` / ``truncated`` / ``sanitized``.

    The caption operator and the zoo model (``apply_model``) both write exactly this.
    """
    detections, changes = events_to_detections(result["events"], metadata, settings_hash)
    detections.format_ok = bool(result.get("format_ok", True))
    detections.truncated = bool(result.get("truncated", False))
    if changes:
        detections.sanitized = changes
    for kind, attribute in TEXT_HASHES.items():
        detections.set_field(attribute, text_hash(str(result.get(kind) or "")))
    return detections


def find_to_detection(
    result: dict, metadata: fo.VideoMetadata, settings_hash: str
) -> tuple[fo.TemporalDetection | None, list[str]]:
    """One find result → a ``TemporalDetection`` labelled with the query, or None when not found."""
    span, changes = sanitize_span(result["span"], metadata.duration or None)
    if span is None:
        return None, changes
    detection = _detection(
        span[0],
        span[1],
        metadata,
        label=result["query"],
        confidence=result.get("confidence"),
        start_s=float(span[0]),
        end_s=float(span[1]),
        raw=result["raw"],
        format_ok=bool(result["format_ok"]),
        marlin_settings=settings_hash,
    )
    return stamp(detection), changes


def find_answers_to_detections(
    answers: list[dict], metadata: fo.VideoMetadata, settings_hash: str
) -> tuple[fo.TemporalDetections, list[str]]:
    """Find answers for one video → ``(labels of the queries found, queries not found)``, nothing merged.

    ``searched`` holds ``[query, settings hash]`` pairs (queries may hold "." which MongoDB keys cannot),
    as the find operator stores them; the zoo model writes exactly this.
    """
    detections, not_found = [], []
    for answer in answers:
        detection, _ = find_to_detection(answer, metadata, settings_hash)
        if detection is None:
            not_found.append(answer["query"])
        else:
            detections.append(detection)
    searched = [[answer["query"], settings_hash] for answer in answers]
    return fo.TemporalDetections(detections=detections, searched=searched), not_found


def segments_to_detections(segments, metadata: fo.VideoMetadata) -> fo.TemporalDetections:
    """Ground-truth segments (seconds) → ``TemporalDetections`` labelled with their sentences."""
    return fo.TemporalDetections(
        detections=[
            _detection(s.start_s, s.end_s, metadata, label=s.sentence, start_s=s.start_s, end_s=s.end_s)
            for s in segments
        ]
    )


def detection_span_s(detection: fo.TemporalDetection, metadata: fo.VideoMetadata) -> tuple[float, float]:
    """A detection's ``(start_s, end_s)``: the seconds it was made from, else its frames converted back."""
    stored = [detection.get_field(name) if detection.has_field(name) else None for name in ("start_s", "end_s")]
    if None not in stored:
        return float(stored[0]), float(stored[1])
    start_s, end_s = detection.to_timestamps(metadata=metadata)
    return float(start_s), float(end_s)


def is_marlin_label(label) -> bool:
    """Whether Marlin made this label: it carries the ``marlin_settings`` fingerprint Marlin stamps."""
    return label is not None and hasattr(label, "has_field") and label.has_field("marlin_settings") \
        and label.get_field("marlin_settings") is not None


def samples_with_foreign_labels(collection, field: str) -> int:
    """How many samples hold values in ``field`` that Marlin did not make (kept unless ``overwrite``).

    A ``TemporalDetections`` field counts when its container and at least one detection lack Marlin's
    fingerprint; any other field (scene, raw caption, not-found list) counts when it holds a value and no
    fingerprint, i.e. always: those are plain values, owned by the labels field beside them (see
    :func:`operators.caption` ownership).
    """
    from fiftyone import ViewField as F

    dataset = collection._root_dataset
    if not dataset.has_sample_field(field):
        return 0
    schema_field = dataset.get_field(field)
    if getattr(schema_field, "document_type", None) is fo.TemporalDetections:
        foreign = F("detections").filter(~F("marlin_settings").exists()).length() > 0
        return len(collection.match(F(field).exists() & ~F(f"{field}.marlin_settings").exists()
                                    & F(field).apply(foreign)))
    return len(collection.exists(field))


def field_ownership(dataset: fo.Dataset, field: str) -> tuple[int, int]:
    """``(samples holding Marlin's labels in field, samples holding labels Marlin did not make there)``.

    A ``TemporalDetections`` field holds Marlin's labels when the container carries Marlin's stamp (the
    caption fingerprint, find's ``searched`` list) or a detection carries ``marlin_hash``; it holds labels
    Marlin did not make when a detection has no ``marlin_hash``. Any other field: every non-empty value is
    counted as not Marlin's. A field holding the second kind and none of the first (ground truth, say) is
    someone else's: the operators write there only with ``overwrite`` (:mod:`operators.run.validation`).
    """
    if not dataset.has_sample_field(field):
        return 0, 0
    collection = dataset._sample_collection
    if getattr(dataset.get_field(field), "document_type", None) is not fo.TemporalDetections:
        return 0, collection.count_documents({field: {"$nin": [None, "", []]}})
    marlin = collection.count_documents({"$or": [
        {f"{field}.marlin_settings": {"$exists": True, "$ne": None}},
        {f"{field}.searched": {"$exists": True}},
        {f"{field}.detections.{MARLIN_HASH}": {"$exists": True}},
    ]})
    foreign = collection.count_documents({f"{field}.detections": {"$elemMatch": {MARLIN_HASH: {"$exists": False}}}})
    return marlin, foreign


def samples_with_foreign_text(dataset: fo.Dataset, field: str, events_field: str) -> int:
    """How many samples hold a string in ``field`` beside events Marlin did not stamp (so not Marlin's)."""
    if not dataset.has_sample_field(field):
        return 0
    return dataset._sample_collection.count_documents(
        {field: {"$nin": [None, ""]}, f"{events_field}.marlin_settings": {"$in": [None]}})
