"""What the App says about runs, in a real browser (Chromium via Playwright) on a real App server, a real
delegated worker, MongoDB and the tiny checkpoint: a failed immediate run shows FiftyOne's operator
error with its reason, a missing model folder is marked invalid before Execute, and the "Marlin runs"
panel lists a queued, a running and a failed scheduled run (and cancels the queued one).
Its buttons work: open a run's samples and its errors, re-run the failed samples (listed when done), and an
open modal shows a run's labels when it ends. Screenshots: docs/app-run-failed.png, docs/app-runs-panel.png.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import fiftyone as fo
import fiftyone.operators as foo
import pytest
from fiftyone.operators.delegated import DelegatedOperationService
from fiftyone.operators.executor import ExecutionRunState

from app_browser import _env, app_server, chromium_page, delegated_worker, dismiss_popups
from marlin_core.contract import parse_caption
from tiny_model import TRAINED_TARGETS
from operators.run.run_list import CANCELLED, list_runs

DOCS = Path(__file__).resolve().parents[1] / "docs"
CAPTION = "@marlin/marlin/caption"


@pytest.fixture(scope="module")
def runs_dataset(color_videos):
    dataset = fo.Dataset(f"marlin-runs-{uuid.uuid4().hex[:8]}", persistent=True)
    dataset.add_samples([fo.Sample(filepath=str(color_videos[color])) for color in ("red", "blue")])
    dataset.compute_metadata()
    yield dataset
    dataset.delete()


@pytest.fixture(scope="module")
def broken_model(tmp_path_factory) -> Path:
    """A folder that passes the form's check (it holds a config.json) but is no model: loading fails."""
    folder = tmp_path_factory.mktemp("broken-model")
    (folder / "config.json").write_text(json.dumps({"model_type": "not-a-model-type"}))
    return folder


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runs-logs")


@pytest.fixture(scope="module")
def app_url(runs_dataset, logs):
    with app_server(logs / "server.log") as url:
        yield f"{url}/datasets/{runs_dataset.name}"


@pytest.fixture
def page(app_url):
    with chromium_page() as page:
        page.goto(app_url)
        dismiss_popups(page)
        yield page


def open_caption_form(page):
    page.locator(f'[data-item-id="{CAPTION}"]').click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Model", exact=True).wait_for()
    return dialog


def wait_enabled(page, name: str) -> None:
    page.wait_for_function("(name) => { const b = [...document.querySelectorAll('[role=dialog] button')]"
                           ".find(b => b.textContent === name); return b && !b.disabled; }", arg=name)


def test_a_missing_model_folder_is_invalid_before_execute(page, tmp_path):
    dialog = open_caption_form(page)
    dialog.get_by_role("textbox").nth(0).fill(str(tmp_path / "no-such-model"))
    dialog.get_by_text("no folder", exact=False).first.wait_for()
    assert dialog.get_by_role("button", name="Execute", exact=True).is_disabled()
    dialog.get_by_role("button", name="Cancel", exact=True).click()


def test_a_failed_immediate_run_shows_the_error(page, runs_dataset, broken_model):
    dialog = open_caption_form(page)
    dialog.get_by_role("textbox").nth(0).fill(str(broken_model))
    wait_enabled(page, "Execute")
    dialog.get_by_role("button", name="Execute", exact=True).click()
    # FiftyOne's operator error box, with the run's one-line reason (the run record says the same)
    page.get_by_text("The run failed").first.wait_for(timeout=120_000)
    reason = page.get_by_text("cannot load model").first
    reason.wait_for()
    page.screenshot(path=str(DOCS / "app-run-failed.png"))
    record = list_runs(runs_dataset)[0]
    assert record.status == "failed" and "cannot load model" in record.reason
    assert str(broken_model) in reason.inner_text()
    runs_dataset.reload()
    assert not runs_dataset.has_sample_field("marlin_events")  # a failed run creates no fields
    page.get_by_role("button", name="Done", exact=True).click()


