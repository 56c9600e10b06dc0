"""Videos longer than one window: windowed caption and find on one global timeline, real engine."""

from __future__ import annotations

import contextlib

import pytest

from marlin_core import WorkItem
from media import make_video
from marlin_core.video import probe
from marlin_core.windows import plan_windows

LONG_S = 300.0
# Fewer frames per window keep the tiny model fast; the windowing is the same at any rate.
SPARSE = dict(fps=0.5)


@contextlib.contextmanager
def counting_generate(marlin):
    """Count generations: ``marlin.model.generate`` calls, or the engine's decode-loop calls (the default path);
    each call still runs the real one."""
    owner = marlin.generator.decoder if marlin.generator.decoder is not None else marlin.model
    real, calls = owner.generate, []

    def generate(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    owner.generate = generate
    try:
        yield calls
    finally:
        del owner.generate


@pytest.fixture(scope="module")
def five_minute_video(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("long") / "red-5min.mp4", source="color=red", size="96x96", fps=2,
                      seconds=LONG_S)


def test_caption_runs_one_generate_per_planned_window(trained_marlin, five_minute_video):
    duration_s = probe(five_minute_video).duration_s
    planned = plan_windows(duration_s)
    assert len(planned) == 3
    seen = []
    with counting_generate(trained_marlin) as calls:
        result = trained_marlin.caption(five_minute_video, max_new_tokens=40,
                                        window_progress=lambda done, total: seen.append((done, total)), **SPARSE)
    assert len(calls) == len(planned)
    assert seen == [(i + 1, len(planned)) for i in range(len(planned))]
    assert [(w["start"], w["end"]) for w in result["windows"]] == planned
    assert {"caption", "scene", "events"} <= set(result)
    for event in result["events"]:
        assert 0.0 <= event["start"] <= event["end"] <= duration_s
    assert result["events"], "the trained model answers in Marlin's format on red frames"


def test_find_searches_every_window(trained_marlin, five_minute_video):
    duration_s = probe(five_minute_video).duration_s
    with counting_generate(trained_marlin) as calls:
        result = trained_marlin.find(five_minute_video, "red light", **SPARSE)
    assert len(calls) == len(plan_windows(duration_s))
    assert result["span"] is not None
    assert 0.0 <= result["span"][0] <= result["span"][1] <= duration_s
    assert len(result["candidates"]) >= 1


def test_short_video_is_identical_to_the_unwindowed_path(trained_marlin, color_videos):
    windowed = trained_marlin.caption(color_videos["blue"])
    unwindowed = trained_marlin.caption(color_videos["blue"], window_s=None)
    assert windowed == unwindowed
    assert "windows" not in windowed


class DictWindowStore:
    """A real in-memory WindowStore; ``fail_after`` saves it raises, like a process killed mid-video."""

    def __init__(self, fail_after: int | None = None):
        self.windows, self.fail_after = {}, fail_after

    def load(self):
        return dict(self.windows)

    def save(self, window, result):
        self.windows[window] = result
        if self.fail_after is not None and len(self.windows) >= self.fail_after:
            raise KeyboardInterrupt("killed")


def test_interrupted_video_resumes_at_the_window_level(trained_marlin, five_minute_video):
    uninterrupted = trained_marlin.caption(five_minute_video, max_new_tokens=40, **SPARSE)
    store = DictWindowStore(fail_after=1)
    with pytest.raises(KeyboardInterrupt):
        trained_marlin.caption(five_minute_video, max_new_tokens=40, window_store=store, **SPARSE)
    assert len(store.windows) == 1
    store.fail_after = None
    with counting_generate(trained_marlin) as calls:
        resumed = trained_marlin.caption(five_minute_video, max_new_tokens=40, window_store=store, **SPARSE)
    assert len(calls) == 2
    assert resumed == uninterrupted


def test_keyed_items_sharing_one_file_keep_their_own_windows(trained_marlin, five_minute_video):
    """Two samples may point at one file: progress and finished windows are reported under each item's key."""
    progress, stores = [], {}
    items = [WorkItem("sample-a", five_minute_video), WorkItem("sample-b", five_minute_video)]
    outcomes = list(trained_marlin.iter_captions(
        items, max_new_tokens=8, window_progress=lambda key, done, total: progress.append((key, done, total)),
        window_store=lambda key: stores.setdefault(key, DictWindowStore()), **SPARSE))
    windows = plan_windows(probe(five_minute_video).duration_s)
    assert [key for key, _ in outcomes] == ["sample-a", "sample-b"]
    assert progress == [(key, i + 1, len(windows)) for key in ("sample-a", "sample-b") for i in range(len(windows))]
    assert sorted(stores) == ["sample-a", "sample-b"]
    assert all(sorted(store.windows) == windows for store in stores.values())
    assert outcomes[0][1] == outcomes[1][1]


def test_find_batch_windows_like_find(trained_marlin, five_minute_video, color_videos):
    pairs = [(five_minute_video, "red light"), (color_videos["blue"], "blue sky")]
    batched = trained_marlin.find_batch(pairs, **SPARSE)
    assert batched == [trained_marlin.find(video, query, **SPARSE) for video, query in pairs]
    assert len(batched[0]["windows"]) == 3


def test_operator_uses_and_clears_stored_windows(dataset, trained_model_dir, five_minute_video):
    import fiftyone as fo
    import fiftyone.operators as foo
    from operators.run.processing import SampleWindowStore

    sample = fo.Sample(filepath=str(five_minute_video))
    dataset.add_sample(sample)
    params = dict(model=str(trained_model_dir), max_new_tokens=40, fps=0.5)
    foo.execute_operator("@marlin/marlin/caption", dict(dataset=dataset, params=params)).raise_exceptions()
    sample.reload()
    assert sample["marlin_events_partial"] is None
    assert len(sample["marlin_events"].detections) >= 1
    assert all(d.end_s <= LONG_S + 0.5 for d in sample["marlin_events"].detections)

    # a previous run died after its first window: that window's answer is on the sample
    fingerprint = dataset.get_run_info("marlin_caption").config.settings_fingerprint
    first_window = plan_windows(probe(five_minute_video).duration_s)[0]
    stored = {"caption": "", "scene": "Stored.", "format_ok": True, "truncated": False,
              "events": [{"start": 1.0, "end": 2.0, "description": "From the store.", "confidence": 1.0}]}
    SampleWindowStore(dataset, sample.id, "marlin_events_partial", fingerprint).save(first_window, stored)
    foo.execute_operator("@marlin/marlin/caption",
                         dict(dataset=dataset, params=dict(params, overwrite=True))).raise_exceptions()
    sample.reload()
    labels = [d.label for d in sample["marlin_events"].detections]
    assert "From the store." in labels
    assert sample["marlin_events_partial"] is None
