"""Caption relevance: lexical coverage, and embedding similarity (a counting encoder, and the real MiniLM)."""

from __future__ import annotations

import pytest

from marlin_core.search.caption_index import CaptionIndex, CaptionedEvent, CaptionedVideo
from marlin_core.search.presence import caption_presence
from marlin_core.search.relevance import EmbeddingRelevance, LexicalRelevance
from marlin_core.search.text_embedding import load_text_encoder
from marlin_core.search.text_relevance import tokenize

RABBIT = CaptionedVideo("rabbit", "A sunlit field of tall grass.", (
    CaptionedEvent(0.0, 3.0, "A white title screen displays introductory text."),
    CaptionedEvent(9.0, 11.0, "A large rabbit stands in a field and looks around."),
))
NO_SCENE = CaptionedVideo("no-scene", "", (CaptionedEvent(0.0, 1.0, "A dog barks."),))


@pytest.fixture(scope="module")
def index():
    return CaptionIndex([RABBIT, NO_SCENE])


def word_counts(vocabulary):
    """A deterministic encoder: one dimension per vocabulary word (synonym groups share one)."""
    def encode(texts):
        return [[float(sum(word in group for word in tokenize(text))) for group in vocabulary] for text in texts]
    return encode


def test_lexical_relevance_is_coverage_per_event(index):
    relevance = LexicalRelevance(index)
    assert relevance.events("rabbit looks around", "rabbit")[0] == 0.0
    assert relevance.events("rabbit looks around", "rabbit")[1] == 1.0
    assert relevance.scene("a dog", "no-scene") is None


def test_embedding_relevance_maps_cosine_between_floor_and_ceiling(index):
    encode = word_counts([{"rabbit", "bunny", "hare"}, {"text", "titl"}, {"dog"}, {"field"}])
    relevance = EmbeddingRelevance(index, encode, floor=0.2, ceiling=0.7)
    title, rabbit = relevance.events("a hare", "rabbit")
    assert title == 0.0  # orthogonal
    # "A large rabbit stands in a field": (1, 0, 0, 1) vs (1, 0, 0, 0): cosine 0.707, above the ceiling
    assert rabbit == 1.0
    assert relevance.scene("a hare", "rabbit") == 0.0  # the scene mentions only the field
    assert relevance.scene("a hare", "no-scene") is None
    assert LexicalRelevance(index).events("a hare", "rabbit") == [0.0, 0.0]


def test_minilm_matches_paraphrases_words_cannot(index):
    relevance = EmbeddingRelevance(index, load_text_encoder())
    bunny = caption_presence("a bunny gazes about", "rabbit", index, relevance)
    car = caption_presence("a car drives down a highway", "rabbit", index, relevance)
    assert bunny.events > 0.5 > car.score
    assert caption_presence("a bunny gazes about", "rabbit", index).score == 0.0  # no word shared
