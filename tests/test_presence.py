"""The presence score: pieces, weights, missing evidence, and ROC-AUC."""

from __future__ import annotations

import pytest

from marlin_core.search.caption_index import CaptionIndex, CaptionedEvent, CaptionedVideo
from marlin_core.search.presence import DEFAULT_THRESHOLD, WEIGHTS, caption_presence, presence_score, roc_auc


@pytest.fixture(scope="module")
def index() -> CaptionIndex:
    red = CaptionedVideo("red", "A red screen.", (CaptionedEvent(0.0, 1.5, "Red light."),
                                                   CaptionedEvent(1.5, 3.0, "Red fades.")))
    blue = CaptionedVideo("blue", "A blue screen.", (CaptionedEvent(0.0, 2.0, "Blue sky."),
                                                     CaptionedEvent(2.0, 3.0, "Blue dims.")))
    no_scene = CaptionedVideo("no-scene", "", (CaptionedEvent(0.0, 3.0, "A dog jumps over a fence."),))
    return CaptionIndex([red, blue, no_scene])


def test_weights_sum_to_one():
    assert sum(WEIGHTS.values()) == pytest.approx(1.0)


def test_query_covered_by_the_overlapping_event_is_present(index):
    score = presence_score("red light", (1.0, 2.0), 0.97, "red", index)
    assert score.events == 1.0  # "Red light." overlaps [1, 2] and covers both words
    assert score.scene == pytest.approx(index.terms.coverage(["red", "light"], ["red", "screen"]))
    assert score.agreement == pytest.approx(1.0 * 0.5 / 2.0)  # tIoU([1, 2], [0, 1.5]) = 0.25
    expected = (0.45 * 1.0 + 0.15 * score.scene + 0.15 * 0.25 + 0.25 * 0.97)
    assert score.score == pytest.approx(expected)
    assert score.score >= DEFAULT_THRESHOLD


def test_confident_answer_without_caption_evidence_is_absent(index):
    score = presence_score("a dog catches a frisbee", (0.5, 2.5), 0.99, "blue", index)
    assert score.events == score.scene == score.agreement == 0.0
    assert score.score == pytest.approx(0.25 * 0.99)
    assert score.score < DEFAULT_THRESHOLD


def test_span_away_from_the_matching_event_scores_lower(index):
    on_event = presence_score("red fades", (1.5, 3.0), 0.9, "red", index)
    off_event = presence_score("red fades", (0.0, 1.0), 0.9, "red", index)
    assert on_event.agreement == 1.0  # "Red fades." covers the query and is exactly the span
    # [0, 1] lies on "Red light.", which covers only "red": half the query, two thirds tIoU
    assert off_event.agreement == pytest.approx(0.5 * 1.0 / 1.5)
    assert off_event.events < on_event.events
    assert off_event.score < on_event.score


def test_partial_word_match_is_below_the_threshold(index):
    # "red" matches, "car" is in no caption of the library: idf weighs the missing word more
    score = presence_score("a red car", (1.0, 2.0), 0.97, "red", index)
    assert 0.0 < score.events < 0.5
    assert score.score < DEFAULT_THRESHOLD


def test_missing_pieces_are_left_out_not_counted_as_zero(index):
    no_confidence = presence_score("red light", (1.0, 2.0), None, "red", index)
    assert no_confidence.confidence is None
    assert no_confidence.score == pytest.approx(
        (0.45 * 1.0 + 0.15 * no_confidence.scene + 0.15 * 0.25) / (0.45 + 0.15 + 0.15))
    no_scene = presence_score("dog jumps over a fence", (0.0, 3.0), 0.9, "no-scene", index)
    assert no_scene.scene is None
    assert no_scene.score == pytest.approx((0.45 + 0.15 + 0.25 * 0.9) / (0.45 + 0.15 + 0.25))
    uncaptioned = presence_score("red light", (1.0, 2.0), 0.8, "unknown", index)
    assert uncaptioned.score == pytest.approx(0.8)
    assert presence_score("red light", (1.0, 2.0), None).score == 0.0


def test_no_span_scores_zero(index):
    assert presence_score("red light", None, None, "red", index).score == 0.0


def test_roc_auc_counts_pairs_and_ties():
    assert roc_auc([0.9, 0.8, 0.1, 0.2], [True, True, False, False]) == 1.0
    assert roc_auc([0.1, 0.9], [True, False]) == 0.0
    assert roc_auc([0.5, 0.5], [True, False]) == 0.5
    with pytest.raises(ValueError, match="present and one absent"):
        roc_auc([0.5], [True])


def test_caption_presence_uses_the_best_event_and_the_scene(index):
    score = caption_presence("red fades", "red", index)
    assert score.events == 1.0 and score.agreement is None and score.confidence is None
    assert score.score == pytest.approx((0.45 * 1.0 + 0.15 * score.scene) / 0.6)
    assert caption_presence("a person opens a door", "blue", index).score == 0.0
