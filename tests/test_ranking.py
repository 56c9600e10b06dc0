"""Candidate generation from captions: tokens, BM25, idf coverage, rankers (no model involved).

The library here is Marlin-2B's real captions of the three Big Buck Bunny excerpts
(tests/fixtures/marlin_real_outputs.json).
"""

from __future__ import annotations

import json

import pytest

from conftest import TESTS
from marlin_core.search.caption_index import CaptionIndex, CaptionedVideo
from marlin_core.search.ranking import Bm25Ranker, EmbeddingRanker, queries_by_video, select_candidates
from marlin_core.search.text_relevance import LibraryTerms, stem, tokenize


@pytest.fixture(scope="module")
def bunny_index() -> CaptionIndex:
    cases = json.loads((TESTS / "fixtures" / "marlin_real_outputs.json").read_text())["cases"]
    return CaptionIndex(
        CaptionedVideo.from_caption(case["video"]["file"], case["parsed"])
        for case in cases if case["mode"] == "caption"
    )


@pytest.mark.parametrize("word, root", [
    ("looks", "look"), ("looked", "look"), ("looking", "look"), ("running", "run"), ("dimmed", "dim"),
    ("flies", "fly"), ("boxes", "box"), ("grass", "grass"), ("trees", "tree"), ("falling", "fall"),
    ("red", "red"), ("speed", "speed"), ("bus", "bus"),
])
def test_stem_strips_one_common_suffix(word, root):
    assert stem(word) == root


def test_tokenize_drops_stop_words_and_punctuation():
    words = tokenize("The rabbit LOOKS at a purple butterfly, in the video!")
    assert words == ["rabbit", "look", "purple", "butterfly"]
    assert tokenize("it is the") == []


def test_idf_is_highest_for_words_no_caption_uses():
    terms = LibraryTerms([["red", "light"], ["blue", "sky"], ["red", "fade"]])
    assert terms.idf("car") > terms.idf("blue") > terms.idf("red") > 0


def test_coverage_weights_query_words_by_idf():
    terms = LibraryTerms([["red", "light"], ["blue", "sky"], ["red", "fade"], ["green", "field"]])
    assert terms.coverage(["red", "light"], ["red", "light", "screen"]) == 1.0
    assert terms.coverage(["red", "light"], ["blue", "sky"]) == 0.0
    # "car" is in no caption: it weighs more than "red", so a red screen covers under half of "red car"
    assert 0.0 < terms.coverage(["red", "car"], ["red", "light"]) < 0.5
    assert terms.coverage([], ["red"]) == 0.0


def test_bm25_prefers_the_video_whose_captions_use_the_query_words(bunny_index):
    scores = bunny_index.terms.bm25(tokenize("a squirrel holds an egg"))
    best = bunny_index.videos[max(range(3), key=scores.__getitem__)].video_id
    assert best == "bbb-3.mp4"
    assert bunny_index.terms.bm25(tokenize("a car drives on a highway")) == [0.0, 0.0, 0.0]


def test_select_candidates_keeps_top_k_with_a_matching_word(bunny_index):
    candidates = select_candidates(["grey rabbit", "a car on a highway", "butterfly"], bunny_index, top_k=2)
    by_query = {}
    for candidate in candidates:
        by_query.setdefault(candidate.query, []).append(candidate)
    assert len(by_query["grey rabbit"]) == 2  # all three clips mention a grey rabbit; top 2 kept
    assert "a car on a highway" not in by_query  # no caption shares a word: never sent to the model
    assert [c.video_id for c in by_query["butterfly"]] == ["bbb-3.mp4"]
    assert [c.rank for c in by_query["grey rabbit"]] == [1, 2]
    assert by_query["grey rabbit"][0].relevance >= by_query["grey rabbit"][1].relevance > 0


def test_queries_by_video_groups_a_videos_queries_together(bunny_index):
    candidates = select_candidates(["squirrel", "butterfly", "mouse"], bunny_index, top_k=3)
    grouped = queries_by_video(candidates)
    assert grouped["bbb-3.mp4"] == ["squirrel", "butterfly", "mouse"]
    assert sum(len(q) for q in grouped.values()) == len(candidates)


def test_select_candidates_rejects_top_k_below_one(bunny_index):
    with pytest.raises(ValueError, match="top_k"):
        select_candidates(["rabbit"], bunny_index, top_k=0)


def _bag_of_words(vocabulary):
    """A deterministic text encoder for the ranker's contract: counts of the vocabulary's words (synonyms merged)."""
    def encode(texts):
        return [[sum(stem(w) in group for w in tokenize(text)) for group in vocabulary] for text in texts]
    return encode


def test_embedding_ranker_matches_what_the_encoder_considers_close(bunny_index):
    # the encoder maps "hare" and "rabbit" to one dimension: BM25 cannot match them, an embedding can
    encode = _bag_of_words([{"hare", "rabbit"}, {"squirrel"}, {"butterfly"}])
    assert Bm25Ranker().scores(["hare"], bunny_index) == [[0.0, 0.0, 0.0]]
    scores = EmbeddingRanker(encode, min_relevance=0.5).scores(["hare"], bunny_index)[0]
    assert min(scores) > 0.5
    candidates = select_candidates(["butterfly"], bunny_index, EmbeddingRanker(encode, min_relevance=0.5), top_k=5)
    assert [c.video_id for c in candidates] == ["bbb-3.mp4"]


def test_caption_index_rejects_duplicate_ids():
    with pytest.raises(ValueError, match="unique"):
        CaptionIndex([CaptionedVideo("a"), CaptionedVideo("a")])
