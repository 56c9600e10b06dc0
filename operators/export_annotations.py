"""``@marlin/marlin/export_annotations``: a TemporalDetections field written as a benchmark / evaluator file.

Any view, any ``TemporalDetections`` field (Marlin's events or find answers, or imported ground
truth): each sample becomes one video (id = file name without extension), each detection one
segment (label = sentence or query, its seconds as Marlin stored them, else its frames converted
back). Formats: :data:`marlin_core.formats.annotation_export.EXPORT_FORMATS`. Samples whose field is empty
(never processed) are left out; a processed video with no detection is written with no segment.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

import fiftyone as fo
import fiftyone.operators as foo
import fiftyone.operators.types as types

from marlin_core.formats.annotation_export import EXPORT_FORMATS, write_annotations
from marlin_core.formats.annotations import Segment, VideoAnnotation

from .adapters.labels import detection_span_s
from .app import run_errors
from .base import SdkCallable

FORMAT_LABELS = {
    "activitynet": "ActivityNet Captions JSON (dense captions; training, densevid_eval references)",
    "densevid": "densevid_eval submission JSON (dense-caption predictions)",
    "timelens": "TimeLens-Bench JSON (grounding: duration, spans, queries)",
    "charades": "Charades-STA text (grounding: video_id start end##sentence)",
}
DEFAULT_FIELD = "marlin_events"


def view_annotations(view, field: str) -> tuple[dict[str, VideoAnnotation], int]:
    """``({video id: VideoAnnotation}, samples left out because the field is empty)`` of ``view``.

    Raises:
        ValueError: the field is missing or not ``TemporalDetections``, two samples share a video id,
            or a sample's video metadata cannot be read (each names the field or the files).
    """
    view = videos_of(view)
    schema_field = view.get_field(field) if view.has_sample_field(field) else None
    if getattr(schema_field, "document_type", None) is not fo.TemporalDetections:
        raise ValueError(f"'{field}' is not a TemporalDetections field of this dataset")
    labelled = view.exists(field)
    labelled.compute_metadata()
    annotations, skipped, sources = {}, len(view) - len(labelled), {}
    for sample in labelled.select_fields(field):
        video_id = Path(sample.filepath).stem
        if video_id in sources:
            raise ValueError(f"two samples share the video id '{video_id}': {sources[video_id]} and "
                             f"{sample.filepath}; export a view with one of them")
        sources[video_id] = sample.filepath
        if sample.metadata is None:
            raise ValueError(f"{sample.filepath}: cannot read video metadata; fix or leave out this sample")
        segments = [Segment(*detection_span_s(detection, sample.metadata), detection.label or "")
                    for detection in sample[field].detections]
        annotations[video_id] = VideoAnnotation(video_id, sample.metadata.duration, segments)
    return annotations, skipped


def videos_of(view):
    """The videos behind ``view``: a clips view (search's results) maps to its source videos, in order.

    A clips view holds one clip per moment and drops the source's other ``TemporalDetections``
    fields, so exporting ``marlin_events`` from it (the App's current view after a search) said the
    field "is not a TemporalDetections field"; the videos those clips come from hold it.
    """
    if not getattr(view, "_is_clips", False):
        return view
    sample_ids = list(dict.fromkeys(str(sample_id) for sample_id in view.values("sample_id")))
    return view._source_collection.select(sample_ids, ordered=True)


def export_annotations(view, field: str, path: str, fmt: str, overwrite: bool = False) -> dict:
    """Write ``field`` of ``view`` to ``path`` in format ``fmt``; nothing is written on any error.

    Returns:
        ``{"path", "format", "videos", "segments", "skipped"}`` (skipped: samples with an empty field).
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {sorted(EXPORT_FORMATS)}, not {fmt!r}")
    annotations, skipped = view_annotations(view, field)
    written = write_annotations(annotations, path, fmt, overwrite=overwrite)
    return {"path": str(written), "format": fmt, "videos": len(annotations),
            "segments": sum(len(a.segments) for a in annotations.values()), "skipped": skipped}


def download_url(path: str) -> str:
    """The App server's URL of a file it can read (its ``/media`` route, relative to the App's address)."""
    return "/media?" + urlencode({"filepath": path})


class ExportAnnotations(SdkCallable, foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(name="export_annotations", label="Marlin: export temporal labels",
                                  dynamic=True)

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.view_target(ctx, action_description="Export")
        fields = []
        if ctx.dataset is not None:
            schema = ctx.dataset.get_field_schema(embedded_doc_type=fo.TemporalDetections)
            fields = sorted(schema)
        field_choices = types.Dropdown(label="Field")
        for name in fields:
            field_choices.add_choice(name, label=name)
        default_field = DEFAULT_FIELD if DEFAULT_FIELD in fields else (fields[0] if fields else None)
        inputs.enum("field", field_choices.values(), default=default_field, view=field_choices, label="Field",
                    description="TemporalDetections field to export (events, find answers or ground truth).")
        fmt = types.RadioGroup()
        for name in EXPORT_FORMATS:
            fmt.add_choice(name, label=FORMAT_LABELS[name])
        inputs.enum("format", fmt.values(), default="activitynet", view=fmt, label="Format")
        path = (ctx.params.get("path") or "").strip()
        inputs.str("path", default="", label="Output file", description="Where to write (a new file).",
                   invalid=not path, error_message="Enter the path of the file to write.")
        inputs.bool("overwrite", default=False, label="Replace an existing file",
                    description="By default an existing file is never replaced.")
        if path and Path(path).expanduser().exists() and not ctx.params.get("overwrite"):
            inputs.view("file_exists", types.Warning(label=f"{path} exists: tick 'Replace an existing file'."))
        return types.Property(inputs, view=types.View(label="Marlin: export temporal labels"))

    def execute(self, ctx):
        result = export_annotations(ctx.target_view(), ctx.params.get("field") or DEFAULT_FIELD,
                                    ctx.params.get("path") or "", ctx.params.get("format") or "activitynet",
                                    overwrite=bool(ctx.params.get("overwrite")))
        if run_errors.streamed_to_app(ctx):
            # the file is written where the App's server runs; the browser fetches it from the server's /media
            # route (FiftyOne's built-in browser_download), so a local App user also gets it as a download
            ctx.ops.browser_download(download_url(result["path"]), filename=Path(result["path"]).name)
        return result

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("path", label="Written to (on the App's server; also offered as a browser download)")
        outputs.int("videos", label="Videos")
        outputs.int("segments", label="Segments")
        outputs.int("skipped", label="Samples left out (field empty)")
        return types.Property(outputs, view=types.View(label="Marlin: labels exported"))
