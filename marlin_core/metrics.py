"""Temporal-grounding and dense-captioning localisation metrics, computed as the benchmarks do.

Numbers from this module are meant to be comparable with published ones, so each function follows
one reference implementation operation by operation (the float arithmetic included, because ties
at a threshold are common with timestamps at 0.1 s resolution):

- Grounding (one query → one span): TencentARC/TimeLens ``evaluation/compute_metrics.py`` with
  ``iou`` from ``timelens/utils.py``. IoU has no epsilon; ``R1@t`` counts ``IoU >= t`` (inclusive).
- Dense captioning localisation (one video → many spans): ranjaykrishna/densevid_eval
  ``evaluate.py`` (``ANETcaptions.iou`` / ``evaluate_detection``), the ActivityNet Captions
  evaluator. IoU divides by ``union + 1e-8``; a match needs ``tIoU > t`` (strict). densevid_eval
  reports no F1; ours is the ``F1_Score`` of google-research/scenic
  ``projects/vid2seq/dvc_eval.py`` (copied by RenShuhuai-Andy/TimeChat ``metrics/dvc/eval_dvc.py``),
  which video-LLM papers report.

Endpoint rule for dense captioning: densevid_eval takes each span as ``(start, end)`` as written,
so a reversed span (``start > end``) never overlaps anything and scores tIoU 0. scenic's ``iou``
(and TimeChat's copy) sorts each span's endpoints first (``min``/``max``), so there a reversed
span scores as its swapped self. :func:`dense_localization_metrics` follows densevid_eval by
default and scenic with ``sort_endpoints=True``; spans the plugin writes are already ordered
(:mod:`marlin_core.sanitize` swaps reversed model times and records it), so both give the same
numbers on them.

All times are in seconds. Every score is returned in percent (0–100), as TimeLens prints them and
as densevid_eval prints them (it multiplies its fractions by 100 for display).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

GROUNDING_THRESHOLDS = (0.3, 0.5, 0.7)  # TimeLens reports R1@{0.3, 0.5, 0.7}
DENSE_TIOUS = (0.3, 0.5, 0.7, 0.9)  # densevid_eval's default --tious
DENSEVID_IOU_EPSILON = 1e-8  # densevid_eval adds it to the union; it decides ties at a threshold
DENSEVID_MAX_PROPOSALS = 1000  # densevid_eval keeps the first 1000 predictions of a video


def _is_valid(span: Sequence[float] | None) -> bool:
    """True for a span with finite ``start < end``."""
    return span is not None and bool(np.isfinite(span[0]) and np.isfinite(span[1])) and span[0] < span[1]


def temporal_iou(a: Sequence[float] | None, b: Sequence[float] | None) -> float:
    """Temporal IoU of two spans, as TimeLens computes it (``timelens/utils.py``, ``iou``).

    ``max(min(e1, e2) - max(s1, s2), 0) / (max(e1, e2) - min(s1, s2))``, no epsilon, no clipping to
    the video's duration (a span past the end simply has a larger union).

    Args:
        a: ``(start_s, end_s)`` in seconds, or ``None`` (a parse failure).
        b: the other span, same form.

    Returns:
        IoU in ``[0, 1]``; ``0.0`` when either span is ``None``, not finite, or has ``start >= end``
        (TimeLens also scores such a prediction 0: its intersection is never positive).
    """
    if not (_is_valid(a) and _is_valid(b)):
        return 0.0
    max0 = max(a[0], b[0])
    min0 = min(a[0], b[0])
    max1 = max(a[1], b[1])
    min1 = min(a[1], b[1])
    return float(max(min1 - max0, 0) / (max1 - min0))


def grounding_metrics(
    predicted_spans: Sequence[Sequence[float] | None], gt_spans: Sequence[Sequence[float]]
) -> dict[str, float]:
    """R1@{0.3, 0.5, 0.7} and mIoU over queries, exactly as TimeLens ``evaluation/compute_metrics.py``.

    Each query has one predicted span (the model's first; TimeLens ignores the others) and one
    ground-truth span. A ``None`` prediction is a parse failure: IoU 0, and it stays in the
    denominator. ``R1@t`` = 100 × (queries with ``IoU >= t``) / n; ``mIoU`` = 100 × sum(IoU) / n.

    Args:
        predicted_spans: per query, ``(start_s, end_s)`` in seconds or ``None``.
        gt_spans: per query, the ground-truth ``(start_s, end_s)`` in seconds, ``start < end``.

    Returns:
        ``{"R1@0.3", "R1@0.5", "R1@0.7", "mIoU"}`` in percent, and ``"n"``, the number of queries.

    Raises:
        ValueError: the two sequences differ in length, are empty, or a ground-truth span is invalid.
    """
    if len(predicted_spans) != len(gt_spans):
        raise ValueError(
            f"grounding_metrics: {len(predicted_spans)} predictions for {len(gt_spans)} ground-truth spans; "
            "pass one prediction (or None) per query"
        )
    if not gt_spans:
        raise ValueError("grounding_metrics: no queries to score; pass at least one ground-truth span")
    for index, gt in enumerate(gt_spans):
        if not _is_valid(gt):
            raise ValueError(
                f"grounding_metrics: ground-truth span #{index} {tuple(gt)} needs finite start < end (s)"
            )
    num_queries = len(gt_spans)
    ious = [temporal_iou(gt, predicted) for gt, predicted in zip(gt_spans, predicted_spans)]
    # Python's sum and this operation order, not numpy's pairwise mean, so the floats match TimeLens.
    metrics = {f"R1@{t}": sum(iou >= t for iou in ious) * 100 / num_queries for t in GROUNDING_THRESHOLDS}
    metrics["mIoU"] = sum(ious) * 100 / num_queries
    metrics["n"] = num_queries
    return metrics


def densevid_iou_matrix(
    predicted: Sequence[Sequence[float]], reference: Sequence[Sequence[float]]
) -> np.ndarray:
    """tIoU of every predicted span with every reference span, as densevid_eval ``ANETcaptions.iou``.

    ``intersection / (union + 1e-8)`` with ``union = min(hull, length_1 + length_2)``. A span with
    ``start >= end`` gets tIoU 0 with everything (its intersection is never positive), as there.

    Args:
        predicted: ``K`` spans ``(start_s, end_s)`` in seconds.
        reference: ``S`` spans, same form.

    Returns:
        ``(K, S)`` float64 array.
    """
    pred = np.asarray(predicted, dtype=np.float64).reshape(-1, 2)
    ref = np.asarray(reference, dtype=np.float64).reshape(-1, 2)
    start_i, end_i = pred[:, None, 0], pred[:, None, 1]
    start, end = ref[None, :, 0], ref[None, :, 1]
    intersection = np.maximum(0.0, np.minimum(end, end_i) - np.maximum(start, start_i))
    union = np.minimum(np.maximum(end, end_i) - np.minimum(start, start_i), end - start + end_i - start_i)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = intersection / (union + DENSEVID_IOU_EPSILON)
    # Only degenerate spans reach here with a zero or negative denominator; their intersection is 0.
    return np.where(intersection > 0, iou, 0.0)


def _video_precision_recall(
    predicted: Sequence[Sequence[float]], reference: Sequence[Sequence[float]], tious: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Per-tIoU precision and recall (fractions) of one video, as densevid_eval ``evaluate_detection``."""
    predicted = list(predicted)[:DENSEVID_MAX_PROPOSALS]
    if not predicted:
        return np.zeros(len(tious)), np.zeros(len(tious))
    matched = densevid_iou_matrix(predicted, reference)[None, :, :] > np.asarray(tious)[:, None, None]
    precision = matched.any(axis=2).sum(axis=1) / len(predicted)
    recall = matched.any(axis=1).sum(axis=1) / len(reference)
    return precision, recall


def _f1(precision: float, recall: float) -> float:
    """Harmonic mean, 0 when both are 0 (scenic vid2seq ``F1_Score``)."""
    return 2 * recall * precision / (recall + precision) if recall + precision > 0 else 0.0


def dense_localization_metrics(
    predictions: Mapping[str, Sequence[Sequence[float]]],
    ground_truth: Mapping[str, Sequence[Sequence[float]]],
    tious: Sequence[float] = DENSE_TIOUS,
    sort_endpoints: bool = False,
) -> dict[str, float]:
    """Localisation precision / recall / F1 of dense captions over videos (ActivityNet Captions).

    Follows densevid_eval ``evaluate_detection``: the videos scored are those in ``ground_truth``
    (predictions for other videos are ignored); for each video and tIoU ``t``, a prediction and a
    reference match when ``tIoU > t`` (strict); precision = matched predictions / predictions (0 for
    a video with no predictions, missing or empty), recall = matched references / references. Each
    is averaged over videos, then over tIoUs. F1 follows scenic vid2seq ``F1_Score``: per video, the
    harmonic mean of that video's tIoU-averaged precision and recall, then averaged over videos — so
    ``f1`` is not the harmonic mean of the ``precision`` and ``recall`` returned here.

    Endpoints are taken as written (densevid_eval): a reversed span ``(start > end)`` matches
    nothing. ``sort_endpoints=True`` sorts each span's two endpoints first, as scenic vid2seq /
    TimeChat ``iou`` do, so a reversed span counts as the swapped span (see the module docstring).

    Differences from densevid_eval: one ground-truth set (it takes, per video, the best score over
    several reference files, e.g. ActivityNet val_1 and val_2); no caption-text metrics.

    Args:
        predictions: video id → predicted spans ``(start_s, end_s)`` in seconds.
        ground_truth: video id → reference spans in seconds; every video needs at least one.
        tious: tIoU thresholds to average over.
        sort_endpoints: sort each span's endpoints before matching (scenic's rule); default False
            (densevid_eval's rule).

    Returns:
        In percent: ``precision``, ``recall``, ``f1`` (averaged over tIoUs), ``precision@t`` and
        ``recall@t`` for each ``t`` in ``tious``; and ``n_videos``, the number of videos scored.

    Raises:
        ValueError: ``ground_truth`` or ``tious`` is empty, or a video has no reference span.
    """
    if not tious:
        raise ValueError("dense_localization_metrics: tious is empty; pass thresholds such as DENSE_TIOUS")
    if not ground_truth:
        raise ValueError("dense_localization_metrics: ground_truth is empty; pass at least one video")
    empty = [video_id for video_id, reference in ground_truth.items() if len(reference) == 0]
    if empty:
        more = f" (and {len(empty) - 1} more)" if len(empty) > 1 else ""
        raise ValueError(
            f"dense_localization_metrics: video {empty[0]!r}{more} has no ground-truth span, "
            "so its recall is undefined; leave such videos out of ground_truth"
        )
    if sort_endpoints:
        predictions = {video_id: [sorted(span) for span in spans] for video_id, spans in predictions.items()}
        ground_truth = {video_id: [sorted(span) for span in spans] for video_id, spans in ground_truth.items()}
    per_video = [
        _video_precision_recall(predictions.get(video_id, ()), reference, tious)
        for video_id, reference in ground_truth.items()
    ]
    precision = np.array([p for p, _ in per_video])  # (videos, tious)
    recall = np.array([r for _, r in per_video])
    video_f1 = [_f1(float(p.mean()), float(r.mean())) for p, r in per_video]
    metrics = {
        "precision": 100 * float(precision.mean(axis=0).mean()),
        "recall": 100 * float(recall.mean(axis=0).mean()),
        "f1": 100 * float(np.mean(video_f1)),
    }
    for index, t in enumerate(tious):
        metrics[f"precision@{t}"] = 100 * float(precision[:, index].mean())
        metrics[f"recall@{t}"] = 100 * float(recall[:, index].mean())
    metrics["n_videos"] = len(ground_truth)
    return metrics
