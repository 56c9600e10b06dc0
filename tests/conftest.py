"""Shared test fixtures: real videos (ffmpeg), tiny real checkpoints, FiftyOne on the local MongoDB.

FiftyOne reads its config at import, so the database name and the plugins folder are set here,
before any test module imports it: tests write to their own database (never the user's datasets)
and FiftyOne discovers this repo as the ``@marlin/marlin`` plugin through ``FIFTYONE_PLUGINS_DIR``.

Database: the run's own MongoDB (tests/mongod.py: FiftyOne's bundled ``mongod`` on a free port and a fresh
folder), started by the controller before any worker and given to every process through FIFTYONE_DATABASE_URI,
so overlapping runs never share, race to start or stop each other's database.

Parallel runs (pytest-xdist, ``-n auto`` in pyproject's addopts). ``python -m pytest`` (the whole suite, or a
folder, or several files) runs on MARLIN_TEST_WORKERS worker processes (default AUTO_WORKERS); one test file or
test ids of one file run in this process (``-n 0`` forces that, ``-n 3`` a count). Each worker has its own
FiftyOne database, ``$FIFTYONE_DATABASE_NAME-gw0``, ``-gw1``... (base: the environment's FIFTYONE_DATABASE_NAME,
else ``fiftyone-marlin-tests``; give each checkout its own base), its own plugins folder and temporary folders,
so App servers, delegated workers (``fiftyone delegated launch``: it runs every queued operation of its
database) and the zygote a test starts see only that worker's datasets. Ports: always a free one
(``free_port()``), never a fixed number.

Which tests share a worker (``--dist loadgroup``): tests are dealt one by one, except
- tests using a module-scoped fixture: their whole module goes to one worker (the fixture is built once);
- tests using a session resource that should exist once: grouped by it, added here automatically:
  ``zygote`` (chaos, concurrency), ``vllm_server`` (one vLLM server per run);
- browser tests (Chromium + an App server): mark them ``@pytest.mark.browser`` (a module importing
  ``app_browser`` gets it automatically); each module's run on one worker (its App and Chromium are started
  once), and two modules may run at once on different workers;
- ``@pytest.mark.xdist_group("name")`` puts any other tests that must not run at the same time together.

Tiers: ``make test-fast`` runs ``-m "not heavy"``. A test is ``heavy`` (set here) when its module uses FiftyOne
or subprocesses, or it uses a checkpoint, a FiftyOne dataset, the zygote, the vLLM server or a browser; mark
anything else slow ``@pytest.mark.heavy`` yourself.

Built once for all workers and kept in ``.cache`` (``build_once``): the tiny checkpoints
(``.cache/test-checkpoints``) and ffmpeg clips (``.cache/test-clips``, ``cached_file``: use it for new
session/module clip fixtures).
"""

from __future__ import annotations

import atexit
import hashlib
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))

# pytest-xdist sets PYTEST_XDIST_WORKER ("gw0", "gw1", ...) in each worker before this file is imported.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
_DATABASE = os.environ.get("FIFTYONE_DATABASE_NAME") or "fiftyone-marlin-tests"
if _WORKER and not _DATABASE.endswith(f"-{_WORKER}"):  # a nested pytest inherits an already suffixed name
    _DATABASE = f"{_DATABASE}-{_WORKER}"
os.environ["FIFTYONE_DATABASE_NAME"] = _DATABASE
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
_PLUGINS_DIR = Path(tempfile.mkdtemp(prefix="marlin-plugins-"))
(_PLUGINS_DIR / "fiftyone-marlin").symlink_to(REPO)
os.environ["FIFTYONE_PLUGINS_DIR"] = str(_PLUGINS_DIR)

import tiny_model  # noqa: E402
from build_once import build_once, cached_file, exclusive  # noqa: E402
from media import ffmpeg, make_clip  # noqa: E402
import mongod  # noqa: E402
import torch  # noqa: E402

# One thread: on 2 cores shared with ffmpeg and MongoDB, torch's default of 2 runs 10-20x slower.
torch.set_num_threads(1)

# Built checkpoints are kept between sessions, keyed by the builder's source: a change rebuilds them.
CHECKPOINT_CACHE = REPO / ".cache" / "test-checkpoints" / hashlib.sha1(
    (TESTS / "tiny_model.py").read_bytes()
).hexdigest()[:12]

# Worker processes for a whole-suite run: measured on the 2-core CI box (README "Development"); the tests
# spend much of their time waiting on ffmpeg, MongoDB and the processes they start.
AUTO_WORKERS = 3
_LOAD_AT_START = os.getloadavg()


