"""The App shows a search's ranked clips: a real App server and Debian's Chromium (Playwright), tiny model.

The search runs through FiftyOne's executor; the App then opens its saved view by name, and the grid
must show one clip per present moment, in the view's order (best presence score first), each with its
query on the ``marlin_search`` label. The screenshot goes to the README (docs/app-search-clips.png).
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import fiftyone as fo
import fiftyone.operators as foo
import pytest

from app_browser import app_server, chromium_page, dismiss_popups
from search_library import HARD_NEGATIVE, PRESENT

DOCS = Path(__file__).resolve().parents[1] / "docs"
VIEW = "marlin-search"


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    """One App server for the module's tests (each opens its own Chromium page)."""
    with app_server(tmp_path_factory.mktemp("search-app") / "server.log") as url:
        yield url


@pytest.fixture(scope="module")
def searched(color_videos, trained_model_dir, tmp_path_factory):
    """A persistent dataset (the App server is another process) of 2 red and 2 blue clips, searched."""
    root = tmp_path_factory.mktemp("browser-search")
    dataset = fo.Dataset(f"marlin-search-{uuid.uuid4().hex[:8]}", persistent=True)
    for color in ("red", "blue"):
        for copy in range(2):
            path = root / f"{color}-{copy}.mp4"
            shutil.copy(color_videos[color], path)
            dataset.add_sample(fo.Sample(filepath=str(path)))
    result = foo.execute_operator("@marlin/marlin/search", dict(dataset=dataset, params=dict(
        model=str(trained_model_dir), queries=[*PRESENT, HARD_NEGATIVE])))
    result.raise_exceptions()
    yield dataset
    dataset.delete()


def test_app_shows_the_ranked_clips_of_a_search(searched, app_url):
    expected = [clip.marlin_search.label for clip in searched.load_saved_view(VIEW)]
    assert sorted(expected) == sorted(["red light"] * 2 + ["blue sky"] * 2)  # the hard negative is left out
    with chromium_page() as page:
        page.goto(f"{app_url}/datasets/{searched.name}?view={VIEW}")
        dismiss_popups(page)
        selector = page.locator('[data-cy="saved-views-selection"]')
        page.wait_for_function("() => document.querySelector('[data-cy=saved-views-selection]')"
                               f".textContent.includes('{VIEW}')")
        assert VIEW in selector.inner_text()
        tiles = page.locator('[data-cy="looker"]')
        page.wait_for_function(f"() => document.querySelectorAll('[data-cy=looker]').length === {len(expected)}")
        shown = []
        for index in range(len(expected)):
            chip = tiles.nth(index).locator('[data-cy="tag-marlin_search"]')
            chip.wait_for()
            shown.append(chip.get_attribute("title") or chip.inner_text())
        assert [query in text for query, text in zip(expected, shown)] == [True] * len(expected), shown
        page.screenshot(path=str(DOCS / "app-search-clips.png"))


def test_a_search_run_from_the_app_opens_its_view_without_a_reload(color_videos, trained_model_dir, app_url, tmp_path):
    """Run search from its form in the App: the saved view opens by itself, and its Open button works too."""
    dataset = fo.Dataset(f"marlin-search-app-{uuid.uuid4().hex[:8]}", persistent=True)
    try:
        dataset.add_samples([fo.Sample(filepath=str(color_videos[color])) for color in ("red", "blue")])
        # captioned beforehand (stored captions are reused), so the App's run is the search itself
        foo.get_operator("@marlin/marlin/caption")(dataset, model=str(trained_model_dir))
        with chromium_page() as page:
            page.goto(f"{app_url}/datasets/{dataset.name}")
            dismiss_popups(page)
            page.locator('[data-item-id="@marlin/marlin/search"]').click()
            dialog = page.get_by_role("dialog")
            dialog.get_by_text("Model", exact=True).wait_for()
            boxes = dialog.get_by_role("textbox")
            boxes.nth(0).fill(str(trained_model_dir))
            boxes.nth(1).fill(next(iter(PRESENT)))
            page.wait_for_function("() => { const b = [...document.querySelectorAll('[role=dialog] button')]"
                                   ".find(b => b.textContent === 'Execute'); return b && !b.disabled; }")
            dialog.get_by_role("button", name="Execute", exact=True).click()
            open_button = page.get_by_role("button", name=f"Open {VIEW}")
            open_button.wait_for(timeout=240_000)
            dataset.reload()  # saved by the App server, another process
            moments = len(dataset.load_saved_view(VIEW))
            assert moments >= 1
            # the grid shows the ranked clips (one tile per moment, its query on the label) with no reload
            clip = page.locator('[data-cy="looker"]').first.locator('[data-cy="tag-marlin_search"]')
            try:
                clip.wait_for(timeout=60_000)
                page.wait_for_function(f"() => document.querySelectorAll('[data-cy=looker]').length === {moments}")
            finally:
                page.screenshot(path=str(DOCS / "app-search-opened.png"))
            assert not page.get_by_text("does not exist").is_visible()
            open_the_saved_view_again(page, open_button, samples=len(dataset), moments=moments, shot=tmp_path)
    finally:
        dataset.delete()


def open_the_saved_view_again(page, open_button, samples: int, moments: int, shot: Path) -> None:
    """Back to the whole dataset (the browser's Back: the App's own history, no page load), then the
    summary's "Open" button opens the saved view by name: the selector names it, the grid shows its clips."""
    page.evaluate("() => { window.marlinPageLoad = 'the first'; }")  # gone if the page loads again
    for _ in range(3):  # the clips were opened by their stages: one or two App history entries back
        page.go_back()
        try:
            page.wait_for_function(f"() => document.querySelectorAll('[data-cy=looker]').length === {samples}",
                                   timeout=10_000)
            break
        except Exception:  # noqa: BLE001 - still on a clips view: one more step back
            continue
    assert page.locator('[data-cy="looker"]').count() == samples
    assert VIEW not in page.locator('[data-cy="saved-views-selection"]').inner_text()
    open_button.click()
    page.wait_for_function("() => document.querySelector('[data-cy=saved-views-selection]')"
                           f".textContent.includes('{VIEW}')")
    page.wait_for_function(f"() => document.querySelectorAll('[data-cy=looker]').length === {moments}")
    page.locator('[data-cy="looker"]').first.locator('[data-cy="tag-marlin_search"]').wait_for()
    page.screenshot(path=str(shot / "search-open-button.png"))
    assert page.evaluate("() => window.marlinPageLoad") == "the first"
    assert not page.get_by_text("does not exist").is_visible()
