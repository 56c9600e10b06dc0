"""The App workflow in a real browser: Debian's Chromium driven by Playwright against a real App server,
a real delegated worker and the tiny trained checkpoint. The tests run in order on one dataset and
one page, as a user would: find on a selected sample, a scheduled caption, a page reload (Marlin's
colours and the events' seconds on tiles still there), evaluate and its views, and a screenshot of
the modal with the events for the README (docs/app-modal-events.png).
"""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path

import fiftyone as fo
import pytest
from fiftyone.operators.delegated import DelegatedOperationService
from fiftyone.operators.executor import ExecutionRunState

from app_browser import app_server, chromium_page, delegated_worker, dismiss_popups
from tiny_model import TRAINED_TARGETS

DOCS = Path(__file__).resolve().parents[1] / "docs"
FIND = "@marlin/marlin/find"
CAPTION = "@marlin/marlin/caption"
EVALUATE = "@marlin/marlin/evaluate"


@pytest.fixture(scope="module")
def app_dataset(color_videos):
    """A persistent dataset (the App server is another process) with ground-truth spans for grounding."""
    dataset = fo.Dataset(f"marlin-app-{uuid.uuid4().hex[:8]}", persistent=True)
    dataset.add_samples([fo.Sample(filepath=str(color_videos[color])) for color in ("red", "blue")])
    dataset.compute_metadata()
    for sample in dataset.iter_samples(autosave=True):
        color = "red" if sample.filepath.endswith("red.mp4") else "blue"
        query = TRAINED_TARGETS[color]["find"]["query"]
        sample["ground_truth"] = fo.TemporalDetections(detections=[
            fo.TemporalDetection.from_timestamps([1.0, 2.0], label=query, sample=sample)])
    yield dataset
    dataset.delete()


@pytest.fixture(scope="module")
def page(app_dataset, tmp_path_factory):
    """The App on ``app_dataset`` in Chromium, with a delegated worker running beside it."""
    logs = tmp_path_factory.mktemp("app-logs")
    with app_server(logs / "server.log") as url, delegated_worker(logs / "worker.log"), chromium_page() as page:
        page.goto(f"{url}/datasets/{app_dataset.name}")
        dismiss_popups(page)
        yield page


def tile(page, color: str):
    """The grid tile of the ``color`` video (tiles follow the dataset's order: red, blue)."""
    return page.locator('[data-cy="looker"]').nth(0 if color == "red" else 1)


def select(page, color: str) -> None:
    tile(page, color).hover()
    tile(page, color).locator('[data-cy="looker-checkbox-"]').click()


def close_panels(page) -> None:
    """Close the run's summary panel ("Done") and the operator prompt if it stays open ("Close")."""
    for name in ("Done", "Close"):
        button = page.get_by_role("button", name=name, exact=True).first
        try:
            button.wait_for(state="visible", timeout=3000)
            button.click(timeout=3000)
        except Exception:  # noqa: BLE001 - this panel is not open, or closed itself meanwhile
            continue
    page.get_by_role("dialog").first.wait_for(state="hidden")


def open_form(page, uri: str):
    page.locator(f'[data-item-id="{uri}"]').click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Model", exact=True).wait_for()
    return dialog


def test_find_on_a_selected_sample_shows_its_label_without_a_reload(page, trained_model_dir):
    select(page, "red")
    dialog = open_form(page, FIND)
    execute = dialog.get_by_role("button", name="Execute", exact=True)
    # no query yet: the field says why and Execute is disabled
    assert dialog.get_by_text(re.compile("at least one query", re.I)).is_visible()
    assert execute.is_disabled()
    assert dialog.get_by_text("Advanced: output fields, decoding, preprocessing").is_visible()
    page.screenshot(path=str(DOCS / "app-find-form.png"))
    boxes = dialog.get_by_role("textbox")
    boxes.nth(0).fill(str(trained_model_dir))
    boxes.nth(1).fill(TRAINED_TARGETS["red"]["find"]["query"])
    page.wait_for_function("() => ![...document.querySelectorAll('[role=dialog] button')]"
                           ".find(b => b.textContent === 'Execute').disabled")
    execute.click()
    page.get_by_text("Videos searched").first.wait_for(timeout=120_000)
    close_panels(page)
    chip = tile(page, "red").locator('[data-cy="tag-marlin_find"]')
    chip.wait_for()
    assert TRAINED_TARGETS["red"]["find"]["query"] in chip.get_attribute("title")
    # the App writes the span in frames ("[1, 20]"); the seconds field beside it shows it in seconds
    seconds = tile(page, "red").locator('[data-cy="tag-marlin_find_seconds"]').first
    seconds.wait_for()
    assert re.fullmatch(re.escape(TRAINED_TARGETS["red"]["find"]["query"]) + r" \d+\.\d–\d+\.\d s",
                        seconds.inner_text()), seconds.inner_text()


def test_a_multi_video_run_shows_its_progress(page, trained_model_dir):
    select(page, "red")  # unselect: with no selection the target is the whole dataset
    dialog = open_form(page, FIND)
    boxes = dialog.get_by_role("textbox")
    boxes.nth(0).fill(str(trained_model_dir))
    boxes.nth(1).fill(TRAINED_TARGETS["blue"]["find"]["query"])
    page.wait_for_function("() => ![...document.querySelectorAll('[role=dialog] button')]"
                           ".find(b => b.textContent === 'Execute').disabled")
    dialog.get_by_role("button", name="Execute", exact=True).click()
    # "n/2 <file>" while the two videos are searched, then the summary
    progress = page.get_by_text(re.compile(r"\b[012]/2 ")).first
    progress.wait_for(timeout=120_000)
    page.screenshot(path=str(DOCS / "app-progress.png"))
    summary = page.get_by_text("Videos searched").first
    summary.wait_for(timeout=120_000)
    assert "2" in summary.locator("xpath=..").inner_text()
    page.screenshot(path=str(DOCS / "app-summary.png"))
    close_panels(page)
    tile(page, "blue").locator('[data-cy="tag-marlin_find"]').wait_for()


