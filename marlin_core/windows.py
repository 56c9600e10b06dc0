"""Long videos as overlapping windows: where to cut, and how to put the answers back together.

Marlin sees at most about two minutes per call (240 frames at 2 fps), so a longer video is cut into
windows that are decoded and run one by one. This module holds the pure arithmetic around that:
planning the windows, moving window-local times onto the source timeline, and merging the per-window
caption and find results into one result with the same keys as an unwindowed call.

All times are in seconds. Per-window results come in window-local seconds (0 = the window's start);
merged results are on the global timeline (0 = the video's start). Window indices count from 0 in
timeline order.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from .contract import format_events
from .defaults import DEFAULT_OVERLAP_S, DEFAULT_WINDOW_S  # window length and overlap: see defaults.py

__all__ = [
    "BOUNDARY_TOLERANCE_S",
    "DEFAULT_OVERLAP_S",
    "DEFAULT_WINDOW_S",
    "SIMILARITY_THRESHOLD",
    "Window",
    "WindowStore",
    "merge_window_captions",
    "merge_window_finds",
    "normalize_text",
    "plan_windows",
    "shift_events",
    "text_similarity",
]

# Events from different windows are the same event when they overlap in time and their normalised
# descriptions have a difflib ratio at least this high. Chosen on Marlin-style one-line descriptions:
# rewordings ("a man opens the door" / "the man opens a door") score 1.0 after normalisation, while
# different actions of one subject score lower ("a man opens the door" / "a man closes the door": 0.83).
SIMILARITY_THRESHOLD = 0.85
# A find span whose end is within this of its window's end (or start within this of the window's
# start) is treated as cut by that boundary: two frames at Marlin's 2 fps.
BOUNDARY_TOLERANCE_S = 1.0
# Times closer than this count as equal when checking whether two ranges touch: window starts need
# not be round, so the same instant reached from two windows can differ by float rounding.
TIME_EPSILON_S = 1e-6
# Words dropped before comparing descriptions: they change between rewordings of one event.
_ARTICLES = frozenset({"a", "an", "the"})
_NON_WORD_RE = re.compile(r"[^\w\s]")

Window = tuple[float, float]


def plan_windows(
    duration_s: float, window_s: float = DEFAULT_WINDOW_S, overlap_s: float = DEFAULT_OVERLAP_S
) -> list[Window]:
    """Cut ``[0, duration_s]`` into the fewest equal windows (<= ``window_s``) overlapping by ``overlap_s``.

    A video no longer than ``window_s`` gives the single window ``(0.0, duration_s)``: the caller then
    runs it exactly as an unwindowed video. Otherwise all windows have the same length ``L`` (so no
    tiny last window: ``window_s / 2 < L <= window_s``), consecutive windows overlap by exactly
    ``overlap_s``, the first starts at 0 and the last ends at ``duration_s`` (up to float rounding).

    Args:
        duration_s: video length in seconds; finite and > 0.
        window_s: longest window in seconds; finite and > 0.
        overlap_s: overlap between consecutive windows in seconds; 0 <= overlap_s < window_s.

    Returns:
        ``[(start_s, end_s), ...]`` in timeline order, in seconds.

    Raises:
        ValueError: a bad argument; the message names it and the accepted range.
    """
    if not (math.isfinite(duration_s) and duration_s > 0):
        raise ValueError(
            f"plan_windows: duration_s={duration_s!r} must be a finite number of seconds > 0; "
            "probe the video's duration first"
        )
    if not (math.isfinite(window_s) and window_s > 0):
        raise ValueError(f"plan_windows: window_s={window_s!r} must be a finite number of seconds > 0")
    if not (math.isfinite(overlap_s) and 0 <= overlap_s < window_s):
        raise ValueError(
            f"plan_windows: overlap_s={overlap_s!r} must be >= 0 and shorter than window_s={window_s!r} "
            "(seconds)"
        )
    if duration_s <= window_s:
        return [(0.0, float(duration_s))]
    # n windows of length L with overlap O cover D when n*L - (n-1)*O = D, so L = O + (D - O) / n;
    # the fewest windows is the smallest n with L <= window_s (the loop guards float rounding).
    count = max(2, math.ceil((duration_s - overlap_s) / (window_s - overlap_s)))
    while overlap_s + (duration_s - overlap_s) / count > window_s:
        count += 1
    length_s = overlap_s + (duration_s - overlap_s) / count
    step_s = length_s - overlap_s
    windows = [(i * step_s, i * step_s + length_s) for i in range(count - 1)]
    windows.append(((count - 1) * step_s, float(duration_s)))
    return windows


def shift_events(events: Iterable[dict], offset_s: float) -> list[dict]:
    """Copy ``events`` with ``start`` and ``end`` moved by ``offset_s`` seconds; other keys are kept.

    Args:
        events: dicts with ``start`` and ``end`` in seconds (e.g. window-local).
        offset_s: seconds to add (e.g. the window's start on the source timeline); finite.

    Returns:
        New dicts; the input is not modified.
    """
    if not math.isfinite(offset_s):
        raise ValueError(f"shift_events: offset_s={offset_s!r} must be a finite number of seconds")
    return [{**event, "start": event["start"] + offset_s, "end": event["end"] + offset_s} for event in events]


def merge_window_captions(window_results: Sequence[tuple[Window, dict]]) -> dict:
    """Merge per-window caption results into one caption result on the global timeline.

    Events are shifted by their window's start. Two events from different windows that overlap in time
    (touching counts) and have similar descriptions (see ``SIMILARITY_THRESHOLD``) are one event seen
    twice, at a seam or inside an overlap: they become one event spanning both, with the description
    (and extra keys) of the longer one and the highest ``confidence``. Events of one window are never
    merged with each other: the model listed them apart.

    Args:
        window_results: ``[((start_s, end_s), result), ...]``, windows in seconds on the source
            timeline; each result has ``caption`` (raw text), ``scene``, ``events`` in window-local
            seconds (each ``start``, ``end``, ``description``, any extra keys such as ``confidence``),
            and maybe ``raw`` / ``format_ok`` / ``truncated`` / ``dropped_lines``. Any order; they are
            sorted by start.

    Returns:
        ``{"caption", "scene", "events", "raw", "format_ok", "truncated", "dropped_lines", "windows"}``:

        - ``events``: sorted by ``(start, end)``, global seconds, each with ``windows`` (sorted list of
          the indices of the windows that saw it) besides its own keys.
        - ``scene``: one line per window with a scene, ``"[0.0 - 120.0] scene text"``.
        - ``caption``: the merged result in Marlin's text format: ``Scene:`` and the scene lines, a blank
          line, ``Events:`` and one ``<start - end> description`` line per event in global seconds.
        - ``raw``: each window's ``raw`` (else its ``caption``) under its ``"[start - end]"`` line,
          windows separated by a blank line; the times inside are window-local, as generated.
        - ``format_ok``: every window's ``format_ok`` (missing counts as True); ``truncated``: any
          window's ``truncated`` (missing counts as False); ``dropped_lines``: all windows' in order.
        - ``windows``: per window, ``start`` and ``end`` (global seconds) and every key of its result
          except ``events`` (which live, merged, in ``events``).
    """
    windows = _sorted_windows(window_results, "merge_window_captions")
    events = []
    for index, ((start_s, _), result) in enumerate(windows):
        for event in shift_events(result.get("events") or [], start_s):
            events.append({**event, "windows": [index]})
    merged = _merge_events(sorted(events, key=lambda e: (e["start"], e["end"])))

    scene_lines = [
        f"{_label(bounds)} {result['scene'].strip()}"
        for bounds, result in windows
        if (result.get("scene") or "").strip()
    ]
    scene = "\n".join(scene_lines)
    return {
        "caption": f"Scene:\n{scene}\n\nEvents:\n{format_events(merged)}",
        "scene": scene,
        "events": merged,
        "raw": "\n\n".join(
            f"{_label(bounds)}\n{result.get('raw', result.get('caption', ''))}" for bounds, result in windows
        ),
        "format_ok": all(result.get("format_ok", True) for _, result in windows),
        "truncated": any(result.get("truncated", False) for _, result in windows),
        "dropped_lines": [line for _, result in windows for line in result.get("dropped_lines", [])],
        "windows": [_window_record(bounds, result, exclude=("events",)) for bounds, result in windows],
    }


def merge_window_finds(window_results: Sequence[tuple[Window, dict]]) -> dict:
    """Merge per-window find results into one answer on the global timeline.

    Each window's span is shifted by the window's start and becomes a candidate. A span that ends at
    the end of window k and one that starts at the start of window k+1 (within ``BOUNDARY_TOLERANCE_S``)
    and that overlap in time (touching counts) are one event cut by the seam: they become one candidate
    spanning both, with the higher confidence. The answer is the candidate with the highest
    ``confidence``; without confidences, or on a tie, the earliest one.

    Args:
        window_results: ``[((start_s, end_s), result), ...]``, windows in seconds on the source
            timeline; each result has ``raw``, ``span`` (``(start_s, end_s)`` in window-local seconds,
            or None), ``format_ok`` and maybe ``truncated`` and ``confidence`` (float in [0, 1] or
            None). Any order; they are sorted by start.

    Returns:
        ``{"raw", "span", "format_ok", "truncated", "confidence", "candidates", "windows"}``:

        - ``span``: the chosen ``(start_s, end_s)`` in global seconds, or None when no window found one.
        - ``raw``: the raw text of the window(s) behind the chosen span, joined by a newline; when no
          window found a span, every window's raw text, each line prefixed by ``"[start - end] "``.
        - ``confidence``: the chosen candidate's confidence (None when missing or nothing found).
        - ``format_ok``: every window's ``format_ok`` (missing counts as True); ``truncated``: any
          window's ``truncated`` (missing counts as False).
        - ``candidates``: every candidate in timeline order, ``{"span", "confidence", "windows"}`` with
          ``windows`` the sorted indices of the windows it came from.
        - ``windows``: per window, ``start`` and ``end`` and every key of its result, with ``span``
          moved to global seconds.
    """
    windows = _sorted_windows(window_results, "merge_window_finds")
    candidates = []
    for index, ((start_s, _), result) in enumerate(windows):
        span = result.get("span")
        if span is not None:
            candidates.append(
                {
                    "span": _shift_span(span, start_s),
                    "confidence": result.get("confidence"),
                    "windows": [index],
                }
            )
    candidates = _join_cut_spans(candidates, [bounds for bounds, _ in windows])

    records = []
    for bounds, result in windows:
        record = _window_record(bounds, result, exclude=())
        if result.get("span") is not None:
            record["span"] = _shift_span(result["span"], bounds[0])
        records.append(record)

    best = max(candidates, key=_confidence_key, default=None)
    if best is None:
        raw = "\n".join(f"{_label(bounds)} {result.get('raw', '')}" for bounds, result in windows)
    else:
        raw = "\n".join(windows[index][1].get("raw", "") for index in best["windows"])
    return {
        "raw": raw,
        "span": None if best is None else best["span"],
        "format_ok": all(result.get("format_ok", True) for _, result in windows),
        "truncated": any(result.get("truncated", False) for _, result in windows),
        "confidence": None if best is None else best["confidence"],
        "candidates": candidates,
        "windows": records,
    }


def normalize_text(text: str) -> str:
    """``text`` lower-cased, without punctuation or articles, single-spaced: for comparing descriptions."""
    words = _NON_WORD_RE.sub(" ", text.lower()).split()
    return " ".join(word for word in words if word not in _ARTICLES)


def text_similarity(a: str, b: str) -> float:
    """``difflib.SequenceMatcher`` ratio of the normalised texts, in [0, 1] (1 = same words)."""
    return difflib.SequenceMatcher(None, normalize_text(a), normalize_text(b)).ratio()


def _sorted_windows(window_results: Sequence[tuple[Window, dict]], where: str) -> list[tuple[Window, dict]]:
    """Check the ``((start_s, end_s), result)`` pairs and sort them by start."""
    if not window_results:
        raise ValueError(f"{where}: no window results; pass one ((start_s, end_s), result) per window")
    for (start_s, end_s), result in window_results:
        if not (math.isfinite(start_s) and math.isfinite(end_s) and 0 <= start_s < end_s):
            raise ValueError(
                f"{where}: window ({start_s!r}, {end_s!r}) must have 0 <= start_s < end_s in finite seconds, "
                "as plan_windows returns"
            )
        if not isinstance(result, dict):
            raise ValueError(
                f"{where}: window ({start_s!r}, {end_s!r}) has a {type(result).__name__}, not a result dict"
            )
    return sorted(window_results, key=lambda pair: pair[0])


def _merge_events(events: list[dict]) -> list[dict]:
    """Fold events (sorted by start) that are one event seen by several windows; see merge_window_captions."""
    merged: list[dict] = []
    for event in events:
        matches = [
            (text_similarity(kept["description"], event["description"]), i)
            for i, kept in enumerate(merged)
            if not set(kept["windows"]) & set(event["windows"])
            and _touch_or_overlap((kept["start"], kept["end"]), (event["start"], event["end"]))
        ]
        similarity, index = max(matches, default=(0.0, None))
        if index is not None and similarity >= SIMILARITY_THRESHOLD:
            merged[index] = _join_events(merged[index], event)
        else:
            merged.append(event)
    return sorted(merged, key=lambda e: (e["start"], e["end"]))


def _join_events(a: dict, b: dict) -> dict:
    """One event covering ``a`` and ``b``, keeping the keys of the longer (it saw more of the event)."""
    longer = b if (b["end"] - b["start"]) > (a["end"] - a["start"]) else a
    joined = {
        **longer,
        "start": min(a["start"], b["start"]),
        "end": max(a["end"], b["end"]),
        "windows": sorted(set(a["windows"]) | set(b["windows"])),
    }
    if "confidence" in a or "confidence" in b:
        joined["confidence"] = _max_confidence(a.get("confidence"), b.get("confidence"))
    return joined


def _join_cut_spans(candidates: list[dict], bounds: list[Window]) -> list[dict]:
    """Join candidates from consecutive windows whose spans meet at the seam; see merge_window_finds."""
    joined: list[dict] = []
    for candidate in candidates:
        if joined:
            previous = joined[-1]
            last, first = previous["windows"][-1], candidate["windows"][0]
            (prev_start, prev_end), (start, end) = previous["span"], candidate["span"]
            if (
                first == last + 1
                and prev_end >= bounds[last][1] - BOUNDARY_TOLERANCE_S
                and start <= bounds[first][0] + BOUNDARY_TOLERANCE_S
                and _touch_or_overlap(previous["span"], candidate["span"])
            ):
                joined[-1] = {
                    "span": (min(prev_start, start), max(prev_end, end)),
                    "confidence": _max_confidence(previous["confidence"], candidate["confidence"]),
                    "windows": previous["windows"] + candidate["windows"],
                }
                continue
        joined.append(candidate)
    return joined


def _touch_or_overlap(a: Window, b: Window) -> bool:
    """Whether two ``(start_s, end_s)`` ranges share at least one instant (up to ``TIME_EPSILON_S``)."""
    return a[0] <= b[1] + TIME_EPSILON_S and b[0] <= a[1] + TIME_EPSILON_S


def _max_confidence(a: float | None, b: float | None) -> float | None:
    """The higher of two confidences, ignoring missing ones (None when both are missing)."""
    present = [c for c in (a, b) if c is not None]
    return max(present) if present else None


def _confidence_key(candidate: dict) -> float:
    """Sort key: the confidence, with a missing one below every real one."""
    confidence = candidate["confidence"]
    return -math.inf if confidence is None else float(confidence)


def _shift_span(span: Sequence[float], offset_s: float) -> tuple[float, float]:
    """``(start_s, end_s)`` moved by ``offset_s`` seconds."""
    return (span[0] + offset_s, span[1] + offset_s)


def _window_record(bounds: Window, result: dict, exclude: Sequence[str]) -> dict[str, Any]:
    """A window's bounds plus its result's keys (minus ``exclude``), for the merged result's ``windows``."""
    record = {key: value for key, value in result.items() if key not in exclude}
    record.update(start=bounds[0], end=bounds[1])
    return record


def _label(bounds: Window) -> str:
    """``"[start - end]"`` with one decimal, in seconds."""
    return f"[{bounds[0]:.1f} - {bounds[1]:.1f}]"


class WindowStore(Protocol):
    """Where finished windows of one long video are kept, so an interrupted run resumes per window.

    ``load`` returns ``{(start_s, end_s): window result}`` of the windows already done (results in
    window-local seconds, as the engine produced them); ``save`` is called after each new window.
    """

    def load(self) -> dict[Window, Any]: ...

    def save(self, window: Window, result: Any) -> None: ...
