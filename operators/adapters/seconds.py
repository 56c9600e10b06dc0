"""Events' spans in seconds on the App's grid tiles: a ``<field>_seconds`` list of strings per sample.

The App draws each ``TemporalDetection`` on a tile as ``label [first, last]`` in frames (FiftyOne
1.22's looker tags, ``elements/common/tags.ts``): the text is built from ``label`` and ``support``
alone. Label attributes such as ``time_range`` are shown in the modal only, the tile's "shown label
attributes" option applies to classifications, and no colour-scheme, ``app_config`` or field-type
option changes it. What the App does draw as text on tiles is a list of strings, one tag per item
(three, then "and N more"), coloured like the field. So every Marlin writer keeps, beside each
``TemporalDetections`` field it writes, a ``ListField(StringField)`` ``<field>_seconds`` holding
``"label 12.0–15.5 s"`` per event, derived from the labels in the same write (:func:`seconds_updates`
inside :func:`..run.writes.update_sample`, or :func:`sync_seconds` for bulk writers). Labels are
only read. A hand edit of the labels in the App leaves the texts as they were until Marlin's next
write of that field (or :func:`sync_seconds`).
"""

from __future__ import annotations

from collections.abc import Mapping

import fiftyone as fo

from .display import seconds_field, time_range_text
from .labels import marlin_owns

__all__ = ["seconds_field", "span_text", "span_texts", "with_seconds_fields", "seconds_updates", "is_seconds_field",
           "ensure_seconds_field", "sync_seconds"]

SECONDS_FIELD_KWARGS = dict(ftype=fo.ListField, subfield=fo.StringField)


def span_text(detection, metadata) -> str:
    """One event as a tile shows it: ``"label 12.0–15.5 s"`` (frames when the video's frame rate is unknown).

    Marlin's own unchanged labels use the seconds they were made from (as their ``time_range``); any
    other label (the user's, or Marlin's edited by hand) is converted from its frames.
    """
    label = detection.label or "event"
    if marlin_owns(detection) and detection.has_field("start_s") and detection.has_field("end_s"):
        return f"{label} {time_range_text(float(detection['start_s']), float(detection['end_s']))}"
    first, last = (list(detection.support) + [None, None])[:2] if detection.support else (None, None)
    if getattr(metadata, "frame_rate", None) and first is not None:
        start_s, end_s = detection.to_timestamps(metadata=metadata)
        return f"{label} {time_range_text(float(start_s), float(end_s))}"
    return f"{label} frames {first}–{last}"


def span_texts(labels, metadata) -> list[str] | None:
    """The texts of a ``TemporalDetections`` value, in time order; None for no value."""
    if labels is None:
        return None
    detections = sorted(labels.detections or [], key=lambda d: tuple(d.support or (0, 0)))
    return [span_text(detection, metadata) for detection in detections]


def with_seconds_fields(fields: Mapping[str, dict]) -> dict:
    """``fields`` (``{name: add_sample_field kwargs}``) plus the seconds field of each ``TemporalDetections`` one."""
    out = dict(fields)
    for name, kwargs in fields.items():
        if kwargs.get("embedded_doc_type") is fo.TemporalDetections:
            out.setdefault(seconds_field(name), dict(SECONDS_FIELD_KWARGS))
    return out


def is_seconds_field(dataset: fo.Dataset, field: str) -> bool:
    """Whether ``field``'s seconds field is declared as Marlin declares it (a user's field of that name
    with another type is never written)."""
    declared = dataset.get_field(seconds_field(field)) if dataset.has_sample_field(seconds_field(field)) else None
    return isinstance(declared, fo.ListField) and isinstance(declared.field, fo.StringField)


def seconds_updates(dataset: fo.Dataset, updates: Mapping, sample) -> dict:
    """The seconds fields to write with ``updates`` (``{field: new value}`` of one sample, as read in ``sample``)."""
    metadata = updates.get("metadata") or getattr(sample, "metadata", None)
    out = {}
    for field, value in updates.items():
        if not (isinstance(value, fo.TemporalDetections) or value is None) or seconds_field(field) in updates:
            continue
        declared = dataset.get_field(field) if dataset.has_sample_field(field) else None
        if getattr(declared, "document_type", None) is not fo.TemporalDetections:
            continue
        if is_seconds_field(dataset, field):
            out[seconds_field(field)] = span_texts(value, metadata)
    return out


def ensure_seconds_field(dataset: fo.Dataset, field: str) -> bool:
    """Declare ``field``'s seconds field when missing; False when a field of that name has another type."""
    if not dataset.has_sample_field(seconds_field(field)):
        dataset.add_sample_field(seconds_field(field), **SECONDS_FIELD_KWARGS)
    return is_seconds_field(dataset, field)


def sync_seconds(collection, field: str) -> int:
    """Rewrite ``field``'s seconds texts on the samples of ``collection`` from their current labels.

    For writers that set many samples at once (import, review); declares the seconds field if needed.

    Returns:
        how many samples were written.
    """
    dataset = collection._root_dataset
    if not dataset.has_sample_field(field) or not ensure_seconds_field(dataset, field):
        return 0
    ids, labels, metadata = collection.values(["id", field, "metadata"])
    texts = {sample_id: span_texts(value, meta) for sample_id, value, meta in zip(ids, labels, metadata)}
    if texts:
        collection.set_values(seconds_field(field), texts, key_field="id")
    return len(texts)
