"""``python -m marlin_core`` as a user runs it: a process of its own on the tiny trained checkpoint.

Most runs are forked from a process that has already imported torch, torchcodec and transformers
(``cli_fork``: the same ``main``, argv, stdout, stderr and exit code, ~2.5 s of CPU less each);
``fresh_cli`` starts a new interpreter where that start matters (the entry point, ``--quiet``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import REPO
from marlin_core.contract import parse_caption, parse_find
from tiny_model import TRAINED_TARGETS


def fresh_cli(*args) -> subprocess.CompletedProcess:
    """``python -m marlin_core ARGS`` in a new interpreter."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "marlin_core", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300)


def test_caption_json_lines(trained_model_dir, color_videos):
    """The entry point as installed: a new interpreter."""
    done = fresh_cli("caption", color_videos["red"], color_videos["blue"], "--model", trained_model_dir, "--json")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [row["video"] for row in rows] == [str(color_videos["red"]), str(color_videos["blue"])]
    for row, color in zip(rows, ["red", "blue"]):
        expected = parse_caption(TRAINED_TARGETS[color]["caption"])
        assert row["scene"] == expected["scene"]
        assert [(e["start"], e["end"], e["description"]) for e in row["events"]] == [
            (e["start"], e["end"], e["description"]) for e in expected["events"]]


def test_caption_human_readable(cli, trained_model_dir, color_videos):
    done = cli("caption", color_videos["red"], "--model", trained_model_dir)
    assert done.returncode == 0, done.stderr
    assert "Scene: A red screen." in done.stdout
    assert "<0.0 - 1.5> Red light." in done.stdout


def test_quiet_leaves_stderr_empty(cli, trained_model_dir, color_videos):
    """No loading bar, no kernel notes: a script reading stderr sees only Marlin's error lines (the quiet run in a
    new interpreter, so what imports print is seen too)."""
    loud = cli("find", color_videos["red"], "red light", "--model", trained_model_dir, "--json")
    quiet = fresh_cli("find", color_videos["red"], "red light", "--model", trained_model_dir, "--json", "--quiet")
    assert loud.returncode == quiet.returncode == 0, quiet.stderr
    assert "Loading weights" in loud.stderr, "the check below would prove nothing if nothing were printed"
    assert quiet.stderr == "" and quiet.stdout == loud.stdout


def test_find_json_and_human(cli, trained_model_dir, color_videos):
    target = TRAINED_TARGETS["red"]["find"]
    done = cli("find", color_videos["red"], target["query"], "red fades", "--model", trained_model_dir, "--json")
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert [r["query"] for r in payload["results"]] == [target["query"], "red fades"]
    assert tuple(payload["results"][0]["span"]) == parse_find(target["answer"])["span"]
    human = cli("find", color_videos["red"], target["query"], "--model", trained_model_dir)
    assert f"{target['query']}: <1.0 - 2.0>" in human.stdout


def test_bad_video_is_one_line_and_nonzero(cli, trained_model_dir, broken):
    done = cli("caption", broken["missing"], "--model", trained_model_dir)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("marlin-core: error: ") and str(broken["missing"]) in lines[0]


def test_one_bad_video_among_good_ones(cli, trained_model_dir, color_videos, broken):
    done = cli("caption", color_videos["red"], broken["audio"], "--model", trained_model_dir, "--json")
    assert done.returncode == 1
    assert len(done.stdout.splitlines()) == 1
    assert str(broken["audio"]) in done.stderr and "Traceback" not in done.stderr


def test_missing_model_folder_is_one_line(cli, color_videos, tmp_path):
    done = cli("caption", color_videos["red"], "--model", tmp_path / "nowhere")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("marlin-core: error: cannot load model")