def pytest_xdist_auto_num_workers(config) -> int:
    """``-n auto``: MARLIN_TEST_WORKERS (default AUTO_WORKERS), or 0 (this process) for one file's tests."""
    files = {str(arg).split("::")[0] for arg in config.args}
    if len(files) == 1 and Path(next(iter(files))).is_file():
        return 0
    return int(os.environ.get("MARLIN_TEST_WORKERS", AUTO_WORKERS))


class _GroupIds:
    """Give grouped tests xdist's ``nodeid@group`` ids (what ``--dist loadgroup`` schedules by).

    pytest-xdist 3.8 writes the suffix to ``item._nodeid``, which pytest 9 no longer reads (ids live in
    ``item._id``), so its groups are silently ignored there; this runs after it and only when it did not work.
    """

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config, items):
        if not getattr(config.option, "loadgroup", False):  # set on workers under --dist loadgroup
            return
        from _pytest.nodeid import NodeId

        for item in items:
            names = sorted({str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
                            for mark in item.iter_markers("xdist_group")})
            if names and "@" not in item.nodeid.rpartition("]")[2] and hasattr(item, "_id"):
                item._id = NodeId.parse(f"{item.nodeid}@{'_'.join(names)}")


_RUN_DATABASE: mongod.RunDatabase | None = None


def _start_run_database() -> None:
    """The run's own MongoDB (tests/mongod.py), started by the controller before any worker, unless the caller
    gave one (FIFTYONE_DATABASE_URI; a nested pytest inherits its parent's). Without FiftyOne's bundled
    ``mongod`` the run falls back to FiftyOne's managed database."""
    global _RUN_DATABASE
    executable = mongod.mongod_executable()
    if os.environ.get("FIFTYONE_DATABASE_URI") or executable is None:
        return
    assert "fiftyone" not in sys.modules, "FiftyOne was imported before the test database's address was set"
    _RUN_DATABASE = mongod.start(executable)
    # Stopped at exit, after FiftyOne's own exit handlers (registered later, so run earlier): stopped any sooner, a
    # run in this process (``-n 0``) waited 30 s at the end for FiftyOne's exit-time cleanup to give up connecting.
    atexit.register(_RUN_DATABASE.stop)
    os.environ["FIFTYONE_DATABASE_URI"] = _RUN_DATABASE.uri
    os.environ[mongod.SERVED_BY_ENV] = "1"
    # FiftyOne's own bundled mongod on a fresh folder: its version check passes but warns on stdout that 6.0 is
    # "the oldest supported major version", which would land in every CLI's --json output.
    os.environ["FIFTYONE_DATABASE_VALIDATION"] = "false"


def pytest_configure(config):
    if not hasattr(config, "workerinput"):
        _start_run_database()
    if config.pluginmanager.has_plugin("xdist"):
        config.pluginmanager.register(_GroupIds(), "marlin-xdist-group-ids")
        config.option.loadscopereorder = False  # keep _chain_rank's order (see pytest_collection_modifyitems)
    config.addinivalue_line("markers", "browser: drives Chromium and an App server (one at a time, one worker)")
    config.addinivalue_line("markers", "heavy: left out of `make test-fast` (set automatically, see conftest)")
    config.addinivalue_line("markers", "xdist_group(name): tests that run on one worker, one after another")


# Session resources that exist once per run: their tests share one worker.
_GROUPED_FIXTURES = ("zygote", "vllm_server")
_HEAVY_FIXTURES = {"trained_model_dir", "random_model_dir", "trained_marlin", "random_marlin", "vllm_model_dir",
                   "dataset", "plugins_dir", "cli", *_GROUPED_FIXTURES}
_HEAVY_SOURCE = re.compile(r"^\s*(import|from) (fiftyone|subprocess|app_browser|zygote|vllm_server)\b", re.M)


def _heavy_module(module_path: Path, cache: dict[Path, bool]) -> bool:
    if module_path not in cache:
        cache[module_path] = bool(_HEAVY_SOURCE.search(module_path.read_text()))
    return cache[module_path]


def _group(item) -> str | None:
    """The xdist group of ``item`` (see the module docstring), None to deal it alone."""
    if item.get_closest_marker("xdist_group"):
        return None  # set by the test itself
    names = set(item.fixturenames)
    for fixture in _GROUPED_FIXTURES:
        if fixture in names:
            return fixture
    if item.get_closest_marker("browser") or any(getattr(value, "__module__", None) == "app_browser"
                                                 for value in vars(item.module).values()):
        return f"browser-{item.module.__name__}"
    definitions = getattr(item, "_fixtureinfo", None)
    for defs in (definitions.name2fixturedefs.values() if definitions else ()):
        if any(d.scope == "module" for d in defs):
            return item.module.__name__
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    heavy_modules: dict[Path, bool] = {}
    for item in items:
        group = _group(item)
        if group and group.startswith("browser"):
            item.add_marker(pytest.mark.browser)
        if group:
            item.add_marker(pytest.mark.xdist_group(group))
        if (item.get_closest_marker("browser") or _HEAVY_FIXTURES & set(item.fixturenames)
                or _heavy_module(Path(item.fspath), heavy_modules)) and not item.get_closest_marker("heavy"):
            item.add_marker(pytest.mark.heavy)
    items.sort(key=_chain_rank)


