"""``@marlin/marlin/import_annotations``: ground truth from ActivityNet Captions JSON or Charades-STA text.

The file is parsed and validated completely first (:mod:`marlin_core.annotations`); a malformed file
imports nothing. Video ids are matched to samples by file name without extension (``v_abc.mp4`` ↔
``v_abc``).
"""

from __future__ import annotations

from pathlib import Path

import fiftyone.operators as foo
import fiftyone.operators.types as types

from marlin_core.annotations import load_activitynet_captions, load_charades_sta

from .labels import segments_to_detections

LOADERS = {"activitynet": load_activitynet_captions, "charades": load_charades_sta}


def import_annotations(view, path: str, fmt: str, gt_field: str = "ground_truth") -> dict:
    """Write the annotations of ``path`` to ``gt_field``; return counts and the ids left unmatched.

    Raises:
        AnnotationFormatError: the file is malformed (each place and cause listed; nothing written).
        ValueError: unknown format.
    """
    if fmt not in LOADERS:
        raise ValueError(f"format must be one of {sorted(LOADERS)}, not {fmt!r}")
    annotations = LOADERS[fmt](path)
    view.compute_metadata()
    matched, no_metadata = 0, []
    for sample in view.iter_samples(autosave=True):
        annotation = annotations.get(Path(sample.filepath).stem)
        if annotation is None:
            continue
        if sample.metadata is None:
            no_metadata.append(sample.filepath)
            continue
        sample[gt_field] = segments_to_detections(annotation.segments, sample.metadata)
        matched += 1
    stems = {Path(p).stem for p in view.values("filepath")}
    unmatched = sorted(set(annotations) - stems)
    return {"imported": matched, "unmatched_ids": unmatched[:50], "unmatched": len(unmatched),
            "unreadable_videos": no_metadata}


class ImportAnnotations(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(name="import_annotations", label="Marlin: import temporal ground truth",
                                  dynamic=True)

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.view_target(ctx, action_description="Import into")
        inputs.str("path", default="", label="Annotation file",
                   description="ActivityNet Captions JSON or Charades-STA text (video_id start end##sentence).")
        fmt = types.RadioGroup()
        fmt.add_choice("activitynet", label="ActivityNet Captions JSON")
        fmt.add_choice("charades", label="Charades-STA text")
        inputs.enum("format", fmt.values(), default="activitynet", view=fmt, label="Format")
        inputs.str("gt_field", default="ground_truth", label="Field",
                   description="TemporalDetections field to write (label = sentence).")
        return types.Property(inputs, view=types.View(label="Marlin: import ground truth"))

    def execute(self, ctx):
        result = import_annotations(ctx.target_view(), ctx.params.get("path", ""),
                                    ctx.params.get("format", "activitynet"),
                                    ctx.params.get("gt_field") or "ground_truth")
        if not ctx.delegated:
            ctx.trigger("reload_dataset")
        return result
