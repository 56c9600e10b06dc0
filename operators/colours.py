"""``@marlin/marlin/restore_colours``: Marlin's field colours in the App after a page reload too.

The App's server builds its session colour scheme from the dataset's stored one only when it first
loads the dataset; colours Marlin stored afterwards (a scheduled run, a script, a run in another tab)
were gone after a browser reload though ``dataset.app_config.color_scheme`` held them. This unlisted
operator runs each time the App opens a dataset (``on_dataset_open``) and adds the stored colours the
session lacks, keeping the session's own (see :func:`.adapters.display.app_colour_scheme`).
"""

from __future__ import annotations

import fiftyone.operators as foo

from .app.session import missing_colours

__all__ = ["RestoreColours"]


class RestoreColours(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(name="restore_colours", label="Marlin: restore field colours", unlisted=True,
                                  on_dataset_open=True)

    def execute(self, ctx):
        if ctx.dataset is None:
            return {"restored": []}
        ctx.dataset.reload()  # this process may hold the dataset from before another process stored colours
        params = missing_colours(ctx.dataset)
        if params is None:
            return {"restored": []}
        ctx.trigger("set_color_scheme", params)
        return {"restored": [entry["path"] for entry in params["fields"]]}
