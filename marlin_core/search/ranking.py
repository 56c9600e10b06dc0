"""Candidate generation: which captioned videos are worth running ``find`` on for each query.

Running Marlin's find on every video for every query costs ``queries x videos`` model calls. Instead a
ranker scores every captioned video for each query from its captions alone (no model call), and only
the ``top_k`` best-ranked videos per query go to the model. The default ranker is BM25
(:class:`Bm25Ranker`, no weights needed); :class:`EmbeddingRanker` takes any text-embedding function
(a sentence-transformers model, a FiftyOne Brain model's text side) for matches BM25 cannot see
("bunny" / "rabbit"). A ranker is anything with ``scores(queries, index)`` and ``min_relevance``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .caption_index import CaptionIndex
from .relevance import unit_rows
from .text_relevance import tokenize

__all__ = ["Bm25Ranker", "Candidate", "DEFAULT_TOP_K", "EmbeddingRanker", "Ranker", "queries_by_video",
           "select_candidates"]

# Videos per query that go to the model. 20 keeps a search of a few queries within a minute of GPU time
# (find is ~2 s per answer on an A10, marlin-facts.md) while leaving room for a best-20-moments view.
DEFAULT_TOP_K = 20


class Ranker(Protocol):
    """Scores captioned videos for queries without running Marlin.

    Attributes:
        min_relevance: a video needs a score above this to be a candidate (None: any score).
    """

    min_relevance: float | None

    def scores(self, queries: Sequence[str], index: CaptionIndex) -> list[list[float]]:
        """One row per query, one score per video of ``index`` (in index order); higher is better."""
        ...


class Bm25Ranker:
    """Okapi BM25 of the query against each video's scene + events; a video sharing no word scores 0."""

    min_relevance: float | None = 0.0

    def scores(self, queries: Sequence[str], index: CaptionIndex) -> list[list[float]]:
        return [index.terms.bm25(tokenize(query)) for query in queries]


class EmbeddingRanker:
    """Cosine similarity between the query and the best-matching caption text of each video.

    Args:
        encode: texts -> one embedding vector per text (any dimension, not necessarily normalised).
        min_relevance: cosine a video must exceed to be a candidate (None: keep the top-k whatever they score).
    """

    def __init__(self, encode: Callable[[list[str]], Sequence[Sequence[float]]], min_relevance: float | None = None):
        self.encode = encode
        self.min_relevance = min_relevance

    def scores(self, queries: Sequence[str], index: CaptionIndex) -> list[list[float]]:
        texts, owners = [], []
        for position, video in enumerate(index.videos):
            for text in [video.scene, *(event.description for event in video.events)]:
                if text.strip():
                    texts.append(text)
                    owners.append(position)
        query_vectors = unit_rows(self.encode(list(queries)))
        if not texts:
            return [[0.0] * len(index) for _ in queries]
        similarity = query_vectors @ unit_rows(self.encode(texts)).T  # queries x texts
        best = np.full((len(queries), len(index)), -1.0)
        for column, position in enumerate(owners):
            best[:, position] = np.maximum(best[:, position], similarity[:, column])
        return best.tolist()


@dataclass(frozen=True)
class Candidate:
    """A video chosen for a query: its 1-based rank among the library's videos and the ranker's score."""

    video_id: str
    query: str
    rank: int
    relevance: float


def select_candidates(
    queries: Sequence[str], index: CaptionIndex, ranker: Ranker | None = None, top_k: int = DEFAULT_TOP_K
) -> list[Candidate]:
    """The ``top_k`` best-ranked videos of ``index`` for each query (ties keep index order).

    Args:
        queries: the event descriptions searched for.
        index: the captioned library.
        ranker: scores videos (default :class:`Bm25Ranker`).
        top_k: videos per query at most.

    Returns:
        candidates, grouped by query in query order, best first.
    """
    if top_k < 1:
        raise ValueError(f"select_candidates: top_k must be at least 1, got {top_k}")
    ranker = ranker or Bm25Ranker()
    chosen = []
    for query, row in zip(queries, ranker.scores(queries, index)):
        order = sorted(range(len(row)), key=lambda i: -row[i])
        kept = [i for i in order if ranker.min_relevance is None or row[i] > ranker.min_relevance][:top_k]
        chosen += [Candidate(index.videos[i].video_id, query, rank, float(row[i])) for rank, i in enumerate(kept, 1)]
    return chosen


def queries_by_video(candidates: Sequence[Candidate]) -> dict[str, list[str]]:
    """``{video_id: [queries]}``: what to ask each video, so a video is encoded once for all its queries."""
    grouped: dict[str, list[str]] = {}
    for candidate in candidates:
        grouped.setdefault(candidate.video_id, []).append(candidate.query)
    return grouped
