"""A caption run killed mid-way keeps what it finished; the rerun does only the rest, with no duplicates."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import fiftyone as fo
import fiftyone.operators as foo

CHILD = """
import sys, fiftyone as fo, fiftyone.operators as foo
dataset = fo.load_dataset(sys.argv[1])
foo.execute_operator("@marlin/marlin/caption", dict(dataset=dataset, params=dict(model=sys.argv[2])))
"""
VIDEOS = 8
KILL_AFTER_DONE = 2
TIMEOUT_S = 240


def captioned(dataset) -> int:
    dataset.reload()  # the schema grows in the other process
    return dataset.count("marlin_events") if dataset.has_sample_field("marlin_events") else 0


def test_killed_run_resumes_without_recomputing(trained_model_dir, color_videos, tmp_path):
    dataset = fo.Dataset(persistent=True)
    try:
        paths = []
        for index in range(VIDEOS):
            color = "red" if index % 2 == 0 else "blue"
            link = tmp_path / f"{index:02d}-{color}.mp4"
            os.link(color_videos[color], link)
            paths.append(link)
        dataset.add_samples([fo.Sample(filepath=str(p)) for p in paths])

        child = subprocess.Popen([sys.executable, "-c", CHILD, dataset.name, str(trained_model_dir)],
                                 env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + TIMEOUT_S
        while captioned(dataset) < KILL_AFTER_DONE and time.monotonic() < deadline:
            assert child.poll() is None, child.stderr.read().decode()[-2000:]
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait()
        done_before = captioned(dataset)
        assert KILL_AFTER_DONE <= done_before < VIDEOS, "the run ended before it could be killed"
        ids_before = {s.id: [d.id for d in s["marlin_events"].detections]
                      for s in dataset.exists("marlin_events")}

        result = foo.get_operator("@marlin/marlin/caption")(dataset, model=str(trained_model_dir))
        assert result["skipped"] == done_before
        assert result["done"] == VIDEOS - done_before
        assert dataset.count("marlin_events") == VIDEOS
        for sample in dataset:
            assert len(sample["marlin_events"].detections) == 2
            if sample.id in ids_before:
                assert [d.id for d in sample["marlin_events"].detections] == ids_before[sample.id]
            color = "red" if Path(sample.filepath).stem.endswith("red") else "blue"
            assert sample["marlin_events"].detections[0].label.lower().startswith(color)
    finally:
        dataset.delete()