# Chains (a group runs one test after another on one worker) are dealt first, longest first: the run ends no
# sooner than its longest chain, and the single tests dealt afterwards fill the other workers meanwhile. xdist's
# own reordering (by test count) is turned off in pytest_configure so this order holds.
_CHAIN_RANKS = (("vllm", 0), ("zygote", 1), ("browser-", 2))


def _chain_rank(item) -> int:
    mark = item.get_closest_marker("xdist_group")
    if mark is None:
        return 4
    name = mark.args[0] if mark.args else mark.kwargs.get("name", "")
    return next((rank for prefix, rank in _CHAIN_RANKS if name.startswith(prefix)), 3)


_DATABASE_READY = False


def pytest_runtest_setup(item):
    """Connect to FiftyOne's database once per process, one process at a time, before the first heavy test.

    Only matters without the run's own MongoDB (no bundled ``mongod``): with no database service running yet,
    workers connecting at once each start one and all but one fail ("failed to bind", "Could not connect to
    mongod"). Under the lock the first starts the service and the others find it running.
    """
    global _DATABASE_READY
    if _DATABASE_READY or not item.get_closest_marker("heavy"):
        return
    _DATABASE_READY = True
    with exclusive(REPO / ".cache" / "fiftyone-database.lock"):
        import fiftyone.core.odm.database as fod

        fod.get_db_conn()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Workers and the machine's load beside pytest's timing line: a figure means little without them."""
    if hasattr(config, "workerinput"):
        return
    workers = getattr(config.option, "numprocesses", 0) or 0
    start, end = (" ".join(f"{value:.1f}" for value in load) for load in (_LOAD_AT_START, os.getloadavg()))
    terminalreporter.write_line(f"[suite] {workers or 'no'} xdist workers on {os.cpu_count()} CPUs; load average "
                                f"(1/5/15 min) {start} at the start, {end} at the end")


@pytest.fixture(scope="session")
def plugins_dir() -> Path:
    return _PLUGINS_DIR


def training_videos(folder: Path) -> dict[str, Path]:
    """The red and blue clips of ``tiny_model.make_training_videos``, made once (``.cache/test-clips``)."""
    return {color: cached_file(folder / f"{color}.mp4", tiny_model.make_color_video, color)
            for color in tiny_model.TRAINED_TARGETS}


def trained_checkpoint(name: str, videos: dict[str, Path], shape: str = "default") -> Path:
    """``tiny_model.train_tiny_checkpoint`` into CHECKPOINT_CACHE/name, trained by one worker for all."""
    recipe = tiny_model._recipe(0, videos, shape)  # what the builder itself checks before reusing a folder
    return build_once(CHECKPOINT_CACHE / name, lambda folder: tiny_model._already_built(folder, recipe),
                      lambda staging: tiny_model.train_tiny_checkpoint(staging, videos, shape=shape))


@pytest.fixture(scope="session")
def color_videos(tmp_path_factory) -> dict[str, Path]:
    """The red and blue clips the trained tiny model knows."""
    return training_videos(tmp_path_factory.mktemp("color-videos"))


@pytest.fixture(scope="session")
def trained_model_dir(color_videos) -> Path:
    """Tiny Qwen3.5 checkpoint trained to answer in Marlin's format on the red and blue clips."""
    return trained_checkpoint("trained", color_videos)


@pytest.fixture(scope="session")
def random_model_dir() -> Path:
    """Tiny checkpoint with random weights: its answers are garbage."""
    return build_once(CHECKPOINT_CACHE / "random", lambda folder: (folder / tiny_model.RECIPE_FILE).is_file(),
                      lambda staging: tiny_model.build_random_checkpoint(staging, seed=1))


@pytest.fixture(scope="session")
def trained_marlin(trained_model_dir):
    from marlin_core import Marlin

    return Marlin.from_pretrained(trained_model_dir)


@pytest.fixture(scope="session")
def random_marlin(random_model_dir):
    from marlin_core import Marlin

    return Marlin.from_pretrained(random_model_dir)

# --- clips the video tests check bit-identity on, and files each VideoError is about ---


