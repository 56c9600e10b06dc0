"""Search a video library: one or more queries -> the best moments across all videos, ranked, absent ones left out.

The steps, each a public function so the FiftyOne operator (which stores captions and results as labels)
runs the same ones:

1. videos without captions are captioned (one ``caption`` call each, kept for later searches), unless the
   search is exhaustive;
2. :func:`~.ranking.select_candidates` picks the ``top_k`` videos per query from the captions alone;
3. ``find_many`` runs on each candidate video once for all the queries it is a candidate for;
4. :func:`~.presence.presence_score` scores every answer; :func:`rank_moments` keeps those at or above
   the threshold, best first.

Cost: finds = candidate (video, query) pairs <= ``top_k x queries``, whatever the library's size; the
exhaustive path asks every video every query (``videos x queries``). :class:`SearchCost` reports both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .caption_index import CaptionIndex, CaptionedVideo
from ..errors import MarlinError
from .presence import DEFAULT_THRESHOLD, PresenceScore, presence_score
from ..queries import parse_queries, query_problem
from .ranking import (DEFAULT_TOP_K, Bm25Ranker, Candidate, EmbeddingRanker, Ranker, queries_by_video,
                      select_candidates)
from .relevance import EmbeddingRelevance, LexicalRelevance, TextRelevance
from .text_relevance import tokenize

__all__ = ["LibraryVideo", "Moment", "SearchCost", "SearchError", "SearchResult", "SearchSettings",
           "check_queries", "rank_moments", "score_answer", "search_videos", "text_matching"]


class SearchError(MarlinError):
    """A search that cannot run as asked (no query, a query without searchable words, a bad setting)."""


@dataclass(frozen=True)
class SearchSettings:
    """Knobs of one search.

    Attributes:
        top_k: videos per query sent to the model (candidate generation).
        threshold: presence score a moment needs to be kept.
        exhaustive: ask every video every query instead of ranking captions (no captioning).
    """

    top_k: int = DEFAULT_TOP_K
    threshold: float = DEFAULT_THRESHOLD
    exhaustive: bool = False

    def __post_init__(self):
        if self.top_k < 1:
            raise SearchError(f"top_k must be at least 1, got {self.top_k}")
        if not 0.0 <= self.threshold <= 1.0:
            raise SearchError(f"threshold must be within [0, 1], got {self.threshold}")


@dataclass(frozen=True)
class LibraryVideo:
    """A video of the library: its id, its file and its captions (None: not captioned yet)."""

    video_id: str
    path: str | Path
    captions: CaptionedVideo | None = None


@dataclass(frozen=True)
class Moment:
    """One answer: where ``query`` happens in a video (seconds), its presence score and Marlin's raw answer."""

    video_id: str
    query: str
    start_s: float
    end_s: float
    presence: PresenceScore
    raw: str = ""

    @property
    def score(self) -> float:
        return self.presence.score


@dataclass
class SearchCost:
    """Model calls of a search, against what asking every video every query would have cost."""

    caption_calls: int = 0
    find_calls: int = 0
    exhaustive_find_calls: int = 0

    def as_dict(self) -> dict:
        return {"caption_calls": self.caption_calls, "find_calls": self.find_calls,
                "exhaustive_find_calls": self.exhaustive_find_calls}


@dataclass
class SearchResult:
    """What a search found: moments kept (best first), moments below the threshold, per-video errors, cost."""

    moments: list[Moment] = field(default_factory=list)
    rejected: list[Moment] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    candidates: list[Candidate] = field(default_factory=list)
    cost: SearchCost = field(default_factory=SearchCost)


def check_queries(queries: Sequence[str] | str) -> list[str]:
    """The queries, whitespace tidied and duplicates dropped.

    Raises:
        SearchError: no query, a query spelling a special token (the rule find applies,
            :func:`marlin_core.queries.query_problem`), or one made only of stop words (nothing to rank by).
    """
    tidy = parse_queries(queries)  # a plain string is text (one query per line), never one query per letter
    if not tidy:
        raise SearchError("search needs at least one query")
    problems = [problem for query in tidy if (problem := query_problem(query))]
    if problems:
        raise SearchError("; ".join(problems))
    empty = [q for q in tidy if not tokenize(q)]
    if empty:
        raise SearchError(f"queries without a searchable word (only stop words): {empty}; describe the event")
    return tidy


