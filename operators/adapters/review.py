"""FiftyOne adapter for reviewing Marlin's events: one sample's proposals and the person's decisions.

Marlin's field (``marlin_events`` or ``marlin_find``) is only read. The person's result goes to a reviewed field
(default ``<events_field>_reviewed``), a ``TemporalDetections`` that is ground truth from then on:

* each accepted, fixed or added event is a detection with its provenance: ``action`` (accepted / fixed /
  added), ``source_label_id``, ``source_label``, ``source_start_s`` / ``source_end_s`` /
  ``source_confidence`` (what Marlin proposed, kept here because a later Marlin run replaces its labels),
  ``reviewed_by``, ``reviewed_at`` (UTC, ISO 8601), ``start_s`` / ``end_s`` / ``time_range``;
* rejected proposals are kept on the field itself (``rejected``: a list of the same provenance), so they
  are not ground truth, not exported, and a later run proposing them again is shown as decided;
* ``review_of`` names the field reviewed; Marlin's operators refuse to write a field that has it
  (:func:`holds_reviewed_labels`, called by ``operators.run.validation``).

A sample whose every proposal is decided is tagged :data:`REVIEWED_TAG`. The edits themselves are
:mod:`marlin_core.review_edits`.
"""

from __future__ import annotations

import getpass
import os
from datetime import datetime, timezone

import fiftyone as fo
from fiftyone import ViewField as F

from marlin_core import review_edits as edits

from .display import set_default_active
from .labels import _detection, detection_span_s
from .seconds import ensure_seconds_field, seconds_field, span_texts

REVIEWED_TAG = "marlin_reviewed"
REVIEWED_SUFFIX = "_reviewed"
SOURCE_ATTRIBUTES = ("source_label_id", "source_label", "source_start_s", "source_end_s", "source_confidence")


def reviewed_field_for(events_field: str) -> str:
    """The default reviewed field of a Marlin field: ``<events_field>_reviewed``."""
    return f"{events_field}{REVIEWED_SUFFIX}"


def holds_reviewed_labels(dataset, field: str) -> bool:
    """Whether ``field`` holds a person's review (any sample's value carries ``review_of``)."""
    if dataset is None or not field or not dataset.has_sample_field(field):
        return False
    if getattr(dataset.get_field(field), "document_type", None) is not fo.TemporalDetections:
        return False
    return len(dataset.match(F(f"{field}.review_of").exists()).limit(1)) > 0


