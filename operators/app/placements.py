"""Buttons that open an operator's form from the grid's actions row, or from the video modal.

FiftyOne resolves placements again whenever the App's current sample changes, so one operator can
sit in the grid (no sample open) and in the modal (a sample open). The form then targets the
selection, the current view or the open sample (``inputs.view_target``).
"""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

__all__ = ["button"]


def button(operator: foo.Operator, ctx, *, label: str, icon: str) -> types.Placement | None:
    """A button with a Material icon (``icon`` is its name, e.g. ``"subtitles"``) that opens the form.

    Shown only on datasets with videos: Marlin has nothing to do elsewhere.
    """
    if ctx.dataset is None or ctx.dataset.media_type not in ("video", "group"):
        return None
    place = types.Places.SAMPLES_VIEWER_ACTIONS if ctx.current_sample else types.Places.SAMPLES_GRID_ACTIONS
    return types.Placement(place, types.Button(label=label, icon=icon, prompt=True))
