"""Ground-truth temporal annotations from the common benchmark formats, validated before use.

- ActivityNet Captions JSON (also used by YouCook2 and many dense-captioning sets):
  ``{video_id: {"duration": s, "timestamps": [[start_s, end_s], ...], "sentences": [...]}}``.
- Charades-STA text, one query per line: ``video_id start_s end_s##sentence``.
- TimeLens-Bench JSON (TencentARC/TimeLens ``timelens/dataset/timelens_data.py``; the benchmark
  Marlin reports on): ``{video_id: {"duration": s, "spans": [[start_s, end_s], ...], "queries": [...]}}``.

Files are read as UTF-8 with or without a byte-order mark (Windows editors add one; without this
the first video id would silently carry ``\ufeff``).

A file is parsed completely before anything is returned: every problem found is reported at once,
each with its place (``file:line`` for text, ``file: video 'id'`` for JSON) and its cause, and a
file with any problem yields nothing, so a dataset is never half imported. Times are kept exactly
as written (seconds, not clipped to the duration: the benchmarks' evaluators do not clip either).
This module knows nothing about FiftyOne; matching ids to samples is the caller's job.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

from marlin_core.errors import MarlinError

__all__ = [
    "LOADERS",
    "AnnotationFormatError",
    "Segment",
    "VideoAnnotation",
    "load_activitynet_captions",
    "load_annotations",
    "load_charades_sta",
    "load_timelens",
    "parse_charades_line",
    "segments_past_duration",
]

MAX_REPORTED_PROBLEMS = 20  # enough to see a pattern; a broken file can have thousands
# Bounds that keep a hostile or broken file from exhausting memory or half-importing. Real files sit far
# below them: ActivityNet Captions' train.json is 10 MB with at most a few dozen segments per video.
MAX_FILE_BYTES = 512 * 1024**2
# A FiftyOne sample is one MongoDB document (16 MB at most): 10,000 short segments take ~1.5 MB.
MAX_SEGMENTS_PER_VIDEO = 10_000
CHARADES_SEPARATOR = "##"  # between the times and the sentence in Charades-STA files


@dataclass(frozen=True)
class Segment:
    """One annotated event: ``[start_s, end_s]`` in seconds and the sentence that describes it."""

    start_s: float
    end_s: float
    sentence: str


@dataclass(frozen=True)
class VideoAnnotation:
    """All annotated segments of one video, in file order.

    ``duration_s`` is the video's length in seconds when the file gives it (ActivityNet JSON), else None.
    """

    video_id: str
    duration_s: float | None
    segments: list[Segment]

    @property
    def spans(self) -> list[tuple[float, float]]:
        """The segments as ``(start_s, end_s)`` pairs, the form :mod:`marlin_core.metrics` takes."""
        return [(segment.start_s, segment.end_s) for segment in self.segments]


class AnnotationFormatError(MarlinError, ValueError):
    """An annotation file is malformed; ``problems`` lists each place and cause, nothing was imported."""

    def __init__(self, path: str | PathLike, problems: list[str]):
        self.path = str(path)
        self.problems = list(problems)
        if len(self.problems) == 1:  # one line, e.g. "no annotation file given: ..." or "a.json:3:3: not valid JSON"
            super().__init__(f"{self.problems[0]} (nothing imported)")
            return
        shown = "\n".join(f"  {problem}" for problem in self.problems[:MAX_REPORTED_PROBLEMS])
        more = len(self.problems) - MAX_REPORTED_PROBLEMS
        if more > 0:
            shown += f"\n  ... and {more} more"
        count = f"{len(self.problems)} problem" + ("s" if len(self.problems) != 1 else "")
        super().__init__(f"{self.path}: {count}, nothing imported; fix the file and import again:\n{shown}")


def _is_seconds(value: object) -> bool:
    """True for a finite int or float (JSON's true/false are not times)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _span_problem(start_s: float, end_s: float, skip_empty_spans: bool) -> str | None:
    """Why ``[start_s, end_s]`` cannot be a segment, or None; empty spans pass when they will be skipped."""
    if start_s < 0:
        return f"start {start_s} s is negative"
    if start_s >= end_s and not skip_empty_spans:
        return (
            f"start {start_s} s >= end {end_s} s (empty span); "
            "fix it, or pass skip_empty_spans=True to leave such segments out"
        )
    return None


def _read_text(path: Path) -> str:
    """The file as UTF-8 text (a leading byte-order mark dropped), or an AnnotationFormatError saying why not."""
    if not path.is_file():
        cause = "is a folder, not an annotation file" if path.is_dir() else "does not exist"
        raise AnnotationFormatError(path, [f"{path}: {cause}"])
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise AnnotationFormatError(path, [f"{path}: {size / 1024**2:.0f} MB, more than the "
                                           f"{MAX_FILE_BYTES // 1024**2} MB an annotation file can be; split it"])
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        problem = f"{path}: byte {error.start} is not UTF-8; save the file as UTF-8"
        raise AnnotationFormatError(path, [problem]) from None


def parse_charades_line(line: str, skip_empty_spans: bool = False) -> tuple[str, Segment | None]:
    """One Charades-STA line ``video_id start_s end_s##sentence`` → ``(video_id, segment)``.

    Args:
        line: the line, without or with its line ending.
        skip_empty_spans: give ``None`` instead of an error for ``start_s >= end_s``.

    Returns:
        The video id and its segment (``None`` for an empty span that is skipped).

    Raises:
        ValueError: the line is malformed; the message says why (no file or line number).
    """
    times, separator, sentence = line.rstrip("\r\n").partition(CHARADES_SEPARATOR)
    if not separator:
        raise ValueError(f"no '{CHARADES_SEPARATOR}' between the times and the sentence")
    fields = times.split()
    if len(fields) != 3:
        raise ValueError(f"expected 'video_id start end' before '{CHARADES_SEPARATOR}', not {times.strip()!r}")
    video_id, start_text, end_text = fields
    try:
        start_s, end_s = float(start_text), float(end_text)
    except ValueError:
        raise ValueError(f"times {start_text!r} and {end_text!r} must be numbers of seconds") from None
    if not (math.isfinite(start_s) and math.isfinite(end_s)):
        raise ValueError(f"times {start_text!r} and {end_text!r} must be finite")
    problem = _span_problem(start_s, end_s, skip_empty_spans)
    if problem:
        raise ValueError(problem)
    if not sentence.strip():
        raise ValueError(f"the sentence after '{CHARADES_SEPARATOR}' is empty")
    if start_s >= end_s:
        return video_id, None
    return video_id, Segment(start_s, end_s, sentence.strip())


def load_charades_sta(path: str | PathLike, skip_empty_spans: bool = False) -> dict[str, VideoAnnotation]:
    """Read a Charades-STA annotation file (``video_id start_s end_s##sentence`` per line).

    Blank lines are ignored; the queries of one video are grouped in file order.

    Args:
        path: the ``.txt`` file.
        skip_empty_spans: leave out segments with ``start_s >= end_s`` instead of failing.

    Returns:
        video id → :class:`VideoAnnotation` (``duration_s`` None: the format has no durations).

    Raises:
        AnnotationFormatError: any line is malformed; every such line is listed as ``file:line: cause``.
    """
    path = Path(path)
    segments: dict[str, list[Segment]] = {}
    problems = []
    for line_number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            video_id, segment = parse_charades_line(line, skip_empty_spans)
        except ValueError as error:
            problems.append(f"{path}:{line_number}: {error}")
            continue
        segments.setdefault(video_id, [])
        if segment is not None:
            segments[video_id].append(segment)
    if problems:
        raise AnnotationFormatError(path, problems)
    return {video_id: VideoAnnotation(video_id, None, found) for video_id, found in segments.items()}


@dataclass(frozen=True)
class _JsonLayout:
    """Key names of one JSON annotation format, and whether it requires ``duration``."""

    spans: str
    sentences: str
    duration_required: bool


ACTIVITYNET_LAYOUT = _JsonLayout("timestamps", "sentences", duration_required=False)
TIMELENS_LAYOUT = _JsonLayout("spans", "queries", duration_required=True)


def _json_video(
    video_id: str, entry: object, skip_empty_spans: bool, layout: _JsonLayout
) -> tuple[VideoAnnotation | None, list[str]]:
    """One JSON entry → ``(annotation, [])``, or ``(None, problems)`` naming the fields."""
    spans_key, sentences_key = layout.spans, layout.sentences
    if not isinstance(entry, dict):
        return None, [f"expected an object with '{spans_key}' and '{sentences_key}', got {type(entry).__name__}"]
    problems = []
    duration_s = entry.get("duration")
    if duration_s is None and layout.duration_required:
        problems.append("'duration' (seconds) is missing")
    elif duration_s is not None and not (_is_seconds(duration_s) and duration_s > 0):
        problems.append(f"duration {duration_s!r} must be a positive number of seconds")
    timestamps, sentences = entry.get(spans_key), entry.get(sentences_key)
    if not isinstance(timestamps, list) or not isinstance(sentences, list):
        return None, problems + [f"'{spans_key}' and '{sentences_key}' must both be lists"]
    if len(timestamps) != len(sentences):
        return None, problems + [f"{len(timestamps)} {spans_key} but {len(sentences)} {sentences_key}"]
    segments = []
    for index, (span, sentence) in enumerate(zip(timestamps, sentences)):
        if not (isinstance(span, list) and len(span) == 2 and all(_is_seconds(t) for t in span)):
            problems.append(f"{spans_key}[{index}] = {span!r}: expected [start_s, end_s] as two numbers")
            continue
        span_problem = _span_problem(float(span[0]), float(span[1]), skip_empty_spans)
        if span_problem:
            problems.append(f"{spans_key}[{index}]: {span_problem}")
        if not isinstance(sentence, str) or not sentence.strip():
            problems.append(f"{sentences_key}[{index}] = {sentence!r}: expected a non-empty string")
        elif not span_problem and span[0] < span[1]:
            segments.append(Segment(float(span[0]), float(span[1]), sentence.strip()))
    if problems:
        return None, problems
    duration = None if duration_s is None else float(duration_s)
    return VideoAnnotation(video_id, duration, segments), []


def _load_json(path: str | PathLike, skip_empty_spans: bool, layout: _JsonLayout) -> dict[str, VideoAnnotation]:
    """Parse a ``{video_id: entry}`` JSON file completely; raise every problem at once."""
    path = Path(path)
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as error:
        problem = f"{path}:{error.lineno}:{error.colno}: not valid JSON: {error.msg}"
        raise AnnotationFormatError(path, [problem]) from None
    except RecursionError:
        problem = f"{path}: JSON nested deeper than Python can read; an annotation file is two or three levels deep"
        raise AnnotationFormatError(path, [problem]) from None
    if not isinstance(data, dict):
        problem = f"{path}: the top level must map video id to annotation, not be a {type(data).__name__}"
        raise AnnotationFormatError(path, [problem])
    annotations, problems = {}, []
    for video_id, entry in data.items():
        annotation, entry_problems = _json_video(video_id, entry, skip_empty_spans, layout)
        problems.extend(f"{path}: video {video_id!r}: {problem}" for problem in entry_problems)
        if annotation is not None:
            annotations[video_id] = annotation
    if problems:
        raise AnnotationFormatError(path, problems)
    return annotations


def load_activitynet_captions(
    path: str | PathLike, skip_empty_spans: bool = False
) -> dict[str, VideoAnnotation]:
    """Read an ActivityNet Captions-style JSON file (``train.json``, ``val_1.json``, YouCook2 in that form).

    Each entry: ``{"duration": s, "timestamps": [[start_s, end_s], ...], "sentences": [...]}``;
    ``duration`` may be absent (then ``duration_s`` is None), other keys are ignored.

    Args:
        path: the ``.json`` file.
        skip_empty_spans: leave out segments with ``start_s >= end_s`` instead of failing.

    Returns:
        video id → :class:`VideoAnnotation`, in file order.

    Raises:
        AnnotationFormatError: invalid JSON (with line and column) or malformed entries, each listed
            as ``file: video 'id': field: cause``.
    """
    return _load_json(path, skip_empty_spans, ACTIVITYNET_LAYOUT)


def load_timelens(path: str | PathLike, skip_empty_spans: bool = False) -> dict[str, VideoAnnotation]:
    """Read a TimeLens-Bench annotation file (``charades-timelens.json``, ``activitynet-timelens.json``, ...).

    Each entry: ``{"duration": s, "spans": [[start_s, end_s], ...], "queries": [...]}``, one span
    per query (TimeLens pairs them with ``zip``); other keys are ignored. Queries are kept as written
    (stripped); TimeLens's evaluator also drops a trailing period, which does not change a span.

    Args:
        path: the ``.json`` file.
        skip_empty_spans: leave out queries with ``start_s >= end_s`` instead of failing.

    Returns:
        video id → :class:`VideoAnnotation` (segment sentence = query), in file order.

    Raises:
        AnnotationFormatError: invalid JSON or malformed entries, each listed as
            ``file: video 'id': field: cause``; ``duration`` is required.
    """
    return _load_json(path, skip_empty_spans, TIMELENS_LAYOUT)


# Format name (as the import and export operators show it) → reader.
LOADERS: dict[str, Callable[..., dict[str, VideoAnnotation]]] = {
    "activitynet": load_activitynet_captions,
    "charades": load_charades_sta,
    "timelens": load_timelens,
}


def load_annotations(path: str | PathLike, fmt: str, skip_empty_spans: bool = False) -> dict[str, VideoAnnotation]:
    """Read ``path`` in format ``fmt`` (a key of :data:`LOADERS`).

    Raises:
        AnnotationFormatError: empty path, missing file, folder, a malformed file, or one past the bounds
            (:data:`MAX_FILE_BYTES`, :data:`MAX_SEGMENTS_PER_VIDEO`, JSON nested too deep).
        ValueError: unknown format.
    """
    if fmt not in LOADERS:
        raise ValueError(f"format must be one of {sorted(LOADERS)}, not {fmt!r}")
    if not str(path or "").strip():
        raise AnnotationFormatError("(no path)", ["no annotation file given: enter the path of the file to import"])
    annotations = LOADERS[fmt](path, skip_empty_spans=skip_empty_spans)
    crowded = [f"{path}: video {video_id!r}: {len(annotation.segments)} segments, more than the "
               f"{MAX_SEGMENTS_PER_VIDEO} one video can hold" for video_id, annotation in annotations.items()
               if len(annotation.segments) > MAX_SEGMENTS_PER_VIDEO]
    if crowded:
        raise AnnotationFormatError(path, crowded)
    return annotations


def segments_past_duration(annotation: VideoAnnotation, duration_s: float) -> list[Segment]:
    """The segments that end after ``duration_s`` (the video's length): imported as written, worth a warning."""
    return [segment for segment in annotation.segments if segment.end_s > duration_s]
