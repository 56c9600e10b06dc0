"""Make parsed time ranges usable downstream, and say what had to change.

The parsers in :mod:`marlin_core.contract` return times exactly as the model wrote them. Before they
become labels or metrics they must lie inside the video and have a positive length. Every function
here returns, beside the clean result, one human-readable line per change, so nothing is altered
silently. What changes, in this order: a range with a missing, non-numeric or non-finite time is
dropped; a reversed range is swapped; a zero-length range is dropped; a range wholly outside
``[0, duration_s]`` is dropped, one partly outside is clamped to it; events are sorted by start
(then end) time. Overlapping events are left alone: the model may describe concurrent things.

Units: seconds from the start of the clip.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from numbers import Real
from typing import Any


def sanitize_events(
    events: Sequence[Mapping[str, Any]], duration_s: float | None
) -> tuple[list[dict[str, Any]], list[str]]:
    """Clean parsed caption events: drop, swap, clamp and sort their time ranges.

    Args:
        events: dicts with ``start`` and ``end`` in seconds (and ``description``); other keys, e.g.
            a ``confidence``, are kept as they are. The input is not modified.
        duration_s: clip length in seconds, or None when unknown (then nothing is clamped).

    Returns:
        ``(clean_events, changes)``: new dicts sorted by start time, and one line per change, e.g.
        ``"event 2 <9.0 - 4.0>: start and end swapped"`` (events numbered from 1 in input order).

    Raises:
        ValueError: ``duration_s`` is not None and not a positive finite number.
    """
    duration_s = _checked_duration(duration_s, "sanitize_events")
    kept: list[dict[str, Any]] = []
    changes: list[str] = []
    for number, event in enumerate(events, start=1):
        start, end = event.get("start"), event.get("end")
        clean, notes = _sanitize_range(start, end, duration_s)
        label = f"event {number} {_describe(start, end)}"
        changes.extend(f"{label}: {note}" for note in notes)
        if clean is not None:
            kept.append({**event, "start": clean[0], "end": clean[1]})
    ordered = sorted(kept, key=lambda e: (e["start"], e["end"]))
    if any(a is not b for a, b in zip(ordered, kept)):
        changes.append("events reordered by start time")
    return ordered, changes


def sanitize_span(
    span: Sequence[float] | None, duration_s: float | None
) -> tuple[tuple[float, float] | None, list[str]]:
    """Clean one parsed find span: drop, swap or clamp it.

    Args:
        span: ``(start, end)`` in seconds, or None when nothing was parsed (returned unchanged).
        duration_s: clip length in seconds, or None when unknown (then nothing is clamped).

    Returns:
        ``(clean_span, changes)``: the span as ``(start, end)`` floats, or None when it had to be
        dropped, and one line per change, e.g. ``"span <5.0 - 3.0>: start and end swapped"``.

    Raises:
        ValueError: ``duration_s`` is not None and not a positive finite number, or ``span`` does
            not hold exactly two values.
    """
    duration_s = _checked_duration(duration_s, "sanitize_span")
    if span is None:
        return None, []
    if len(span) != 2:
        raise ValueError(f"sanitize_span: a span is (start, end) in seconds, got {len(span)} values: {span!r}")
    start, end = span
    clean, notes = _sanitize_range(start, end, duration_s)
    label = f"span {_describe(start, end)}"
    return clean, [f"{label}: {note}" for note in notes]


def _checked_duration(duration_s: float | None, where: str) -> float | None:
    """The duration as a float (None stays None); a duration that is no clip length is an error."""
    if duration_s is None:
        return None
    seconds = _as_float(duration_s)
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(
            f"{where}: duration_s must be the clip length in seconds (a positive finite number) "
            f"or None when unknown, got {duration_s!r}"
        )
    return seconds


def _sanitize_range(start: object, end: object, duration_s: float | None) -> tuple[tuple[float, float] | None, list[str]]:
    """The cleaned ``(start, end)`` or None when dropped, and the notes on what changed."""
    start, end = _as_float(start), _as_float(end)
    if start is None or end is None:
        return None, ["start or end missing or not a number, dropped"]
    if not (math.isfinite(start) and math.isfinite(end)):
        return None, ["time is not a finite number, dropped"]
    notes = []
    if start > end:
        start, end = end, start
        notes.append("start and end swapped")
    if end == start:
        notes.append("zero length, dropped")
        return None, notes
    if duration_s is not None:
        if end <= 0 or start >= duration_s:
            notes.append(f"outside the video [0.0, {duration_s!r}] s, dropped")
            return None, notes
        if start < 0:
            start = 0.0
            notes.append("start clamped to 0.0 s")
        if end > duration_s:
            end = duration_s
            notes.append(f"end clamped to {end!r} s (video duration)")
    return (start, end), notes


def _as_float(value: object) -> float | None:
    """The value as a float (an int too large for one becomes infinite), or None if not a number."""
    if not isinstance(value, Real) or isinstance(value, bool):
        return None
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _describe(start: object, end: object) -> str:
    """``<9.0 - 4.0>`` for two numbers, their reprs otherwise."""
    start_s, end_s = _as_float(start), _as_float(end)
    start_text = repr(start) if start_s is None else repr(start_s)
    end_text = repr(end) if end_s is None else repr(end_s)
    return f"<{start_text} - {end_text}>"
