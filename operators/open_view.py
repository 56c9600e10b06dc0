"""``@marlin/marlin/open_view``: load a saved view by name, so the App's view selector shows it.

Unlisted: result panels (``evaluate``) invoke it from their buttons.
"""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

__all__ = ["OpenView", "view_buttons"]

URI = "@marlin/marlin/open_view"


class OpenView(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(name="open_view", label="Marlin: open a saved view", unlisted=True)

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.str("name", default=None, label="Saved view", description="Name of the saved view to open.")
        return types.Property(inputs)

    def execute(self, ctx):
        name = ctx.params.get("name")
        if not name or ctx.dataset is None or not ctx.dataset.has_saved_view(name):
            raise ValueError(f"no saved view named {name!r} on this dataset")
        ctx.ops.reload_dataset()  # a view saved after the App loaded the dataset is unknown to it until then
        ctx.ops.set_view(name=name)
        return {"view": name}


def view_buttons(outputs: types.Object, names: list[str], descriptions: dict[str, str] | None = None) -> None:
    """One button per saved view; a click opens it in the App."""
    for name in names:
        outputs.btn(f"open_{name}", label=f"Open {name}", icon="visibility", on_click=URI, params={"name": name},
                    description=(descriptions or {}).get(name))
