"""What a person does to Marlin's proposed events, as pure functions over seconds (no FiftyOne).

A reviewer accepts, rejects or fixes each proposed event: nudges an edge by :data:`NUDGE_S`, sets an edge to
the playhead, splits an event in two, merges it with the next. Every result stays inside ``[0, duration_s]``
and keeps at least :data:`MIN_EVENT_S`, so an edit can never make an empty or reversed span (the App's review
panel calls these; so can a script). :func:`review_progress` sums a dataset's review into the figures that
tell a team whether Marlin's proposals are good enough to accept in bulk.

Spans are ``(start_s, end_s)`` tuples in seconds; ``duration_s`` ``None`` means the length is unknown (no
upper clamp).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable

from .errors import MarlinError
from .metrics import temporal_iou

__all__ = [
    "ACTIONS", "EDGES", "MIN_EVENT_S", "NUDGE_S", "NEW_EVENT_S", "REDECIDE_IOU", "ReviewEditError",
    "ReviewProgress", "boundary_change_s", "clamp_span", "decided_before", "merge", "new_span", "nudge",
    "review_progress", "set_edge", "split",
]

# One press of a nudge key: half a second is what Marlin's 2 fps sampling can tell apart.
NUDGE_S = 0.5
# The shortest event an edit may leave: one frame at 10 fps; shorter spans vanish as frames.
MIN_EVENT_S = 0.1
# Length of an event the reviewer adds at the playhead.
NEW_EVENT_S = 2.0
# A new proposal this close (tIoU, same text) to a decided one is that decision again, not new work.
REDECIDE_IOU = 0.9
EDGES = ("start", "end")
# What a reviewed label records as its ``action``; ``rejected`` ones are kept apart from the labels.
ACTIONS = ("accepted", "fixed", "added", "rejected")

Span = tuple[float, float]


class ReviewEditError(MarlinError, ValueError):
    """An edit that cannot be made (split outside the event, unknown edge); the message says why."""


def clamp_span(start_s: float, end_s: float, duration_s: float | None) -> Span:
    """``(start_s, end_s)`` ordered, inside ``[0, duration_s]`` and at least :data:`MIN_EVENT_S` long.

    A span that would be shorter grows away from the video's nearest end (a video shorter than
    :data:`MIN_EVENT_S` gives the whole video).
    """
    start_s, end_s = sorted((float(start_s), float(end_s)))
    limit = float(duration_s) if duration_s else None
    start_s = max(0.0, start_s if limit is None else min(start_s, limit))
    end_s = max(0.0, end_s if limit is None else min(end_s, limit))
    if end_s - start_s < MIN_EVENT_S:
        if limit is None or start_s + MIN_EVENT_S <= limit:
            end_s = start_s + MIN_EVENT_S
        else:
            end_s, start_s = limit, max(0.0, limit - MIN_EVENT_S)
    return round(start_s, 3), round(end_s, 3)


def _edge(edge: str) -> str:
    if edge not in EDGES:
        raise ReviewEditError(f"edge must be one of {EDGES}, not {edge!r}")
    return edge


def set_edge(span: Span, edge: str, at_s: float, duration_s: float | None) -> Span:
    """Move one edge of ``span`` to ``at_s`` (e.g. the playhead); the other edge stays where it is.

    The moved edge stops :data:`MIN_EVENT_S` short of the other one and at the video's ends.
    """
    start_s, end_s = span
    limit = float(duration_s) if duration_s else float("inf")
    if _edge(edge) == "start":
        start_s = min(max(0.0, float(at_s)), end_s - MIN_EVENT_S)
        return clamp_span(max(0.0, start_s), end_s, duration_s)
    end_s = max(min(float(at_s), limit), start_s + MIN_EVENT_S)
    return clamp_span(start_s, end_s, duration_s)


def nudge(span: Span, edge: str, delta_s: float, duration_s: float | None) -> Span:
    """Move one edge by ``delta_s`` seconds (``±NUDGE_S`` per key press), clamped as :func:`set_edge`."""
    index = EDGES.index(_edge(edge))
    return set_edge(span, edge, span[index] + float(delta_s), duration_s)


def split(span: Span, at_s: float) -> tuple[Span, Span]:
    """Two events ``[start, at_s]`` and ``[at_s, end]``; ``at_s`` must leave each :data:`MIN_EVENT_S` long.

    Raises:
        ReviewEditError: ``at_s`` is not inside the event (the message gives the span and the point).
    """
    start_s, end_s = span
    if not start_s + MIN_EVENT_S <= at_s <= end_s - MIN_EVENT_S:
        raise ReviewEditError(f"cannot split {start_s:.1f}–{end_s:.1f} s at {at_s:.2f} s: the point must lie "
                              f"inside the event, at least {MIN_EVENT_S} s from both ends")
    at_s = round(float(at_s), 3)
    return (start_s, at_s), (at_s, end_s)


def merge(first: Span, second: Span) -> Span:
    """One event from the earliest start to the latest end of two (a gap between them is covered)."""
    return min(first[0], second[0]), max(first[1], second[1])


def new_span(at_s: float | None, duration_s: float | None) -> Span:
    """A new :data:`NEW_EVENT_S` event starting at ``at_s`` (0 when unknown), inside the video."""
    start_s = float(at_s or 0.0)
    if duration_s:
        start_s = min(start_s, max(0.0, float(duration_s) - NEW_EVENT_S))
    return clamp_span(start_s, start_s + NEW_EVENT_S, duration_s)


def boundary_change_s(source: Span, reviewed: Span) -> float:
    """Mean absolute move of the two edges, in seconds, from Marlin's span to the reviewed one."""
    return (abs(reviewed[0] - source[0]) + abs(reviewed[1] - source[1])) / 2


