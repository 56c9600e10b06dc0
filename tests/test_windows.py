"""Tests for marlin_core.windows: window planning, offset arithmetic and merging of per-window results.

Over 400 lines: planning, offsets and merging each have example cases and a hypothesis property, kept beside
the module they test.
"""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marlin_core.windows import (
    BOUNDARY_TOLERANCE_S,
    DEFAULT_OVERLAP_S,
    DEFAULT_WINDOW_S,
    SIMILARITY_THRESHOLD,
    merge_window_captions,
    merge_window_finds,
    plan_windows,
    shift_events,
    text_similarity,
)

FLOAT_TOLERANCE_S = 1e-9


def event(start, end, description, **extra):
    return {"start": start, "end": end, "description": description, **extra}


def caption_result(events, scene="A kitchen.", **extra):
    return {"caption": f"Scene: {scene}\n\nEvents:\n...", "scene": scene, "events": events, **extra}


def find_result(span, confidence=None, raw=None, format_ok=True):
    raw = raw if raw is not None else ("No match." if span is None else f"From {span[0]} to {span[1]}.")
    result = {"raw": raw, "span": span, "format_ok": format_ok}
    if confidence is not None:
        result["confidence"] = confidence
    return result


# --- plan_windows -------------------------------------------------------------------------------


def test_short_video_is_one_window():
    assert plan_windows(42.5) == [(0.0, 42.5)]


def test_duration_equal_to_window_is_one_window():
    assert plan_windows(DEFAULT_WINDOW_S) == [(0.0, DEFAULT_WINDOW_S)]


def test_video_shorter_than_overlap_is_one_window():
    assert plan_windows(3.0, window_s=120.0, overlap_s=10.0) == [(0.0, 3.0)]


def test_two_full_windows_overlap_exactly():
    assert plan_windows(230.0, window_s=120.0, overlap_s=10.0) == [(0.0, 120.0), (110.0, 230.0)]


def test_just_over_one_window_gives_two_equal_halves_not_a_tiny_tail():
    assert plan_windows(125.0, window_s=120.0, overlap_s=10.0) == [(0.0, 67.5), (57.5, 125.0)]


def test_final_window_is_as_long_as_the_others():
    windows = plan_windows(241.0, window_s=120.0, overlap_s=10.0)
    assert len(windows) == 3
    lengths = [end - start for start, end in windows]
    assert max(lengths) - min(lengths) < FLOAT_TOLERANCE_S
    assert lengths[0] == pytest.approx(87.0)


def test_one_hour_video_uses_the_fewest_windows():
    windows = plan_windows(3600.0)
    # 33 windows of 120 s with 10 s overlap cover 33 * 110 + 10 = 3640 s; 32 would cover only 3530 s.
    assert len(windows) == 33
    assert windows[0][0] == 0.0 and windows[-1][1] == 3600.0


def test_zero_overlap_windows_touch():
    assert plan_windows(240.0, window_s=120.0, overlap_s=0.0) == [(0.0, 120.0), (120.0, 240.0)]


def test_default_overlap_is_ten_seconds():
    assert DEFAULT_OVERLAP_S == 10.0


@pytest.mark.parametrize("duration_s", [0.0, -1.0, math.nan, math.inf, -math.inf])
def test_bad_duration_raises(duration_s):
    with pytest.raises(ValueError, match="duration_s"):
        plan_windows(duration_s)


@pytest.mark.parametrize(
    ("window_s", "overlap_s"),
    [(10.0, 10.0), (5.0, 10.0), (120.0, -1.0), (0.0, 0.0), (math.inf, 10.0), (120.0, math.nan)],
)
def test_bad_window_or_overlap_raises(window_s, overlap_s):
    with pytest.raises(ValueError, match="window_s|overlap_s"):
        plan_windows(600.0, window_s=window_s, overlap_s=overlap_s)


@settings(max_examples=300, deadline=None)
@given(
    duration_s=st.floats(min_value=0.01, max_value=20_000.0),
    window_s=st.floats(min_value=5.0, max_value=600.0),
    overlap_fraction=st.floats(min_value=0.0, max_value=0.5),
)
def test_windows_cover_the_video_with_the_overlap(duration_s, window_s, overlap_fraction):
    overlap_s = window_s * overlap_fraction
    windows = plan_windows(duration_s, window_s, overlap_s)
    assert windows[0][0] == 0.0
    assert windows[-1][1] == duration_s
    for start_s, end_s in windows:
        assert 0.0 <= start_s < end_s <= duration_s
        assert end_s - start_s <= window_s + FLOAT_TOLERANCE_S
        if len(windows) > 1:
            assert end_s - start_s > window_s / 2 - FLOAT_TOLERANCE_S
    for (start_a, end_a), (start_b, end_b) in zip(windows, windows[1:]):
        assert start_a < start_b and end_a < end_b
        assert end_a - start_b >= overlap_s - FLOAT_TOLERANCE_S
    if len(windows) > 1:
        # fewest windows: one fewer of full length could not cover the video
        count = len(windows) - 1
        assert count * window_s - (count - 1) * overlap_s < duration_s + FLOAT_TOLERANCE_S


