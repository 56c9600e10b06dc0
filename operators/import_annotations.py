"""``@marlin/marlin/import_annotations``: ground truth from ActivityNet Captions, Charades-STA or TimeLens-Bench.

The file is parsed and validated completely first (:mod:`marlin_core.formats.annotations`); a malformed file
imports nothing. Video ids are matched to samples by file name without extension (``v_abc.mp4`` ↔
``v_abc``). A field that already holds labels on a matched sample is replaced only with
``overwrite``; otherwise nothing is written and the result says why. All labels are computed before
the first write, and written in one bulk update.
"""

from __future__ import annotations

import os

from pathlib import Path

import bson
import fiftyone as fo
import fiftyone.operators as foo
import fiftyone.operators.types as types

from marlin_core.formats.annotations import LOADERS, load_annotations, segments_past_duration

from .adapters.display import colour_fields, seconds_field, set_default_active
from .adapters.labels import segments_to_detections
from .adapters.seconds import sync_seconds
from .base import SdkCallable

FORMAT_LABELS = {
    "activitynet": "ActivityNet Captions JSON",
    "charades": "Charades-STA text (video_id start end##sentence)",
    "timelens": "TimeLens-Bench JSON (duration, spans, queries)",
}
DEFAULT_FIELD = "ground_truth"
MAX_LISTED = 50  # ids and warnings shown in the result; the counts are always complete
# One sample's labels as stored (BSON): a sample is one MongoDB document of at most 16 MB, which also holds
# its other fields; the whole file is refused before any write when one video's labels would not fit.
MAX_LABEL_BYTES = 8 * 1024**2


class ImportRefused(ValueError):
    """Nothing was written: the import would replace labels without ``overwrite``, or the field has another type."""


def _field_problem(view, gt_field: str) -> str | None:
    """Why ``gt_field`` cannot hold temporal detections, or None."""
    if not gt_field or "." in gt_field or gt_field.startswith("_"):
        return f"'{gt_field}' is not a usable field name (no dots, no leading underscore)"
    field = view._dataset.get_field(gt_field) if view._dataset.has_sample_field(gt_field) else None
    if field is None:
        return None
    if getattr(field, "document_type", None) is not fo.TemporalDetections:
        return f"field '{gt_field}' exists with another type ({type(field).__name__}); choose another field"
    return None


def import_annotations(view, path: str, fmt: str, gt_field: str = DEFAULT_FIELD, overwrite: bool = False,
                       skip_empty_spans: bool = False) -> dict:
    """Write the annotations of ``path`` to ``gt_field`` of the matching samples of ``view``.

    Returns:
        ``imported`` (samples written), ``replaced`` (of those, samples whose labels were replaced),
        ``matched_ids`` / ``unmatched_ids`` (video ids of the file with / without a sample; first
        50), ``unmatched``, ``unreadable_videos``, ``warnings`` (segments past a video's end, ...).

    Raises:
        AnnotationFormatError: empty path, missing file, or a malformed file (each place and cause
            listed; nothing written).
        ImportRefused: labels would be replaced without ``overwrite``, or the field has another type.
        ValueError: unknown format.
    """
    annotations = load_annotations(path, fmt, skip_empty_spans=skip_empty_spans)
    problem = _field_problem(view, gt_field)
    if problem:
        raise ImportRefused(f"nothing imported: {problem}")
    matched = view.match(fo.ViewField("filepath").is_in(
        [p for p in view.values("filepath") if Path(p).stem in annotations]))
    if not overwrite and view._dataset.has_sample_field(gt_field):
        existing = matched.exists(gt_field)
        if len(existing):
            raise ImportRefused(
                f"nothing imported: {len(existing)} matched sample(s) already have labels in '{gt_field}' "
                f"(e.g. {Path(existing.first().filepath).name}); tick overwrite to replace them or choose another field")
    matched.compute_metadata()
    labels, warnings, unreadable, replaced = {}, [], [], 0
    for sample in matched.select_fields(["metadata", gt_field] if view._dataset.has_sample_field(gt_field)
                                        else ["metadata"]):
        annotation = annotations[Path(sample.filepath).stem]
        if sample.metadata is None or not sample.metadata.duration:
            unreadable.append(sample.filepath)
            continue
        late = segments_past_duration(annotation, sample.metadata.duration)
        if late:
            warnings.append(f"video '{annotation.video_id}': {len(late)} segment(s) end after its "
                            f"{sample.metadata.duration:.2f} s (e.g. [{late[0].start_s}, {late[0].end_s}] s); "
                            "imported as written, their frames clamped to the last frame")
        if sample.has_field(gt_field) and sample[gt_field] is not None:
            replaced += 1
        labels[sample.id] = segments_to_detections(annotation.segments, sample.metadata)
        size = len(bson.BSON.encode(labels[sample.id].to_dict()))
        if size > MAX_LABEL_BYTES:
            raise ImportRefused(f"nothing imported: video '{annotation.video_id}' ({sample.filepath}) would get "
                                f"{size / 1024**2:.1f} MB of labels, more than the {MAX_LABEL_BYTES // 1024**2} MB "
                                "a sample can hold; split its segments or shorten their sentences")
    if labels:
        _write_all_or_nothing(view._dataset, gt_field, labels)
        colour_fields(view._dataset, ground_truth=[gt_field])  # its tiles' spans in seconds too
        set_default_active(view._dataset, show=[seconds_field(gt_field)])
    matched_ids = sorted({Path(p).stem for p in matched.values("filepath")})
    unmatched_ids = sorted(set(annotations) - set(matched_ids))
    warnings.extend(f"cannot read video metadata of {p}: not imported" for p in unreadable)
    return {"imported": len(labels), "replaced": replaced, "field": gt_field,
            "matched": len(matched_ids), "matched_ids": matched_ids[:MAX_LISTED],
            "unmatched": len(unmatched_ids), "unmatched_ids": unmatched_ids[:MAX_LISTED],
            "unreadable_videos": unreadable[:MAX_LISTED], "warnings": warnings[:MAX_LISTED],
            "warning_count": len(warnings)}


