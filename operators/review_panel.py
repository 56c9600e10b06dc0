"""``@marlin/marlin/review_events``: a panel in the sample modal to accept, fix or reject Marlin's events.

The panel lists the open video's proposals (a Marlin ``TemporalDetections`` field: caption events or find
spans) and the person's decisions, sorted by start or least confident first; every edit is written at once to
the reviewed field (:mod:`.adapters.review`; the edits are :mod:`marlin_core.review_edits`).

The video: FiftyOne 1.22 gives a Python panel no way to read or move the modal's own player (its
``set_frame_number`` operator drives the timeline of image sequences, not a video's looker), so the panel has its
own player of the same file (``types.MediaPlayerView``). Selecting an event loads it at that span (a media
fragment ``#t=start,end``: the browser starts there and pauses at the end); the player's progress and seek
events give the playhead that "start/end = playhead", "split" and "add" use.

Keys: FiftyOne has no keyboard hook for Python panels; the *Keys* box is one. With it focused each key is one
action (:data:`KEYS`); the modal's own shortcuts stay off while it has focus.
"""

from __future__ import annotations

import difflib
import threading
from urllib.parse import quote

import fiftyone as fo
import fiftyone.operators as foo
import fiftyone.operators.types as types

from marlin_core.review_edits import NUDGE_S, ReviewEditError

from .adapters.review import SampleReview, holds_reviewed_labels, review_progress, reviewed_field_for, reviewer

__all__ = ["KEYS", "ReviewPanel"]

EVALUATE = "@marlin/marlin/evaluate"
AGREEMENT_KEY = "marlin_review_agreement"
DEFAULT_EVENTS_FIELD = "marlin_events"
# key -> (panel method, its arguments, button text)
KEYS = {
    "a": ("accept", (), "Accept"),
    "r": ("reject", (), "Reject"),
    "l": ("relabel", (), "Set label"),
    "[": ("nudge", ("start", -NUDGE_S), "Start −0.5 s"),
    "]": ("nudge", ("start", NUDGE_S), "Start +0.5 s"),
    "{": ("nudge", ("end", -NUDGE_S), "End −0.5 s"),
    "}": ("nudge", ("end", NUDGE_S), "End +0.5 s"),
    "s": ("to_playhead", ("start",), "Start = playhead"),
    "e": ("to_playhead", ("end",), "End = playhead"),
    "x": ("split", (), "Split at playhead"),
    "m": ("merge_next", (), "Merge with next"),
    "+": ("add", (), "Add event"),
    "p": ("step", (-1,), "Previous"),
    "n": ("step", (1,), "Next"),
    "N": ("next_sample", (), "Next sample"),
    "c": ("toggle_order", (), "Low confidence first"),
}
# the two rows of buttons: edits, then moving around
BUTTON_ROWS = (("edits", "arl[]{}sexm+"), ("moves", "pnNc"))
# Panel events can reach the server before the App has applied the state of the previous one, so the selection
# and the count of keys already applied live server-side (an execution store), edits one at a time.
STORE = "marlin_review_panel"
STORE_TTL_S = 7 * 24 * 3600
_EDITS = threading.Lock()
COLUMNS = (("n", "#"), ("status", "Status"), ("label", "Event"), ("time", "Start–end (s)"), ("confidence", "Conf."))


def _events_fields(dataset) -> list[str]:
    """The dataset's ``TemporalDetections`` fields a person may review (not a review itself)."""
    if dataset is None:
        return []
    fields = dataset.get_field_schema(embedded_doc_type=fo.TemporalDetections)
    return sorted(name for name in fields if not holds_reviewed_labels(dataset, name))


def typed_keys(before: str, after: str) -> str:
    """The characters typed into the Keys box between two of its values, wherever the caret was."""
    matcher = difflib.SequenceMatcher(a=before, b=after, autojunk=False)
    return "".join(after[j1:j2] for tag, _, _, j1, j2 in matcher.get_opcodes() if tag in ("insert", "replace"))