def queue_caption(dataset, model) -> str:
    """Schedule a caption run (in a fresh process: Playwright's event loop runs in this one)."""
    script = ("import sys, fiftyone as fo, fiftyone.operators as foo\n"
              "r = foo.execute_operator(sys.argv[1], dict(dataset=fo.load_dataset(sys.argv[2]),"
              " params=dict(model=sys.argv[3])), request_delegation=True)\n"
              "r.raise_exceptions(); print(r.result['id'])\n")
    done = subprocess.run([sys.executable, "-c", script, CAPTION, dataset.name, str(model)], env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


def wait_state(operation_id: str, states, timeout_s: float = 150.0):
    service = DelegatedOperationService()
    deadline = time.monotonic() + timeout_s
    while True:
        from bson import ObjectId

        op = service.get(ObjectId(operation_id))
        if op.run_state in states:
            return op
        assert time.monotonic() < deadline, f"operation stayed {op.run_state}"
        time.sleep(1)


@pytest.fixture
def running_run(runs_dataset, trained_model_dir, logs):
    """A real caption run in its own process, stopped (SIGSTOP) once its record says running."""
    script = ("import sys, fiftyone as fo, fiftyone.operators as foo\n"
              "foo.execute_operator('@marlin/marlin/caption', dict(dataset=fo.load_dataset(sys.argv[1]),"
              " params=dict(model=sys.argv[2], events_field='slow_events', scene_field='slow_scene',"
              " caption_field='slow_caption', run_key='slow')))\n")
    process = subprocess.Popen([sys.executable, "-c", script, runs_dataset.name, str(trained_model_dir)],
                               env=_env(), stdout=open(logs / "running.log", "wb"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not any(row.status == "running" and row.operation == "caption" for row in list_runs(runs_dataset)):
            assert process.poll() is None and time.monotonic() < deadline, (logs / "running.log").read_text()
            time.sleep(0.2)
        os.kill(process.pid, signal.SIGSTOP)
        yield process
    finally:
        os.kill(process.pid, signal.SIGCONT)
        process.wait(timeout=300)


def test_the_runs_panel_lists_queued_running_and_failed_runs(app_url, runs_dataset, broken_model, logs,
                                                             running_run):
    with delegated_worker(logs / "worker.log"):
        failed_id = queue_caption(runs_dataset, broken_model)
        failed = wait_state(failed_id, (ExecutionRunState.FAILED, ExecutionRunState.COMPLETED))
        assert failed.run_state == ExecutionRunState.FAILED
    queued_id = queue_caption(runs_dataset, broken_model)  # no worker now: it stays queued
    statuses = {row.status for row in list_runs(runs_dataset)}
    assert {"queued", "running", "failed"} <= statuses

    with chromium_page() as page:  # a fresh page: no prompt or notification of the earlier tests in the way
        page.goto(app_url)
        dismiss_popups(page)
        open_runs_panel(page, queued_id)


def open_runs_panel(page, queued_id: str) -> None:
    """Open "Marlin runs" from the grid's + menu, check what it lists, then cancel the queued run there."""
    panel = open_panel(page)
    for text in ("queued", "failed", "cannot load model"):
        panel.get_by_text(text, exact=False).first.wait_for()
    panel.get_by_text("running", exact=False).first.wait_for()
    page.screenshot(path=str(DOCS / "app-runs-panel.png"))

    panel.get_by_role("button", name="Cancel", exact=True).first.click()
    cancelled = wait_state(queued_id, (ExecutionRunState.FAILED,), timeout_s=30)
    assert CANCELLED in (cancelled.result.error or "")


def test_a_modal_opened_before_a_run_shows_the_runs_labels(page, trained_model_dir, logs):
    """Open a video, caption from the modal's own button: the open modal shows the new scene and events
    without a page reload (the App refetches an open modal's sample only when told to)."""
    page.evaluate("() => { window.marlinPageLoad = 'the first'; }")  # gone if the page loads again
    page.locator('[data-cy="looker"]').first.click()  # the red video
    modal = page.locator('[data-cy="modal"]')
    modal.get_by_text("filepath", exact=True).first.wait_for()
    caption = parse_caption(TRAINED_TARGETS["red"]["caption"])  # what the trained tiny model answers
    scene = caption["scene"]
    assert modal.get_by_text("marlin_scene", exact=True).count() == 0  # no such field yet
    modal.get_by_text("subtitles", exact=True).click()  # "Caption with Marlin" (its Material icon)
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Model", exact=True).wait_for()
    dialog.get_by_role("textbox").nth(0).fill(str(trained_model_dir))
    wait_enabled(page, "Execute")
    dialog.get_by_role("button", name="Execute", exact=True).click()
    page.get_by_text("Skipped (already done", exact=False).first.wait_for(timeout=240_000)
    page.get_by_role("button", name="Done", exact=True).first.click()
    # the Scene paragraph, in the sidebar entry of the new field (the earlier slow_scene holds it too)
    modal.locator('[data-cy="sidebar-entry-marlin_scene"]').get_by_text(scene, exact=True).wait_for(timeout=30_000)
    modal.locator('[data-cy="sidebar-field-arrow-enabled-marlin_events"]').click()
    for event in caption["events"]:
        modal.get_by_text(event["description"], exact=True).first.wait_for()
    page.screenshot(path=str(logs / "modal-refreshed.png"))
    assert page.evaluate("() => window.marlinPageLoad") == "the first"


@pytest.fixture
def half_failed_run(color_videos, trained_model_dir, tmp_path):
    """A caption run over 3 of a dataset's 4 videos, one of which is not a video: 2 done, 1 failed."""
    dataset = fo.Dataset(f"marlin-rerun-{uuid.uuid4().hex[:8]}", persistent=True)
    bad = tmp_path / "bad.mp4"
    bad.write_text("this is not a video\n")
    dataset.add_samples([fo.Sample(filepath=str(path))
                         for path in (color_videos["red"], color_videos["blue"], bad, color_videos["red"])])
    summary = foo.get_operator(CAPTION)(dataset.limit(3), model=str(trained_model_dir))
    assert (summary["done"], summary["failed"]) == (2, 1), summary
    yield dataset, bad
    dataset.delete()


def test_the_runs_panel_opens_a_runs_samples_and_errors_and_reruns_the_failed(app_url, half_failed_run, color_videos,
                                                                             logs):
    dataset, bad = half_failed_run
    first = list_runs(dataset)[0]
    with chromium_page() as page:
        page.goto(f"{app_url.rsplit('/', 1)[0]}/{dataset.name}")  # the same App server, another dataset
        dismiss_popups(page)
        page.evaluate("() => { window.marlinPageLoad = 'the first'; }")  # gone if the page loads again
        panel = open_panel(page)
        panel.get_by_text("done 2, skipped 0, failed 1").wait_for()

        panel.get_by_role("button", name="Open samples", exact=True).click()
        wait_tiles(page, 3)  # the run's view (its first 3 samples), not the dataset's 4
        panel.get_by_role("button", name="Open errors", exact=True).click()
        wait_tiles(page, 1)
        assert "marlin_error" in page.locator('[data-cy="view-bar"]').text_content()  # its Exists(marlin_error)
        page.screenshot(path=str(logs / "runs-open-errors.png"))

        shutil.copyfile(color_videos["red"], bad)  # the user fixes the file, then re-runs what failed
        panel.get_by_role("button", name="Re-run failed samples", exact=True).click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_text("Model", exact=True).wait_for()
        wait_enabled(page, "Execute")
        dialog.get_by_role("button", name="Execute", exact=True).click()
        page.get_by_text("Skipped (already done", exact=False).first.wait_for(timeout=240_000)
        page.get_by_role("button", name="Done", exact=True).first.click()
        # the panel lists the re-run by itself (no Refresh click), newest first
        panel.get_by_text("2 run(s) on this dataset", exact=False).wait_for(timeout=30_000)
        panel.get_by_text("1 sample(s) · done 1, skipped 0, failed 0", exact=False).wait_for()
        page.screenshot(path=str(logs / "runs-rerun.png"))
        assert page.evaluate("() => window.marlinPageLoad") == "the first"

    rerun = list_runs(dataset)[0]
    assert rerun.key != first.key and rerun.status == "completed"
    assert (rerun.samples, rerun.counts["done"], rerun.counts["failed"]) == (1, 1, 0)
    dataset.reload()
    fixed = dataset.match(fo.ViewField("filepath") == str(bad)).first()
    assert fixed["marlin_error"] is None and len(fixed["marlin_events"].detections) > 0
    untouched = dataset.skip(3).first()  # outside the first run's view: never captioned
    assert untouched["marlin_events"] is None


def open_panel(page):
    """The "Marlin runs" panel, opened from the grid's + menu (beside the grid)."""
    page.locator('[data-cy="new-panel-btn"]').first.click()
    page.get_by_text("Marlin runs", exact=True).first.click()
    panel = page.locator('[data-cy^="panel-content-"]').filter(has_text="run(s) on this dataset").first
    panel.wait_for()
    return panel


def wait_tiles(page, count: int) -> None:
    page.wait_for_function(f"() => document.querySelectorAll('[data-cy=looker]').length === {count}")
