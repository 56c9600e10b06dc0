"""How Marlin's labels look in the App: filterable attributes, readable times, separate colours.

The App's sidebar filters only attributes declared in the dataset's schema; labels written with
extra attributes (``confidence`` is built in, ``start_s``, ``end_s``, ``raw``, ``format_ok``,
``truncated``...) leave them undeclared until someone calls ``add_dynamic_sample_fields``. Call
:func:`show_marlin_labels` after writing labels; it is idempotent and cheap to repeat.
"""

from __future__ import annotations

import fiftyone as fo

__all__ = [
    "FILTERABLE_ATTRIBUTES",
    "PREDICTION_COLOUR",
    "GROUND_TRUTH_COLOUR",
    "time_range_text",
    "seconds_field",
    "show_marlin_labels",
    "declare_label_attributes",
    "app_colour_scheme",
    "colour_fields",
    "hide_in_sidebar",
    "set_default_active",
]

# Marlin's predictions and ground truth in clearly different hues (FiftyOne's palette orange and a teal).
PREDICTION_COLOUR = "#ff6d04"
GROUND_TRUTH_COLOUR = "#00b3a1"
# The attributes Marlin writes that a user filters on (``confidence`` and ``support`` are built in).
FILTERABLE_ATTRIBUTES = ("start_s", "end_s", "time_range", "raw", "format_ok", "truncated")


def seconds_field(field: str) -> str:
    """The name of the field that shows ``field``'s events in seconds on grid tiles (see :mod:`.seconds`)."""
    return f"{field}_seconds"


def time_range_text(start_s: float, end_s: float) -> str:
    """An event's span as the App shows it beside the label, e.g. ``"12.0–15.5 s"``."""
    return f"{start_s:.1f}–{end_s:.1f} s"


def declare_label_attributes(dataset: fo.Dataset, field: str) -> None:
    """Declare the attributes of :data:`FILTERABLE_ATTRIBUTES` found on ``field`` (per label or per field).

    Only these: bookkeeping attributes (e.g. find's list of searched queries) stay undeclared, so
    their mixed shapes never constrain later writes.
    """
    if not dataset.has_sample_field(field):
        return
    dynamic = dataset.get_dynamic_field_schema(fields=[field])
    wanted = {path: spec for path, spec in dynamic.items() if path.rsplit(".", 1)[-1] in FILTERABLE_ATTRIBUTES}
    if wanted:
        dataset.add_dynamic_sample_fields(fields=wanted)


def colour_fields(dataset: fo.Dataset, *, predictions=(), ground_truth=()) -> None:
    """Colour predictions and ground truth apart in the App, keeping any colour the user chose."""
    scheme = dataset.app_config.color_scheme or fo.ColorScheme()
    entries = list(scheme.fields or [])
    coloured = {entry.get("path") for entry in entries}
    wanted = [(f, PREDICTION_COLOUR) for f in predictions] + [(f, GROUND_TRUTH_COLOUR) for f in ground_truth]
    # each field's spans in seconds (its tags on grid tiles) in the field's colour
    wanted += [(seconds_field(f), colour) for f, colour in wanted if f and dataset.has_sample_field(seconds_field(f))]
    added = [{"path": f, "fieldColor": colour} for f, colour in wanted if f and f not in coloured]
    if not added:
        return
    scheme.fields = entries + added
    if not scheme.color_by:
        scheme.color_by = "field"
    dataset.app_config.color_scheme = scheme
    dataset.save()


def hide_in_sidebar(dataset: fo.Dataset, fields) -> None:
    """Leave ``fields`` unchecked in the App's sidebar by default (their labels not drawn on tiles)."""
    set_default_active(dataset, hide=fields)


def set_default_active(dataset: fo.Dataset, *, show=(), hide=()) -> None:
    """Check ``show`` and uncheck ``hide`` in the App's sidebar by default, the rest as FiftyOne has it.

    FiftyOne checks label fields by default. An exclusion list checks *every* sidebar path it does not
    name (ids, file paths, metadata: all drawn on tiles), so Marlin's list also names the paths FiftyOne
    leaves unchecked: non-label fields, except the events' seconds fields. A user's explicit list of
    shown fields is kept, only gaining ``show`` and losing ``hide``.
    """
    show = [name for name in show if name and dataset.has_sample_field(name)]
    hide = [name for name in hide if name]
    if not show and not hide:
        return
    active = dataset.app_config.active_fields
    if active is not None and active.paths and not active.exclude:
        paths = [path for path in active.paths if path not in hide]
        paths += [name for name in show if name not in active.paths]
        exclude = False
    else:
        before = list(active.paths) if active is not None and active.paths else []
        paths = list(dict.fromkeys([path for path in before + hide + _unchecked_by_default(dataset)
                                    if path not in show]))
        exclude = True
    if active is not None and bool(active.exclude) == exclude and list(active.paths or []) == paths:
        return
    if not exclude and not paths:
        return
    from fiftyone.core.odm.dataset import ActiveFields

    dataset.app_config.active_fields = ActiveFields(exclude=exclude, paths=paths)
    dataset.save()


