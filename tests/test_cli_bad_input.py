"""Every bad input to ``python -m marlin_core`` is one line on stderr and an exit code, never a traceback."""

from __future__ import annotations

import json
import pickle
import shutil

import pytest

from tiny_model import make_color_video

EXIT_BAD_INPUT = 2


@pytest.fixture(scope="session")
def pickle_checkpoint(trained_model_dir, tmp_path_factory):
    """The trained checkpoint with its weights replaced by a pickle (refused by safe loading).

    Session-scoped (a few file copies per worker) so the cases, a CLI process each, spread over the workers.
    """
    folder = tmp_path_factory.mktemp("pickle-checkpoint")
    for path in trained_model_dir.iterdir():
        if path.suffix != ".safetensors":
            shutil.copy(path, folder / path.name)
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"weights": ValueError("not weights")}))
    return folder


CASES = {
    "empty query": (["find", "{red}", ""], "empty query"),
    "blank query": (["find", "{red}", "   "], "empty query"),
    "special token alone": (["find", "{red}", "<|video_pad|>"], "special token"),
    "special token among good queries": (["find", "{red}", "red light", "red <|im_end|> fades"], "special token"),
    "unknown device": (["caption", "{red}", "--device", "tpu"], "--device"),
    "missing GPU": (["caption", "{red}", "--device", "cuda:7"], "--device"),
    "pickle checkpoint": (["caption", "{red}", "--model", "{pickle}"], "{pickle}"),
    "missing model folder": (["caption", "{red}", "--model", "{nowhere}"], "cannot load model"),
    "one-frame video": (["find", "{one_frame}", "red light"], "{one_frame}"),
    "missing file": (["caption", "{missing}"], "{missing}"),
    "directory": (["find", "{directory}", "red light"], "{directory}"),
    "text file": (["caption", "{text}"], "{text}"),
    "zero window": (["caption", "{red}", "--window", "0"], "--window"),
    "window inside the overlap": (["find", "{red}", "red light", "--window", "10"], "--window"),
    "zero new tokens": (["caption", "{red}", "--max-new-tokens", "0"], "--max-new-tokens 0"),
    "negative new tokens": (["find", "{red}", "red light", "--max-new-tokens", "-1"], "--max-new-tokens -1"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_one_line_and_exit_code(name, cli, trained_model_dir, color_videos, broken, pickle_checkpoint,
                                             tmp_path):
    places = dict(red=color_videos["red"], pickle=pickle_checkpoint, nowhere=tmp_path / "nowhere",
                  one_frame=broken["one_frame"], missing=broken["missing"], directory=broken["directory"],
                  text=broken["text"])
    args, expected = CASES[name]
    args = [a.format(**places) for a in args]
    if "--model" not in args:
        args += ["--model", str(trained_model_dir)]
    done = cli(*args)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == EXIT_BAD_INPUT, done.stderr
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("marlin-core: error: ") and expected.format(**places) in lines[0], lines[0]
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_times_are_clamped_to_the_video(cli, trained_model_dir, tmp_path):
    """The tiny model answers for its 3 s training clip; on a 1 s red clip its times are cut at 1 s."""
    short = make_color_video(tmp_path / "short-red.mp4", "red", seconds=1.0)
    done = cli("caption", short, "--model", trained_model_dir, "--json")
    assert done.returncode == 0, done.stderr
    events = json.loads(done.stdout)["events"]
    assert events and all(0.0 <= e["start"] <= e["end"] <= 1.0 for e in events)
    found = cli("find", short, "red fades", "--model", trained_model_dir, "--json")
    assert found.returncode == 0, found.stderr
    span = json.loads(found.stdout)["results"][0]["span"]
    assert span is None or 0.0 <= span[0] <= span[1] <= 1.0
