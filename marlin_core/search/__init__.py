"""Library search: queries -> the best moments across many videos, ranked, absent ones left out.

Modules: :mod:`.library` (the steps: caption what is uncaptioned, pick candidates, one find per candidate,
score, rank), :mod:`.caption_index` (stored captions as searchable text), :mod:`.ranking` (BM25 or
embedding candidates per query), :mod:`.relevance` / :mod:`.text_relevance` (text matching),
:mod:`.text_embedding` (the bundled offline MiniLM), :mod:`.presence` (is the found moment really there).

May import: the foundation modules (errors, metrics, queries). Never the engine: the model is passed in.
"""

from .library import (LibraryVideo, Moment, SearchCost, SearchError, SearchResult, SearchSettings, rank_moments,
                      score_answer, search_videos, text_matching)

__all__ = ["LibraryVideo", "Moment", "SearchCost", "SearchError", "SearchResult", "SearchSettings", "rank_moments",
           "score_answer", "search_videos", "text_matching"]
