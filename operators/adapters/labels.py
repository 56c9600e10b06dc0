"""FiftyOne adapter: Marlin results (seconds) → ``TemporalDetection`` labels (1-based inclusive frames).

The only place where seconds become frames. Times are sanitised first (clamped to the video, swapped
when reversed, empty ones dropped) and what was changed is returned so the operator can record it.
"""

from __future__ import annotations

import fiftyone as fo

from marlin_core.sanitize import sanitize_events, sanitize_span

from .display import time_range_text


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
    return detection, changes


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
