"""Temporal annotations (or Marlin's answers) written in the formats the field's tools read.

Every writer takes ``{video_id: VideoAnnotation}`` (:mod:`marlin_core.formats.annotations`), so ground
truth read from one format can be written in another, and predictions become files the published
evaluators and training scripts take as they are:

- ``activitynet``: ActivityNet Captions ground-truth JSON ``{vid: {"duration", "timestamps",
  "sentences"}}`` (training sets, densevid_eval's ``--references``); read back by
  :func:`~marlin_core.formats.annotations.load_activitynet_captions`.
- ``densevid``: densevid_eval's submission ``{"version": "VERSION 1.0", "results": {vid:
  [{"sentence", "timestamp": [start_s, end_s]}]}, "external_data": {"used", "details"}}``
  (ranjaykrishna/densevid_eval ``evaluate.py`` requires all three keys; ``sample_submission.json``).
- ``timelens``: TimeLens-Bench JSON ``{vid: {"duration", "spans", "queries"}}`` (grounding: one span
  per query); read back by :func:`~marlin_core.formats.annotations.load_timelens`.
- ``charades``: Charades-STA text, ``vid start_s end_s##sentence`` per line (times in Python's
  shortest exact form, ``24.3``, as the published files write them); read back by
  :func:`~marlin_core.formats.annotations.load_charades_sta`.

Times are seconds, written as given: no clipping, no rounding, so a file reads back identical.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from os import PathLike
from pathlib import Path

from marlin_core.formats.annotations import CHARADES_SEPARATOR, VideoAnnotation

__all__ = ["EXPORT_FORMATS", "to_activitynet", "to_charades_sta", "to_densevid_submission", "to_timelens",
           "write_annotations"]

DENSEVID_VERSION = "VERSION 1.0"  # the value in densevid_eval's sample_submission.json


def _duration(annotation: VideoAnnotation) -> float | None:
    return None if annotation.duration_s is None else float(annotation.duration_s)


def to_activitynet(annotations: Mapping[str, VideoAnnotation]) -> dict:
    """ActivityNet Captions ground-truth JSON (``duration`` left out when unknown)."""
    out = {}
    for video_id, annotation in annotations.items():
        entry = {} if annotation.duration_s is None else {"duration": _duration(annotation)}
        entry["timestamps"] = [[s.start_s, s.end_s] for s in annotation.segments]
        entry["sentences"] = [s.sentence for s in annotation.segments]
        out[video_id] = entry
    return out


def to_densevid_submission(annotations: Mapping[str, VideoAnnotation], external_data: str = "") -> dict:
    """densevid_eval's submission JSON; ``external_data`` describes data used beyond the training set."""
    results = {
        video_id: [{"sentence": s.sentence, "timestamp": [s.start_s, s.end_s]} for s in annotation.segments]
        for video_id, annotation in annotations.items()
    }
    return {"version": DENSEVID_VERSION, "results": results,
            "external_data": {"used": bool(external_data), "details": external_data}}


def to_timelens(annotations: Mapping[str, VideoAnnotation]) -> dict:
    """TimeLens-Bench JSON.

    Raises:
        ValueError: a video has no duration (TimeLens requires it); names the video.
    """
    missing = [video_id for video_id, annotation in annotations.items() if annotation.duration_s is None]
    if missing:
        raise ValueError(f"TimeLens files need each video's duration; unknown for {missing[:5]}"
                         + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
    return {
        video_id: {"duration": _duration(annotation),
                   "spans": [[s.start_s, s.end_s] for s in annotation.segments],
                   "queries": [s.sentence for s in annotation.segments]}
        for video_id, annotation in annotations.items()
    }


def to_charades_sta(annotations: Mapping[str, VideoAnnotation]) -> str:
    """Charades-STA text: one ``vid start_s end_s##sentence`` line per segment.

    Raises:
        ValueError: a video id has whitespace or a sentence has a line break (the format cannot hold them).
    """
    lines = []
    for video_id, annotation in annotations.items():
        if not video_id or any(c.isspace() for c in video_id):
            raise ValueError(f"Charades-STA video ids cannot hold whitespace: {video_id!r}")
        for segment in annotation.segments:
            if "\n" in segment.sentence or "\r" in segment.sentence:
                raise ValueError(f"video {video_id!r}: a Charades-STA sentence cannot hold a line break: "
                                 f"{segment.sentence!r}")
            times = f"{float(segment.start_s)!r} {float(segment.end_s)!r}"
            lines.append(f"{video_id} {times}{CHARADES_SEPARATOR}{segment.sentence}")
    return "".join(line + "\n" for line in lines)


def _json_text(data: dict) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


EXPORT_FORMATS = {
    "activitynet": lambda annotations: _json_text(to_activitynet(annotations)),
    "densevid": lambda annotations: _json_text(to_densevid_submission(annotations)),
    "timelens": lambda annotations: _json_text(to_timelens(annotations)),
    "charades": to_charades_sta,
}


def write_annotations(annotations: Mapping[str, VideoAnnotation], path: str | PathLike, fmt: str,
                      overwrite: bool = False) -> Path:
    """Write ``annotations`` to ``path`` in format ``fmt`` (a key of :data:`EXPORT_FORMATS`), UTF-8, no BOM.

    The text is built completely before the file is opened, so a failure leaves no partial file.

    Raises:
        ValueError: unknown format, empty path, or data the format cannot hold.
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {sorted(EXPORT_FORMATS)}, not {fmt!r}")
    if not str(path or "").strip():
        raise ValueError("no output file given: enter the path to write")
    path = Path(path).expanduser()
    if path.is_dir():
        raise ValueError(f"{path} is a folder: enter a file path")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists: choose another path or pass overwrite=True")
    text = EXPORT_FORMATS[fmt](annotations)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
