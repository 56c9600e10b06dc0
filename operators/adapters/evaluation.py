"""FiftyOne adapter for evaluation: FiftyOne's ActivityNet-style matching plus the field's metrics.

Two modes, both stored as a FiftyOne evaluation run (``load_evaluation_results(eval_key)``) with
per-label ``<eval_key>`` = tp/fp/fn and ``<eval_key>_iou`` attributes, a per-sample
``<eval_key>_iou`` field (to sort by), and saved views to review the errors:

* ``events`` (caption events vs ground-truth segments, labels ignored): FiftyOne's
  ``evaluate_detections(method="activitynet", classwise=False)`` plus ActivityNet Captions'
  localisation precision / recall / F1 over tIoU 0.3/0.5/0.7/0.9 (:mod:`marlin_core.metrics`).
  Per-sample IoU = mean over ground-truth segments of the best tIoU of any prediction.
* ``grounding`` (find spans vs ground-truth spans, paired by query = label): FiftyOne's matching
  with ``classwise=True`` plus TimeLens' R1@{0.3,0.5,0.7} and mIoU, a query with no prediction
  counting as IoU 0. Per-sample IoU = mean over that sample's queries.

The aggregate table is kept in a custom run ``<eval_key>_marlin`` (``get_run_info(...).config``).

The user's label fields are only read. FiftyOne's matching writes tp/fp/fn onto the labels it matches
(and events mode must relabel every event for class-agnostic matching), so it runs on the evaluation's
own copies, ``<eval_key>_predictions`` and ``<eval_key>_ground_truth`` (cloned field by field, which
writes nothing else of a sample): a kill at any moment leaves every user label byte-identical, and a run
of find or caption at the same time keeps every answer. The review views show the copies.
"""

from __future__ import annotations

from contextlib import contextmanager

import fiftyone as fo
from fiftyone import ViewField as F

from marlin_core.metrics import dense_localization_metrics, grounding_metrics, temporal_iou

from .display import hide_in_sidebar
from .labels import detection_span_s

MODES = ("events", "grounding")
AGNOSTIC_LABEL = "event"


def own_fields(eval_key: str) -> tuple[str, str]:
    """The evaluation's copies of the predictions and ground truth: ``(<key>_predictions, <key>_ground_truth)``."""
    return f"{eval_key}_predictions", f"{eval_key}_ground_truth"


def drop_evaluation(dataset: fo.Dataset, eval_key: str) -> None:
    """Remove what an earlier (or killed) evaluation ``eval_key`` left: its run, copies and fields.

    Only the evaluation's own fields are deleted. A run registered by an older version on the user's
    fields is deleted through FiftyOne, which removes only its ``<eval_key>`` attributes from those labels.
    """
    if eval_key in dataset.list_evaluations():
        dataset.delete_evaluation(eval_key)
    for name in owned_fields(dataset, eval_key):
        if dataset.has_sample_field(name):
            dataset.delete_sample_field(name)


def owned_fields(dataset: fo.Dataset, eval_key: str) -> list[str]:
    """The copies an evaluation ``eval_key`` of Marlin made (recorded in its run before it made them)."""
    run_key = f"{eval_key}_marlin"
    if run_key not in dataset.list_runs():
        return []
    return list(getattr(dataset.get_run_info(run_key).config, "fields", None) or [])


def foreign_copy_fields(dataset: fo.Dataset, eval_key: str) -> list[str]:
    """Fields named like this evaluation's copies that it did not make (it would not overwrite them)."""
    ours = owned_fields(dataset, eval_key)
    return [name for name in own_fields(eval_key) if dataset.has_sample_field(name) and name not in ours]