def test_schedule_is_available_and_a_worker_completes_the_run(page, app_dataset, trained_model_dir):
    dialog = open_form(page, CAPTION)
    dialog.get_by_role("textbox").nth(0).fill(str(trained_model_dir))
    dialog.get_by_role("button", name="Execute", exact=True).wait_for()
    dialog.locator('[aria-haspopup="menu"]').click()
    schedule = page.get_by_role("menuitem").filter(has_text="Schedule")
    assert "NOT AVAILABLE" not in schedule.inner_text()
    schedule.click()
    dialog.get_by_role("button", name="Schedule", exact=True).click()
    run = wait_for_scheduled_run(app_dataset, CAPTION)
    assert run.run_state == ExecutionRunState.COMPLETED, run.result.error if run.result else run.run_state
    app_dataset.reload()
    assert len(app_dataset.exists("marlin_events")) == 2


def test_colours_and_seconds_survive_a_page_reload(page, app_dataset):
    """The scheduled caption's worker stored marlin_events' colour after the page loaded: the App's session
    lacked it, and before restore_colours a reload showed the App's default colours."""
    page.reload()
    dismiss_popups(page)
    red = tile(page, "red")
    red.locator('[data-cy="tag-marlin_events_seconds"]').first.wait_for()
    colours = {field: red.locator(f'[data-cy="tag-{field}"]').first.evaluate(
        "e => getComputedStyle(e).backgroundColor") for field in
        ("marlin_events", "marlin_events_seconds", "marlin_find", "marlin_find_seconds", "ground_truth")}
    orange, teal = "rgb(255, 109, 4)", "rgb(0, 179, 161)"
    assert colours == {"marlin_events": orange, "marlin_events_seconds": orange, "marlin_find": orange,
                       "marlin_find_seconds": orange, "ground_truth": teal}, colours
    assert re.search(r"\d+\.\d–\d+\.\d s$", red.locator('[data-cy="tag-marlin_events_seconds"]').first.inner_text())
    page.wait_for_timeout(3000)  # the tiles' first frames, on a busy machine
    page.screenshot(path=str(DOCS / "app-tiles-seconds.png"))


def test_evaluate_shows_the_metrics_table_and_opens_a_saved_view(page, app_dataset):
    dialog = open_form_without_model(page, EVALUATE)
    dialog.get_by_text("grounding", exact=True).click()
    choose(page, dialog, "Predictions", "marlin_find")
    dialog.get_by_role("button", name="Execute", exact=True).click()
    table = dialog.locator("table")
    table.wait_for(timeout=60_000)
    assert "R1@0.5" in table.inner_text() or "mIoU" in table.inner_text()
    assert not dialog.get_by_text("Loading...").is_visible()
    page.screenshot(path=str(DOCS / "app-evaluate.png"))
    dialog.get_by_role("button", name="Open marlin_eval_worst").click()
    selector = page.locator('[data-cy="saved-views-selection"]')
    page.wait_for_function("() => document.querySelector('[data-cy=saved-views-selection]')"
                           ".textContent.includes('marlin_eval_worst')")
    assert "marlin_eval_worst" in selector.inner_text()
    close_panels(page)


def test_modal_shows_the_events(page, app_dataset):
    page.locator('[data-cy="btn-clear-view-bar"]').click()  # back from the saved view to the dataset
    red = page.locator('[data-cy="looker"]').filter(has=page.locator('[title^="marlin_find: red light"]'))
    red.click()
    modal = page.locator('[data-cy="modal"]')
    modal.get_by_text("marlin_events").first.wait_for()
    modal.locator('[data-cy="sidebar-field-arrow-enabled-marlin_events"]').click()
    time_range = modal.get_by_text("time_range").first
    time_range.wait_for()
    time_range.scroll_into_view_if_needed()  # the events' spans in seconds, filterable
    page.wait_for_timeout(1000)
    page.screenshot(path=str(DOCS / "app-modal-events.png"))


def wait_for_scheduled_run(dataset, uri: str, timeout_s: float = 150.0):
    """The delegated run of ``uri`` on ``dataset`` once the worker has finished it."""
    service = DelegatedOperationService()
    deadline = time.monotonic() + timeout_s
    while True:
        runs = service.list_operations(operator=uri, dataset_name=dataset.name)
        if runs and runs[0].run_state in ExecutionRunState.TERMINAL_STATES:
            return runs[0]
        assert time.monotonic() < deadline, f"no worker finished the scheduled run: {runs}"
        time.sleep(1)


def open_form_without_model(page, uri: str):
    page.locator('[data-item-id="@voxel51/operators/browse"], [data-cy="action-browse-operations"]').first.click()
    page.keyboard.type("Marlin: evaluate")
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("tIoU threshold").wait_for()
    return dialog


def choose(page, dialog, label: str, value: str) -> None:
    """Pick ``value`` in the dropdown that follows the text ``label``."""
    dialog.get_by_text(label, exact=True).locator("xpath=following::*[@role='combobox'][1]").click()
    page.get_by_role("option", name=value, exact=True).click()