# --- shift_events -------------------------------------------------------------------------------


def test_shift_events_moves_times_and_keeps_extra_keys():
    events = [event(1.0, 2.5, "a dog barks", confidence=0.9)]
    shifted = shift_events(events, 110.0)
    assert shifted == [event(111.0, 112.5, "a dog barks", confidence=0.9)]
    assert events == [event(1.0, 2.5, "a dog barks", confidence=0.9)]


def test_shift_events_rejects_non_finite_offset():
    with pytest.raises(ValueError, match="offset_s"):
        shift_events([event(0.0, 1.0, "x")], math.nan)


# --- text similarity ----------------------------------------------------------------------------


def test_rewording_is_similar_but_a_different_action_is_not():
    assert text_similarity("A man opens the door.", "the man opens a door") == 1.0
    assert text_similarity("A man opens the door.", "A man closes the door.") < SIMILARITY_THRESHOLD


# --- merge_window_captions ----------------------------------------------------------------------


def test_single_window_caption_keeps_its_events():
    events = [event(0.0, 3.0, "A title screen appears."), event(3.0, 6.5, "The camera pans.")]
    merged = merge_window_captions([((0.0, 11.0), caption_result(events, format_ok=True))])
    assert [(e["start"], e["end"], e["description"]) for e in merged["events"]] == [
        (0.0, 3.0, "A title screen appears."),
        (3.0, 6.5, "The camera pans."),
    ]
    assert all(e["windows"] == [0] for e in merged["events"])
    assert merged["scene"] == "[0.0 - 11.0] A kitchen."
    assert merged["format_ok"] is True and merged["truncated"] is False


def test_events_are_shifted_to_the_source_timeline():
    merged = merge_window_captions(
        [
            ((0.0, 120.0), caption_result([event(5.0, 8.0, "A cat sleeps.")])),
            ((110.0, 230.0), caption_result([event(50.0, 55.0, "A dog barks.")])),
        ]
    )
    assert [(e["start"], e["end"], e["windows"]) for e in merged["events"]] == [(5.0, 8.0, [0]), (160.0, 165.0, [1])]


def test_event_straddling_a_seam_becomes_one_event():
    # the truth is 105-125: window 0 sees it until its end (120), window 1 from its start (110)
    merged = merge_window_captions(
        [
            ((0.0, 120.0), caption_result([event(105.0, 120.0, "A man walks to the door.", confidence=0.4)])),
            ((110.0, 230.0), caption_result([event(0.0, 15.0, "The man walks to a door.", confidence=0.7)])),
        ]
    )
    assert len(merged["events"]) == 1
    (joined,) = merged["events"]
    assert (joined["start"], joined["end"]) == (105.0, 125.0)
    assert joined["windows"] == [0, 1]
    assert joined["confidence"] == 0.7


def test_duplicate_inside_the_overlap_is_removed():
    merged = merge_window_captions(
        [
            ((0.0, 120.0), caption_result([event(112.0, 115.0, "A dog jumps over a fence.")])),
            ((110.0, 230.0), caption_result([event(2.5, 5.0, "A dog jumps over the fence.")])),
        ]
    )
    assert [(e["start"], e["end"], e["windows"]) for e in merged["events"]] == [(112.0, 115.0, [0, 1])]


def test_events_touching_exactly_at_a_boundary_are_joined():
    # window 0 ends its event at its last instant (120); window 1 starts the same event at global 120
    merged = merge_window_captions(
        [
            ((0.0, 120.0), caption_result([event(118.0, 120.0, "A car drives away.")])),
            ((110.0, 230.0), caption_result([event(10.0, 12.0, "A car drives away.")])),
        ]
    )
    assert [(e["start"], e["end"]) for e in merged["events"]] == [(118.0, 122.0)]


def test_touching_is_robust_to_float_rounding_of_window_starts():
    (w0, w1) = plan_windows(200.0, window_s=120.0, overlap_s=10.0 / 3)
    end_local = 100.0 - w0[0]
    start_local = 100.0 - w1[0]
    merged = merge_window_captions(
        [
            (w0, caption_result([event(95.0, end_local, "A bell rings.")])),
            (w1, caption_result([event(start_local, start_local + 2.0, "A bell rings.")])),
        ]
    )
    assert len(merged["events"]) == 1


