"""Metrics on hand-computed cases, and the conventions that make them comparable with the benchmarks."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marlin_core.metrics import (
    DENSEVID_MAX_PROPOSALS,
    dense_localization_metrics,
    densevid_iou_matrix,
    grounding_metrics,
    temporal_iou,
)

GT = (0.0, 10.0)


# temporal_iou (TimeLens)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ((0, 10), (0, 10), 1.0),
        ((0, 10), (5, 15), 5 / 15),
        ((0, 10), (2, 4), 0.2),
        ((0, 5), (5, 10), 0.0),  # touching
        ((0, 5), (6, 10), 0.0),  # disjoint
        ((0, 10), (5, 20), 0.25),  # past the video's end: no clipping, the union grows
    ],
)
def test_temporal_iou_hand_computed(a, b, expected):
    assert temporal_iou(a, b) == pytest.approx(expected)
    assert temporal_iou(b, a) == pytest.approx(expected)


@pytest.mark.parametrize("bad", [None, (5, 5), (6, 4), (math.nan, 3), (-100, -100)])
def test_temporal_iou_invalid_span_is_zero(bad):
    assert temporal_iou(GT, bad) == 0.0
    assert temporal_iou(bad, GT) == 0.0


def test_temporal_iou_same_floats_as_timelens():
    # TimeLens: max(min1 - max0, 0) / (max1 - min0), no epsilon.
    assert temporal_iou((0.1, 0.7), (0.4, 1.0)) == (0.7 - 0.4) / (1.0 - 0.1)


# grounding_metrics (TimeLens compute_metrics.py)


def test_grounding_metrics_hand_computed():
    predicted = [(0, 10), (0, 5), (0, 3), None, (8, 4), (5, 20)]  # IoU 1, .5, .3, 0, 0, .25
    metrics = grounding_metrics(predicted, [GT] * 6)
    assert metrics["n"] == 6
    assert metrics["R1@0.3"] == pytest.approx(50.0)  # 1, .5 and .3: the threshold is inclusive
    assert metrics["R1@0.5"] == pytest.approx(100 * 2 / 6)
    assert metrics["R1@0.7"] == pytest.approx(100 * 1 / 6)
    assert metrics["mIoU"] == pytest.approx(100 * 2.05 / 6)
    assert set(metrics) == {"R1@0.3", "R1@0.5", "R1@0.7", "mIoU", "n"}


def test_grounding_parse_failures_stay_in_the_denominator():
    metrics = grounding_metrics([None, None, (0, 10), None], [GT] * 4)
    assert metrics["R1@0.7"] == 25.0
    assert metrics["mIoU"] == 25.0


def test_grounding_all_failures_score_zero():
    metrics = grounding_metrics([None, (3, 3)], [GT, GT])
    assert metrics == {"R1@0.3": 0.0, "R1@0.5": 0.0, "R1@0.7": 0.0, "mIoU": 0.0, "n": 2}


@pytest.mark.parametrize(
    ("predicted", "gt", "message"),
    [
        ([], [], "no queries"),
        ([(0, 1)], [GT, GT], "1 predictions for 2"),
        ([(0, 1)], [(4, 4)], "start < end"),
    ],
)
def test_grounding_bad_input_raises(predicted, gt, message):
    with pytest.raises(ValueError, match=message):
        grounding_metrics(predicted, gt)


# dense_localization_metrics (densevid_eval evaluate_detection, vid2seq F1_Score)


def test_dense_hand_computed():
    ground_truth = {"a": [(0, 10), (20, 30)], "b": [(0, 10)], "c": [(5, 8)]}
    predictions = {
        "a": [(0, 10), (20, 26), (40, 50)],  # tIoU ~1, ~0.6, 0
        "b": [],  # empty: precision 0 and recall 0
        "z": [(0, 10)],  # not in the ground truth: ignored
    }  # "c" has no entry at all: same as empty
    metrics = dense_localization_metrics(predictions, ground_truth)
    # video a, per tIoU 0.3/0.5/0.7/0.9: precision 2/3, 2/3, 1/3, 1/3; recall 1, 1, 1/2, 1/2
    assert metrics["n_videos"] == 3
    assert metrics["precision@0.3"] == pytest.approx(100 * (2 / 3) / 3)
    assert metrics["recall@0.5"] == pytest.approx(100 / 3)
    assert metrics["precision@0.9"] == pytest.approx(100 * (1 / 3) / 3)
    assert metrics["recall@0.7"] == pytest.approx(100 * 0.5 / 3)
    assert metrics["precision"] == pytest.approx(100 * 0.5 / 3)
    assert metrics["recall"] == pytest.approx(100 * 0.75 / 3)
    # per-video F1 of a = 2 * 0.5 * 0.75 / 1.25 = 0.6; b and c score 0
    assert metrics["f1"] == pytest.approx(100 * 0.6 / 3)


def test_dense_threshold_is_strict():
    # grounding counts IoU 0.5 at R1@0.5; densevid needs tIoU > 0.5 (and the epsilon lowers it anyway)
    assert grounding_metrics([(0, 5)], [GT])["R1@0.5"] == 100.0
    metrics = dense_localization_metrics({"v": [(0, 5)]}, {"v": [GT]})
    assert metrics["precision@0.3"] == 100.0
    assert metrics["precision@0.5"] == 0.0


def test_dense_epsilon_decides_near_ties_as_densevid_does():
    iou = densevid_iou_matrix([(0.0, 0.30000000001)], [(0.0, 1.0)])[0, 0]
    assert 0.3 - 1e-8 < iou < 0.3  # plain IoU would be just above 0.3
    assert dense_localization_metrics({"v": [(0.0, 0.30000000001)]}, {"v": [(0.0, 1.0)]})["recall@0.3"] == 0.0


def test_dense_empty_and_past_the_end_predictions():
    # (5, 5) is empty: never matches but counts as a prediction; (0, 20) past a 10 s video: tIoU 0.5
    metrics = dense_localization_metrics({"v": [(0, 10), (5, 5), (0, 20)]}, {"v": [GT]})
    assert metrics["precision@0.3"] == pytest.approx(100 * 2 / 3)
    assert metrics["precision@0.5"] == pytest.approx(100 * 1 / 3)
    assert metrics["recall@0.9"] == 100.0


def test_dense_reversed_span_scores_zero_unless_endpoints_are_sorted():
    # densevid_eval takes (start, end) as written; scenic vid2seq / TimeChat sort each span first
    reversed_span = {"v": [(10, 0)]}
    assert dense_localization_metrics(reversed_span, {"v": [GT]})["recall"] == 0.0
    as_scenic = dense_localization_metrics(reversed_span, {"v": [GT]}, sort_endpoints=True)
    assert as_scenic == dense_localization_metrics({"v": [(0, 10)]}, {"v": [GT]})
    assert as_scenic["f1"] == 100.0


def test_dense_keeps_the_first_1000_predictions():
    far = [(100, 101)] * DENSEVID_MAX_PROPOSALS
    metrics = dense_localization_metrics({"v": far + [(0, 10)]}, {"v": [GT]})
    assert metrics["recall"] == 0.0


def test_dense_custom_tious():
    metrics = dense_localization_metrics({"v": [(0, 8)]}, {"v": [GT]}, tious=(0.5,))
    assert metrics["precision"] == metrics["precision@0.5"] == 100.0
    assert "precision@0.3" not in metrics


@pytest.mark.parametrize(
    ("ground_truth", "tious", "message"),
    [
        ({}, (0.5,), "ground_truth is empty"),
        ({"v": [GT], "w": []}, (0.5,), "'w'"),
        ({"v": [GT]}, (), "tious is empty"),
    ],
)
def test_dense_bad_input_raises(ground_truth, tious, message):
    with pytest.raises(ValueError, match=message):
        dense_localization_metrics({}, ground_truth, tious=tious)


def _scalar_densevid_iou(pred, ref, sort=False):
    if sort:  # scenic vid2seq ``iou``: float(min(*interval)), float(max(*interval))
        pred, ref = (min(pred), max(pred)), (min(ref), max(ref))
    intersection = max(0, min(ref[1], pred[1]) - max(ref[0], pred[0]))
    union = min(max(ref[1], pred[1]) - min(ref[0], pred[0]), ref[1] - ref[0] + pred[1] - pred[0])
    return intersection / (union + 1e-8)


def _oracle(predictions, ground_truth, tious, sort=False):
    """The densevid_eval / vid2seq definitions, one loop at a time, averaged as percentages."""
    precision, recall, f1 = [], [], []
    for video_id, refs in ground_truth.items():
        preds = predictions.get(video_id, [])
        p_t, r_t = [], []
        for t in tious:
            hits = [[_scalar_densevid_iou(p, r, sort) > t for r in refs] for p in preds]
            p_t.append(sum(any(row) for row in hits) / len(preds) if preds else 0.0)
            r_t.append(sum(any(row[j] for row in hits) for j in range(len(refs))) / len(refs))
        p, r = sum(p_t) / len(tious), sum(r_t) / len(tious)
        precision.append(p)
        recall.append(r)
        f1.append(2 * p * r / (p + r) if p + r > 0 else 0.0)
    return [100 * sum(x) / len(x) for x in (precision, recall, f1)]


_times = st.integers(0, 40).map(lambda quarters: quarters / 4)  # coarse grid: many exact ties
_spans = st.tuples(_times, _times)  # includes empty and reversed spans
_valid = st.tuples(_times, _times).filter(lambda s: s[0] < s[1])


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(st.sampled_from("abc"), st.lists(_valid, min_size=1, max_size=4), min_size=1),
    st.dictionaries(st.sampled_from("abcd"), st.lists(_spans, max_size=5)),
)
def test_dense_matches_the_loop_definition(ground_truth, predictions):
    metrics = dense_localization_metrics(predictions, ground_truth)
    expected = _oracle(predictions, ground_truth, (0.3, 0.5, 0.7, 0.9))
    assert [metrics["precision"], metrics["recall"], metrics["f1"]] == pytest.approx(expected)
    sorted_first = dense_localization_metrics(predictions, ground_truth, sort_endpoints=True)
    expected = _oracle(predictions, ground_truth, (0.3, 0.5, 0.7, 0.9), sort=True)
    assert [sorted_first["precision"], sorted_first["recall"], sorted_first["f1"]] == pytest.approx(expected)
