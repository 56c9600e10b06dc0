"""Command line: ``marlin caption VIDEO...``, ``marlin find VIDEO QUERY...`` and ``marlin serve MODEL``.

(``marlin-core`` and ``python -m marlin_core`` are the same command.) ``serve`` runs a vLLM server for
Marlin in the foreground (:mod:`marlin_core.serving.serve`); ``--model vllm:MODEL`` reuses it, or starts
a server for the run and stops it at the end (unless ``--keep-server``).

Human-readable output by default (events as ``<start - end> description``); ``--json`` prints one
JSON object per video per line (JSON Lines: a single video gives a single JSON document). Progress
goes to stderr. Every failure is one line on stderr (``marlin-core: error: ...``, never a traceback)
and an exit code: 2 for bad input found before any work (file, query, device, model), 1 when some
videos failed while the others were done. Times are clamped to the video's duration, as the FiftyOne
operators do (:mod:`marlin_core.sanitize`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Sequence

from .defaults import DEFAULT_MODEL, DEFAULT_OVERLAP_S, DEFAULT_WINDOW_S
from .serving.openai_http import DEFAULT_TIMEOUT_S
from .errors import MarlinError, error_summary
from .queries import QueryError, check_queries
from .sanitize import sanitize_events, sanitize_span

EXIT_BAD_INPUT = 2
EXIT_SOME_FAILED = 1
PREFIX = "marlin-core: error: "


def _parser() -> argparse.ArgumentParser:
    prog = "marlin" if os.path.basename(sys.argv[0]) == "marlin" else "marlin-core"
    parser = argparse.ArgumentParser(prog=prog, description="Marlin-2B video captioning and event search")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", default=DEFAULT_MODEL,
                        help="hub id, local folder, openai://HOST:PORT/v1/NAME for a vLLM server, or vllm:FOLDER_OR_ID "
                             "for a vLLM server started here (default: %(default)s)")
    common.add_argument("--timeout", type=float, default=None, dest="timeout_s",
                        help=f"seconds one server request may wait for its answer (default: {DEFAULT_TIMEOUT_S:g})")
    common.add_argument("--keep-server", action="store_true",
                        help="with --model vllm:...: leave a server this run started running afterwards")
    common.add_argument("--revision", default=None, help="hub revision")
    common.add_argument("--device", default=None, help="cuda, mps or cpu (default: best available)")
    common.add_argument("--json", action="store_true", help="one JSON object per video per line")
    common.add_argument("--max-new-tokens", type=int, default=None, help="generation cap")
    common.add_argument("--window", type=float, default=DEFAULT_WINDOW_S, help="window length in seconds for long videos")
    common.add_argument("--quiet", action="store_true", help="no progress on stderr")
    sub = parser.add_subparsers(dest="command", required=True)
    caption = sub.add_parser("caption", parents=[common], help="scene + time-ranged events of each video")
    caption.add_argument("videos", nargs="+", help="video files")
    caption.add_argument("--batch-size", type=int, default=None,
                         help="videos per generate call (default: 1 on a CPU, from free GPU memory on CUDA)")
    find = sub.add_parser("find", parents=[common], help="when does each query happen in VIDEO")
    find.add_argument("video", help="video file")
    find.add_argument("queries", nargs="+", help="event descriptions")
    serve = sub.add_parser("serve", help="run a vLLM server for Marlin until Ctrl-C; prints the --model to use")
    serve.add_argument("serve_model", metavar="MODEL", help="folder or hub id of the weights (vllm: prefix optional)")
    serve.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s; "
                                                             "0.0.0.0 to serve other machines)")
    serve.add_argument("--gpu-memory-utilization", type=float, default=None,
                       help="share of GPU memory vLLM may take (of RAM on the CPU build; default 0.9, CPU 0.2)")
    serve.add_argument("--max-model-len", type=int, default=None,
                       help="longest prompt + answer in tokens (default 65536, CPU 8192: a 2-minute window)")
    serve.add_argument("--max-num-batched-tokens", type=int, default=None,
                       help="tokens per scheduler step, also the encoder cache size (default: --max-model-len)")
    serve.epilog = "Arguments after -- go to vLLM as they are (e.g. -- --tensor-parallel-size 2)."
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


def _check_videos(paths: Sequence[str]) -> tuple[dict[str, float], list[str]]:
    """Readable videos with their duration in seconds, and one-line errors, before the model is loaded."""
    from .video import probe

    good, errors = {}, []
    for path in paths:
        try:
            info = probe(path)
            if info.num_frames < 2:
                raise MarlinError(f"{path}: only {info.num_frames} frame; Marlin needs at least 2")
            good[path] = info.duration_s
        except Exception as error:  # noqa: BLE001 - any reason a file cannot be used is that file's line
            errors.append(error_summary(error, path))
    return good, errors


def device_problem(device: str | None) -> str | None:
    """Why ``--device`` cannot be used on this machine, or None (checked before the model loads)."""
    if device is None:
        return None
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        return f"--device {device!r}: use cpu, cuda, cuda:N or mps"
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            return f"--device {device!r}: no CUDA GPU is available; use cpu"
        if parsed.index is not None and parsed.index >= count:
            return f"--device {device!r}: only {count} CUDA GPU(s) (cuda:0..cuda:{count - 1})"
    elif parsed.type == "mps":
        if not torch.backends.mps.is_available():
            return f"--device {device!r}: Apple MPS is not available; use cpu"
    elif parsed.type != "cpu":
        return f"--device {device!r}: use cpu, cuda, cuda:N or mps"
    return None


def clamp_caption(result: dict, duration_s: float) -> dict:
    """Events clamped to ``[0, duration_s]`` (empty ones dropped), as the operators store them."""
    events, _ = sanitize_events(result["events"], duration_s)
    return dict(result, events=events)


def clamp_find(result: dict, duration_s: float) -> dict:
    span, _ = sanitize_span(result["span"], duration_s)
    return dict(result, span=list(span) if span is not None else None)


def _run_caption(marlin, args) -> list[str]:
    failures = []
    bar = _progress(len(args.videos), args.quiet, "video")
    kwargs = {"batch_size": args.batch_size, "window_s": args.window}
    if args.max_new_tokens:
        kwargs["max_new_tokens"] = args.max_new_tokens
    for video, result in marlin.iter_captions(list(args.videos), **kwargs):
        if isinstance(result, BaseException):
            failures.append(error_summary(result, video))
            continue
        result = clamp_caption(result, args.videos[video])
        if args.json:
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
    results = [clamp_find(result, args.duration_s) for result in results]
    if bar is not None:
        bar.close()
    if args.json:
        print(json.dumps({"video": args.video, "results": results}), flush=True)
    else:
        print(f"== {args.video}")
        for result in results:
            print(format_find_human(result), flush=True)
    return []


def _bad_input(args) -> list[str]:
    """Problems found before any video is read: queries and device."""
    problems = []
    if args.command == "find":
        try:
            args.queries = check_queries([" ".join(q.split()) for q in args.queries])
        except QueryError as error:
            problems.append(str(error))
    if (problem := device_problem(args.device)) is not None:
        problems.append(problem)
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        problems.append(f"--max-new-tokens {args.max_new_tokens}: at least 1 (leave it out for the default)")
    if args.window <= DEFAULT_OVERLAP_S:
        problems.append(f"--window {args.window:g}: windows must be longer than their {DEFAULT_OVERLAP_S:g} s overlap")
    return problems


def _silence_libraries() -> None:
    """``--quiet``: nothing on stderr but Marlin's own error lines (no loading bars, no kernel notes)."""
    import huggingface_hub.utils
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    huggingface_hub.utils.disable_progress_bars()


