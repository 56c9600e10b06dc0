"""The operators' forms, run estimate, result panels and label display, on real datasets with the tiny model.

Forms are resolved the way the App resolves them (``resolve_type`` on an ``ExecutionContext``); runs go
through FiftyOne's executor. The browser tests (test_app_browser.py) show the same forms rendered.
"""

from __future__ import annotations

import os

import fiftyone as fo
import fiftyone.operators as foo
import pytest
from fiftyone.operators.executor import ExecutionContext, ExecutionError

from marlin_core.engine.loading import DEFAULT_MODEL
from operators.run.runs import latest_outcome
from tiny_model import TRAINED_TARGETS

FIND = "@marlin/marlin/find"
CAPTION = "@marlin/marlin/caption"


def run(uri, dataset, **params):
    """Through FiftyOne's executor, as SDK callers do (the operator's ``__call__``)."""
    if uri == FIND:
        return foo.get_operator(uri)(dataset, params.pop("queries"), **params)
    return foo.get_operator(uri)(dataset, **params)


def resolve_form(uri, dataset, **params):
    """The input form the App would show for ``params``, as JSON."""
    ctx = ExecutionContext(request_params=dict(dataset_name=dataset.name, params=params), operator_uri=uri)
    return foo.get_operator(uri).resolve_type(ctx, "inputs").to_json()


def visible_inputs(form: dict) -> list[str]:
    return list(form["type"]["properties"])


@pytest.fixture
def red_dataset(dataset, color_videos):
    dataset.add_sample(fo.Sample(filepath=str(color_videos["red"])))
    dataset.compute_metadata()
    return dataset


def test_form_leads_with_model_and_queries_and_folds_the_rest(red_dataset):
    form = resolve_form(FIND, red_dataset)
    inputs = visible_inputs(form)
    assert inputs.index("model") < inputs.index("queries") < inputs.index("advanced")
    advanced = form["type"]["properties"]["advanced"]
    assert advanced["view"]["collapsible"] is True and advanced["view"]["default_expanded"] is False
    assert {"find_field", "max_new_tokens", "window_s", "fps", "run_key"} <= set(advanced["type"]["properties"])
    caption_inputs = visible_inputs(resolve_form(CAPTION, red_dataset))
    assert caption_inputs.index("model") < caption_inputs.index("advanced")
    assert "events_field" not in caption_inputs  # output names are advanced


def test_no_query_marks_the_field_invalid(red_dataset):
    queries = resolve_form(FIND, red_dataset)["type"]["properties"]["queries"]
    assert queries["invalid"] is True and "at least one query" in queries["error_message"]
    typed = resolve_form(FIND, red_dataset, queries="red light")["type"]["properties"]["queries"]
    assert typed["invalid"] is False


def test_one_notice_names_every_existing_output_field(red_dataset, trained_model_dir):
    run(CAPTION, red_dataset, model=str(trained_model_dir))
    form = resolve_form(CAPTION, red_dataset)
    notices = [p for p in form["type"]["properties"].values() if (p.get("view") or {}).get("name") == "Notice"]
    assert len(notices) == 1
    assert all(name in notices[0]["view"]["label"] for name in ("marlin_events", "marlin_scene", "marlin_caption"))


def test_model_defaults_to_the_last_model_used_on_the_dataset(red_dataset, trained_model_dir):
    assert resolve_form(FIND, red_dataset)["type"]["properties"]["model"]["default"] in (
        os.environ.get("MARLIN_MODEL"), DEFAULT_MODEL)
    query = TRAINED_TARGETS["red"]["find"]["query"]
    run(FIND, red_dataset, model=str(trained_model_dir), queries=[query])
    assert resolve_form(FIND, red_dataset)["type"]["properties"]["model"]["default"] == str(trained_model_dir)
    # a run without a model uses it too (the hub id would fail offline)
    outcome = run(CAPTION, red_dataset)
    assert outcome["done"] == 1 and outcome["failed"] == 0


def test_model_env_var_is_proposed_on_a_new_dataset(red_dataset, trained_model_dir):
    previous = os.environ.get("MARLIN_MODEL")
    os.environ["MARLIN_MODEL"] = str(trained_model_dir)
    try:
        assert resolve_form(FIND, red_dataset)["type"]["properties"]["model"]["default"] == str(trained_model_dir)
    finally:
        if previous is None:
            del os.environ["MARLIN_MODEL"]
        else:
            os.environ["MARLIN_MODEL"] = previous


def test_queries_one_per_line_and_advanced_params_from_the_app(red_dataset, trained_model_dir):
    query = TRAINED_TARGETS["red"]["find"]["query"]
    result = foo.execute_operator(FIND, dict(dataset=red_dataset, params=dict(
        model=str(trained_model_dir), queries=f"{query}\n\nred fades\n",
        advanced={"find_field": "spans", "max_new_tokens": 32})))
    result.raise_exceptions()
    outcome = latest_outcome(red_dataset)
    assert outcome["done"] == 1
    sample = red_dataset.first()
    assert sorted([d.label for d in sample["spans"].detections] + sample["spans_not_found"]) == [
        "red fades", query]
    assert red_dataset.get_run_info("marlin_find").config.settings["max_new_tokens"] == 32


