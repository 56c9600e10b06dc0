"""A run that cannot work says so before it starts, and a failed run leaves no empty fields behind.

Real datasets, the operators through FiftyOne's executor, real folders (the tiny checkpoint, a folder
without a config, a folder whose config names no model). The App's side (the red error box) is in
test_runs_browser.py.
"""

from __future__ import annotations

import json

import fiftyone as fo
import fiftyone.operators as foo
import pytest
from fiftyone.operators.executor import ExecutionContext

from operators.run.model_check import model_problem
from operators.run.runs import run_history

CAPTION = "@marlin/marlin/caption"
FIND = "@marlin/marlin/find"


@pytest.fixture
def red_dataset(dataset, color_videos):
    dataset.add_sample(fo.Sample(filepath=str(color_videos["red"])))
    dataset.compute_metadata()
    return dataset


def model_error(uri, dataset, model):
    ctx = ExecutionContext(request_params=dict(dataset_name=dataset.name, params=dict(model=model)), operator_uri=uri)
    form = foo.get_operator(uri).resolve_type(ctx, "inputs").to_json()
    return form["type"]["properties"]["model"]


def test_model_problem_names_what_is_wrong(tmp_path, trained_model_dir, monkeypatch):
    assert model_problem(str(trained_model_dir)) is None
    assert "no folder" in model_problem(str(tmp_path / "missing"))
    assert "no config.json" in model_problem(str(tmp_path))
    (tmp_path / "weights.bin").write_bytes(b"x")
    assert "is a file" in model_problem(str(tmp_path / "weights.bin"))
    assert "enter a model" in model_problem("  ")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert "not in the local Hugging Face cache" in model_problem("nobody-here/not-a-cached-model")
    assert model_problem("openai://127.0.0.1:1/v1/marlin") is None  # the server answers for itself


def test_the_form_marks_a_missing_model_folder_invalid(red_dataset, tmp_path, trained_model_dir):
    missing = model_error(CAPTION, red_dataset, str(tmp_path / "nowhere"))
    assert missing.get("invalid") is True and "no folder" in missing["error_message"]
    good = model_error(FIND, red_dataset, str(trained_model_dir))
    assert not good.get("invalid")


def test_a_run_with_a_missing_model_fails_before_creating_fields(red_dataset, tmp_path):
    before = set(red_dataset.get_field_schema())
    with pytest.raises(Exception, match="model.*no folder"):
        foo.get_operator(CAPTION)(red_dataset, model=str(tmp_path / "nowhere"))
    red_dataset.reload()
    assert set(red_dataset.get_field_schema()) == before


def test_a_run_failing_while_loading_leaves_no_new_fields_and_a_failed_record(red_dataset, tmp_path):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"model_type": "not-a-model-type"}))
    before = set(red_dataset.get_field_schema())
    with pytest.raises(Exception):
        foo.get_operator(CAPTION)(red_dataset, model=str(broken))
    red_dataset.reload()
    assert set(red_dataset.get_field_schema()) == before  # no empty marlin_events / marlin_scene ...
    record = run_history(red_dataset)[-1]
    assert record["status"] == "failed" and record["error"]
    assert record["operator_uri"] == CAPTION and record["params"]["model"] == str(broken)
    # the next form says so in the operator's red box; find's form does not (its last run did not fail)
    ctx = ExecutionContext(request_params=dict(dataset_name=red_dataset.name, params={}), operator_uri=CAPTION)
    form = foo.get_operator(CAPTION).resolve_type(ctx, "inputs").to_json()["type"]["properties"]
    assert form["last_run_failed"]["view"]["name"] == "Error"
    assert "failed" in form["last_run_failed"]["view"]["label"]
    assert "cannot load model" in form["last_run_failed"]["view"]["description"]
    ctx = ExecutionContext(request_params=dict(dataset_name=red_dataset.name, params={}), operator_uri=FIND)
    assert "last_run_failed" not in foo.get_operator(FIND).resolve_type(ctx, "inputs").to_json()["type"]["properties"]


def test_a_failed_run_keeps_fields_that_existed(red_dataset, tmp_path):
    red_dataset.add_sample_field("marlin_events", fo.EmbeddedDocumentField, embedded_doc_type=fo.TemporalDetections)
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    with pytest.raises(Exception):
        foo.get_operator(CAPTION)(red_dataset, model=str(broken))
    red_dataset.reload()
    assert red_dataset.has_sample_field("marlin_events")  # the user's (empty) field stays