class ReviewPanel(foo.Panel):
    @property
    def config(self):
        return foo.PanelConfig(name="review_events", label="Marlin review", surfaces="modal", icon="fact_check",
                               help_markdown="Accept, fix or reject Marlin's events; keys in the *Keys* box.")

    # -- life cycle --------------------------------------------------------------------------------
    def on_load(self, ctx):
        fields = _events_fields(ctx.dataset)
        state = ctx.panel.state
        if not state.events_field or state.events_field not in fields:
            state.events_field = DEFAULT_EVENTS_FIELD if DEFAULT_EVENTS_FIELD in fields else \
                (fields[0] if fields else None)
        state.keys = ""
        self._remember(ctx, "keys_seen", "")
        self._select(ctx, None)  # the first pending event

    def on_change_current_sample(self, ctx):
        ctx.panel.state.playhead_s = None
        self._select(ctx, None)  # the first pending event

    def on_change_field(self, ctx):
        self._select(ctx, None)  # the first pending event

    # -- reading -----------------------------------------------------------------------------------
    def _review(self, ctx) -> SampleReview | None:
        field = ctx.panel.state.events_field
        if not ctx.current_sample or not field:
            return None
        sample = ctx.dataset[ctx.current_sample]
        if sample.metadata is None:
            sample.compute_metadata()
        return SampleReview(sample, field, reviewed_field_for(field), user=reviewer(getattr(ctx, "user", None)))

    def _remember(self, ctx, name: str, value=None, *, read: bool = False):
        """Server-side panel memory (see :data:`STORE`), one entry per open panel."""
        store, key = ctx.store(STORE), f"{ctx.panel_id}:{name}"
        if read:
            return store.get(key)
        store.set(key, value, ttl=STORE_TTL_S)
        return value

    def _selected(self, ctx) -> str | None:
        return self._remember(ctx, "selected", read=True)

    def _select(self, ctx, key: str | None) -> None:
        self._remember(ctx, "selected", key)

    def _order(self, ctx) -> str:
        return self._remember(ctx, "order", read=True) or "start"

    def _model(self, ctx) -> dict:
        """What the panel shows, read from the database and the panel's server-side memory on every render.

        Nothing of it is kept in the App's panel state: an event's answer can arrive after a later one's, and
        a stale copy there would show an edit undone.
        """
        review = self._review(ctx)
        rows = review.rows(self._order(ctx)) if review else []
        keys = [row["key"] for row in rows]
        selected = self._selected(ctx)
        if selected not in keys:
            pending = [row["key"] for row in rows if row["status"] == "pending"]
            selected = (pending or keys or [None])[0]
            self._select(ctx, selected)
        model = dict(rows=rows, keys=keys, selected=selected, review=review, order=self._order(ctx))
        if review is not None:
            model.update(sample_name=review.sample.filepath.rsplit("/", 1)[-1],
                         media_url="/media?filepath=" + quote(review.sample.filepath, safe=""),
                         reviewed_field=review.reviewed_field,
                         progress=review_progress(ctx.dataset, review.events_field, review.reviewed_field).as_dict())
        return model

    def _agreement(self, ctx) -> dict | None:
        run_key = f"{AGREEMENT_KEY}_marlin"
        if ctx.dataset is None or run_key not in ctx.dataset.list_runs():
            return None
        config = ctx.dataset.get_run_info(run_key).config
        metrics = getattr(config, "metrics", None) or {}
        return {name: metrics.get(name) for name in ("fiftyone_precision", "fiftyone_recall", "fiftyone_f1")}

    # -- edits -------------------------------------------------------------------------------------
    def _edit(self, ctx, method: str, *args) -> None:
        """Apply one edit to the selected row and select what it leaves (errors become a notice)."""
        state, selected = ctx.panel.state, self._selected(ctx)
        try:
            with _EDITS:
                review = self._review(ctx)
                if review is None:
                    raise ReviewEditError("open a video with Marlin's events first")
                needs_row = method != "add"
                if needs_row and not selected:
                    raise ReviewEditError("no event selected")
                selected = getattr(review, method)(*((selected,) if needs_row else ()), *args)
            state.message = ""
        except ReviewEditError as error:
            state.message = str(error)
            ctx.ops.notify(str(error), variant="warning")
        self._select(ctx, selected)

    def _playhead(self, ctx) -> float | None:
        value = ctx.panel.state.playhead_s
        return None if value is None else float(value)

    def accept(self, ctx):
        self._edit(ctx, "accept")
        self.step(ctx, 1, only_pending=True)

    def reject(self, ctx):
        self._edit(ctx, "reject")
        self.step(ctx, 1, only_pending=True)

    def relabel(self, ctx):
        self._edit(ctx, "relabel", ctx.panel.state.text or "")

    def nudge(self, ctx, edge: str, delta_s: float):
        self._edit(ctx, "nudge", edge, delta_s)

    def to_playhead(self, ctx, edge: str):
        if self._playhead(ctx) is None:
            ctx.panel.state.message = "play or seek the video first: the playhead is not known yet"
            return
        self._edit(ctx, "set_edge", edge, self._playhead(ctx))

    def split(self, ctx):
        self._edit(ctx, "split", self._playhead(ctx))

    def merge_next(self, ctx):
        self._edit(ctx, "merge_next")

    def add(self, ctx):
        self._edit(ctx, "add", ctx.panel.state.text or "", self._playhead(ctx))

    def step(self, ctx, offset: int, only_pending: bool = False):
        """Select the next (or previous) row; after a decision, the first pending one if any."""
        model = self._model(ctx)
        keys = model["keys"]
        if not keys:
            return
        if only_pending:
            pending = [row["key"] for row in model["rows"] if row["status"] == "pending"]
            if pending:
                self._select(ctx, pending[0])
            return
        index = keys.index(model["selected"]) if model["selected"] in keys else -1
        self._select(ctx, keys[max(0, min(len(keys) - 1, index + offset))])

    def next_sample(self, ctx):
        ids = ctx.view.values("id")
        if ctx.current_sample in ids and ids.index(ctx.current_sample) + 1 < len(ids):
            ctx.ops.open_sample(id=ids[ids.index(ctx.current_sample) + 1])
        else:
            ctx.panel.state.message = "this is the last sample of the view"

    def toggle_order(self, ctx):
        self._remember(ctx, "order", "start" if self._order(ctx) == "confidence" else "confidence")

    def evaluate(self, ctx):
        field = ctx.panel.state.events_field
        ctx.prompt(EVALUATE, params={"pred_field": field, "gt_field": reviewed_field_for(field), "mode": "events",
                                     "eval_key": AGREEMENT_KEY})

    # -- events from the App -----------------------------------------------------------------------
    def on_click_row(self, ctx):
        keys = self._model(ctx)["keys"]
        row = ctx.params.get("row")
        if isinstance(row, int) and 0 <= row < len(keys):
            self._select(ctx, keys[row])

    def on_button(self, ctx):
        self._run_key(ctx, ctx.params.get("key"))

    def on_keys(self, ctx):
        """Each new character typed in the Keys box is one action (see :data:`KEYS`)."""
        value = ctx.params.get("value") or ""
        with _EDITS:
            before = self._remember(ctx, "keys_seen", read=True) or ""
            self._remember(ctx, "keys_seen", value)
        for key in typed_keys(before, value):
            self._run_key(ctx, key)

    def _run_key(self, ctx, key: str | None) -> None:
        if key not in KEYS:
            return
        method, args, _ = KEYS[key]
        getattr(self, method)(ctx, *args)

    def on_playhead(self, ctx):
        seconds = ctx.params.get("playedSeconds", ctx.params.get("seconds"))
        if isinstance(seconds, (int, float)):
            ctx.panel.state.playhead_s = round(float(seconds), 2)

    # -- layout ------------------------------------------------------------------------------------
    def render(self, ctx):
        state = ctx.panel.state
        panel = types.Object()
        fields = _events_fields(ctx.dataset)
        if not fields:
            panel.md("No temporal labels to review: run *Caption with Marlin* or *Find events* first.", name="none")
            return types.Property(panel, view=types.GridView(orientation="vertical", padding=1))
        model = self._model(ctx)
        panel.md(self._header(ctx, model), name="header")
        choices = types.Dropdown(label="Marlin field")
        for name in fields:
            choices.add_choice(name, label=name)
        panel.enum("events_field", choices.values(), default=state.events_field, view=choices,
                   label="Marlin field", on_change=self.on_change_field)
        rows, selected = model["rows"], model["selected"]
        span = next(((row["start_s"], row["end_s"]) for row in rows if row["key"] == selected), None)
        if model.get("media_url"):
            url = model["media_url"] + (f"#t={span[0]:.2f},{span[1]:.2f}" if span else "")
            if url != state.player_url:  # the player restarts at the span's start: so does the playhead
                state.player_url, state.playhead_s = url, span[0] if span else 0.0
            panel.media_player("player", url, on_progress=self.on_playhead, on_seek=self.on_playhead,
                               controls=True, width="100%", height="240px")
        table = {"columns": [key for key, _ in COLUMNS],
                 "rows": [[i + 1, row["status"], row["label"], f"{row['start_s']:.1f}–{row['end_s']:.1f}",
                           "" if row["confidence"] is None else f"{row['confidence']:.2f}"]
                          for i, row in enumerate(rows)],
                 "selected_rows": [model["keys"].index(selected)] if selected in model["keys"] else []}
        # a name per content: the table shows its default, never a stale copy kept in the App's panel state
        panel.list(f"events_{abs(hash(str(table))) % 10**8}", types.Object(), default=table,
                   view=types.TableView(on_click_row=self.on_click_row,
                                        columns=[types.Column(key, label=label) for key, label in COLUMNS]))
        panel.str("text", label="Label text", description="New text for 'Set label' (l) and 'Add event' (+).")
        panel.str("keys", label="Keys", on_change=self.on_keys,
                  description="Click here, then type: each key is the button that shows it in brackets.")
        for row, keys in BUTTON_ROWS:
            buttons = panel.h_stack(row, align_x="left", gap=1)
            for key in keys:
                buttons.btn(f"key_{ord(key)}", label=f"{KEYS[key][2]} ({key})", on_click=self.on_button,
                            params={"key": key}, variant="outlined")
            if row == "moves":
                buttons.btn("evaluate", label="Evaluate agreement", icon="insights", on_click=self.evaluate)
        if state.message:
            panel.view("message", types.Notice(label=state.message))
        return types.Property(panel, view=types.GridView(orientation="vertical", padding=1, gap=1))

    def _header(self, ctx, model: dict) -> str:
        playhead = ctx.panel.state.playhead_s
        lines = [f"**{model.get('sample_name', '')}** → `{model.get('reviewed_field', '')}` · playhead "
                 f"{'–' if playhead is None else f'{playhead:.2f} s'} · "
                 f"order: {'least confident first' if model['order'] == 'confidence' else 'by start'}"]
        progress = model.get("progress")
        if progress:
            change = progress.get("mean_boundary_change_s")
            lines.append(
                f"Dataset: **{progress['samples_reviewed']}/{progress['samples_total']}** samples reviewed · "
                f"{progress['accepted']} accepted · {progress['fixed']} fixed · {progress['rejected']} rejected · "
                f"{progress['added']} added · mean boundary change "
                f"{'–' if change is None else f'{change:.2f} s'}")
        agreement = self._agreement(ctx)
        if agreement and agreement.get("fiftyone_f1") is not None:
            lines.append(f"Agreement (last evaluation `{AGREEMENT_KEY}`): precision "
                         f"{agreement['fiftyone_precision']:.1f} · recall {agreement['fiftyone_recall']:.1f} · "
                         f"F1 {agreement['fiftyone_f1']:.1f}")
        return "\n\n".join(lines)