def reviewer(ctx_user=None) -> str:
    """Who reviews: the App user (FiftyOne Enterprise) else ``$USER`` where the App server runs."""
    for candidate in (getattr(ctx_user, "email", None), getattr(ctx_user, "name", None),
                      os.environ.get("USER")):
        if candidate:
            return str(candidate)
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _merged_sources(label) -> list[str]:
    """Ids of the other proposals merged into ``label`` (its own is ``source_label_id``)."""
    return list(label["merged_source_ids"] or []) if label.has_field("merged_source_ids") else []


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class SampleReview:
    """One sample's proposals and decisions; every edit saves the reviewed field at once.

    Rows (:meth:`rows`) are keyed ``p:<id>`` (a pending proposal), ``r:<id>`` (a reviewed label) or
    ``x:<i>`` (a rejected proposal); each edit returns the key of the row it leaves selected.
    """

    def __init__(self, sample: fo.Sample, events_field: str, reviewed_field: str | None = None,
                 user: str | None = None):
        self.sample, self.events_field = sample, events_field
        self.reviewed_field = reviewed_field or reviewed_field_for(events_field)
        self.user = user or reviewer()
        self.duration_s = sample.metadata.duration if sample.metadata else None
        current = sample[self.reviewed_field] if sample.has_field(self.reviewed_field) else None
        self.labels = list(current.detections) if current is not None else []
        self.rejected = list(current["rejected"] or []) if current is not None and current.has_field("rejected") \
            else []
        proposals = sample[events_field] if sample.has_field(events_field) else None
        self.proposals = {d.id: d for d in (proposals.detections if proposals is not None else [])}

    # -- reading ---------------------------------------------------------------------------------
    def _span(self, detection) -> tuple[float, float]:
        return detection_span_s(detection, self.sample.metadata)

    def _decided(self) -> tuple[set[str], list[tuple[str, tuple[float, float]]]]:
        ids, spans = set(), []
        for label in self.labels:
            for source in [label["source_label_id"]] + _merged_sources(label):
                if source:
                    ids.add(source)
            if label.has_field("source_label") and label["source_label"] is not None:
                spans.append((label["source_label"], (label["source_start_s"], label["source_end_s"])))
        for record in self.rejected:
            ids.add(record.get("source_label_id"))
            spans.append((record.get("label"), (record.get("start_s"), record.get("end_s"))))
        return ids, spans

    def pending(self) -> list[fo.TemporalDetection]:
        """Proposals not yet decided (by id, or by text and time for a later run's repeat)."""
        ids, spans = self._decided()
        return [d for d_id, d in self.proposals.items()
                if d_id not in ids and not edits.decided_before(d.label, self._span(d), spans)]

    def rows(self, order: str = "start") -> list[dict]:
        """Every row the panel lists: ``key, status, label, start_s, end_s, confidence``.

        ``order="confidence"`` puts pending proposals first, least confident first.
        """
        rows = [dict(key=f"p:{d.id}", status="pending", label=d.label, confidence=d.confidence,
                     **dict(zip(("start_s", "end_s"), self._span(d)))) for d in self.pending()]
        rows += [dict(key=f"r:{label.id}", status=label["action"], label=label.label,
                      confidence=label["source_confidence"], start_s=label["start_s"], end_s=label["end_s"])
                 for label in self.labels]
        rows += [dict(key=f"x:{i}", status="rejected", label=record.get("label"),
                      confidence=record.get("confidence"), start_s=record.get("start_s"),
                      end_s=record.get("end_s")) for i, record in enumerate(self.rejected)]
        if order == "confidence":
            rows.sort(key=lambda r: (r["status"] != "pending", r["confidence"] if r["confidence"] is not None
                                     else 2.0, r["start_s"]))
        else:
            rows.sort(key=lambda r: (r["start_s"], r["end_s"]))
        return rows

    # -- writing ---------------------------------------------------------------------------------
    def _provenance(self, proposal) -> dict:
        if proposal is None:
            return dict.fromkeys(SOURCE_ATTRIBUTES)
        start_s, end_s = self._span(proposal)
        return dict(source_label_id=proposal.id, source_label=proposal.label, source_start_s=start_s,
                    source_end_s=end_s, source_confidence=proposal.confidence)

    def _make(self, label: str, span, action: str, provenance: dict, **extra) -> fo.TemporalDetection:
        start_s, end_s = edits.clamp_span(*span, self.duration_s)
        detection = _detection(start_s, end_s, self.sample.metadata, label=label, start_s=start_s, end_s=end_s,
                               action=action, reviewed_by=self.user, reviewed_at=_now(), **provenance, **extra)
        self.labels.append(detection)
        return detection

    def _reviewed(self, key: str) -> fo.TemporalDetection:
        """The reviewed label behind ``key``; a pending proposal is accepted first, to be edited."""
        kind, _, ident = key.partition(":")
        if kind == "r":
            for label in self.labels:
                if label.id == ident:
                    return label
        if kind == "p" and ident in self.proposals:
            proposal = self.proposals[ident]
            return self._make(proposal.label, self._span(proposal), "accepted", self._provenance(proposal))
        if kind == "x" and ident.isdigit() and int(ident) < len(self.rejected):
            record = self.rejected.pop(int(ident))
            provenance = dict(source_label_id=record.get("source_label_id"), source_label=record.get("label"),
                              source_start_s=record.get("start_s"), source_end_s=record.get("end_s"),
                              source_confidence=record.get("confidence"))
            return self._make(record.get("label"), (record["start_s"], record["end_s"]), "accepted", provenance)
        raise edits.ReviewEditError(f"{self.sample.filepath}: no event {key!r} to review (reload the panel)")

    def _changed(self, label: fo.TemporalDetection, span=None, text: str | None = None) -> None:
        start_s, end_s = edits.clamp_span(*(span or (label["start_s"], label["end_s"])), self.duration_s)
        fresh = _detection(start_s, end_s, self.sample.metadata, label=text if text is not None else label.label)
        label.support, label.label = fresh.support, fresh.label
        label["start_s"], label["end_s"], label["time_range"] = start_s, end_s, fresh["time_range"]
        if label["action"] == "accepted":
            label["action"] = "fixed"
        label["reviewed_by"], label["reviewed_at"] = self.user, _now()

    def accept(self, key: str) -> str:
        return self._finish(self._reviewed(key))

    def reject(self, key: str) -> str:
        kind, _, ident = key.partition(":")
        if kind == "x":
            return key
        label = None if kind == "p" else self._reviewed(key)
        proposal = self.proposals.get(ident) if kind == "p" else None
        if kind == "p" and proposal is None:
            raise edits.ReviewEditError(f"{self.sample.filepath}: no event {key!r} to review (reload the panel)")
        if label is not None:
            self.labels.remove(label)
            if label["action"] == "added" or not label["source_label_id"]:
                return self._save(None)
            record = dict(source_label_id=label["source_label_id"], label=label["source_label"],
                          start_s=label["source_start_s"], end_s=label["source_end_s"],
                          confidence=label["source_confidence"])
        else:
            start_s, end_s = self._span(proposal)
            record = dict(source_label_id=proposal.id, label=proposal.label, start_s=start_s, end_s=end_s,
                          confidence=proposal.confidence)
        self.rejected.append(dict(record, action="rejected", reviewed_by=self.user, reviewed_at=_now()))
        return self._save(f"x:{len(self.rejected) - 1}")

    def relabel(self, key: str, text: str) -> str:
        text = (text or "").strip()
        if not text:
            raise edits.ReviewEditError("type the event's new text first")
        label = self._reviewed(key)
        self._changed(label, text=text)
        return self._finish(label)

    def nudge(self, key: str, edge: str, delta_s: float) -> str:
        label = self._reviewed(key)
        self._changed(label, edits.nudge((label["start_s"], label["end_s"]), edge, delta_s, self.duration_s))
        return self._finish(label)

    def set_edge(self, key: str, edge: str, at_s: float) -> str:
        label = self._reviewed(key)
        self._changed(label, edits.set_edge((label["start_s"], label["end_s"]), edge, at_s, self.duration_s))
        return self._finish(label)

    def split(self, key: str, at_s: float | None) -> str:
        label = self._reviewed(key)
        span = (label["start_s"], label["end_s"])
        left, right = edits.split(span, (span[0] + span[1]) / 2 if at_s is None else at_s)
        self._changed(label, left)
        provenance = {name: label[name] for name in SOURCE_ATTRIBUTES}
        self._make(label.label, right, "fixed" if provenance["source_label_id"] else "added", provenance)
        return self._finish(label)

    def merge_next(self, key: str) -> str:
        keys = [row["key"] for row in self.rows("start") if row["status"] != "rejected"]
        if key not in keys or keys.index(key) + 1 >= len(keys):
            raise edits.ReviewEditError("no next event to merge with")
        following = keys[keys.index(key) + 1]
        label, other = self._reviewed(key), self._reviewed(following)
        merged = edits.merge((label["start_s"], label["end_s"]), (other["start_s"], other["end_s"]))
        sources = _merged_sources(label) + [other["source_label_id"]] + _merged_sources(other)
        self.labels.remove(other)
        self._changed(label, merged)
        label["merged_source_ids"] = [source for source in sources if source]
        if label["action"] == "added" and other["source_label_id"]:
            label["action"] = "fixed"
        return self._finish(label)

    def add(self, text: str, at_s: float | None) -> str:
        text = (text or "").strip()
        if not text:
            raise edits.ReviewEditError("type the new event's text first")
        return self._finish(self._make(text, edits.new_span(at_s, self.duration_s), "added",
                                       self._provenance(None)))

    def _finish(self, label) -> str:
        return self._save(f"r:{label.id}")

    def _save(self, key: str | None) -> str | None:
        self.sample[self.reviewed_field] = fo.TemporalDetections(
            detections=sorted(self.labels, key=lambda d: (d["start_s"], d["end_s"])),
            review_of=self.events_field, rejected=self.rejected)
        if not self.pending() and REVIEWED_TAG not in self.sample.tags:
            self.sample.tags.append(REVIEWED_TAG)
        if ensure_seconds_field(self.sample._dataset, self.reviewed_field):  # the spans in seconds on grid tiles
            self.sample[seconds_field(self.reviewed_field)] = span_texts(self.sample[self.reviewed_field],
                                                                         self.sample.metadata)
            set_default_active(self.sample._dataset, show=[seconds_field(self.reviewed_field)])
        self.sample.save()
        return key


def review_progress(view, events_field: str, reviewed_field: str | None = None) -> edits.ReviewProgress:
    """The figures of a dataset's (or view's) review: samples, label counts, mean boundary change."""
    reviewed_field = reviewed_field or reviewed_field_for(events_field)
    dataset = view._root_dataset
    total = len(view.exists(events_field)) if dataset.has_sample_field(events_field) else 0
    if not dataset.has_sample_field(reviewed_field):
        return edits.review_progress(total, 0, [])
    done = view.exists(reviewed_field)
    reviewed = len(done.match_tags(REVIEWED_TAG))
    labels = []
    for sample in done.select_fields(reviewed_field).iter_samples():
        review = sample[reviewed_field]
        for label in review.detections:
            source = (label["source_start_s"], label["source_end_s"]) if label.has_field("source_start_s") \
                else (None, None)
            change = None if None in source else edits.boundary_change_s(source, (label["start_s"], label["end_s"]))
            labels.append((label["action"] if label.has_field("action") else "added", change))
        labels += [("rejected", None)] * len(review["rejected"] or [] if review.has_field("rejected") else [])
    return edits.review_progress(total, reviewed, labels)
