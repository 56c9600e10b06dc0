"""Is the searched event really in the video? One score in ``[0, 1]`` from the evidence search has.

Marlin's find always answers a span ("From x to y."), also for events that are not in the video, and
its time-token confidence measures how sure it is of the numbers, not of the event. The presence score
therefore combines four pieces of evidence, each in ``[0, 1]``:

* ``events`` — text relevance of the captioned events that overlap the found span: the best among
  them (:mod:`marlin_core.search.relevance`: by default the idf-weighted share of the query's words the event
  uses; or embedding similarity);
* ``scene`` — the same relevance for the video's Scene paragraph (not localised, so weighted less);
* ``agreement`` — does the span sit where the captions put a matching event:
  ``max over events e of relevance(e) * tIoU(span, e)``;
* ``confidence`` — the time-token confidence of the find answer (:mod:`marlin_core.engine.confidence`).

``presence = sum(w_i * x_i) / sum(w_i)`` over the pieces that exist, with
``w = {events: 0.45, scene: 0.15, agreement: 0.15, confidence: 0.25}``. A piece without evidence to
compute it from is left out, not counted as 0: a video without captions is scored by its confidence
alone, and a caption with no Scene paragraph by its events. No span (Marlin's answer did not parse)
scores 0. A video counts as present when ``presence >= DEFAULT_THRESHOLD``.

The weights make caption evidence decide: a confident find answer with no caption word of the query
nearby scores at most 0.25; a query fully covered by the overlapping event scores at least 0.45 before
the other pieces. Measured separation (ROC-AUC) is in ``bench/search.py`` and the README.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .caption_index import CaptionIndex
from ..metrics import temporal_iou
from .relevance import LexicalRelevance, TextRelevance

__all__ = ["DEFAULT_THRESHOLD", "PresenceScore", "WEIGHTS", "caption_presence", "presence_score", "roc_auc"]

WEIGHTS = {"events": 0.45, "scene": 0.15, "agreement": 0.15, "confidence": 0.25}
# Half the evidence: e.g. an overlapping event covering the query (0.45) plus a confident answer.
DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class PresenceScore:
    """The presence score of one (video, query) answer and the pieces it was made of (None: no evidence)."""

    score: float
    events: float | None = None
    scene: float | None = None
    agreement: float | None = None
    confidence: float | None = None

    def as_dict(self) -> dict:
        return {"score": self.score, "events": self.events, "scene": self.scene, "agreement": self.agreement,
                "confidence": self.confidence}


def _combine(pieces: dict[str, float]) -> PresenceScore:
    """The weighted mean of the pieces that exist (0 when none does)."""
    weight = sum(WEIGHTS[name] for name in pieces)
    score = sum(WEIGHTS[name] * value for name, value in pieces.items()) / weight if weight else 0.0
    return PresenceScore(score, pieces.get("events"), pieces.get("scene"), pieces.get("agreement"),
                         pieces.get("confidence"))


def _overlap_s(a: Sequence[float], b: Sequence[float]) -> float:
    return max(0.0, min(a[1], b[1]) - max(a[0], b[0]))


def presence_score(
    query: str,
    span: Sequence[float] | None,
    confidence: float | None,
    video_id: str | None = None,
    index: CaptionIndex | None = None,
    relevance: TextRelevance | None = None,
) -> PresenceScore:
    """Score one find answer.

    Args:
        query: the searched event description.
        span: ``(start_s, end_s)`` Marlin found, seconds, or None when its answer did not parse.
        confidence: the span's time-token confidence in ``[0, 1]``, or None.
        video_id: the video's id in ``index`` (None or not in it: no caption evidence).
        index: the library's captions.
        relevance: how caption texts are matched to the query (default: lexical, over ``index``).

    Returns:
        the score and its pieces.
    """
    if span is None:
        return PresenceScore(0.0, confidence=confidence)
    pieces = {}
    if index is not None and video_id is not None and video_id in index:
        relevance = relevance or LexicalRelevance(index)
        events = index.video(video_id).events
        if events:
            scores = relevance.events(query, video_id)
            spans = [(event.start_s, event.end_s) for event in events]
            pieces["events"] = max((r for r, s in zip(scores, spans) if _overlap_s(span, s) > 0), default=0.0)
            pieces["agreement"] = max(r * temporal_iou(tuple(span), s) for r, s in zip(scores, spans))
        scene = relevance.scene(query, video_id)
        if scene is not None:
            pieces["scene"] = scene
    if confidence is not None:
        pieces["confidence"] = min(1.0, max(0.0, float(confidence)))
    return _combine(pieces)


def caption_presence(query: str, video_id: str, index: CaptionIndex,
                     relevance: TextRelevance | None = None) -> PresenceScore:
    """The presence score from the captions alone, before any find answer: ``events`` is the best
    relevance over all the video's events, ``scene`` as above; agreement and confidence do not exist yet.

    What the score can tell where no find answer is available (the real-output benchmark).
    """
    relevance = relevance or LexicalRelevance(index)
    pieces = {}
    events = relevance.events(query, video_id)
    if events:
        pieces["events"] = max(events)
    scene = relevance.scene(query, video_id)
    if scene is not None:
        pieces["scene"] = scene
    return _combine(pieces)


def roc_auc(scores: Sequence[float], present: Sequence[bool]) -> float:
    """Area under the ROC curve: the chance a present pair outscores an absent one (ties count half).

    Raises:
        ValueError: when either class is empty (the AUC is undefined).
    """
    positives = [s for s, p in zip(scores, present) if p]
    negatives = [s for s, p in zip(scores, present) if not p]
    if not positives or not negatives:
        raise ValueError("roc_auc needs at least one present and one absent example")
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))
