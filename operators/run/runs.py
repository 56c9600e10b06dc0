"""Provenance: a record for every run, and the last successful one as a FiftyOne custom run.

Two places, each with one job:

* ``marlin_runs`` (a collection in FiftyOne's database): one document per run, inserted when the run
  starts (status ``running``, the pid and host that run it, the view it runs on) and updated when it ends
  (``completed``, ``failed`` or ``interrupted``, outcome, wall time, the resolved model: commit, device,
  dtype). A run killed with ``kill -9`` cannot say so itself: a ``running`` record whose process is gone
  (same host, pid not alive) or whose heartbeat is older than :data:`HEARTBEAT_STALE_S` is marked
  ``interrupted`` by the next run or read (:func:`run_history`). Inserts and single-document updates are
  atomic, so concurrent runs never overwrite each other's records.
* the FiftyOne custom run ``run_key`` (``dataset.get_run_info(key).config``): registered on the view that
  ran, only when a run completes, so a failed or killed run never replaces what the last successful run
  recorded, and users keep FiftyOne's own ``list_runs`` / ``get_run_info``.

The fingerprint of the settings that change the answer is stored on each label, so a rerun knows which
samples are already done with the same settings.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import socket
import time
from importlib import metadata as importlib_metadata

import fiftyone as fo
import fiftyone.core.odm as foo_odm
from bson import ObjectId

from marlin_core.processes import process_alive

__all__ = [
    "HEARTBEAT_STALE_S", "RunRecord", "latest_outcome", "mark_interrupted", "package_versions", "run_history", "settings_fingerprint",
]

PACKAGES = ("fiftyone-marlin", "torch", "transformers", "torchcodec", "qwen-vl-utils", "fiftyone")
COLLECTION = "marlin_runs"
# A running run refreshes its heartbeat after every window and sample; a CPU window of the real model takes
# minutes, so only a much older heartbeat (from another host, where the pid cannot be checked) means dead.
HEARTBEAT_STALE_S = 3600.0


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def settings_fingerprint(settings) -> str:
    """Short stable hash of the settings that determine the model's answer.

    With ``weights`` (what the model is) present, the strings naming the model are left out, so the same
    weights under another path or name give the same fingerprint.
    """
    if isinstance(settings, dict) and settings.get("weights"):
        settings = {k: v for k, v in settings.items() if k not in ("model", "revision")}
    encoded = json.dumps(settings, sort_keys=True, default=str).encode()
    return hashlib.sha1(encoded).hexdigest()[:12]


def _records():
    return foo_odm.get_db_conn()[COLLECTION]


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def _is_dead(record: dict) -> bool:
    if record.get("host") == socket.gethostname() and record.get("pid"):
        if record["pid"] == os.getpid():
            return False
        return not process_alive(record["pid"])
    heartbeat = record.get("heartbeat_at") or record.get("started_at")
    return heartbeat is None or (_now() - heartbeat).total_seconds() > HEARTBEAT_STALE_S


def mark_interrupted(dataset: fo.Dataset) -> int:
    """Mark this dataset's ``running`` records whose process is gone as ``interrupted``; return how many."""
    marked = 0
    for record in _records().find({"dataset_id": dataset._doc.id, "status": "running"}):
        if _is_dead(record):
            result = _records().update_one(
                {"_id": record["_id"], "status": "running"},
                {"$set": {"status": "interrupted", "ended_at": _now(),
                          "error": "the process stopped without finishing (killed or crashed)"}},
            )
            marked += result.modified_count
    return marked


def run_history(dataset: fo.Dataset, run_key: str | None = None) -> list[dict]:
    """This dataset's run records, oldest first (interrupted runs already marked as such)."""
    mark_interrupted(dataset)
    query = {"dataset_id": dataset._doc.id}
    if run_key is not None:
        query["run_key"] = run_key
    return list(_records().find(query, {"_id": 1, "run_key": 1, "operation": 1, "status": 1, "outcome": 1,
                                        "started_at": 1, "ended_at": 1, "wall_s": 1, "view": 1, "model": 1,
                                        "settings": 1, "error": 1, "pid": 1, "host": 1, "operator_uri": 1,
                                        "params": 1, "delegated_operation_id": 1,
                                        "heartbeat_at": 1}).sort([("started_at", 1), ("_id", 1)]))