def score_answer(video_id: str, answer: dict, index: CaptionIndex | None,
                 relevance: TextRelevance | None = None) -> Moment | None:
    """A find answer (``{"query", "span", "confidence", "raw"}``) as a scored moment; None without a span."""
    span = answer.get("span")
    presence = presence_score(answer["query"], span, answer.get("confidence"), video_id, index, relevance)
    if span is None:
        return None
    return Moment(video_id, answer["query"], float(span[0]), float(span[1]), presence, str(answer.get("raw", "")))


def text_matching(index: CaptionIndex, encode=None) -> tuple[Ranker, TextRelevance]:
    """The candidate ranker and the caption relevance of a search: by words (BM25, coverage) or by ``encode``."""
    if encode is None:
        return Bm25Ranker(), LexicalRelevance(index)
    return EmbeddingRanker(encode), EmbeddingRelevance(index, encode)


def rank_moments(moments: Sequence[Moment], threshold: float) -> tuple[list[Moment], list[Moment]]:
    """``(kept, rejected)``: moments at or above ``threshold`` best first, and the others best first."""
    ordered = sorted(moments, key=lambda m: -m.score)
    return [m for m in ordered if m.score >= threshold], [m for m in ordered if m.score < threshold]


def search_videos(
    marlin,
    videos: Sequence[LibraryVideo],
    queries: Sequence[str],
    settings: SearchSettings = SearchSettings(),
    encode: Callable[[list[str]], Sequence[Sequence[float]]] | None = None,
    **video_options,
) -> SearchResult:
    """Search ``videos`` for ``queries`` with a loaded :class:`~marlin_core.engine.Marlin`.

    Videos without captions are captioned first (their new captions are used, not returned; the
    operator stores them). One bad video is reported in ``errors`` and the search goes on.

    Args:
        marlin: the model (only its public ``iter_captions`` / ``iter_finds`` are used).
        videos: the library; ids must be unique.
        queries: event descriptions.
        settings: top-k, threshold, exhaustive.
        encode: a text-embedding function (:func:`~.text_embedding.load_text_encoder`); when given, videos
            are ranked and captions matched by embedding similarity instead of shared words.
        **video_options: sampling options passed to the model calls (``fps``, ``max_frames``...).
    """
    queries = check_queries(queries)
    result = SearchResult()
    paths = {video.video_id: video.path for video in videos}
    captions = {video.video_id: video.captions for video in videos if video.captions is not None}
    if not settings.exhaustive:
        missing = [video for video in videos if video.captions is None]
        for video, (_, caption) in zip(missing, marlin.iter_captions([v.path for v in missing], **video_options)):
            result.cost.caption_calls += 1
            if isinstance(caption, BaseException):
                result.errors[video.video_id] = f"{video.path}: caption failed: {caption}"
            else:
                captions[video.video_id] = CaptionedVideo.from_caption(video.video_id, caption)
    index = CaptionIndex(captions.values())
    ranker, relevance = text_matching(index, encode)

    if settings.exhaustive:
        asked = {video.video_id: list(queries) for video in videos}
    else:
        result.candidates = select_candidates(queries, index, ranker, settings.top_k)
        asked = queries_by_video(result.candidates)
    result.cost.exhaustive_find_calls = len(videos) * len(queries)
    items = list(asked.items())
    moments = []
    finds = marlin.iter_finds([(paths[video_id], qs) for video_id, qs in items], **video_options)
    for (video_id, qs), (_, answers) in zip(items, finds):
        result.cost.find_calls += len(qs)
        if isinstance(answers, BaseException):
            result.errors[video_id] = f"{paths[video_id]}: find failed: {answers}"
            continue
        scored = (score_answer(video_id, answer, index, relevance) for answer in answers)
        moments += [moment for moment in scored if moment is not None]
    result.moments, result.rejected = rank_moments(moments, settings.threshold)
    return result
