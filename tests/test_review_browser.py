"""The review panel in a real App and Chromium: a person opens a video, accepts one of Marlin's events, fixes
another's end with the keyboard, rejects one, adds one, evaluates the agreement; the database holds the reviewed
field, its provenance and the agreement figures. Screenshot: docs/app-review-panel.png."""

from __future__ import annotations

import uuid
from pathlib import Path

import fiftyone as fo
import pytest

from app_browser import app_server, chromium_page, dismiss_popups
from media import make_video
from review_data import EVENTS, propose
from operators.adapters.review import REVIEWED_TAG

DOCS = Path(__file__).resolve().parents[1] / "docs"
REVIEWER = "review-browser-test"


@pytest.fixture(scope="module")
def review_dataset(tmp_path_factory):
    """Two videos with Marlin-made events (the caption operator's labels, fingerprinted), one to review."""
    root = tmp_path_factory.mktemp("review-browser")
    dataset = fo.Dataset(f"marlin-review-{uuid.uuid4().hex[:8]}", persistent=True)
    dataset.add_samples([fo.Sample(filepath=str(make_video(root / f"{name}.mp4", size="320x240", fps=10,
                                                            seconds=10))) for name in ("walk", "yard")])
    dataset.compute_metadata()
    for sample in dataset.iter_samples(autosave=True):
        propose(sample)
    yield dataset
    dataset.delete()


@pytest.fixture(scope="module")
def panel(review_dataset, tmp_path_factory):
    """The review panel open on the first video in the App's modal."""
    logs = tmp_path_factory.mktemp("review-app-logs")
    with app_server(logs / "server.log", env={"USER": REVIEWER}) as url, chromium_page(height=1100) as page:
        page.goto(f"{url}/datasets/{review_dataset.name}")
        dismiss_popups(page)
        page.locator('[data-cy="looker"]').first.click()
        page.locator('[data-cy="panel-tab-review_events"]').click()
        content = page.locator('[data-cy="panel-content-review_events"]')
        content.locator("table").wait_for()
        yield page, content


def table_rows(content) -> list[list[str]]:
    rows = content.locator("table tbody tr")
    return [rows.nth(i).locator("td").all_inner_texts() for i in range(rows.count())]


def wait_for_row(page, content, number: int | None, status: str, label: str, span: str | None = None) -> None:
    """Wait until row ``number`` (1-based; None: any) of the table shows ``status``, ``label`` (and ``span``)."""
    expected = [str(number) if number else "", status, label] + ([span] if span else [])
    try:
        page.wait_for_function(
            """([selector, expected]) => [...document.querySelectorAll(selector + ' table tbody tr')].some(tr =>
                   expected.every((text, i) => tr.children[i]
                                  && (!text || tr.children[i].innerText.trim() === text)))""",
            arg=['[data-cy="panel-content-review_events"]', expected], timeout=30_000)
    except Exception as error:  # noqa: BLE001 - say what the table showed instead
        raise AssertionError(f"no row {expected} in {table_rows(content)}:\n{content.inner_text()[:400]}") from error


def test_the_panel_lists_the_events_sorted_by_start_with_times_and_confidence(panel):
    page, content = panel
    assert table_rows(content) == [["1", "pending", "a door opens", "0.0–2.0", "0.90"],
                                   ["2", "pending", "a person walks", "3.0–5.0", "0.40"],
                                   ["3", "pending", "the person sits", "5.5–7.0", "0.70"],
                                   ["4", "pending", "a cat jumps", "8.0–9.0", "0.20"]]
    # the panel's own player shows the selected (first) event's span; its playhead is read back
    page.wait_for_function("() => document.querySelector('[data-cy=panel-content-review_events] video')"
                           " && document.querySelector('[data-cy=panel-content-review_events] video')"
                           ".currentSrc.includes('#t=0.00,2.00')")
    content.get_by_text("playhead 0.00 s").wait_for()


