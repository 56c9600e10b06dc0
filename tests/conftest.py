"""Shared test fixtures: real videos (ffmpeg), tiny real checkpoints, FiftyOne on the local MongoDB.

FiftyOne reads its config at import, so the database name and the plugins folder are set here,
before any test module imports it: tests write to their own database (never the user's datasets)
and FiftyOne discovers this repo as the ``@marlin/marlin`` plugin through ``FIFTYONE_PLUGINS_DIR``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
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


def make_video(path: Path, *, source: str = "testsrc2", size: str = "128x96", fps: float = 10,
               seconds: float = 2.0, extra: list[str] | None = None) -> Path:
    """Write an H.264 clip with ffmpeg (``testsrc2`` pattern or ``color=<name>``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if source.startswith("color="):
        lavfi = f"color=c={source.split('=', 1)[1]}:s={size}:r={fps}:d={seconds}"
    else:
        lavfi = f"{source}=size={size}:rate={fps}:duration={seconds}"
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", lavfi, *(extra or []),
         "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path)],
        check=True,
    )
    return path


@pytest.fixture(scope="session")
def bad_files(tmp_path_factory) -> dict[str, Path]:
    """Files Marlin must refuse with a clear message: empty, missing, not a video, audio only."""
    root = tmp_path_factory.mktemp("bad-files")
    empty = root / "empty.mp4"
    empty.write_bytes(b"")
    text = root / "notes.mp4"
    text.write_text("this is not a video\n")
    audio = root / "audio.m4a"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "sine=frequency=440:duration=1",
                    "-c:a", "aac", str(audio)], check=True)
    image = root / "frame.png"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=64x48",
                    "-frames:v", "1", str(image)], check=True)
    return {"empty": empty, "missing": root / "missing.mp4", "text": text, "audio": audio, "image": image}


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