def decided_before(label: str, span: Span, decided: Iterable[tuple[str, Span]],
                   min_iou: float = REDECIDE_IOU) -> bool:
    """Whether a proposal repeats one already decided: same text and tIoU >= ``min_iou`` with its span.

    A new Marlin run gives its events new ids, so a reviewer's earlier decision (an accepted or rejected
    proposal) is found again by what it said and when.
    """
    text = (label or "").strip().lower()
    return any((other or "").strip().lower() == text and temporal_iou(span, other_span) >= min_iou
               for other, other_span in decided)


@dataclass(frozen=True)
class ReviewProgress:
    """How far a dataset's review is and how much the reviewers changed (counts of labels, seconds)."""

    samples_reviewed: int
    samples_total: int
    accepted: int
    fixed: int
    added: int
    rejected: int
    mean_boundary_change_s: float | None  # over accepted and fixed labels made from a proposal

    @property
    def acceptance_rate(self) -> float | None:
        """Share of decided proposals accepted unchanged (None before any decision)."""
        decided = self.accepted + self.fixed + self.rejected
        return self.accepted / decided if decided else None

    def as_dict(self) -> dict:
        return dict(asdict(self), acceptance_rate=self.acceptance_rate)


def review_progress(samples_total: int, samples_reviewed: int,
                    labels: Iterable[tuple[str, float | None]]) -> ReviewProgress:
    """Sum reviewed labels into :class:`ReviewProgress`.

    Args:
        samples_total: samples with proposals to review.
        samples_reviewed: samples whose review is complete.
        labels: one ``(action, boundary change in seconds or None)`` per reviewed label, rejected ones
            included (their change is None; so is an added label's).
    """
    counts = {action: 0 for action in ACTIONS}
    changes = []
    for action, change_s in labels:
        if action not in counts:
            raise ReviewEditError(f"unknown review action {action!r}; expected one of {ACTIONS}")
        counts[action] += 1
        if change_s is not None and action in ("accepted", "fixed"):
            changes.append(float(change_s))
    return ReviewProgress(samples_reviewed, samples_total, counts["accepted"], counts["fixed"], counts["added"],
                          counts["rejected"], sum(changes) / len(changes) if changes else None)
