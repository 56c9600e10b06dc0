"""Tests of marlin_core.sanitize: every fix of a time range is made and reported, never silently."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marlin_core.contract import parse_caption, parse_find
from marlin_core.sanitize import sanitize_events, sanitize_span

FIXTURE = Path(__file__).parent / "fixtures" / "marlin_real_outputs.json"
CASES = json.loads(FIXTURE.read_text(encoding="utf-8"))["cases"]
NAN, INF = float("nan"), float("inf")

SPAN_TABLE = [
    # id, span, duration_s, clean span, changes
    ("clean", (3.0, 4.0), 10.0, (3.0, 4.0), []),
    ("ints become floats", (3, 4), 10, (3.0, 4.0), []),
    ("none stays none", None, 10.0, None, []),
    ("reversed", (9.0, 4.0), 10.0, (4.0, 9.0), ["span <9.0 - 4.0>: start and end swapped"]),
    ("negative start", (-1.0, 4.0), 10.0, (0.0, 4.0), ["span <-1.0 - 4.0>: start clamped to 0.0 s"]),
    ("end past the video", (8.0, 12.0), 10.0, (8.0, 10.0), ["span <8.0 - 12.0>: end clamped to 10.0 s (video duration)"]),
    (
        "reversed and past the video",
        (12.0, 8.0), 10.0, (8.0, 10.0),
        ["span <12.0 - 8.0>: start and end swapped", "span <12.0 - 8.0>: end clamped to 10.0 s (video duration)"],
    ),
    ("wholly after the video", (11.0, 12.0), 10.0, None, ["span <11.0 - 12.0>: outside the video [0.0, 10.0] s, dropped"]),
    ("starting at the end", (10.0, 12.0), 10.0, None, ["span <10.0 - 12.0>: outside the video [0.0, 10.0] s, dropped"]),
    ("wholly before the video", (-3.0, 0.0), 10.0, None, ["span <-3.0 - 0.0>: outside the video [0.0, 10.0] s, dropped"]),
    ("zero length", (4.0, 4.0), 10.0, None, ["span <4.0 - 4.0>: zero length, dropped"]),
    ("nan", (NAN, 4.0), 10.0, None, ["span <nan - 4.0>: time is not a finite number, dropped"]),
    ("inf", (1.0, INF), 10.0, None, ["span <1.0 - inf>: time is not a finite number, dropped"]),
    ("not a number", ("1", 2.0), 10.0, None, ["span <'1' - 2.0>: start or end missing or not a number, dropped"]),
    ("bool is not a time", (True, 2.0), 10.0, None, ["span <True - 2.0>: start or end missing or not a number, dropped"]),
    ("int too large for a float", (1, 10**400), 10.0, None, ["span <1.0 - inf>: time is not a finite number, dropped"]),
    ("unknown duration: no clamping", (-1.0, 500.0), None, (-1.0, 500.0), []),
    ("unknown duration: still swapped", (5.0, 3.0), None, (3.0, 5.0), ["span <5.0 - 3.0>: start and end swapped"]),
    ("unknown duration: still dropped", (3.0, 3.0), None, None, ["span <3.0 - 3.0>: zero length, dropped"]),
]


@pytest.mark.parametrize(
    ("span", "duration_s", "clean", "changes"), [row[1:] for row in SPAN_TABLE], ids=[row[0] for row in SPAN_TABLE]
)
def test_sanitize_span(span, duration_s, clean, changes):
    result, notes = sanitize_span(span, duration_s)
    assert result == clean and notes == changes
    if result is not None:
        assert type(result) is tuple and all(type(t) is float for t in result)


@pytest.mark.parametrize(
    "duration_s", [0.0, -1.0, NAN, INF, 10**400, "10", True], ids=["zero", "negative", "nan", "inf", "huge", "str", "bool"]
)
def test_a_bad_duration_is_an_error_not_a_guess(duration_s):
    with pytest.raises(ValueError, match="duration_s"):
        sanitize_events([], duration_s)
    with pytest.raises(ValueError, match="duration_s"):
        sanitize_span((1.0, 2.0), duration_s)


def test_a_span_has_two_values():
    with pytest.raises(ValueError, match=r"sanitize_span: a span is \(start, end\)"):
        sanitize_span((1.0, 2.0, 3.0), 10.0)


def test_sanitize_events_fixes_sorts_and_reports_each_change():
    events = [
        {"start": 9.0, "end": 4.0, "description": "reversed", "confidence": 0.5},
        {"start": -1.0, "end": 3.0, "description": "early"},
        {"start": 10.0, "end": 12.0, "description": "late"},
        {"start": 12.0, "end": 13.0, "description": "after"},
        {"start": NAN, "end": 1.0, "description": "nan"},
        {"start": 3.0, "end": 3.0, "description": "empty"},
        {"end": 3.0, "description": "no start"},
        {"start": 5.0, "end": 6.0, "description": "clean"},
    ]
    before = copy.deepcopy(events)
    clean, changes = sanitize_events(events, 11.0)
    assert clean == [
        {"start": 0.0, "end": 3.0, "description": "early"},
        {"start": 4.0, "end": 9.0, "description": "reversed", "confidence": 0.5},
        {"start": 5.0, "end": 6.0, "description": "clean"},
        {"start": 10.0, "end": 11.0, "description": "late"},
    ]
    assert changes == [
        "event 1 <9.0 - 4.0>: start and end swapped",
        "event 2 <-1.0 - 3.0>: start clamped to 0.0 s",
        "event 3 <10.0 - 12.0>: end clamped to 11.0 s (video duration)",
        "event 4 <12.0 - 13.0>: outside the video [0.0, 11.0] s, dropped",
        "event 5 <nan - 1.0>: time is not a finite number, dropped",
        "event 6 <3.0 - 3.0>: zero length, dropped",
        "event 7 <None - 3.0>: start or end missing or not a number, dropped",
        "events reordered by start time",
    ]
    assert str(events) == str(before), "the input must not be modified"


def test_sort_is_by_start_then_end_and_stable():
    events = [
        {"start": 2.0, "end": 5.0, "description": "b"},
        {"start": 2.0, "end": 3.0, "description": "a"},
        {"start": 2.0, "end": 3.0, "description": "a2"},
    ]
    clean, changes = sanitize_events(events, None)
    assert [e["description"] for e in clean] == ["a", "a2", "b"]
    assert changes == ["events reordered by start time"]


def test_numpy_numbers_are_times():
    np = pytest.importorskip("numpy")
    clean, changes = sanitize_span((np.float32(1.5), np.int64(3)), np.float64(10.0))
    assert clean == (1.5, 3.0) and type(clean[0]) is float and changes == []


def test_clean_sorted_events_come_back_equal_with_no_changes():
    events = [{"start": 0.0, "end": 1.0, "description": "a"}, {"start": 0.5, "end": 2.0, "description": "overlap"}]
    assert sanitize_events(events, 2.0) == (events, [])


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_real_outputs_need_no_change(case):
    duration_s = case["video"]["duration_s"]
    if case["mode"] == "caption":
        events = parse_caption(case["raw"])["events"]
        assert sanitize_events(events, duration_s) == (events, [])
    else:
        span = parse_find(case["raw"])["span"]
        assert sanitize_span(span, duration_s) == (span, [])


# --- properties -----------------------------------------------------------------------------------

TIME = st.one_of(st.floats(), st.integers(-100, 100), st.just(-(10**400)), st.none(), st.just("1.0"))
DURATION = st.one_of(st.none(), st.floats(min_value=0.001, max_value=1e6))
EVENTS = st.lists(
    st.fixed_dictionaries({"start": TIME, "end": TIME, "description": st.text(max_size=5), "confidence": st.floats()}),
    max_size=10,
)


def finite_float(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def already_clean(event: dict, duration_s: float | None) -> bool:
    """A range no sanitising step touches, stated independently of the module."""
    start, end = event["start"], event["end"]
    if not all(isinstance(t, (int, float)) and not isinstance(t, bool) and finite_float(t) for t in (start, end)):
        return False
    return start < end and (duration_s is None or (0 <= start and end <= duration_s))


@given(EVENTS, DURATION)
def test_sanitized_events_are_usable_and_nothing_changes_silently(events, duration_s):
    clean, changes = sanitize_events(events, duration_s)
    for event in clean:
        assert type(event["start"]) is float and type(event["end"]) is float
        assert math.isfinite(event["start"]) and event["start"] < event["end"]
        if duration_s is not None:
            assert 0.0 <= event["start"] and event["end"] <= duration_s
        assert set(event) == {"start", "end", "description", "confidence"}
    assert [(e["start"], e["end"]) for e in clean] == sorted((e["start"], e["end"]) for e in clean)
    for number, event in enumerate(events, start=1):
        mentioned = any(note.startswith(f"event {number} <") for note in changes)
        assert mentioned != already_clean(event, duration_s), (number, event, changes)
    dropped = sum(note.endswith("dropped") for note in changes)
    assert len(clean) == len(events) - dropped


@given(st.tuples(TIME, TIME), DURATION)
def test_sanitized_span_is_usable_or_none_with_a_reason(span, duration_s):
    clean, changes = sanitize_span(span, duration_s)
    if clean is None:
        assert changes and changes[-1].endswith("dropped")
    else:
        assert math.isfinite(clean[0]) and clean[0] < clean[1]
        if duration_s is not None:
            assert 0.0 <= clean[0] and clean[1] <= duration_s
    assert bool(changes) != already_clean({"start": span[0], "end": span[1]}, duration_s)
