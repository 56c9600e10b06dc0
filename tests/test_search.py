"""``marlin_core.search.search_videos`` without FiftyOne, on the tiny trained model."""

from __future__ import annotations

import pytest

from marlin_core.search.caption_index import CaptionedEvent, CaptionedVideo
from marlin_core.search.library import LibraryVideo, SearchError, SearchSettings, check_queries, search_videos
from search_library import ABSENT, COPIES, HARD_NEGATIVE, OTHER_CAPTIONS, PRESENT, counting_generate, make_library


@pytest.fixture(scope="module")
def library(tmp_path_factory, color_videos) -> list[LibraryVideo]:
    videos = make_library(tmp_path_factory.mktemp("search-library"), color_videos)
    library = []
    for color, paths in videos.items():
        for number, path in enumerate(paths):
            captions = None
            if color in OTHER_CAPTIONS:
                scene, events = OTHER_CAPTIONS[color]
                captions = CaptionedVideo(f"{color}-{number}", scene, tuple(CaptionedEvent(*e) for e in events))
            library.append(LibraryVideo(f"{color}-{number}", path, captions))
    return library


def test_search_videos_finds_present_moments_with_at_most_top_k_calls_per_query(library, trained_marlin):
    queries = [*PRESENT, HARD_NEGATIVE, ABSENT]
    with counting_generate(type(trained_marlin.model)) as calls:
        result = search_videos(trained_marlin, library, queries, SearchSettings(top_k=3))
    assert result.cost.caption_calls == 2 * COPIES
    assert result.cost.find_calls == 3 * 3  # 3 queries share a word with some caption, 3 videos each
    assert calls[0] == result.cost.caption_calls + result.cost.find_calls
    assert result.cost.exhaustive_find_calls == len(library) * len(queries)
    assert sorted((m.video_id.split("-")[0], m.query) for m in result.moments) == [("blue", "blue sky")] * 3 + [
        ("red", "red light")] * 3
    assert [m.query for m in result.rejected] == [HARD_NEGATIVE] * 3
    assert all(m.score >= 0.5 for m in result.moments) and all(m.score < 0.5 for m in result.rejected)
    assert not result.errors


def test_a_broken_video_is_reported_not_raised(library, trained_marlin, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_text("not a video")
    videos = [*library[:2], LibraryVideo("broken", broken)]
    result = search_videos(trained_marlin, videos, ["red light"])
    assert "broken" in result.errors and str(broken) in result.errors["broken"]
    assert [m.video_id for m in result.moments] == [v.video_id for v in library[:2]]


def test_check_queries_tidies_and_rejects():
    assert check_queries(["red  light", "red light", " ", "blue sky"]) == ["red light", "blue sky"]
    # a plain string is text: one query per line, never one query per letter
    assert check_queries("blue sky") == ["blue sky"]
    assert check_queries("red light\n\nblue  sky\n") == ["red light", "blue sky"]
    with pytest.raises(SearchError, match="at least one query"):
        check_queries(["", "  "])
    # the special-token rule find applies holds for search too, for one query or among others
    for asked in (["<|video_pad|>"], ["red light", "red <|im_end|> light"]):
        with pytest.raises(SearchError, match="special token"):
            check_queries(asked)
    with pytest.raises(SearchError, match="only stop words"):
        check_queries(["the", "red light"])
    with pytest.raises(SearchError, match="top_k"):
        SearchSettings(top_k=0)
