"""Import of ActivityNet Captions JSON and Charades-STA text: good files, and every malformed case at once."""

import json

import pytest

from marlin_core.formats.annotations import (
    MAX_REPORTED_PROBLEMS,
    AnnotationFormatError,
    Segment,
    VideoAnnotation,
    load_activitynet_captions,
    load_annotations,
    load_charades_sta,
    load_timelens,
    parse_charades_line,
    segments_past_duration,
)
from marlin_core.errors import MarlinError


def _write_json(tmp_path, data, name="val_1.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _write_text(tmp_path, text, name="charades_sta_test.txt"):
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


# ActivityNet Captions JSON


def test_activitynet_reads_videos_in_file_order(tmp_path):
    path = _write_json(
        tmp_path,
        {
            "v_QOlSCBRmfWY": {
                "duration": 82.73,
                "timestamps": [[0.83, 19.86], [17.37, 60.81], [56.26, 79.42]],
                "sentences": [" A young woman is seen standing.", "She then dances.", "She ends.  "],
            },
            "v_ehGHCYKzyZ8": {"duration": 61.72, "timestamps": [[0, 12]], "sentences": ["A man waves."]},
        },
    )
    annotations = load_activitynet_captions(path)
    assert list(annotations) == ["v_QOlSCBRmfWY", "v_ehGHCYKzyZ8"]
    first = annotations["v_QOlSCBRmfWY"]
    assert first.duration_s == 82.73
    assert first.segments[0] == Segment(0.83, 19.86, "A young woman is seen standing.")
    assert first.segments[2].sentence == "She ends."
    assert first.spans == [(0.83, 19.86), (17.37, 60.81), (56.26, 79.42)]
    assert annotations["v_ehGHCYKzyZ8"] == VideoAnnotation("v_ehGHCYKzyZ8", 61.72, [Segment(0.0, 12.0, "A man waves.")])


def test_activitynet_keeps_times_past_the_duration_and_allows_no_duration(tmp_path):
    path = _write_json(
        tmp_path,
        {
            "late": {"duration": 10.0, "timestamps": [[8.0, 12.5]], "sentences": ["ends after the video"]},
            "no_duration": {"timestamps": [[1, 2]], "sentences": ["x"], "extra": "ignored"},
            "no_events": {"duration": 5.0, "timestamps": [], "sentences": []},
        },
    )
    annotations = load_activitynet_captions(path)
    assert annotations["late"].spans == [(8.0, 12.5)]
    assert annotations["no_duration"].duration_s is None
    assert annotations["no_events"].segments == []


def test_activitynet_reports_every_problem_and_imports_nothing(tmp_path):
    path = _write_json(
        tmp_path,
        {
            "good": {"duration": 5.0, "timestamps": [[0, 1]], "sentences": ["fine"]},
            "not_object": [1, 2],
            "missing": {"duration": 5.0, "timestamps": [[0, 1]]},
            "mismatch": {"duration": 5.0, "timestamps": [[0, 1], [1, 2]], "sentences": ["one"]},
            "bad_items": {
                "duration": -3,
                "timestamps": [[0, "2"], [4, 4], [-1, 2], [True, 3], [0, 1, 2], [1, 2]],
                "sentences": ["a", "b", "c", "d", "e", "   "],
            },
        },
    )
    with pytest.raises(AnnotationFormatError) as caught:
        load_activitynet_captions(path)
    problems = caught.value.problems
    assert all(problem.startswith(f"{path}: video '") for problem in problems)
    expected = [
        "'not_object': expected an object",
        "'missing': 'timestamps' and 'sentences' must both be lists",
        "'mismatch': 2 timestamps but 1 sentences",
        "'bad_items': duration -3 must be a positive number",
        "'bad_items': timestamps[0] = [0, '2']: expected [start_s, end_s]",
        "'bad_items': timestamps[1]: start 4.0 s >= end 4.0 s",
        "'bad_items': timestamps[2]: start -1.0 s is negative",
        "'bad_items': timestamps[3] = [True, 3]",
        "'bad_items': timestamps[4] = [0, 1, 2]",
        "'bad_items': sentences[5] = '   ': expected a non-empty string",
    ]
    assert len(problems) == len(expected)
    for problem, fragment in zip(problems, expected):
        assert fragment in problem
    assert "10 problems, nothing imported" in str(caught.value)


def test_activitynet_invalid_json_names_line_and_column(tmp_path):
    path = _write_text(tmp_path, '{\n  "v": {"duration": 1,\n  }\n}', name="broken.json")
    with pytest.raises(AnnotationFormatError, match=rf"{path}:3:3: not valid JSON"):
        load_activitynet_captions(path)


def test_activitynet_top_level_must_be_an_object(tmp_path):
    with pytest.raises(AnnotationFormatError, match="top level must map video id"):
        load_activitynet_captions(_write_json(tmp_path, [{"duration": 1}]))


def test_activitynet_skip_empty_spans(tmp_path):
    data = {"v": {"duration": 9.0, "timestamps": [[0, 0], [3, 1], [2, 5]], "sentences": ["a", "b", "c"]}}
    path = _write_json(tmp_path, data)
    with pytest.raises(AnnotationFormatError, match="skip_empty_spans=True"):
        load_activitynet_captions(path)
    assert load_activitynet_captions(path, skip_empty_spans=True)["v"].spans == [(2.0, 5.0)]


def test_not_utf8_is_a_format_error(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("vid 0 1##caf\u00e9\n".encode("latin-1"))
    with pytest.raises(AnnotationFormatError, match="not UTF-8"):
        load_charades_sta(path)


# Charades-STA text


def test_charades_groups_queries_by_video(tmp_path):
    path = _write_text(
        tmp_path,
        "3MSZA 24.3 30.4##person turn a light on.\r\n"
        "\n"
        "3MSZA 0.0 6.9##a person is putting a book on a shelf.\n"
        "AO8RW 1 2## spaces around ## the sentence \n",
    )
    annotations = load_charades_sta(path)
    assert list(annotations) == ["3MSZA", "AO8RW"]
    assert annotations["3MSZA"].duration_s is None
    assert annotations["3MSZA"].segments == [
        Segment(24.3, 30.4, "person turn a light on."),
        Segment(0.0, 6.9, "a person is putting a book on a shelf."),
    ]
    assert annotations["AO8RW"].segments[0].sentence == "spaces around ## the sentence"


def test_charades_reports_every_malformed_line(tmp_path):
    lines = [
        "GOOD1 0 5##fine",
        "NOSEP 0 5 person sits",
        "FEW 5##too few fields",
        "MANY 1 2 3##too many",
        "NUM zero 5##not a number",
        "NAN nan 5##not finite",
        "EMPTY 1 5##   ",
        "REV 7 3##reversed",
        "NEG -1 3##before the start",
    ]
    path = _write_text(tmp_path, "\n".join(lines) + "\n")
    with pytest.raises(AnnotationFormatError) as caught:
        load_charades_sta(path)
    expected = {
        2: "no '##'",
        3: "expected 'video_id start end'",
        4: "expected 'video_id start end'",
        5: "must be numbers of seconds",
        6: "must be finite",
        7: "sentence after '##' is empty",
        8: "start 7.0 s >= end 3.0 s",
        9: "start -1.0 s is negative",
    }
    problems = caught.value.problems
    assert len(problems) == len(expected)
    for problem, (line_number, cause) in zip(problems, expected.items()):
        assert problem.startswith(f"{path}:{line_number}: ")
        assert cause in problem


def test_charades_skip_empty_spans_keeps_the_video(tmp_path):
    path = _write_text(tmp_path, "A 3 3##zero length\nA 1 2##kept\nB 5 4##reversed\n")
    annotations = load_charades_sta(path, skip_empty_spans=True)
    assert annotations["A"].spans == [(1.0, 2.0)]
    assert annotations["B"].segments == []


def test_long_problem_lists_are_cut_in_the_message(tmp_path):
    path = _write_text(tmp_path, "bad line\n" * (MAX_REPORTED_PROBLEMS + 5))
    with pytest.raises(AnnotationFormatError) as caught:
        load_charades_sta(path)
    assert len(caught.value.problems) == MAX_REPORTED_PROBLEMS + 5
    assert str(caught.value).endswith("... and 5 more")
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, MarlinError)


def test_parse_charades_line():
    assert parse_charades_line("X 1.5 2##q\n") == ("X", Segment(1.5, 2.0, "q"))
    assert parse_charades_line("X 2 2##q", skip_empty_spans=True) == ("X", None)
    with pytest.raises(ValueError, match="no '##'"):
        parse_charades_line("X 1 2 q")


# Byte-order marks (Windows editors write one)


def test_charades_with_a_bom_reads_the_first_id_clean(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbf" + "3MSZA 24.3 30.4##person turn a light on.\n".encode("utf-8"))
    annotations = load_charades_sta(path)
    assert list(annotations) == ["3MSZA"]


def test_json_with_a_bom_reads(tmp_path):
    data = {"v_a": {"duration": 5.0, "timestamps": [[0, 1]], "sentences": ["x"]}}
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(data).encode("utf-8"))
    assert list(load_activitynet_captions(path)) == ["v_a"]


# TimeLens-Bench JSON


def test_timelens_reads_queries_and_spans(tmp_path):
    path = _write_json(tmp_path, {
        "3MSZA": {"duration": 30.96, "spans": [[24.3, 30.4], [0.0, 6.9]],
                  "queries": ["person turn a light on.", " a person is putting a book on a shelf "]},
        "AO8RW": {"duration": 12.0, "spans": [], "queries": [], "source": "ignored"},
    }, name="charades-timelens.json")
    annotations = load_timelens(path)
    assert list(annotations) == ["3MSZA", "AO8RW"]
    assert annotations["3MSZA"] == VideoAnnotation("3MSZA", 30.96, [
        Segment(24.3, 30.4, "person turn a light on."), Segment(0.0, 6.9, "a person is putting a book on a shelf")])
    assert annotations["AO8RW"].segments == []


def test_timelens_reports_every_problem(tmp_path):
    path = _write_json(tmp_path, {
        "no_duration": {"spans": [[0, 1]], "queries": ["q"]},
        "activitynet_keys": {"duration": 5.0, "timestamps": [[0, 1]], "sentences": ["q"]},
        "mismatch": {"duration": 5.0, "spans": [[0, 1], [1, 2]], "queries": ["q"]},
        "bad": {"duration": 5.0, "spans": [[3, 1]], "queries": [""]},
    })
    with pytest.raises(AnnotationFormatError) as caught:
        load_timelens(path)
    expected = [
        "'no_duration': 'duration' (seconds) is missing",
        "'activitynet_keys': 'spans' and 'queries' must both be lists",
        "'mismatch': 2 spans but 1 queries",
        "'bad': spans[0]: start 3.0 s >= end 1.0 s",
        "'bad': queries[0] = '': expected a non-empty string",
    ]
    assert len(caught.value.problems) == len(expected)
    for problem, fragment in zip(caught.value.problems, expected):
        assert fragment in problem


# load_annotations: the one entry point the import operator uses


@pytest.mark.parametrize("given", ["", "   ", None])
def test_empty_path_is_one_clear_line(given):
    with pytest.raises(AnnotationFormatError, match="no annotation file given") as caught:
        load_annotations(given, "charades")
    assert "IsADirectory" not in str(caught.value) and "\n" not in str(caught.value)


def test_folder_and_missing_file_are_clear(tmp_path):
    with pytest.raises(AnnotationFormatError, match="is a folder, not an annotation file"):
        load_annotations(tmp_path, "activitynet")
    with pytest.raises(AnnotationFormatError, match="does not exist"):
        load_annotations(tmp_path / "nope.json", "timelens")
    with pytest.raises(ValueError, match="format must be one of"):
        load_annotations(tmp_path / "x.json", "youcook")


def test_segments_past_duration():
    annotation = VideoAnnotation("v", 30.0, [Segment(0, 10, "in"), Segment(28, 31, "ends late"),
                                             Segment(30, 30.5, "starts at the end")])
    assert [s.sentence for s in segments_past_duration(annotation, 30.0)] == ["ends late", "starts at the end"]