def _serve(args) -> int:
    from .serving.serve import serve
    from .serving.vllm_process import ServeOptions

    problems = [f"--{name.replace('_', '-')} {value}: {reason}" for name, value, bad, reason in (
        ("port", args.port, not 0 < args.port < 65536, "use a port in 1..65535"),
        ("gpu_memory_utilization", args.gpu_memory_utilization,
         args.gpu_memory_utilization is not None and not 0 < args.gpu_memory_utilization <= 1, "use a share in (0, 1]"),
        ("max_model_len", args.max_model_len, args.max_model_len is not None and args.max_model_len < 1, "at least 1"),
    ) if bad]
    for problem in problems:
        print(PREFIX + problem, file=sys.stderr)
    if problems:
        return EXIT_BAD_INPUT
    extra = tuple(args.vllm_args)
    options = ServeOptions(port=args.port, host=args.host, gpu_memory_utilization=args.gpu_memory_utilization,
                           max_model_len=args.max_model_len, max_num_batched_tokens=args.max_num_batched_tokens,
                           extra_args=extra)
    try:
        return serve(args.serve_model, options, say=lambda line: print(line, flush=True))
    except MarlinError as error:
        print(PREFIX + error_summary(error), file=sys.stderr)
        return EXIT_SOME_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "serve" in argv and "--" in argv else len(argv)  # serve: the rest goes to vLLM
    args = _parser().parse_args(argv[:cut])
    args.vllm_args = argv[cut + 1:]
    if args.command == "serve":
        return _serve(args)
    if args.timeout_s is not None and not args.timeout_s > 0:
        print(PREFIX + f"--timeout {args.timeout_s:g}: seconds must be more than 0", file=sys.stderr)
        return EXIT_BAD_INPUT
    problems = _bad_input(args)
    for problem in problems:
        print(PREFIX + problem, file=sys.stderr)
    if problems:
        return EXIT_BAD_INPUT
    videos = args.videos if args.command == "caption" else [args.video]
    good, errors = _check_videos(videos)
    for error in errors:
        print(PREFIX + error, file=sys.stderr)
    if not good:
        return EXIT_BAD_INPUT
    if args.command == "caption":
        args.videos = good
    else:
        args.duration_s = good[args.video]

    if args.quiet:
        _silence_libraries()
    try:
        from .serving.backends import open_marlin

        with warnings.catch_warnings():
            # torch's notes about a checkpoint's pickle protocol would break the one-line promise
            warnings.simplefilter("ignore")
            marlin = open_marlin(args.model, device=args.device, revision=args.revision, timeout_s=args.timeout_s,
                                 keep_server=args.keep_server)
        if args.command == "find" and hasattr(marlin, "processor"):  # a server's tokenizer is not at hand
            check_queries(args.queries, marlin.processor.tokenizer.all_special_tokens)
    except Exception as error:  # noqa: BLE001 - a model that cannot be used is one line, whatever the cause
        print(PREFIX + error_summary(error, args.model if not isinstance(error, MarlinError) else None),
              file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        failures = _run_caption(marlin, args) if args.command == "caption" else _run_find(marlin, args)
    except Exception as error:  # noqa: BLE001 - one line instead of a traceback, whatever failed
        failures = [error_summary(error, args.video if args.command == "find" else None)]
    finally:
        if hasattr(marlin, "close"):
            marlin.close()  # a vllm: server this run started stops here (unless --keep-server)
    for failure in failures:
        print(PREFIX + failure, file=sys.stderr)
    return EXIT_SOME_FAILED if failures or errors else 0


if __name__ == "__main__":
    sys.exit(main())