# Fields FiftyOne adds in clips and frames views (``to_clips``: search's results), unchecked there by default.
GENERATED_VIEW_FIELDS = ("sample_id", "support", "frame_id", "frame_number")


def _unchecked_by_default(dataset: fo.Dataset) -> list[str]:
    """The sidebar paths FiftyOne leaves unchecked by default (non-label fields and their subfields, and
    those of clips and frames views), less the seconds fields of ``TemporalDetections`` fields, which
    Marlin shows on tiles."""
    seconds = {seconds_field(name) for name in dataset.get_field_schema(embedded_doc_type=fo.TemporalDetections)}
    frames = dataset.get_frame_field_schema() or {}
    paths = list(GENERATED_VIEW_FIELDS)
    for prefix, schema in (("", dataset.get_field_schema()), ("frames.", frames)):
        for name, field in schema.items():
            path = prefix + name
            document_type = getattr(field, "document_type", None)
            if path in seconds or (isinstance(document_type, type) and issubclass(document_type, fo.Label)):
                continue
            paths.append(path)
            if isinstance(field, fo.EmbeddedDocumentField):
                paths += [f"{path}.{sub}" for sub in field.get_field_schema() or {}]
    return paths


def _other_temporal_fields(dataset: fo.Dataset, ours: set[str]) -> list[str]:
    """The dataset's other ``TemporalDetections`` fields: ground truth, as far as Marlin can tell."""
    schema = dataset.get_field_schema(embedded_doc_type=fo.TemporalDetections)
    return [name for name in schema if name not in ours and not name.startswith("marlin_")]


def show_marlin_labels(view, field: str) -> None:
    """After a caption/find run: declare ``field``'s attributes and colour the fields apart.

    Labels are only read here: readable times (``time_range``) are set when Marlin makes a label
    (:mod:`.labels`), so a label someone else made never gains an attribute.

    Args:
        view: the samples the run wrote to.
        field: the ``TemporalDetections`` field the run wrote.
    """
    dataset = view._root_dataset
    declare_label_attributes(dataset, field)
    ground_truth = _other_temporal_fields(dataset, {field})
    colour_fields(dataset, predictions=[field], ground_truth=ground_truth)
    set_default_active(dataset, show=[seconds_field(name) for name in [field] + ground_truth])


def app_colour_scheme(stored: fo.ColorScheme | None, session: fo.ColorScheme | None) -> dict | None:
    """Params of the App's ``set_color_scheme`` adding the stored field colours its session lacks.

    The App takes its colours from the session's scheme, which its server builds from the dataset's
    stored scheme only when it first loads the dataset: colours stored later (a scheduled run, an SDK
    caption) are missing from it, even after a page reload. The result keeps every colour of the
    session (a user's unsaved choices too) and adds the stored ones for fields it does not colour.

    Args:
        stored: the dataset's ``app_config.color_scheme``.
        session: the App session's scheme, or None when unknown (then all stored colours are sent).

    Returns:
        ``{"color_by", "fields"}``, or None when the session already colours every stored field.
    """
    session_fields = [_plain(entry) for entry in (session.fields if session is not None else None) or []]
    coloured = {entry.get("path") for entry in session_fields}
    stored_fields = [_plain(entry) for entry in (stored.fields if stored is not None else None) or []]
    missing = [entry for entry in stored_fields if entry.get("path") and entry["path"] not in coloured]
    if not missing:
        return None
    color_by = (session.color_by if session is not None else None) or (stored.color_by if stored else None)
    return {"color_by": color_by or "field", "fields": session_fields + missing}


def _plain(entry) -> dict:
    """A colour-scheme field entry as the App takes it: a dict without empty keys."""
    entry = entry.to_dict() if hasattr(entry, "to_dict") else dict(entry)
    return {key: value for key, value in entry.items() if value is not None}
