"""Many workers, one dataset: a caption run in 2 shards, each taken by its own ``fiftyone delegated launch`` worker.

Real workers (separate processes on the same database and plugin folder), the tiny trained checkpoint
in-process in each. One worker is killed (SIGKILL) once the run has written its first sample; queueing the
run again resumes it. Checked: the shards are disjoint and cover the view, every sample ends with its
caption, samples written before the kill are never written again (their label ids are unchanged), and the
shards' run records add up to one write per sample (the killed worker's in-flight sample at most missing
from its record).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import fiftyone as fo
import pytest
from bson import ObjectId
from fiftyone.operators.delegated import DelegatedOperationService
from fiftyone.operators.executor import ExecutionRunState

from operators.run.shards import queue_shards, shard_ids, shard_outcome
from tiny_model import TRAINED_TARGETS

REPO = Path(__file__).resolve().parents[1]
CAPTION = "@marlin/marlin/caption"
CLIPS = 10
WAIT_S = 600.0


def start_worker(plugins_dir: Path, log_path: Path) -> subprocess.Popen:
    # PYTHONPATH: the workers import this checkout's marlin_core, as the test process does (cwd first).
    env = dict(os.environ, FIFTYONE_PLUGINS_DIR=str(plugins_dir), OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    fiftyone_cli = Path(sys.executable).with_name("fiftyone")
    return subprocess.Popen([str(fiftyone_cli), "delegated", "launch", "-t", "local"], env=env,
                            stdout=open(log_path, "w"), stderr=subprocess.STDOUT, start_new_session=True)


def stop(worker: subprocess.Popen, sig=signal.SIGTERM) -> None:
    if worker.poll() is None:
        os.killpg(worker.pid, sig)
        worker.wait(timeout=60)


def wait_for(condition, what: str, logs: list[Path], poll_s: float = 1.0):
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll_s)
    tails = "\n".join(f"--- {log}\n{log.read_text(errors='replace')[-3000:]}" for log in logs)
    raise AssertionError(f"timed out waiting for {what}\n{tails}")


def labelled(dataset) -> dict[str, list[str]]:
    """``{sample id: [detection ids]}`` of the samples that have their caption."""
    dataset.reload()
    if not dataset.has_sample_field("marlin_events"):
        return {}
    view = dataset.exists("marlin_events")
    return {sid: [d.id for d in events.detections]
            for sid, events in zip(view.values("id"), view.values("marlin_events"))}


def states(ids: list[str]) -> list:
    service = DelegatedOperationService()
    return [service.get(ObjectId(op_id)).run_state for op_id in ids]


@pytest.fixture
def clips_dataset(color_videos, tmp_path):
    dataset = fo.Dataset()
    dataset.persistent = True  # the workers are other processes
    for index in range(CLIPS):
        color = "red" if index % 2 == 0 else "blue"
        path = shutil.copy(color_videos[color], tmp_path / f"{index}-{color}.mp4")
        dataset.add_sample(fo.Sample(filepath=str(path)))
    yield dataset
    dataset.delete()


def test_two_workers_share_a_run_and_a_killed_worker_loses_at_most_its_sample(
        clips_dataset, trained_model_dir, plugins_dir, tmp_path):
    params = dict(model=str(trained_model_dir), max_new_tokens=64)
    cuts = shard_ids(clips_dataset, 2)
    assert sorted(sum(cuts, [])) == sorted(clips_dataset.values("id")) and not set(cuts[0]) & set(cuts[1])
    first_ops = queue_shards(CAPTION, clips_dataset, 2, **params)
    logs = [tmp_path / "worker-a.log", tmp_path / "worker-b.log"]
    worker_a, worker_b = start_worker(plugins_dir, logs[0]), start_worker(plugins_dir, logs[1])
    try:
        wait_for(lambda: all(s != ExecutionRunState.QUEUED for s in states(first_ops)), "both shards picked up", logs)
        # Polled closely: a worker captions a tiny-model sample in well under a second, and the kill must come
        # while its shard still has samples to do.
        wait_for(lambda: labelled(clips_dataset), "a first captioned sample", logs, poll_s=0.02)
        stop(worker_a, signal.SIGKILL)
        before_kill = labelled(clips_dataset)
        # The survivor finishes its own shard; the killed worker's shard stays RUNNING, unfinished.
        wait_for(lambda: ExecutionRunState.COMPLETED in states(first_ops), "the surviving worker's shard", logs)
        assert sorted(states(first_ops)) == sorted([ExecutionRunState.COMPLETED, ExecutionRunState.RUNNING])
        assert len(labelled(clips_dataset)) < CLIPS  # the killed worker's shard is unfinished
        resumed_ops = queue_shards(CAPTION, clips_dataset, 2, **params)
        wait_for(lambda: all(s == ExecutionRunState.COMPLETED for s in states(resumed_ops)), "the resumed run", logs)
    finally:
        stop(worker_a, signal.SIGKILL)
        stop(worker_b)

    after = labelled(clips_dataset)
    assert sorted(after) == sorted(clips_dataset.values("id"))
    for sample in clips_dataset:
        color = "red" if "red" in sample.filepath else "blue"
        assert sample["marlin_caption"] == TRAINED_TARGETS[color]["caption"]
    assert all(after[sid] == ids for sid, ids in before_kill.items()), "a sample done before the kill was redone"
    summary = shard_outcome(clips_dataset, "marlin_caption", 2)
    assert summary["complete"] and summary["failed"] == 0
    assert CLIPS - 1 <= summary["done"] <= CLIPS