def _write_all_or_nothing(dataset, gt_field: str, labels: dict) -> None:
    """Write ``{sample id: labels}``; if the write fails part way, put back what the field held before."""
    targets = dataset.select(list(labels))
    before = dict(zip(targets.values("id"), targets.values(gt_field))) if dataset.has_sample_field(gt_field) else {}
    try:
        targets.set_values(gt_field, labels, key_field="id")
    except Exception:
        if before:
            targets.set_values(gt_field, before, key_field="id")
        else:
            targets.set_field(gt_field, None).save()
        raise
    sync_seconds(targets, gt_field)  # the spans in seconds on grid tiles (untouched when the write failed)


def _path_problem(path: str) -> str | None:
    """Why the annotation file cannot be read (shown on the input before Execute), or None."""
    if not path:
        return "Enter the path of the annotation file."
    expanded = os.path.expanduser(path)
    if not os.path.exists(expanded):
        return f"No file '{path}' on the App's machine."
    if not os.path.isfile(expanded):
        return f"'{path}' is a folder, not an annotation file."
    if not os.access(expanded, os.R_OK):
        return f"'{path}' cannot be read (permissions)."
    return None


class ImportAnnotations(SdkCallable, foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(name="import_annotations", label="Marlin: import temporal ground truth",
                                  dynamic=True)

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.view_target(ctx, action_description="Import into")
        path = (ctx.params.get("path") or "").strip()
        path_problem = _path_problem(path)
        inputs.str("path", default="", label="Annotation file",
                   description="ActivityNet Captions JSON, Charades-STA text or TimeLens-Bench JSON (a path "
                               "on the machine the App server runs on).",
                   invalid=path_problem is not None, error_message=path_problem)
        fmt = types.RadioGroup()
        for name in LOADERS:
            fmt.add_choice(name, label=FORMAT_LABELS[name])
        inputs.enum("format", fmt.values(), default="activitynet", view=fmt, label="Format")
        gt_field = ctx.params.get("gt_field") or DEFAULT_FIELD
        overwrite = bool(ctx.params.get("overwrite"))
        exists = ctx.dataset is not None and ctx.dataset.has_sample_field(gt_field)
        problem = _field_problem(ctx.dataset.view(), gt_field) if ctx.dataset is not None else None
        holds_labels = exists and not problem and len(ctx.target_view().exists(gt_field)) > 0
        inputs.str("gt_field", default=DEFAULT_FIELD, label="Field",
                   description="TemporalDetections field to write (label = sentence or query).",
                   invalid=bool(problem) or (holds_labels and not overwrite),
                   error_message=problem or f"'{gt_field}' holds labels: tick 'Replace existing labels' "
                                            "or choose another field.")
        inputs.bool("overwrite", default=False, label="Replace existing labels",
                    description="Needed when the field already holds labels on the matched samples.")
        if holds_labels and overwrite:
            inputs.view("field_exists", types.Warning(
                label=f"Field '{gt_field}' holds labels: those of the matched samples will be replaced."))
        inputs.bool("skip_empty_spans", default=False, label="Skip empty spans",
                    description="Leave out segments with start >= end instead of refusing the file.")
        return types.Property(inputs, view=types.View(label="Marlin: import ground truth"))

    def execute(self, ctx):
        result = import_annotations(ctx.target_view(), ctx.params.get("path") or "",
                                    ctx.params.get("format") or "activitynet",
                                    ctx.params.get("gt_field") or DEFAULT_FIELD,
                                    overwrite=bool(ctx.params.get("overwrite")),
                                    skip_empty_spans=bool(ctx.params.get("skip_empty_spans")))
        if not ctx.delegated:
            ctx.trigger("reload_dataset")
        return result

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.int("imported", label="Samples imported")
        outputs.int("replaced", label="Samples whose labels were replaced")
        outputs.int("matched", label="Video ids matched to samples")
        results = getattr(ctx, "results", None) or {}
        shown = (lambda name: not results or bool(results.get(name)))  # no empty headings
        if shown("matched_ids"):
            outputs.list("matched_ids", types.String(), label="Matched video ids (first 50)")
        outputs.int("unmatched", label="Video ids with no sample (by file name without extension)")
        if shown("unmatched_ids"):
            outputs.list("unmatched_ids", types.String(), label="Unmatched video ids (first 50)")
        if shown("unreadable_videos"):
            outputs.list("unreadable_videos", types.String(), label="Videos whose metadata cannot be read")
        if shown("warnings"):
            outputs.list("warnings", types.String(), label="Warnings (first 50)")
        return types.Property(outputs, view=types.View(label="Marlin: ground truth imported"))
