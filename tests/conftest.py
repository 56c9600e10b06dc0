"""Shared test fixtures: real videos (ffmpeg), tiny real checkpoints, FiftyOne on the local MongoDB.

FiftyOne reads its config at import, so the database name and the plugins folder are set here,
before any test module imports it: tests write to their own database (never the user's datasets)
and FiftyOne discovers this repo as the ``@marlin/marlin`` plugin through ``FIFTYONE_PLUGINS_DIR``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))

os.environ.setdefault("FIFTYONE_DATABASE_NAME", "fiftyone-marlin-tests")
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
_PLUGINS_DIR = Path(tempfile.mkdtemp(prefix="marlin-plugins-"))
(_PLUGINS_DIR / "fiftyone-marlin").symlink_to(REPO)
os.environ["FIFTYONE_PLUGINS_DIR"] = str(_PLUGINS_DIR)

import tiny_model  # noqa: E402
from media import ffmpeg, make_clip  # noqa: E402
import torch  # noqa: E402

# One thread: on 2 cores shared with ffmpeg and MongoDB, torch's default of 2 runs 10-20x slower.
torch.set_num_threads(1)

# Built checkpoints are kept between sessions, keyed by the builder's source: a change rebuilds them.
CHECKPOINT_CACHE = REPO / ".cache" / "test-checkpoints" / hashlib.sha1(
    (TESTS / "tiny_model.py").read_bytes()
).hexdigest()[:12]


@pytest.fixture(scope="session")
def plugins_dir() -> Path:
    return _PLUGINS_DIR


@pytest.fixture(scope="session")
def color_videos(tmp_path_factory) -> dict[str, Path]:
    """The red and blue clips the trained tiny model knows."""
    return tiny_model.make_training_videos(tmp_path_factory.mktemp("color-videos"))


@pytest.fixture(scope="session")
def trained_model_dir(tmp_path_factory) -> Path:
    """Tiny Qwen3.5 checkpoint trained to answer in Marlin's format on the red and blue clips."""
    out = CHECKPOINT_CACHE / "trained"
    videos = tiny_model.make_training_videos(tmp_path_factory.mktemp("training-videos"))
    return tiny_model.train_tiny_checkpoint(out, videos)


@pytest.fixture(scope="session")
def random_model_dir() -> Path:
    """Tiny checkpoint with random weights: its answers are garbage."""
    out = CHECKPOINT_CACHE / "random"
    if not (out / "config.json").is_file():
        tiny_model.build_random_checkpoint(out, seed=1)
    return out


@pytest.fixture(scope="session")
def trained_marlin(trained_model_dir):
    from marlin_core import Marlin

    return Marlin.from_pretrained(trained_model_dir)


@pytest.fixture(scope="session")
def random_marlin(random_model_dir):
    from marlin_core import Marlin

    return Marlin.from_pretrained(random_model_dir)




# --- clips the video tests check bit-identity on, and files each VideoError is about ---




@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> dict[str, Path]:
    """The clips bit-identity is checked on (kept short so the suite stays fast)."""
    root = tmp_path_factory.mktemp("video-clips")
    clips = {
        "480p": make_clip(root / "480p.mp4", "854x480", 25, 11.0),
        "1080p": make_clip(root / "1080p.mp4", "1920x1080", 30, 3.0),
        "portrait": make_clip(root / "portrait.mp4", "720x1280", 30, 2.0),
        "one_second": make_clip(root / "one_second.mp4", "320x240", 25, 1.0),
        # Odd sides need 4:4:4 chroma (4:2:0 needs even sides).
        "odd": make_clip(root / "odd.mp4", "336x200", 24, 2.0, filters="scale=333:197", pix_fmt="yuv444p"),
        # Variable frame rate: 30 fps for the first second, then every frame lasts twice as long.
        "vfr": make_clip(root / "vfr.mp4", "320x240", 30, 3.0, filters="setpts='if(lt(N,30),PTS,PTS*2)'",
                         extra=("-fps_mode", "vfr")),
    }
    upright = make_clip(root / "upright.mp4", "320x240", 25, 2.0)
    clips["rotated"] = root / "rotated.mp4"
    ffmpeg("-i", str(upright), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(clips["rotated"]))
    return clips


@pytest.fixture(scope="session")
def broken(tmp_path_factory, clips) -> dict[str, Path]:
    """Files each VideoError subclass is about."""
    root = tmp_path_factory.mktemp("broken-videos")
    files = {"missing": root / "missing.mp4", "directory": root / "folder.mp4"}
    files["directory"].mkdir()
    files["empty"] = root / "empty.mp4"
    files["empty"].write_bytes(b"")
    files["text"] = root / "notes.mp4"
    files["text"].write_text("this is not a video\n")
    files["audio"] = root / "speech.m4a"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac", str(files["audio"]))
    # AVI keeps the declared video stream even when no frame follows it.
    files["zero_frames"] = root / "zero.avi"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10", "-frames:v", "0", "-c:v", "mpeg4", str(files["zero_frames"]))
    files["one_frame"] = root / "one_frame.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10", "-frames:v", "1", "-c:v", "libx264", str(files["one_frame"]))
    # A valid header (moov first) over garbage frame data.
    intact = make_clip(root / "intact.mp4", "128x96", 10, 2.0, extra=("-movflags", "+faststart"))
    data = bytearray(intact.read_bytes())
    payload = data.find(b"mdat") + 64
    data[payload:] = bytes((k * 7919) % 256 for k in range(len(data) - payload))
    files["garbage"] = root / "garbage.mp4"
    files["garbage"].write_bytes(bytes(data))
    files["image"] = root / "frame.png"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48", "-frames:v", "1", str(files["image"]))
    return files


@pytest.fixture
def dataset(request):
    """A fresh, non-persistent FiftyOne dataset, deleted after the test."""
    import fiftyone as fo

    ds = fo.Dataset()
    yield ds
    if fo.dataset_exists(ds.name):
        ds.delete()


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_PLUGINS_DIR, ignore_errors=True)


# --- chaos and concurrency tests: one process with everything loaded, forking a child per run ---


@pytest.fixture(scope="session")
def zygote(trained_model_dir, color_videos):
    from zygote import Zygote

    process = Zygote(trained_model_dir, color_videos["red"], dict(os.environ, PYTHONPATH=str(REPO)))
    yield process
    process.close()
