"""Label writes that two runs at once cannot lose: compare-and-swap on the fields being changed.

Every write of a Marlin operator goes through :func:`update_sample`: read the sample, compute the new
values of the fields it changes from what it read, and write them only if those fields still hold what
was read (the filter repeats their stored values); when another process changed one of them in between,
read again and redo the merge. Fields the write does not change are never part of the write, so a
concurrent evaluation writing its own fields, or the user tagging the sample, neither conflicts nor is lost.

Why not the alternatives the issue names:

* ``$push``/``$pull`` per label: a find answer changes three things together (the query's detection, the
  ``searched`` list with its settings fingerprint, the not-found list), and MongoDB refuses ``$pull`` and
  ``$push`` on one array in one update, so the pieces would be written by separate updates that a kill
  can split.
* ``last_modified_at`` as the version: it has millisecond resolution and FiftyOne's own writers set it
  from the clock, so two writes in one millisecond could pass a stale merge; it also makes every unrelated
  write (a tag) a conflict. Comparing the changed fields themselves has neither problem.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping

import fiftyone as fo
from bson import ObjectId

from ..adapters.seconds import seconds_updates

__all__ = ["WriteConflictError", "ensure_fields", "update_sample"]

# Two processes writing the same sample retry a handful of times at most; far more means a bug.
MAX_ATTEMPTS = 100


class WriteConflictError(RuntimeError):
    """A sample kept changing under the write (never expected outside a bug)."""


def _stored(value):
    """A FiftyOne value as MongoDB stores it (labels are embedded documents)."""
    return value.to_mongo() if hasattr(value, "to_mongo") else value


def _snapshot(dataset: fo.Dataset, raw: dict) -> fo.Sample:
    """A private read-only ``Sample`` over ``raw``.

    ``Sample.from_doc`` would hand back the object FiftyOne caches for this sample in this process,
    whose fields may predate another process's write; the merge must see what the database holds.
    """
    sample = fo.Sample.__new__(fo.Sample)
    sample._doc = dataset._sample_dict_to_doc(dict(raw))
    sample._dataset = dataset
    sample._frames = None
    return sample


def update_sample(dataset: fo.Dataset, sample_id: str, change: Callable[[fo.Sample], Mapping | None]) -> bool:
    """Apply ``change`` to the sample atomically with respect to its changed fields.

    Args:
        dataset: the sample's dataset (its schema already holds the fields ``change`` writes; see
            :func:`ensure_fields`).
        sample_id: the sample to change.
        change: called with a fresh copy of the sample (read-only use); returns ``{field: new value}``
            (None deletes the value) or None/{} for "nothing to write". It may be called several times.

    Returns:
        True when something was written, False when ``change`` asked for nothing or the sample is gone.
    """
    collection = dataset._sample_collection
    oid = ObjectId(sample_id)
    for _ in range(MAX_ATTEMPTS):
        raw = collection.find_one({"_id": oid})
        if raw is None:
            return False
        snapshot = _snapshot(dataset, raw)
        updates = change(snapshot)
        if not updates:
            return False
        # the events' seconds texts for grid tiles change in the same write as the labels they show
        updates = {**updates, **seconds_updates(dataset, updates, snapshot)}
        condition = {"_id": oid}
        for field in updates:
            condition[field] = raw[field] if field in raw else None
        new_values = {field: _stored(value) for field, value in updates.items() if value is not None}
        removed = {field: "" for field, value in updates.items() if value is None}
        operation = {"$set": dict(new_values, last_modified_at=datetime.datetime.utcnow())}
        if removed:
            operation["$unset"] = removed
        if collection.update_one(condition, operation).matched_count == 1:
            # samples this process holds in memory (FiftyOne keeps one object per sample) see the write
            fo.Sample._reload_doc(dataset._sample_collection_name, sample_id)
            return True
    raise WriteConflictError(f"sample {sample_id}: still changing after {MAX_ATTEMPTS} attempts")


def ensure_fields(dataset: fo.Dataset, fields: Mapping[str, dict]) -> None:
    """Declare ``{field: add_sample_field kwargs}`` on the dataset when missing.

    Schema changes rewrite the dataset document, so two processes adding fields at once can drop one
    declaration; the dataset is re-read and the check repeated until every field is declared.
    """
    for _ in range(MAX_ATTEMPTS):
        dataset.reload()
        missing = {name: kwargs for name, kwargs in fields.items() if not dataset.has_sample_field(name)}
        if not missing:
            return
        for name, kwargs in missing.items():
            try:
                dataset.add_sample_field(name, **kwargs)
            except ValueError:
                pass  # declared by another process since the reload; checked again above
    raise WriteConflictError(f"dataset {dataset.name!r}: could not declare {sorted(fields)}")