def _copy_field(view, source: str, target: str) -> None:
    """Copy ``source`` into the evaluation's field ``target`` on the view's samples.

    The field is declared before any value is written (``clone_sample_field`` writes the values first, so a
    kill in between would leave values FiftyOne refuses to load); each sample's copy is one atomic update
    that writes nothing else.
    """
    dataset = view._root_dataset
    dataset.add_sample_field(target, fo.EmbeddedDocumentField, embedded_doc_type=fo.TemporalDetections)
    dataset._sample_collection.update_many(
        {"_id": {"$in": view.values("_id")}, source: {"$exists": True}},
        [{"$set": {target: f"${source}", "last_modified_at": "$$NOW"}}],
    )
    fo.Sample._reload_docs(dataset._sample_collection_name)


@contextmanager
def _one_label(view, fields: list[str]):
    """Give every event of the evaluation's copies the label ``event`` while FiftyOne matches.

    With ``classwise=False`` FiftyOne matches segments across labels but still calls a match "tp"
    only when the labels are equal; free-text descriptions never are. Only the copies are renamed
    (never the user's fields); a kill in between leaves renamed copies, which the next run replaces.
    """
    paths = [f"{field}.detections.label" for field in fields]
    originals = {path: view.values(path) for path in paths}
    try:
        for path, labels in originals.items():
            view.set_values(path, [[AGNOSTIC_LABEL] * len(row) if row else row for row in labels])
        yield
    finally:
        for path, labels in originals.items():
            view.set_values(path, labels)


def _spans(sample, field: str) -> list[tuple[str, tuple[float, float]]]:
    labels = sample[field] if sample.has_field(field) else None
    if labels is None:
        return []
    return [(d.label, detection_span_s(d, sample.metadata)) for d in labels.detections]


def _per_sample_ious(view, pred_field, gt_field, mode):
    """Per sample: ``(predicted spans, gt spans, mean IoU, [(gt span, pred span | None)])``."""
    rows = {}
    for sample in view.select_fields([pred_field, gt_field, "metadata"]).iter_samples():
        predicted, truth = _spans(sample, pred_field), _spans(sample, gt_field)
        if not truth:
            continue
        pairs = []
        for label, gt_span in truth:
            if mode == "grounding":
                same = [span for pred_label, span in predicted if pred_label == label]
                pairs.append((gt_span, same[0] if same else None))
            else:
                best = max(predicted, key=lambda p: temporal_iou(gt_span, p[1]), default=None)
                pairs.append((gt_span, best[1] if best else None))
        mean_iou = sum(temporal_iou(g, p) for g, p in pairs) / len(pairs)
        rows[sample.id] = ([span for _, span in predicted], [span for _, span in truth], mean_iou, pairs)
    return rows


