"""Every Marlin run of a dataset, as the runs panel lists it: run records joined with scheduled operations.

A run has a record in ``marlin_runs`` from its first moment (:mod:`.runs`); a scheduled run has a
FiftyOne delegated operation before that: queued until a worker picks it up, and failed without a
record when it could not even start (invalid parameters, a worker that cannot import the plugin).
:func:`list_runs` joins both (the record keeps its operation's id), newest first, so a queued, a
stranded or a failed scheduled run is visible in the App, not only in ``fiftyone delegated list``.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field

import fiftyone as fo
from fiftyone.operators.executor import ExecutionResult, ExecutionRunState

from .runs import run_history

__all__ = ["PLUGIN_PREFIX", "RunRow", "cancel_operation", "list_runs", "run_view"]

PLUGIN_PREFIX = "@marlin/marlin/"
CANCELLED = "cancelled from the Marlin runs panel"


@dataclass
class RunRow:
    """One run as the panel shows it."""

    key: str  # record id, or "op:<delegated operation id>" for a run without a record yet
    operation: str
    status: str  # queued, running, completed, failed, interrupted
    started_at: datetime.datetime | None
    scheduled: bool
    progress: str = ""  # "n/N ..." while running
    reason: str = ""  # why it failed or was interrupted
    model: str = ""
    samples: int | None = None
    counts: dict = field(default_factory=dict)  # done / skipped / failed
    wall_s: float | None = None
    settings: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    operator_uri: str = ""
    operation_id: str | None = None
    record_id: str | None = None

    @property
    def active(self) -> bool:
        return self.status in ("queued", "running")


def _operations(dataset: fo.Dataset) -> dict[str, object]:
    """This dataset's delegated operations of Marlin operators, by id (none when the service is unavailable)."""
    try:
        from fiftyone.operators.delegated import DelegatedOperationService

        found = DelegatedOperationService().list_operations(dataset_id=dataset._doc.id)
    except Exception:  # noqa: BLE001 - a database without the delegated service lists records only
        return {}
    return {str(op.id): op for op in found if str(op.operator or "").startswith(PLUGIN_PREFIX)}


def _op_reason(op) -> str:
    result = getattr(op, "result", None)
    message = (getattr(result, "error_message", None) or getattr(result, "error", None) or "").strip()
    lines = [line for line in message.splitlines() if line.strip()]
    return lines[-1] if lines else "the worker reported no reason"


def _op_progress(op) -> str:
    status = getattr(op, "status", None)
    return str(getattr(status, "label", None) or "") if status is not None else ""


def _op_params(op) -> dict:
    context = getattr(op, "context", None)
    request = getattr(context, "request_params", None) or {}
    return dict(request.get("params") or {})


def _from_operation(op) -> RunRow:
    state = op.run_state
    status = {ExecutionRunState.QUEUED: "queued", ExecutionRunState.SCHEDULED: "queued",
              ExecutionRunState.RUNNING: "running", ExecutionRunState.COMPLETED: "completed",
              ExecutionRunState.FAILED: "failed"}.get(state, str(state))
    params = _op_params(op)
    return RunRow(key=f"op:{op.id}", operation=str(op.operator).removeprefix(PLUGIN_PREFIX), status=status,
                  started_at=op.started_at or op.queued_at, scheduled=True, progress=_op_progress(op),
                  reason=_op_reason(op) if status == "failed" else "", model=str(params.get("model") or ""),
                  params=params, operator_uri=str(op.operator), operation_id=str(op.id))


def _from_record(record: dict, op) -> RunRow:
    outcome = record.get("outcome") or {}
    settings = record.get("settings") or {}
    status = record.get("status") or "running"
    row = RunRow(
        key=str(record["_id"]), operation=record.get("operation") or "", status=status,
        started_at=record.get("started_at"), scheduled=op is not None or bool(record.get("delegated_operation_id")),
        reason=(record.get("error") or "") if status in ("failed", "interrupted") else "",
        model=str((record.get("model") or {}).get("name_or_path") or settings.get("model") or ""),
        samples=(record.get("view") or {}).get("samples"),
        counts={name: outcome[name] for name in ("done", "skipped", "failed", "untouched") if name in outcome},
        wall_s=record.get("wall_s"), settings=settings, params=dict(record.get("params") or {}),
        operator_uri=record.get("operator_uri") or f"{PLUGIN_PREFIX}{record.get('operation')}",
        operation_id=record.get("delegated_operation_id"), record_id=str(record["_id"]),
    )
    if status == "running":
        if op is not None and op.run_state == ExecutionRunState.FAILED:
            row.status, row.reason = "failed", _op_reason(op)  # cancelled: the run stops between samples
        elif op is not None and _op_progress(op):
            row.progress = _op_progress(op)
        elif row.samples:
            finished = sum(row.counts.get(name, 0) for name in ("done", "skipped", "failed"))
            row.progress = f"{finished}/{row.samples}"
    return row


def list_runs(dataset: fo.Dataset, limit: int = 50) -> list[RunRow]:
    """The dataset's Marlin runs, newest first: every run record, and every scheduled run without one."""
    operations = _operations(dataset)
    rows, claimed = [], set()
    for record in run_history(dataset):
        op = operations.get(str(record.get("delegated_operation_id")))
        if op is not None:
            claimed.add(str(op.id))
        rows.append(_from_record(record, op))
    rows += [_from_operation(op) for op_id, op in operations.items() if op_id not in claimed]
    oldest = datetime.datetime.min
    rows.sort(key=lambda row: row.started_at or oldest, reverse=True)
    return rows[:limit]


def run_view(dataset: fo.Dataset, row: RunRow, errors_only: bool = False):
    """The samples the run ran on (its recorded view), or only those with an error from it."""
    stages = []
    record = None
    if row.record_id:
        from bson import ObjectId

        from .runs import COLLECTION
        import fiftyone.core.odm as foo_odm

        record = foo_odm.get_db_conn()[COLLECTION].find_one({"_id": ObjectId(row.record_id)}, {"view": 1})
    if record is not None:
        stages = [json.loads(stage) for stage in (record.get("view") or {}).get("stages") or []]
    view = fo.DatasetView._build(dataset, stages) if stages else dataset.view()
    if errors_only:
        error_field = _param(row.params, "error_field") or "marlin_error"
        if dataset.has_sample_field(error_field):
            view = view.exists(error_field)
        else:
            view = view.limit(0)
    return view


def _param(params: dict, name: str):
    advanced = params.get("advanced") if isinstance(params.get("advanced"), dict) else {}
    return params.get(name) or advanced.get(name)


def cancel_operation(operation_id: str) -> bool:
    """Mark a queued or running scheduled run failed ("cancelled"): a queued one never starts, a running
    one stops between samples (:func:`operators.base.delegated_stop_requested`). True when it was active."""
    from bson import ObjectId
    from fiftyone.operators.delegated import DelegatedOperationService

    service = DelegatedOperationService()
    op = service.get(ObjectId(operation_id))
    if op is None or op.run_state not in (ExecutionRunState.QUEUED, ExecutionRunState.SCHEDULED,
                                          ExecutionRunState.RUNNING):
        return False
    return service.set_failed(ObjectId(operation_id), result=ExecutionResult(error=CANCELLED,
                                                                             error_message=CANCELLED)) is not None