def test_labels_are_declared_for_the_sidebar_with_readable_times(red_dataset, random_model_dir, trained_model_dir):
    # the first find finds nothing: the not-found field must still be a filterable list of strings
    run(FIND, red_dataset, model=str(random_model_dir), queries=["a dog jumps"], max_new_tokens=8)
    assert isinstance(red_dataset.get_field("marlin_find_not_found").field, fo.StringField)
    run(CAPTION, red_dataset, model=str(trained_model_dir))
    schema = red_dataset.get_field_schema(flat=True)
    for attribute in ("start_s", "end_s", "time_range"):
        assert f"marlin_events.detections.{attribute}" in schema
    assert "marlin_events.format_ok" in schema and "marlin_events.truncated" in schema
    for detection in red_dataset.first()["marlin_events"].detections:
        assert detection.time_range == f"{detection.start_s:.1f}–{detection.end_s:.1f} s"


def test_colour_scheme_separates_predictions_and_keeps_the_users_choice(red_dataset, trained_model_dir):
    sample = red_dataset.first()
    sample["ground_truth"] = fo.TemporalDetections(detections=[
        fo.TemporalDetection.from_timestamps([0.0, 1.0], label="red light", sample=sample)])
    sample.save()
    red_dataset.app_config.color_scheme = fo.ColorScheme(fields=[{"path": "marlin_find", "fieldColor": "#123456"}])
    red_dataset.save()
    run(CAPTION, red_dataset, model=str(trained_model_dir))
    run(FIND, red_dataset, model=str(trained_model_dir), queries=["red light"])
    colours = {entry["path"]: entry["fieldColor"] for entry in red_dataset.app_config.color_scheme.fields}
    assert colours["marlin_find"] == "#123456"
    assert colours["marlin_events"] != colours["ground_truth"]


def test_long_runs_are_steered_to_schedule_with_the_estimate(red_dataset):
    from operators.run.scheduling import SECONDS_PER_WINDOW

    params = dict(queries="red light", device="cpu")
    ctx = ExecutionContext(request_params=dict(dataset_name=red_dataset.name, params=params), operator_uri=FIND)
    operator = foo.get_operator(FIND)
    previous = fo.config.operator_timeout
    try:
        fo.config.operator_timeout = int(SECONDS_PER_WINDOW["cpu"]) + 60
        assert operator.resolve_execution_options(ctx).default_choice_to_delegated is False
        assert "estimate" not in visible_inputs(resolve_form(FIND, red_dataset, **params))
        fo.config.operator_timeout = int(SECONDS_PER_WINDOW["cpu"]) - 1
        assert operator.resolve_execution_options(ctx).default_choice_to_delegated is True
        warning = resolve_form(FIND, red_dataset, **params)["type"]["properties"]["estimate"]["view"]
        assert "Schedule" in warning["label"] and "1 video(s)" in warning["description"]
        assert "on cpu" in warning["description"]
    finally:
        fo.config.operator_timeout = previous


def test_evaluate_result_is_a_markdown_table_with_view_buttons(red_dataset):
    from operators.evaluate import metrics_markdown

    summary = {"eval_key": "e", "mode": "grounding", "samples": 1, "metrics": {"mIoU": 51.234, "n": 1},
               "views": ["e_worst", "e_misses"]}
    assert metrics_markdown(summary).splitlines()[-2:] == [
        "| mIoU | 51.23 | mean tIoU over queries (a query with no prediction counts 0) |",
        "| n | 1 | queries evaluated |"]
    ctx = ExecutionContext(request_params=dict(dataset_name=red_dataset.name, params={}, results=summary),
                           operator_uri="@marlin/marlin/evaluate")
    outputs = foo.get_operator("@marlin/marlin/evaluate").resolve_type(ctx, "outputs").to_json()
    properties = outputs["type"]["properties"]
    assert properties["metrics_table"]["view"]["name"] == "MarkdownView"
    assert "CodeView" not in str(outputs)
    buttons = [p["view"] for p in properties.values() if p["view"]["name"] == "Button"]
    assert [(b["operator"], b["params"]) for b in buttons] == [
        ("@marlin/marlin/open_view", {"name": "e_worst"}), ("@marlin/marlin/open_view", {"name": "e_misses"})]


def test_open_view_needs_an_existing_saved_view(red_dataset):
    def open_view(name):
        result = foo.execute_operator("@marlin/marlin/open_view", dict(dataset=red_dataset, params=dict(name=name)))
        result.raise_exceptions()
        return result.result

    with pytest.raises(ExecutionError, match="no saved view"):
        open_view("nope")
    red_dataset.save_view("mine", red_dataset.limit(1))
    assert open_view("mine") == {"view": "mine"}