def evaluate(view, pred_field: str, gt_field: str, *, mode: str = "events", eval_key: str = "marlin_eval",
             iou: float = 0.5) -> dict:
    """Run the evaluation; store the run, per-sample IoU and review views; return the summary table.

    Args:
        view: the samples to evaluate (videos with ``metadata``; computed when missing).
        pred_field / gt_field: ``TemporalDetections`` fields.
        mode: ``"events"`` or ``"grounding"``.
        eval_key: name of the evaluation run and prefix of the fields it writes.
        iou: tIoU threshold of FiftyOne's tp/fp/fn matching.

    Returns:
        ``{"mode", "eval_key", "samples", "metrics": {name: value}, "views": [saved view names]}``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    view.compute_metadata()
    dataset = view._root_dataset
    for field in (pred_field, gt_field):
        if not dataset.has_sample_field(field):
            raise ValueError(f"dataset {dataset.name!r} has no field {field!r}")
    user_fields = (pred_field, gt_field)
    drop_evaluation(dataset, eval_key)
    if foreign_copy_fields(dataset, eval_key):
        raise ValueError(f"fields {foreign_copy_fields(dataset, eval_key)} exist and are not this evaluation's; "
                         "choose another evaluation key")
    pred_field, gt_field = own_fields(eval_key)
    # recorded before the copies exist, so a killed run's copies are known as this evaluation's
    view.register_run(f"{eval_key}_marlin", view.init_run(
        method="marlin.evaluate", pred_field=user_fields[0], gt_field=user_fields[1], iou=iou, mode=mode,
        eval_key=eval_key, status="running", fields=[pred_field, gt_field]), overwrite=True, cleanup=False)
    _copy_field(view, user_fields[0], pred_field)
    _copy_field(view, user_fields[1], gt_field)
    hide_in_sidebar(dataset, [pred_field, gt_field])  # copies for FiftyOne's matcher: not drawn twice on tiles
    num_predictions = view.count(f"{pred_field}.detections")
    # mAP ranks predictions by confidence, so it needs one on every prediction
    compute_map = num_predictions > 0 and num_predictions == view.count(f"{pred_field}.detections.confidence")
    evaluate_kwargs = dict(gt_field=gt_field, eval_key=eval_key, method="activitynet", iou=iou,
                           compute_mAP=compute_map)
    if mode == "grounding":
        results = view.evaluate_detections(pred_field, classwise=True, **evaluate_kwargs)
    else:
        with _one_label(view, [pred_field, gt_field]):
            results = view.evaluate_detections(pred_field, classwise=False, **evaluate_kwargs)
    rows = _per_sample_ious(view, pred_field, gt_field, mode)
    iou_field = f"{eval_key}_iou"
    view.set_values(iou_field, {sample_id: row[2] for sample_id, row in rows.items()}, key_field="id")
    hide_in_sidebar(dataset, [pred_field, gt_field])  # again: the counts and IoU fields stay unchecked too

    report = results.metrics()
    metrics = {
        "fiftyone_precision": 100 * report["precision"],
        "fiftyone_recall": 100 * report["recall"],
        "fiftyone_f1": 100 * report["fscore"],
    }
    if compute_map:
        metrics["mAP"] = 100 * results.mAP()
    if mode == "events" and rows:
        metrics.update(dense_localization_metrics(
            {sample_id: row[0] for sample_id, row in rows.items()},
            {sample_id: row[1] for sample_id, row in rows.items()},
        ))
    elif rows:
        pairs = [pair for row in rows.values() for pair in row[3]]
        metrics.update(grounding_metrics([p for _, p in pairs], [g for g, _ in pairs]))

    views = _save_review_views(view, pred_field, gt_field, eval_key)
    summary = {"mode": mode, "eval_key": eval_key, "samples": len(rows), "metrics": metrics, "views": views,
               "fields": [pred_field, gt_field], "samples_without_ground_truth": len(view) - len(rows)}
    view.register_run(f"{eval_key}_marlin", view.init_run(
        method="marlin.evaluate", pred_field=user_fields[0], gt_field=user_fields[1], iou=iou, status="completed",
        **summary),
        overwrite=True, cleanup=False)
    return summary


def review_views(view, pred_field: str, gt_field: str, eval_key: str) -> dict[str, fo.DatasetView]:
    """Worst samples first; clips of false positives; clips of misses (ground truth not found)."""
    return {
        f"{eval_key}_worst": view.exists(f"{eval_key}_iou").sort_by(f"{eval_key}_iou"),
        f"{eval_key}_false_positives": view.filter_labels(pred_field, F(eval_key) == "fp").to_clips(pred_field),
        f"{eval_key}_misses": view.filter_labels(gt_field, F(eval_key) == "fn").to_clips(gt_field),
    }


def _save_review_views(view, pred_field, gt_field, eval_key) -> list[str]:
    dataset = view._root_dataset
    names = []
    for name, review in review_views(view, pred_field, gt_field, eval_key).items():
        dataset.save_view(name, review, overwrite=True)
        names.append(name)
    return names


def format_summary(summary: dict) -> str:
    """The aggregate table as text (printed by the Python API, shown in the App)."""
    lines = [f"Marlin evaluation {summary['eval_key']!r} ({summary['mode']}, {summary['samples']} samples)"]
    for name, value in summary["metrics"].items():
        lines.append(f"  {name:<22} {value:8.2f}" if isinstance(value, float) else f"  {name:<22} {value:>8}")
    return "\n".join(lines)
