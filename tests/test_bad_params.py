"""Bad parameters are refused before any work, through FiftyOne's executor, and nothing is written.

One table per operator: each row is a request a user could make (form or SDK), the parameter the
error must name, and the check that the dataset (user labels included) is byte-identical afterwards
and that no run started (no run record: the model was never loaded).
"""

from __future__ import annotations

import fiftyone as fo
import fiftyone.operators as foo
import pytest
from fiftyone.operators.executor import ExecutionError

from operators.adapters.labels import samples_with_foreign_labels
from operators.run.runs import run_history
from operators.run.validation import problems

CAPTION_CASES = [
    (dict(events_field="tags"), "events_field"),
    (dict(events_field="metadata"), "events_field"),
    (dict(events_field="id"), "events_field"),
    (dict(events_field="frames"), "events_field"),
    (dict(events_field="filepath"), "events_field"),
    (dict(events_field="events.inner"), "events_field"),
    (dict(events_field="_hidden"), "events_field"),
    (dict(events_field="note"), "events_field"),  # exists as a string field
    (dict(scene_field="same", caption_field="same"), "caption_field"),
    (dict(error_field="marlin_events"), "error_field"),
    (dict(window_s=0), "window_s"),
    (dict(window_s=10), "window_s"),
    (dict(window_s=5.5), "window_s"),
    (dict(window_s="long"), "window_s"),
    (dict(fps=0), "fps"),
    (dict(fps=-2), "fps"),
    (dict(fps=1000), "fps"),
    (dict(max_frames=1), "max_frames"),
    (dict(max_frames=2.5), "max_frames"),
    (dict(max_pixels=10), "max_pixels"),
    (dict(batch_size=0), "batch_size"),
    (dict(max_new_tokens=0), "max_new_tokens"),
    (dict(run_key="my run"), "run_key"),
    (dict(prompt="Describe <|video_pad|> this clip."), "prompt"),
]
FIND_CASES = [
    (dict(queries=[]), "queries"),
    (dict(queries=["", "  "]), "queries"),
    (dict(queries=["<|video_pad|>"]), "queries"),
    (dict(queries=["a red light", "it ends <|im_end|>"]), "queries"),
    (dict(queries=[f"query {i}" for i in range(99)] + ["<|vision_start|> x"]), "queries"),
    (dict(queries=["red light"], find_field="note"), "find_field"),
    (dict(queries=["red light"], find_field="tags"), "find_field"),
    (dict(queries=["red light"], find_field="x.y"), "find_field"),
    (dict(queries=["red light"], find_field="answers"), "find_field"),  # answers_not_found is a string
    (dict(queries=["red light"], find_field="marlin_error"), "error_field"),  # the default error field
    (dict(queries=["red light"], window_s=0), "window_s"),
    (dict(queries=["red light"], fps=0), "fps"),
]
SEARCH_CASES = [
    (dict(queries=["red light"], search_field="note"), "search_field"),  # exists as a string field
    (dict(queries=["red light"], search_field="filepath"), "search_field"),
    (dict(queries=["red light"], events_field="note"), "events_field"),
    (dict(queries=["red light"], error_field="filepath"), "error_field"),
    (dict(queries=["red light"], search_field="marlin_events"), "events_field"),  # the default events field
    (dict(queries=["red light"], fps=-1), "fps"),
    (dict(queries=["red light"], max_new_tokens=-1), "max_new_tokens"),
    (dict(queries=["red <|video_pad|> light"]), "queries"),
    (dict(queries=[]), "queries"),
]


@pytest.fixture
def user_dataset(dataset, color_videos):
    """A sample with labels and fields the user made."""
    sample = fo.Sample(filepath=str(color_videos["red"]), note="mine", answers_not_found="a string",
                       marlin_events=fo.TemporalDetections(detections=[
                           fo.TemporalDetection(label="my event", support=[1, 3], checked=True)]))
    dataset.add_sample(sample)
    return dataset


def _stored(dataset) -> list:
    return list(dataset._sample_collection.find({}))


@pytest.mark.parametrize("operation, params, where",
                         [("caption", p, w) for p, w in CAPTION_CASES] + [("find", p, w) for p, w in FIND_CASES]
                         + [("search", dict(p, exhaustive=True), w) for p, w in SEARCH_CASES])
def test_bad_parameter_is_refused_before_work(operation, params, where, user_dataset, trained_model_dir):
    before, fields = _stored(user_dataset), set(user_dataset.get_field_schema())
    assert where in problems(operation, params, user_dataset)
    with pytest.raises(ExecutionError, match=where):
        foo.execute_operator(f"@marlin/marlin/{operation}",
                             dict(dataset=user_dataset, params=dict(model=str(trained_model_dir), **params)))
    user_dataset.reload()
    assert _stored(user_dataset) == before
    assert set(user_dataset.get_field_schema()) == fields
    assert run_history(user_dataset) == []


def test_good_parameters_have_no_problem(user_dataset):
    assert problems("caption", {}, user_dataset) == {}
    assert problems("caption", dict(window_s=30, fps=1.0, max_frames=64, max_pixels=200_000, device="cpu"),
                    user_dataset) == {}
    assert problems("find", dict(queries=["a red light", "something <b>bold</b>"]), user_dataset) == {}
    assert problems("evaluate", dict(pred_field="marlin_events", gt_field="marlin_events"), user_dataset) == \
        {"gt_field": "ground truth and predictions must be different fields"}


def test_a_field_holding_labels_someone_made_is_kept(user_dataset, trained_model_dir):
    """Not a bad parameter: the run goes on, leaves that sample untouched and says so."""
    before = _stored(user_dataset)
    assert samples_with_foreign_labels(user_dataset, "marlin_events") == 1
    outcome = foo.get_operator("@marlin/marlin/caption")(user_dataset, model=str(trained_model_dir))
    assert outcome["untouched"] == 1 and outcome["done"] == 0
    assert outcome["untouched_samples"] == [user_dataset.first().filepath]
    assert _stored(user_dataset)[0]["marlin_events"] == before[0]["marlin_events"]
    forced = foo.get_operator("@marlin/marlin/caption")(user_dataset, model=str(trained_model_dir), overwrite=True)
    assert forced["done"] == 1
    assert user_dataset.first()["marlin_events"].marlin_settings
    assert samples_with_foreign_labels(user_dataset, "marlin_events") == 0
    # overwrite adds Marlin's labels beside the user's; theirs stay as they were
    mine = [d for d in _stored(user_dataset)[0]["marlin_events"]["detections"] if "marlin_hash" not in d]
    assert mine == before[0]["marlin_events"]["detections"]
