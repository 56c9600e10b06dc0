"""What the App's session shows, as its server process knows it (immediate operators run there).

FiftyOne keeps one session state per App server (``fiftyone.server.events.state``): the App reads
its colour scheme from it on every page load, and the App's own ``set_color_scheme`` writes it back.
Marlin reads it only to add colours without undoing a user's unsaved choices; elsewhere (a
delegated worker, a script) there is no session, and None says so.
"""

from __future__ import annotations

import fiftyone as fo

from ..adapters.display import app_colour_scheme

__all__ = ["session_colour_scheme", "missing_colours"]


def session_colour_scheme(dataset: fo.Dataset) -> fo.ColorScheme | None:
    """The App session's colour scheme for ``dataset``, or None outside the App server or for another dataset."""
    try:
        from fiftyone.server.events.state import get_state
    except ImportError:  # pragma: no cover - the server package ships with fiftyone
        return None
    state = get_state()
    if state.dataset is None or state.dataset.name != dataset.name:
        return None
    return state.color_scheme


def missing_colours(dataset: fo.Dataset) -> dict | None:
    """``set_color_scheme`` params adding the dataset's stored colours the App session lacks (None: none missing)."""
    return app_colour_scheme(dataset.app_config.color_scheme, session_colour_scheme(dataset))
