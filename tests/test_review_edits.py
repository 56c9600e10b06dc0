"""The reviewer's edits (marlin_core.review_edits): nudges, playhead sets, splits and merges never leave the
video or make an empty span; progress sums what reviewers did."""

from __future__ import annotations

import pytest

from marlin_core.errors import MarlinError
from marlin_core.review_edits import (MIN_EVENT_S, NUDGE_S, ReviewEditError, boundary_change_s, clamp_span,
                                      decided_before, merge, new_span, nudge, review_progress, set_edge, split)


def test_nudge_moves_one_edge_by_half_a_second():
    assert nudge((2.0, 5.0), "end", NUDGE_S, 10.0) == (2.0, 5.5)
    assert nudge((2.0, 5.0), "end", -NUDGE_S, 10.0) == (2.0, 4.5)
    assert nudge((2.0, 5.0), "start", -NUDGE_S, 10.0) == (1.5, 5.0)
    assert nudge((2.0, 5.0), "start", NUDGE_S, 10.0) == (2.5, 5.0)


def test_nudges_are_clamped_to_the_video():
    assert nudge((0.2, 3.0), "start", -NUDGE_S, 10.0) == (0.0, 3.0)
    assert nudge((7.0, 9.8), "end", NUDGE_S, 9.8) == (7.0, 9.8)
    assert nudge((7.0, 9.7), "end", NUDGE_S, 9.8) == (7.0, 9.8)
    # without a known duration only the start is clamped (at 0)
    assert nudge((7.0, 9.7), "end", NUDGE_S, None) == (7.0, 10.2)


def test_an_edge_never_passes_the_other():
    assert nudge((2.0, 2.3), "start", NUDGE_S, 10.0) == (2.2, 2.3)
    assert nudge((2.0, 2.3), "end", -NUDGE_S, 10.0) == (2.0, 2.1)
    assert set_edge((2.0, 5.0), "end", 1.0, 10.0) == (2.0, 2.0 + MIN_EVENT_S)
    assert set_edge((2.0, 5.0), "start", 9.0, 10.0) == (5.0 - MIN_EVENT_S, 5.0)


def test_set_edge_to_the_playhead():
    assert set_edge((2.0, 5.0), "start", 3.25, 10.0) == (3.25, 5.0)
    assert set_edge((2.0, 5.0), "end", 7.5, 10.0) == (2.0, 7.5)
    assert set_edge((2.0, 5.0), "end", 12.0, 10.0) == (2.0, 10.0)
    with pytest.raises(ReviewEditError, match="edge must be one of"):
        set_edge((2.0, 5.0), "middle", 3.0, 10.0)


def test_clamp_orders_and_keeps_a_minimum_length():
    assert clamp_span(5.0, 2.0, 10.0) == (2.0, 5.0)
    assert clamp_span(-1.0, 12.0, 10.0) == (0.0, 10.0)
    assert clamp_span(10.0, 10.0, 10.0) == (10.0 - MIN_EVENT_S, 10.0)
    assert clamp_span(3.0, 3.0, None) == (3.0, 3.0 + MIN_EVENT_S)
    assert clamp_span(0.0, 0.0, 0.05) == (0.0, 0.05)


def test_split_inside_the_event_only():
    assert split((2.0, 6.0), 3.5) == ((2.0, 3.5), (3.5, 6.0))
    for outside in (2.0, 2.05, 5.95, 7.0, 1.0):
        with pytest.raises(ReviewEditError, match="cannot split 2.0–6.0 s"):
            split((2.0, 6.0), outside)
    assert issubclass(ReviewEditError, MarlinError)


def test_merge_covers_both_and_the_gap():
    assert merge((2.0, 4.0), (5.0, 8.0)) == (2.0, 8.0)
    assert merge((5.0, 8.0), (2.0, 4.0)) == (2.0, 8.0)
    assert merge((2.0, 6.0), (3.0, 4.0)) == (2.0, 6.0)


def test_new_event_at_the_playhead_stays_inside_the_video():
    assert new_span(3.0, 10.0) == (3.0, 5.0)
    assert new_span(9.5, 10.0) == (8.0, 10.0)
    assert new_span(None, 10.0) == (0.0, 2.0)
    assert new_span(0.0, 1.0) == (0.0, 1.0)


def test_boundary_change_and_progress():
    assert boundary_change_s((2.0, 5.0), (2.0, 5.0)) == 0.0
    assert boundary_change_s((2.0, 5.0), (1.5, 6.0)) == pytest.approx(0.75)
    progress = review_progress(4, 1, [("accepted", 0.0), ("fixed", 1.0), ("fixed", 0.5), ("added", None),
                                      ("rejected", None)])
    assert (progress.samples_reviewed, progress.samples_total) == (1, 4)
    assert (progress.accepted, progress.fixed, progress.added, progress.rejected) == (1, 2, 1, 1)
    assert progress.mean_boundary_change_s == pytest.approx(0.5)
    assert progress.acceptance_rate == pytest.approx(0.25)
    assert progress.as_dict()["acceptance_rate"] == pytest.approx(0.25)
    empty = review_progress(3, 0, [])
    assert empty.mean_boundary_change_s is None and empty.acceptance_rate is None
    with pytest.raises(ReviewEditError, match="unknown review action 'kept'"):
        review_progress(1, 0, [("kept", None)])


def test_a_repeated_proposal_is_known_by_text_and_time():
    decided = [("A dog runs", (2.0, 5.0))]
    assert decided_before("a dog runs ", (2.0, 5.1), decided)
    assert not decided_before("a dog runs", (3.0, 6.0), decided)  # tIoU 0.5
    assert not decided_before("a cat runs", (2.0, 5.0), decided)