def latest_outcome(dataset: fo.Dataset) -> dict | None:
    """The summary of the last run this process started on ``dataset`` (what an SDK caller is returned)."""
    record = _records().find_one({"dataset_id": dataset._doc.id, "pid": os.getpid(), "host": socket.gethostname()},
                                 sort=[("started_at", -1), ("_id", -1)])
    if record is None:
        return None
    return dict(record.get("outcome") or {}, run_key=record["run_key"], status=record["status"])


def _view_description(view) -> dict:
    """The view as FiftyOne serialises it (its stages), and its saved name when it has one."""
    return {"stages": [json.dumps(stage, default=str) for stage in view._serialize()],
            "name": getattr(view, "name", None), "samples": len(view)}


class RunRecord:
    """The record of one run: :meth:`start`, then :meth:`heartbeat` while working, then one ending."""

    def __init__(self, view, run_key: str, operation: str, settings: dict):
        self.view, self.run_key, self.operation, self.settings = view, run_key, operation, settings
        self.dataset = view._root_dataset
        self.id: ObjectId | None = None
        self.model: dict = {}
        self._started = time.monotonic()
        self._last_beat = 0.0

    def start(self) -> RunRecord:
        mark_interrupted(self.dataset)
        now = _now()
        self.id = _records().insert_one({
            "dataset_id": self.dataset._doc.id, "dataset": self.dataset.name, "run_key": self.run_key,
            "operation": self.operation, "status": "running", "started_at": now, "heartbeat_at": now,
            "pid": os.getpid(), "host": socket.gethostname(), "view": _view_description(self.view),
            "settings": json.loads(json.dumps(self.settings, default=str)),
            "settings_fingerprint": settings_fingerprint(self.settings), "versions": package_versions(),
            "outcome": {},
        }).inserted_id
        return self

    def annotate(self, values: dict) -> None:
        """Keep more about the run (the operator, its parameters, the delegated operation's id)."""
        self._update(json.loads(json.dumps(values, default=str)))

    def set_model(self, marlin) -> None:
        """Record what was actually loaded: resolved commit (hub models), device and dtype."""
        model = getattr(marlin, "model", None)
        config = getattr(model, "config", None)
        self.model = {
            "name_or_path": getattr(marlin, "name_or_path", None) or self.settings.get("model"),
            "revision": self.settings.get("revision"),
            "commit": getattr(config, "_commit_hash", None),
            "device": str(getattr(marlin, "device", "")),
            "dtype": str(getattr(model, "dtype", "")),
        }
        self._update({"model": self.model})

    def heartbeat(self, outcome: dict | None = None) -> None:
        """Show the run is alive (at most every few seconds), with its outcome so far."""
        if time.monotonic() - self._last_beat < 2.0 and outcome is None:
            return
        self._last_beat = time.monotonic()
        self._update({"heartbeat_at": _now(), **({"outcome": outcome} if outcome is not None else {})})

    def finish(self, status: str, outcome: dict, error: str | None = None, *, register: bool = True) -> None:
        """End the record; a completed run also becomes the FiftyOne run ``run_key`` on its view.

        ``register=False`` for runs FiftyOne records itself (an evaluation).
        """
        wall_s = time.monotonic() - self._started
        self._update({"status": status, "ended_at": _now(), "wall_s": wall_s, "outcome": outcome,
                      "error": error})
        if status == "completed" and register:
            config = self.view.init_run(
                method=f"marlin.{self.operation}", settings=self.settings,
                settings_fingerprint=settings_fingerprint(self.settings), versions=package_versions(),
                outcome=outcome, model=self.model, run_id=str(self.id), wall_s=wall_s, status=status,
            )
            self.view.register_run(self.run_key, config, overwrite=True, cleanup=False)

    def _update(self, values: dict) -> None:
        if self.id is not None:
            _records().update_one({"_id": self.id}, {"$set": values})