def test_accept_fix_with_keys_reject_and_add(panel, review_dataset):
    page, content = panel
    content.get_by_role("button", name="Accept (a)").click()
    wait_for_row(page, content, 1, "accepted", "a door opens")
    # the selection moved to the next pending event: "a person walks"; two presses of } move its end +1 s
    keys = content.get_by_role("textbox").nth(1)
    keys.click()
    keys.press_sequentially("}}", delay=300)
    wait_for_row(page, content, 2, "fixed", "a person walks", "3.0–6.0")
    keys.press_sequentially("nr", delay=300)  # next event, reject it
    wait_for_row(page, content, 3, "rejected", "the person sits")
    content.locator("table tbody tr").filter(has_text="a door opens").click()  # the player goes to 0.0 s
    content.get_by_text("playhead 0.00 s").wait_for()
    content.get_by_role("textbox").nth(0).fill("a dog barks")
    page.wait_for_timeout(500)
    content.get_by_role("button", name="Add event (+)").click()
    wait_for_row(page, content, None, "added", "a dog barks", "0.0–2.0")  # at the playhead
    keys.press_sequentially("c", delay=300)  # least confident first: the pending cat leads
    wait_for_row(page, content, 1, "pending", "a cat jumps")
    content.get_by_text("1 accepted · 1 fixed · 1 rejected · 1 added").wait_for()

    review_dataset.reload()
    sample = review_dataset.first()
    marlin = {d.label: d for d in sample["marlin_events"].detections}
    assert [d.label for d in marlin.values()] == [e["description"] for e in EVENTS]  # Marlin's field untouched
    reviewed = sample["marlin_events_reviewed"]
    by_label = {d.label: d for d in reviewed.detections}
    assert set(by_label) == {"a door opens", "a person walks", "a dog barks"}
    door, walk, dog = by_label["a door opens"], by_label["a person walks"], by_label["a dog barks"]
    assert (door.action, door.source_label_id, door.reviewed_by) == ("accepted", marlin["a door opens"].id, REVIEWER)
    assert (walk.action, walk.start_s, walk.end_s, walk.source_end_s) == ("fixed", 3.0, 6.0, 5.0)
    assert walk.source_label_id == marlin["a person walks"].id and walk.reviewed_by == REVIEWER
    assert (dog.action, dog.source_label_id, dog.reviewed_by, dog.start_s, dog.end_s) == \
        ("added", None, REVIEWER, 0.0, 2.0)
    assert all(d.reviewed_at for d in reviewed.detections)
    [sits] = reviewed.rejected
    assert (sits["label"], sits["source_label_id"], sits["reviewed_by"]) == \
        ("the person sits", marlin["the person sits"].id, REVIEWER)
    assert REVIEWED_TAG not in sample.tags  # the cat is still pending


def test_finishing_the_sample_tags_it_and_agreement_is_evaluated(panel, review_dataset):
    page, content = panel
    content.locator("table tbody tr").filter(has_text="a cat jumps").click()  # select it
    page.wait_for_function("() => document.querySelector('[data-cy=panel-content-review_events] video')"
                           ".currentSrc.includes('#t=8.00,9.00')")
    content.get_by_role("button", name="Reject (r)").click()
    wait_for_row(page, content, None, "rejected", "a cat jumps")
    content.get_by_text("Dataset: 1/2 samples reviewed").wait_for()
    content.get_by_role("button", name="Evaluate agreement").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("tIoU threshold").wait_for()
    dialog.get_by_role("button", name="Execute", exact=True).click()
    dialog.locator("table").wait_for(timeout=60_000)
    for name in ("Done", "Close"):
        button = page.get_by_role("button", name=name, exact=True).first
        if button.is_visible():
            button.click()
    review_dataset.reload()
    assert REVIEWED_TAG in review_dataset.first().tags
    config = review_dataset.get_run_info("marlin_review_agreement_marlin").config
    assert (config.pred_field, config.gt_field) == ("marlin_events", "marlin_events_reviewed")
    # 8 proposals on the dataset, 3 reviewed events (door, walk 3-6, dog 0-2) on the first video: the door
    # proposal matches the door or the dog, the walk (3-5) the fixed walk; sits and cat are false positives
    assert config.metrics["fiftyone_precision"] == pytest.approx(100 * 2 / 8)
    assert config.metrics["fiftyone_recall"] == pytest.approx(100 * 2 / 3)
    # the panel shows the agreement after its next refresh
    content.get_by_role("button", name="Next (n)").click()
    content.get_by_text("Agreement (last evaluation").wait_for()
    page.screenshot(path=str(DOCS / "app-review-panel.png"))


def test_next_sample_opens_the_second_video(panel, review_dataset):
    page, content = panel
    content.get_by_role("button", name="Next sample (N)").click()
    content.get_by_text("yard.mp4").wait_for()
    # the order chosen stays: least confident first
    wait_for_row(page, content, 1, "pending", "a cat jumps", "8.0–9.0")
    assert review_dataset.last().id in page.url
