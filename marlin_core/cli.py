"""Command line: ``python -m marlin_core caption VIDEO...`` and ``python -m marlin_core find VIDEO QUERY...``.

Human-readable output by default (events as ``<start - end> description``); ``--json`` prints one
JSON object per video per line (JSON Lines: a single video gives a single JSON document). Progress
goes to stderr. Bad input exits non-zero with a one-line error, after the good videos are done.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from .errors import MarlinError
from .loading import DEFAULT_MODEL

EXIT_BAD_INPUT = 2
EXIT_SOME_FAILED = 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="marlin-core", description="Marlin-2B video captioning and event search")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", default=DEFAULT_MODEL, help="hub id, local folder, or openai://HOST:PORT/v1/NAME for a vLLM server (default: %(default)s)")
    common.add_argument("--revision", default=None, help="hub revision")
    common.add_argument("--device", default=None, help="cuda, mps or cpu (default: best available)")
    common.add_argument("--json", action="store_true", help="one JSON object per video per line")
    common.add_argument("--max-new-tokens", type=int, default=None, help="generation cap")
    common.add_argument("--window", type=float, default=120.0, help="window length in seconds for long videos")
    common.add_argument("--quiet", action="store_true", help="no progress on stderr")
    sub = parser.add_subparsers(dest="command", required=True)
    caption = sub.add_parser("caption", parents=[common], help="scene + time-ranged events of each video")
    caption.add_argument("videos", nargs="+", help="video files")
    caption.add_argument("--batch-size", type=int, default=1, help="videos per generate call")
    find = sub.add_parser("find", parents=[common], help="when does each query happen in VIDEO")
    find.add_argument("video", help="video file")
    find.add_argument("queries", nargs="+", help="event descriptions")
    return parser


def _progress(total: int, quiet: bool, unit: str):
    if quiet or not sys.stderr.isatty() and total <= 1:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, file=sys.stderr, leave=False)


def _format_time(seconds: float) -> str:
    return f"{seconds:.1f}"


def format_caption_human(video: str, result: dict) -> str:
    lines = [f"== {video}", f"Scene: {result['scene']}"]
    for event in result["events"]:
        confidence = event.get("confidence")
        suffix = f"  (confidence {confidence:.2f})" if confidence is not None else ""
        lines.append(f"<{_format_time(event['start'])} - {_format_time(event['end'])}> {event['description']}{suffix}")
    if not result["events"]:
        lines.append("(no events parsed; raw answer follows)\n" + result["caption"])
    if result.get("truncated"):
        lines.append("(answer cut at --max-new-tokens)")
    return "\n".join(lines)


def format_find_human(result: dict) -> str:
    span = result["span"]
    if span is None:
        return f"{result['query']}: not found (answer: {result['raw']!r})"
    confidence = result.get("confidence")
    suffix = f"  (confidence {confidence:.2f})" if confidence is not None else ""
    return f"{result['query']}: <{_format_time(span[0])} - {_format_time(span[1])}>{suffix}"


def _check_videos(paths: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split into readable videos and one-line errors, before the model is loaded."""
    from .video import VideoError, probe

    good, errors = [], []
    for path in paths:
        try:
            probe(path)
            good.append(path)
        except VideoError as error:
            errors.append(str(error))
    return good, errors


def _run_caption(marlin, args) -> list[str]:
    failures = []
    bar = _progress(len(args.videos), args.quiet, "video")
    kwargs = {"batch_size": args.batch_size, "window_s": args.window}
    if args.max_new_tokens:
        kwargs["max_new_tokens"] = args.max_new_tokens
    for video, result in marlin.iter_captions(args.videos, **kwargs):
        if isinstance(result, BaseException):
            failures.append(str(result) if str(result).startswith(str(video)) else f"{video}: {result}")
        elif args.json:
            print(json.dumps({"video": str(video), **result}), flush=True)
        else:
            print(format_caption_human(str(video), result), flush=True)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return failures


def _run_find(marlin, args) -> list[str]:
    kwargs = {"window_s": args.window}
    if args.max_new_tokens:
        kwargs["max_new_tokens"] = args.max_new_tokens
    bar = _progress(0, args.quiet, "window")

    def window_progress(done: int, total: int) -> None:
        if bar is not None:
            bar.total = total
            bar.n = done
            bar.refresh()

    results = marlin.find_many(args.video, args.queries, window_progress=window_progress, **kwargs)
    if bar is not None:
        bar.close()
    if args.json:
        print(json.dumps({"video": args.video, "results": results}), flush=True)
    else:
        print(f"== {args.video}")
        for result in results:
            print(format_find_human(result), flush=True)
    return []


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    videos = args.videos if args.command == "caption" else [args.video]
    good, errors = _check_videos(videos)
    for error in errors:
        print(f"marlin-core: error: {error}", file=sys.stderr)
    if not good:
        return EXIT_BAD_INPUT
    if args.command == "caption":
        args.videos = good

    from .backends import open_marlin

    try:
        marlin = open_marlin(args.model, device=args.device, revision=args.revision)
        failures = _run_caption(marlin, args) if args.command == "caption" else _run_find(marlin, args)
    except MarlinError as error:
        print(f"marlin-core: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for failure in failures:
        print(f"marlin-core: error: {failure}", file=sys.stderr)
    return EXIT_SOME_FAILED if failures or errors else 0


if __name__ == "__main__":
    sys.exit(main())
