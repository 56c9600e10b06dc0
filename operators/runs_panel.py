"""``@marlin/marlin/marlin_runs``: the "Marlin runs" panel, every run of the dataset and what to do next.

Lists :func:`.run.run_list.list_runs` (run records joined with scheduled operations): status (queued,
running n/N, completed, failed with its reason, interrupted), model and settings, counts and wall
time, with actions: open the run's samples or its samples with errors, re-run the failed samples
(the operator's form, pre-filled with the run's parameters, on those samples), cancel a queued or
running scheduled run. While something is queued or running, or a re-run was asked for, the panel
refreshes itself every :data:`REFRESH_MS`; a run that just ended reloads the dataset, so its labels show
without a reload.
"""

from __future__ import annotations

import datetime
import time

import fiftyone.operators as foo
import fiftyone.operators.types as types

from .run.run_list import RunRow, cancel_operation, list_runs, run_view

REFRESH_MS = 2000
# After "Re-run failed samples" the panel refreshes until the re-run has come and gone (an immediate run from
# the prompt it opens is no run the panel knew of), or this long if the prompt is cancelled.
RERUN_WATCH_S = 600
SHOWN = 20
ICONS = {"queued": "…", "running": "▶", "completed": "✔", "failed": "✖", "interrupted": "⏹"}


def _wall(seconds) -> str:
    if seconds is None:
        return ""
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _when(moment) -> str:
    if not isinstance(moment, datetime.datetime):
        return ""
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _settings_text(row: RunRow) -> str:
    settings = row.settings or {}
    shown = {name: settings.get(name) for name in ("max_new_tokens", "window_s", "revision")
             if settings.get(name) not in (None, "")}
    queries = row.params.get("queries")
    if queries:
        shown["queries"] = queries if isinstance(queries, str) else "; ".join(map(str, queries))
    return ", ".join(f"{name}={value}" for name, value in shown.items())


def _started_s(row: RunRow) -> float:
    """When the run started, in seconds since the epoch (records hold naive UTC datetimes)."""
    moment = row.started_at
    if not isinstance(moment, datetime.datetime):
        return 0.0
    return (moment if moment.tzinfo else moment.replace(tzinfo=datetime.timezone.utc)).timestamp()


def describe(row: RunRow) -> str:
    """The run as a few markdown lines (status first: what a user looks for)."""
    status = row.status + (f" {row.progress}" if row.status == "running" and row.progress else "")
    head = f"{ICONS.get(row.status, '')} **{row.operation}** — **{status}**"
    head += " (scheduled)" if row.scheduled else ""
    lines = [head]
    if row.reason:
        lines.append(f"Reason: {row.reason}")
    started = "queued" if row.status == "queued" else "started"
    facts = [f"{started} {_when(row.started_at)}" if row.started_at else "",
             f"wall time {_wall(row.wall_s)}" if row.wall_s is not None else "",
             f"{row.samples} sample(s)" if row.samples is not None else "",
             ", ".join(f"{name} {count}" for name, count in row.counts.items())]
    lines.append(" · ".join(fact for fact in facts if fact))
    if row.model:
        lines.append(f"Model: `{row.model}`" + (f" · {_settings_text(row)}" if _settings_text(row) else ""))
    return "\n\n".join(line for line in lines if line)


class MarlinRunsPanel(foo.Panel):
    @property
    def config(self):
        return foo.PanelConfig(
            name="marlin_runs",
            label="Marlin runs",
            icon="history",
            help_markdown="Every Marlin run on this dataset: queued, running, completed, failed (with why) "
                          "or interrupted, with its samples, a re-run of the failed ones and Cancel for "
                          "scheduled runs.",
        )

    # ------------------------------------------------------------------ events

    def on_load(self, ctx):
        self._refresh(ctx)

    def on_change_dataset(self, ctx):
        self._refresh(ctx)

    def refresh(self, ctx):
        active_before = set(ctx.panel.state.active or [])
        self._refresh(ctx)
        if active_before - set(ctx.panel.state.active or []):
            ctx.ops.reload_dataset()  # a run ended: its labels and fields show without a browser reload

    def open_samples(self, ctx):
        self._open(ctx, errors_only=False)

    def open_errors(self, ctx):
        self._open(ctx, errors_only=True)

    def rerun_failed(self, ctx):
        row = self._row(ctx)
        if row is None:
            return
        view = run_view(ctx.dataset, row, errors_only=True)
        ctx.ops.set_view(view=view)
        ctx.prompt(row.operator_uri, params={**row.params, "overwrite": True})
        ctx.panel.state.rerun_requested_at = time.time()

    def cancel(self, ctx):
        row = self._row(ctx)
        if row is None or not row.operation_id:
            return
        if cancel_operation(row.operation_id):
            ctx.ops.notify(f"Cancelled the scheduled {row.operation} run", variant="warning")
        self._refresh(ctx)

    # ------------------------------------------------------------------ helpers

    def _refresh(self, ctx):
        rows = list_runs(ctx.dataset) if ctx.dataset is not None else []
        ctx.panel.state.rows = [row.key for row in rows]
        ctx.panel.state.active = [row.key for row in rows if row.active]
        ctx.panel.state.refreshed = datetime.datetime.now(datetime.timezone.utc).strftime("%H:%M:%S UTC")
        requested = ctx.panel.state.rerun_requested_at
        if requested and (time.time() - requested > RERUN_WATCH_S
                          or any(_started_s(row) >= requested and not row.active for row in rows)):
            ctx.panel.state.rerun_requested_at = None  # the re-run ended (or never came)

    def _row(self, ctx) -> RunRow | None:
        key = ctx.params.get("key")
        return next((row for row in list_runs(ctx.dataset) if row.key == key), None)

    def _open(self, ctx, errors_only: bool):
        row = self._row(ctx)
        if row is not None:
            ctx.ops.set_view(view=run_view(ctx.dataset, row, errors_only=errors_only))

    # ------------------------------------------------------------------ layout

    def render(self, ctx):
        panel = types.Object()
        rows = list_runs(ctx.dataset) if ctx.dataset is not None else []
        active = [row for row in rows if row.active]
        if active or ctx.panel.state.rerun_requested_at:
            panel.view("timer", types.TimerView(interval=REFRESH_MS, on_interval=self.refresh))
        summary = (f"{len(rows)} run(s) on this dataset, {len(active)} queued or running"
                   f" · refreshed {ctx.panel.state.refreshed or ''}")
        if not rows:
            summary = "No Marlin runs on this dataset yet: run **Caption with Marlin** or **Find with Marlin**."
        panel.md(summary, name="summary")
        panel.btn("refresh_now", label="Refresh", icon="refresh", on_click=self.refresh)
        for index, row in enumerate(rows[:SHOWN]):
            panel.md(describe(row), name=f"run_{index}")
            actions = panel.h_stack(f"actions_{index}", align_x="left", gap=1)
            params = {"key": row.key}
            if row.record_id:
                actions.btn(f"open_{index}", label="Open samples", on_click=self.open_samples, params=params,
                            variant="outlined")
            if row.counts.get("failed"):
                actions.btn(f"errors_{index}", label="Open errors", on_click=self.open_errors, params=params,
                            variant="outlined")
                actions.btn(f"rerun_{index}", label="Re-run failed samples", on_click=self.rerun_failed,
                            params=params, variant="outlined")
            if row.active and row.operation_id:
                actions.btn(f"cancel_{index}", label="Cancel", on_click=self.cancel, params=params,
                            variant="outlined")
        return types.Property(panel, view=types.GridView(orientation="vertical", align_x="left", gap=1))
