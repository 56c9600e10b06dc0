"""How relevant a video's caption texts are to a query, in ``[0, 1]``: lexical or by embeddings.

The presence score (:mod:`marlin_core.search.presence`) asks for the relevance of each captioned event and of
the Scene paragraph. :class:`LexicalRelevance` (default, no model) is the idf-weighted share of the
query's words the text uses; :class:`EmbeddingRelevance` is the cosine similarity of text embeddings
mapped linearly from ``[floor, ceiling]`` to ``[0, 1]``, so "a bunny looks around" matches "a rabbit
looks around" where no word but "look" is shared.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from .caption_index import CaptionIndex
from .text_relevance import tokenize

__all__ = ["COSINE_CEILING", "COSINE_FLOOR", "EmbeddingRelevance", "LexicalRelevance", "TextRelevance", "unit_rows"]

# all-MiniLM-L6-v2 cosines: unrelated captions sit around 0-0.2, paraphrases of one event at 0.6-0.9
# (bench/search.py prints the AUC this mapping gives).
COSINE_FLOOR = 0.2
COSINE_CEILING = 0.7


class TextRelevance(Protocol):
    """Relevance of a video's caption texts to a query (video ids of the ``CaptionIndex`` it was made for)."""

    def events(self, query: str, video_id: str) -> list[float]:
        """One value in ``[0, 1]`` per captioned event, in event order."""
        ...

    def scene(self, query: str, video_id: str) -> float | None:
        """The Scene paragraph's relevance, or None when the video has none."""
        ...


class LexicalRelevance:
    """Idf-weighted coverage of the query's words (:meth:`~.text_relevance.LibraryTerms.coverage`)."""

    def __init__(self, index: CaptionIndex):
        self.index = index

    def events(self, query: str, video_id: str) -> list[float]:
        terms = tokenize(query)
        return [self.index.terms.coverage(terms, tokens) for tokens in self.index.scene_and_events(video_id)[1]]

    def scene(self, query: str, video_id: str) -> float | None:
        scene_terms = self.index.scene_and_events(video_id)[0]
        return self.index.terms.coverage(tokenize(query), scene_terms) if scene_terms else None


class EmbeddingRelevance:
    """Cosine similarity of embeddings, ``(cos - floor) / (ceiling - floor)`` clipped to ``[0, 1]``.

    Every caption text of the index is embedded once, on first use; each query once.

    Args:
        index: the captioned library.
        encode: texts -> one vector per text (e.g. :func:`marlin_core.search.text_embedding.load_text_encoder`).
    """

    def __init__(self, index: CaptionIndex, encode: Callable[[list[str]], Sequence[Sequence[float]]],
                 floor: float = COSINE_FLOOR, ceiling: float = COSINE_CEILING):
        self.index, self.encode, self.floor, self.ceiling = index, encode, floor, ceiling
        self._texts: dict[str, tuple[np.ndarray | None, np.ndarray]] | None = None
        self._queries: dict[str, np.ndarray] = {}

    def _video_vectors(self, video_id: str) -> tuple[np.ndarray | None, np.ndarray]:
        if self._texts is None:
            texts = [(v.video_id, v.scene, [e.description for e in v.events]) for v in self.index.videos]
            flat = [text for _, scene, events in texts for text in [scene, *events]]
            vectors = unit_rows(self.encode(flat)) if flat else np.zeros((0, 1))
            self._texts, position = {}, 0
            for vid, scene, events in texts:
                scene_vector = vectors[position] if scene.strip() else None
                self._texts[vid] = (scene_vector, vectors[position + 1: position + 1 + len(events)])
                position += 1 + len(events)
        return self._texts[video_id]

    def _query(self, query: str) -> np.ndarray:
        if query not in self._queries:
            self._queries[query] = unit_rows(self.encode([query]))[0]
        return self._queries[query]

    def _scale(self, cosine: np.ndarray) -> list[float]:
        return np.clip((cosine - self.floor) / (self.ceiling - self.floor), 0.0, 1.0).tolist()

    def events(self, query: str, video_id: str) -> list[float]:
        _, events = self._video_vectors(video_id)
        return self._scale(events @ self._query(query)) if len(events) else []

    def scene(self, query: str, video_id: str) -> float | None:
        scene, _ = self._video_vectors(video_id)
        return None if scene is None else self._scale(np.array([scene @ self._query(query)]))[0]


def unit_rows(vectors) -> np.ndarray:
    """The vectors as rows of unit length (zero vectors stay zero)."""
    array = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return array / np.where(norms == 0.0, 1.0, norms)