def test_similar_text_without_temporal_overlap_stays_apart():
    merged = merge_window_captions(
        [
            ((0.0, 120.0), caption_result([event(30.0, 32.0, "A dog barks.")])),
            ((110.0, 230.0), caption_result([event(40.0, 42.0, "A dog barks.")])),
        ]
    )
    assert [(e["start"], e["end"]) for e in merged["events"]] == [(30.0, 32.0), (150.0, 152.0)]


def test_different_actions_in_the_overlap_stay_apart():
    merged = merge_window_captions(
        [
            ((0.0, 120.0), caption_result([event(112.0, 114.0, "A man opens the door.")])),
            ((110.0, 230.0), caption_result([event(2.0, 4.0, "A man closes the door.")])),
        ]
    )
    assert len(merged["events"]) == 2


def test_repeated_events_of_one_window_are_kept():
    events = [event(1.0, 2.0, "A ball bounces."), event(2.0, 3.0, "A ball bounces.")]
    merged = merge_window_captions([((0.0, 120.0), caption_result(events))])
    assert len(merged["events"]) == 2


def test_longer_member_gives_the_description_and_extra_keys():
    merged = merge_window_captions(
        [
            ((0.0, 120.0), caption_result([event(117.0, 120.0, "A woman waves.", source="w0")])),
            ((110.0, 230.0), caption_result([event(0.0, 14.0, "A woman waves!", source="w1")])),
        ]
    )
    (joined,) = merged["events"]
    assert joined["description"] == "A woman waves!" and joined["source"] == "w1"
    assert "confidence" not in joined


def test_event_seen_by_three_windows_is_one_event():
    windows = [(0.0, 120.0), (110.0, 230.0), (220.0, 340.0)]
    merged = merge_window_captions(
        [
            (windows[0], caption_result([event(100.0, 120.0, "A train passes by.")])),
            (windows[1], caption_result([event(0.0, 120.0, "A train passes by.")])),
            (windows[2], caption_result([event(0.0, 30.0, "A train passes by.")])),
        ]
    )
    assert [(e["start"], e["end"], e["windows"]) for e in merged["events"]] == [(100.0, 250.0, [0, 1, 2])]


def test_caption_result_shape_and_flags():
    merged = merge_window_captions(
        [
            ((110.0, 230.0), caption_result([event(1.0, 2.0, "B.")], scene="A street.", truncated=True)),
            (
                (0.0, 120.0),
                caption_result(
                    [event(1.0, 2.0, "A.")], scene="A kitchen.", format_ok=False, raw="Scene: A kitchen. <1",
                    dropped_lines=["<1"],
                ),
            ),
        ]
    )
    assert merged["raw"] == (
        "[0.0 - 120.0]\nScene: A kitchen. <1\n\n[110.0 - 230.0]\nScene: A street.\n\nEvents:\n..."
    )
    assert merged["dropped_lines"] == ["<1"]
    assert merged["scene"] == "[0.0 - 120.0] A kitchen.\n[110.0 - 230.0] A street."
    assert merged["format_ok"] is False and merged["truncated"] is True
    assert merged["caption"] == (
        "Scene:\n[0.0 - 120.0] A kitchen.\n[110.0 - 230.0] A street.\n\nEvents:\n<1.0 - 2.0> A.\n<111.0 - 112.0> B."
    )
    assert [(w["start"], w["end"], w["scene"]) for w in merged["windows"]] == [
        (0.0, 120.0, "A kitchen."),
        (110.0, 230.0, "A street."),
    ]
    assert all("events" not in w and w["caption"].startswith("Scene:") for w in merged["windows"])
    assert [e["start"] for e in merged["events"]] == sorted(e["start"] for e in merged["events"])


def test_window_without_scene_or_events_is_skipped_in_the_text():
    merged = merge_window_captions(
        [
            ((0.0, 120.0), caption_result([event(1.0, 2.0, "A.")], scene="A kitchen.")),
            ((110.0, 230.0), {"caption": "", "scene": "", "events": []}),
        ]
    )
    assert merged["scene"] == "[0.0 - 120.0] A kitchen."
    assert len(merged["windows"]) == 2


@pytest.mark.parametrize("bad", [[], [((5.0, 3.0), {})], [((math.nan, 3.0), {})], [((0.0, 3.0), "text")]])
def test_bad_window_results_raise(bad):
    with pytest.raises(ValueError, match="merge_window_captions"):
        merge_window_captions(bad)
    with pytest.raises(ValueError, match="merge_window_finds"):
        merge_window_finds(bad)


# --- merge_window_finds -------------------------------------------------------------------------


