"""Many workers, one dataset: a caption, find or search run split into delegated operations over disjoint shards.

``queue_shards(uri, view, shards=N, **params)`` cuts the view's samples (sorted by id) into N disjoint,
near-equal sets and queues one delegated operation per set, each under its own run key
``<run_key>_shard<i>of<N>``. Each ``fiftyone delegated launch`` worker takes one queued operation at a time
(FiftyOne moves an operation to RUNNING only from QUEUED, atomically), so a shard runs once; start one worker
per GPU (``CUDA_VISIBLE_DEVICES``) or point every worker at one vLLM server (``model="openai://..."``).

Every sample is written by the one shard that holds it, and saved as soon as it is done (the operators'
own rule), so a killed worker loses at most its sample in flight; queueing the same run again resumes it:
samples already done with the same settings are skipped. :func:`shard_outcome` adds up the shards' run
records (:func:`.runs.run_history`) into one summary.
"""

from __future__ import annotations

import fiftyone.operators as foo

from .runs import run_history
from .validation import check

__all__ = ["check_params", "queue_shards", "shard_ids", "shard_outcome", "shard_run_key"]

COUNTS = ("done", "skipped", "failed")


def shard_ids(view, shards: int) -> list[list[str]]:
    """The view's sample ids, sorted, cut into ``shards`` disjoint contiguous sets (sizes differ by at most 1)."""
    if int(shards) < 1:
        raise ValueError(f"shards={shards!r}: need at least 1")
    ids = sorted(view.values("id"))
    size, extra = divmod(len(ids), int(shards))
    cuts, start = [], 0
    for index in range(int(shards)):
        stop = start + size + (1 if index < extra else 0)
        cuts.append(ids[start:stop])
        start = stop
    return [cut for cut in cuts if cut]


def shard_run_key(run_key: str, index: int, shards: int) -> str:
    """The run key of shard ``index`` (0-based) of ``shards``: ``<run_key>_shard<index+1>of<shards>``."""
    return f"{run_key}_shard{index + 1}of{shards}"


def queue_shards(operator_uri: str, sample_collection, shards: int, **params) -> list[str]:
    """Queue ``operator_uri`` (caption, find or search) as one delegated operation per shard; their ids, in order.

    Every parameter is checked first, as the operator's own run would (nothing queued when one is bad).

    Args:
        operator_uri: ``"@marlin/marlin/caption"``, ``".../find"`` or ``".../search"`` (each shard saves and
            adds to the same view: the saved view shows every shard's results).
        sample_collection: the dataset or view to process.
        shards: how many operations (workers that can share the run).
        **params: the operator's parameters (``run_key`` names the whole run; each shard gets its own key).
    """
    operator = foo.get_operator(operator_uri)
    view = sample_collection.view()
    dataset = view._root_dataset
    check_params(operator, params, view)  # nothing is queued when a parameter is bad
    run_key = params.pop("run_key", None) or operator.DEFAULTS["run_key"]
    queued = []
    cuts = shard_ids(view, shards)
    for index, ids in enumerate(cuts):
        result = foo.execute_operator(
            operator_uri,
            dict(view=dataset.select(ids, ordered=True),
                 params=dict(params, run_key=shard_run_key(run_key, index, len(cuts)))),
            request_delegation=True,
        )
        result.raise_exceptions()
        queued.append(str(result.result["id"]))
    return queued


def check_params(operator, params: dict, view) -> None:
    """The checks the operator's own run makes first (:mod:`.validation`), made before anything is queued.

    An operator with checks of its own beyond the shared ones (search: its settings, the view) exposes
    them as ``check_request(params, view)``; the others are checked by name.
    """
    own = getattr(operator, "check_request", None)
    if own is not None:
        own(dict(params), view)
    else:
        check(operator.config.name, dict(params), view._root_dataset)


def shard_outcome(dataset, run_key: str, shards: int) -> dict:
    """One summary of a sharded run: counts added up over every run of every shard, and each shard's status.

    Returns:
        ``{"done", "skipped", "failed", "shards": {shard run key: latest status}, "complete": bool}``
        (``complete`` when every shard's latest run completed).
    """
    summary = {name: 0 for name in COUNTS}
    statuses = {}
    for index in range(shards):
        key = shard_run_key(run_key, index, shards)
        records = run_history(dataset, key)
        for record in records:
            for name in COUNTS:
                summary[name] += int((record.get("outcome") or {}).get(name, 0))
        statuses[key] = records[-1]["status"] if records else "not started"
    return dict(summary, shards=statuses, complete=all(s == "completed" for s in statuses.values()))
