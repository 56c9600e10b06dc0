"""ffprobe once per file version: repeated runs skip it, and any change to the file is probed again.

ffprobe calls are counted with a wrapper script first on PATH that logs each call and runs the real one.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import fiftyone as fo
import fiftyone.operators as foo
import pytest

from operators.run.file_metadata import probe_metadata
from tiny_model import VIDEO_SECONDS, make_color_video

CAPTION = "@marlin/marlin/caption"


@pytest.fixture
def ffprobe_calls(tmp_path, monkeypatch):
    """A function returning how many times ffprobe has run since the fixture was set up."""
    real = shutil.which("ffprobe")
    folder = tmp_path / "counting-bin"
    folder.mkdir()
    log = tmp_path / "ffprobe-calls.log"
    log.touch()
    wrapper = folder / "ffprobe"
    wrapper.write_text(f'#!/bin/sh\necho call >> "{log}"\nexec "{real}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return lambda: len(log.read_text().splitlines())


def test_an_unchanged_file_is_probed_once(color_videos, tmp_path, ffprobe_calls):
    path = shutil.copy(color_videos["red"], tmp_path / "red.mp4")
    first = probe_metadata(str(path))
    assert ffprobe_calls() == 1
    second = probe_metadata(str(path))
    assert ffprobe_calls() == 1
    assert second.to_dict() == first.to_dict() and second.duration == pytest.approx(VIDEO_SECONDS, abs=0.11)
    second.duration = 99.0  # each caller gets its own document
    assert probe_metadata(str(path)).duration == first.duration


def test_a_file_changed_in_place_is_probed_again_even_with_its_old_size_and_times(color_videos, tmp_path,
                                                                                 ffprobe_calls):
    path = shutil.copy(color_videos["red"], tmp_path / "clip.mp4")
    assert probe_metadata(str(path)).duration == pytest.approx(VIDEO_SECONDS, abs=0.11)
    times = os.stat(path)
    longer = make_color_video(tmp_path / "longer.mp4", "red", seconds=2 * VIDEO_SECONDS)
    Path(path).write_bytes(longer.read_bytes())  # same path and inode, other content
    os.utime(path, ns=(times.st_atime_ns, times.st_mtime_ns))  # as `cp -p` leaves it
    assert probe_metadata(str(path)).duration == pytest.approx(2 * VIDEO_SECONDS, abs=0.11)
    assert ffprobe_calls() == 2
    # rewritten with the same size and modification time: only the change time tells, and it is enough
    times = os.stat(path)
    Path(path).write_bytes(longer.read_bytes())
    os.utime(path, ns=(times.st_atime_ns, times.st_mtime_ns))
    assert (os.stat(path).st_size, os.stat(path).st_mtime_ns) == (times.st_size, times.st_mtime_ns)
    probe_metadata(str(path))
    assert ffprobe_calls() == 3
    os.replace(shutil.copy(color_videos["blue"], tmp_path / "blue.mp4"), path)  # another file moved to its path
    assert probe_metadata(str(path)).duration == pytest.approx(VIDEO_SECONDS, abs=0.11)
    assert ffprobe_calls() == 4


def test_failures_are_not_kept(tmp_path, ffprobe_calls):
    path = tmp_path / "later.mp4"
    path.write_text("not a video yet\n")
    with pytest.raises(Exception):
        probe_metadata(str(path))
    with pytest.raises(Exception):
        probe_metadata(str(path))
    assert ffprobe_calls() == 2
    missing = tmp_path / "missing.mp4"
    with pytest.raises(Exception):
        probe_metadata(str(missing))


def test_reruns_reuse_the_probe_and_a_file_swapped_between_runs_gets_its_metadata(
        dataset, trained_model_dir, color_videos, tmp_path, ffprobe_calls):
    path = shutil.copy(color_videos["red"], tmp_path / "red.mp4")
    sample_id = dataset.add_sample(fo.Sample(filepath=str(path)))
    caption = foo.get_operator(CAPTION)
    assert caption(dataset, model=str(trained_model_dir))["done"] == 1
    probes = ffprobe_calls()
    assert caption(dataset, model=str(trained_model_dir), overwrite=True)["done"] == 1
    assert ffprobe_calls() == probes  # the file did not change: no ffprobe
    make_color_video(path, "red", seconds=2 * VIDEO_SECONDS)  # another clip written over it
    caption(dataset, model=str(trained_model_dir), overwrite=True)
    assert ffprobe_calls() == probes + 1
    assert dataset[sample_id].metadata.duration == pytest.approx(2 * VIDEO_SECONDS, abs=0.11)