def test_find_picks_the_most_confident_span_and_keeps_the_others():
    merged = merge_window_finds(
        [
            ((0.0, 120.0), find_result((30.0, 35.0), confidence=0.4, raw="From 30.0 to 35.0.")),
            ((110.0, 230.0), find_result((50.0, 60.0), confidence=0.8, raw="From 50.0 to 60.0.")),
        ]
    )
    assert merged["span"] == (160.0, 170.0)
    assert merged["confidence"] == 0.8
    assert merged["raw"] == "From 50.0 to 60.0."
    assert merged["candidates"] == [
        {"span": (30.0, 35.0), "confidence": 0.4, "windows": [0]},
        {"span": (160.0, 170.0), "confidence": 0.8, "windows": [1]},
    ]
    assert [w["span"] for w in merged["windows"]] == [(30.0, 35.0), (160.0, 170.0)]


@pytest.mark.parametrize("confidences", [(None, None), (0.5, 0.5)])
def test_find_without_confidences_or_on_a_tie_takes_the_first(confidences):
    merged = merge_window_finds(
        [
            ((0.0, 120.0), find_result((30.0, 35.0), confidence=confidences[0])),
            ((110.0, 230.0), find_result((50.0, 60.0), confidence=confidences[1])),
        ]
    )
    assert merged["span"] == (30.0, 35.0)
    assert merged["confidence"] == confidences[0]


def test_find_prefers_a_known_confidence_to_a_missing_one():
    merged = merge_window_finds(
        [
            ((0.0, 120.0), find_result((30.0, 35.0))),
            ((110.0, 230.0), find_result((50.0, 60.0), confidence=0.1)),
        ]
    )
    assert merged["span"] == (160.0, 170.0)


def test_find_with_no_span_anywhere():
    merged = merge_window_finds(
        [
            ((0.0, 120.0), find_result(None, raw="I cannot tell.", format_ok=False)),
            ((110.0, 230.0), find_result(None, raw="Nothing.", format_ok=False)),
        ]
    )
    assert merged["span"] is None and merged["confidence"] is None
    assert merged["candidates"] == []
    assert merged["format_ok"] is False
    assert merged["raw"] == "[0.0 - 120.0] I cannot tell.\n[110.0 - 230.0] Nothing."


def test_find_span_cut_by_a_seam_is_joined():
    merged = merge_window_finds(
        [
            ((0.0, 120.0), find_result((112.0, 119.5), confidence=0.6, raw="From 112.0 to 119.5.")),
            ((110.0, 230.0), find_result((0.5, 8.0), confidence=0.5, raw="From 0.5 to 8.0.")),
        ]
    )
    assert merged["span"] == (110.5, 119.5)
    assert merged["candidates"] == [{"span": (110.5, 119.5), "confidence": 0.6, "windows": [0, 1]}]
    assert merged["raw"] == "From 112.0 to 119.5.\nFrom 0.5 to 8.0."


def test_find_span_continuing_past_the_seam_is_joined():
    # the event is 100-130: window 0 reports it until its end, window 1 from its start
    merged = merge_window_finds(
        [
            ((0.0, 120.0), find_result((100.0, 120.0), confidence=0.3)),
            ((110.0, 230.0), find_result((0.0, 20.0), confidence=None)),
        ]
    )
    assert merged["span"] == (100.0, 130.0)
    assert merged["confidence"] == 0.3
    assert merged["candidates"][0]["windows"] == [0, 1]


def test_find_spans_not_at_the_boundaries_are_not_joined():
    merged = merge_window_finds(
        [
            ((0.0, 120.0), find_result((100.0, 120.0 - BOUNDARY_TOLERANCE_S - 0.5))),
            ((110.0, 230.0), find_result((0.0, 20.0))),
        ]
    )
    assert len(merged["candidates"]) == 2


def test_find_spans_at_the_boundaries_that_do_not_meet_are_not_joined():
    # window 1's span starts at its start and ends before window 0's span begins: two different answers
    merged = merge_window_finds(
        [
            ((0.0, 120.0), find_result((115.0, 120.0))),
            ((110.0, 230.0), find_result((0.0, 2.0))),
        ]
    )
    assert [c["span"] for c in merged["candidates"]] == [(115.0, 120.0), (110.0, 112.0)]


def test_find_flags_cover_every_window():
    truncated = {**find_result(None, raw="From 1", format_ok=False), "truncated": True}
    merged = merge_window_finds(
        [
            ((0.0, 120.0), find_result((30.0, 35.0), format_ok=True)),
            ((110.0, 230.0), truncated),
        ]
    )
    assert merged["span"] == (30.0, 35.0)
    assert merged["format_ok"] is False and merged["truncated"] is True
