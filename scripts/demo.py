"""``make demo``: build a FiftyOne dataset from videos, run Marlin caption + find, print a summary.

Failures a user can fix (no network for the gated model, a bad path) end with one clear message and
exit status 2, never a stack trace.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_USER_ERROR = 2


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--dataset", default="marlin-demo")
    parser.add_argument("--query", default="a person walks")
    parser.add_argument("--videos", nargs="+", required=True)
    return parser.parse_args()


def main() -> int:
    args = _args()
    videos = [Path(v).resolve() for v in args.videos]
    missing = [str(v) for v in videos if not v.is_file()]
    if missing:
        print(f"[demo] error: video not found: {', '.join(missing)}", file=sys.stderr)
        return EXIT_USER_ERROR

    from marlin_core import MarlinError
    from marlin_core.engine.loading import resolve_local_files_only

    print(f"[demo] checking model {args.model}")
    try:
        resolve_local_files_only(args.model, None, None)
    except MarlinError as error:
        print(f"[demo] error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR

    import fiftyone as fo
    import fiftyone.operators as foo
    from fiftyone.operators.executor import ExecutionError

    print(f"[demo] dataset {args.dataset!r} from {len(videos)} videos")
    if fo.dataset_exists(args.dataset):
        fo.delete_dataset(args.dataset)
    dataset = fo.Dataset(args.dataset, persistent=True)
    dataset.add_samples([fo.Sample(filepath=str(v)) for v in videos])
    dataset.compute_metadata()

    for uri, kwargs in (
        ("@marlin/marlin/caption", {}),
        ("@marlin/marlin/find", {"queries": [args.query]}),
    ):
        print(f"[demo] running {uri} with model {args.model}")
        try:
            result = foo.execute_operator(uri, dict(dataset=dataset, params=dict(model=args.model, **kwargs)))
        except (ExecutionError, ValueError) as error:
            print(f"[demo] error: {str(error).strip().splitlines()[-1]}", file=sys.stderr)
            return EXIT_USER_ERROR
        print(f"[demo]   done={result.result['done']} skipped={result.result['skipped']} "
              f"failed={result.result['failed']}")
        for message in result.result["errors"]:
            print(f"[demo]   {message}")

    dataset.reload()
    print("\n[demo] summary")
    for sample in dataset:
        field = lambda name: sample.get_field(name) if sample.has_field(name) else None  # noqa: E731
        events = field("marlin_events").detections if field("marlin_events") else []
        found = field("marlin_find").detections if field("marlin_find") else []
        print(f"  {Path(sample.filepath).name}: {len(events)} events, scene: {field('marlin_scene')!r:.80}")
        for event in events[:5]:
            print(f"    {event.support} {event.label}")
        for detection in found:
            print(f"    find {detection.label!r}: frames {detection.support}")
        for query in field("marlin_find_not_found") or []:
            print(f"    find {query!r}: not found")
        if field("marlin_error"):
            print(f"    error: {field('marlin_error')}")
    print(f"\n[demo] open the App on the result: make app DATASET={args.dataset}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