def rotated_clip(path: Path, size: str, fps: float, seconds: float) -> Path:
    """A ``make_clip`` clip whose stream says ``rotate=90`` (copied, not re-encoded)."""
    upright = make_clip(path.with_name(f"upright-{path.name}"), size, fps, seconds)
    ffmpeg("-i", str(upright), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(path))
    upright.unlink()
    return path


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> dict[str, Path]:
    """The clips bit-identity is checked on (kept short so the suite stays fast); made once, then copied."""
    root = tmp_path_factory.mktemp("video-clips")
    return {
        "480p": cached_file(root / "480p.mp4", make_clip, "854x480", 25, 11.0),
        "1080p": cached_file(root / "1080p.mp4", make_clip, "1920x1080", 30, 3.0),
        "portrait": cached_file(root / "portrait.mp4", make_clip, "720x1280", 30, 2.0),
        "one_second": cached_file(root / "one_second.mp4", make_clip, "320x240", 25, 1.0),
        # Odd sides need 4:4:4 chroma (4:2:0 needs even sides).
        "odd": cached_file(root / "odd.mp4", make_clip, "336x200", 24, 2.0, filters="scale=333:197",
                           pix_fmt="yuv444p"),
        # Variable frame rate: 30 fps for the first second, then every frame lasts twice as long.
        "vfr": cached_file(root / "vfr.mp4", make_clip, "320x240", 30, 3.0,
                           filters="setpts='if(lt(N,30),PTS,PTS*2)'", extra=("-fps_mode", "vfr")),
        "rotated": cached_file(root / "rotated.mp4", rotated_clip, "320x240", 25, 2.0),
    }


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


# --- the command line: runs forked from one process with torch, torchcodec and transformers imported ---


@pytest.fixture(scope="session")
def cli(tmp_path_factory):
    """``cli("caption", video, ...)`` -> ``CompletedProcess``: the command line in a process of its own, forked from
    one that has already imported torch, torchcodec and transformers (tests/cli_fork.py says what it shares)."""
    from cli_fork import CliFork

    server = CliFork(dict(os.environ, PYTHONPATH=str(REPO)), tmp_path_factory.mktemp("cli-runs"))
    yield server.run
    server.close()


# --- chaos and concurrency tests: one process with everything loaded, forking a child per run ---


@pytest.fixture(scope="session")
def zygote(trained_model_dir, color_videos):
    from zygote import Zygote

    process = Zygote(trained_model_dir, color_videos["red"], dict(os.environ, PYTHONPATH=str(REPO)))
    yield process
    process.close()


# --- serving: the vLLM-shaped trained checkpoint and a real vLLM server on 127.0.0.1 (one per session) ---


@pytest.fixture(scope="session")
def vllm_model_dir(color_videos) -> Path:
    """The trained tiny checkpoint in the shapes vLLM's CPU kernels accept (``shape="vllm"``), same answers."""
    return trained_checkpoint("trained-vllm", color_videos, shape="vllm")


@pytest.fixture(scope="session")
def marlin_cache_dir(tmp_path_factory) -> Path:
    """The run's ``MARLIN_CACHE_DIR`` for managed vLLM servers (state files), never the user's ~/.cache/marlin."""
    return tmp_path_factory.mktemp("marlin-cache")


class _SharedServe:
    """One ``marlin serve`` of the vLLM-shaped checkpoint for the whole run: a vLLM start costs 35 s (idle) to
    2 min (busy 2 cores). Started on first use; started again if a test stopped it (the kill test does)."""

    def __init__(self, model_dir: Path, cache_dir: Path, folder: Path):
        self.model_dir, self.cache_dir, self.folder = model_dir, cache_dir, folder
        self.server = None
        self.starts = 0

    def running(self):
        from vllm_server import MarlinServe

        if self.server is None or self.server.process.poll() is not None:
            self.starts += 1
            out = self.folder / f"serve-{self.starts}.txt"
            self.server = MarlinServe(self.model_dir, out, self.cache_dir).wait_ready()
        return self.server


@pytest.fixture(scope="session")
def _shared_serve(vllm_model_dir, marlin_cache_dir, tmp_path_factory):
    shared = _SharedServe(vllm_model_dir, marlin_cache_dir, tmp_path_factory.mktemp("vllm-server"))
    yield shared
    if shared.server is not None:
        shared.server.stop()


@pytest.fixture
def vllm_server(_shared_serve):
    """The run's ``marlin serve`` (tests/vllm_server.MarlinServe): ``.address`` is its ``openai://`` model,
    ``.vllm_model`` the ``vllm:`` form (found through ``marlin_cache_dir``)."""
    return _shared_serve.running()
