"""Every parameter checked before any work: one place the form and ``execute`` both ask.

:func:`problems` returns ``{parameter: reason}`` (empty = all good). ``resolve_input`` can mark each
named input ``invalid`` with its reason (Execute disabled); ``execute`` calls :func:`check` first,
before the model loads, and raises one error listing them all.
"""

from __future__ import annotations

import keyword
import math

import fiftyone as fo

from marlin_core.queries import SPECIAL_TOKEN_PATTERN, parse_queries, query_problem
from marlin_core.windows import DEFAULT_OVERLAP_S

from ..adapters.evaluation import foreign_copy_fields
from ..adapters.labels import field_ownership, samples_with_foreign_text
from ..adapters.review import holds_reviewed_labels
from .model_check import model_problem

__all__ = ["RESERVED_FIELDS", "check", "problems"]

# Fields FiftyOne owns on every sample (or video sample); writing labels there would break the dataset.
RESERVED_FIELDS = frozenset({"id", "_id", "filepath", "tags", "metadata", "media_type", "frames", "created_at",
                             "last_modified_at", "_media_type", "_rand", "_dataset_id", "support"})
DEVICES = ("auto", "cpu", "cuda", "mps")
MODES = ("events", "grounding")
# Ranges outside which a value is a typo, not a choice (marlin-facts.md: 2 fps, <= 240 frames per call).
MAX_FPS = 60.0
MIN_FRAMES = 2
MIN_PIXELS = 28 * 28

TEMPORAL = fo.TemporalDetections
# (parameter, default, kind): kind is the document type of a labels field, or the FiftyOne field class
OUTPUTS = {
    "caption": (("events_field", "marlin_events", TEMPORAL), ("scene_field", "marlin_scene", fo.StringField),
                ("caption_field", "marlin_caption", fo.StringField), ("error_field", "marlin_error", fo.StringField)),
    "find": (("find_field", "marlin_find", TEMPORAL), ("error_field", "marlin_error", fo.StringField)),
    # search writes its results and errors; it reads the caption fields (and fills them for uncaptioned videos)
    "search": (("search_field", "marlin_search", TEMPORAL), ("events_field", "marlin_events", TEMPORAL),
               ("scene_field", "marlin_scene", fo.StringField), ("error_field", "marlin_error", fo.StringField)),
}


def _name_problem(name) -> str | None:
    if not isinstance(name, str) or not name.strip():
        return "a field name is needed"
    if name in RESERVED_FIELDS:
        return f"'{name}' is a field FiftyOne reserves; choose another name"
    if name.startswith("_"):
        return f"'{name}': names starting with '_' are FiftyOne's private fields"
    if "." in name or "$" in name or not name.replace("_", "a").isalnum() or name[0].isdigit():
        return f"'{name}': use letters, digits and '_' only (no dots: nested fields cannot be written)"
    return None


def _type_problem(dataset, name: str, kind) -> str | None:
    """Why an existing field ``name`` cannot hold ``kind`` values."""
    if dataset is None or not dataset.has_sample_field(name):
        return None
    existing = dataset.get_field(name)
    if kind is TEMPORAL:
        if getattr(existing, "document_type", None) is not TEMPORAL:
            return f"'{name}' exists as {type(existing).__name__} ({getattr(existing, 'document_type', None)}), " \
                   "not TemporalDetections; choose another name"
    elif not isinstance(existing, kind):
        return f"'{name}' exists as {type(existing).__name__}, not {kind.__name__}; choose another name"
    return None


def _reviewed_problem(dataset, name: str, kind) -> str | None:
    """A field holding a person's review of Marlin's events is never Marlin's output, even with overwrite."""
    if kind is TEMPORAL and holds_reviewed_labels(dataset, name):
        return f"'{name}' holds reviewed labels (a person's corrections); Marlin never writes there"
    return None


def _derived(operation: str, values: dict) -> dict[str, tuple[str, object]]:
    """Fields a run writes beside the named ones: ``{field: (parameter it derives from, kind)}``."""
    derived = {}
    if operation == "find":
        find_field = values.get("find_field") or "marlin_find"
        derived[f"{find_field}_not_found"] = ("find_field", fo.ListField)
        derived[f"{find_field}_partial"] = ("find_field", fo.DictField)
    if operation == "caption":
        derived[f"{values.get('events_field') or 'marlin_events'}_partial"] = ("events_field", fo.DictField)
    return derived


def _field_problems(operation: str, values: dict, dataset) -> dict[str, str]:
    found, owners = {}, {}
    for param, default, kind in OUTPUTS[operation]:
        name = values.get(param) or default
        reason = _name_problem(name) or _type_problem(dataset, name, kind) or _reviewed_problem(dataset, name, kind)
        if reason is None and name in owners:
            reason = f"'{name}' is also the {owners[name]}; each output needs its own field"
        if reason:
            found[param] = reason
        owners.setdefault(name, param)
    for name, (param, kind) in _derived(operation, values).items():
        if param in found:
            continue
        if name in owners:
            found[param] = f"'{name}' (written beside '{values.get(param)}') is also the {owners[name]}"
        elif (reason := _type_problem(dataset, name, kind)) is not None:
            found[param] = f"{reason} (written beside this field)"
    return found


def _ownership_problems(operation: str, values: dict, dataset, found: dict) -> dict[str, str]:
    """Output fields holding only labels Marlin did not make (ground truth, say): written only with overwrite.

    A field carrying Marlin's default name, or holding Marlin's labels on some sample, is Marlin's: a user's
    labels inside it are kept label by label (:mod:`operators.adapters.labels`). Any other field holding
    values is someone else's, and a run adds its labels there only with ``overwrite`` (still keeping theirs).
    """
    if dataset is None or values.get("overwrite"):
        return {}
    problems_found = {}
    events = values.get("events_field") or "marlin_events"
    for param, default, kind in OUTPUTS[operation]:
        name = values.get(param) or default
        if param == "error_field" or param in found or name == default:
            continue
        if kind is TEMPORAL:
            marlin, foreign = field_ownership(dataset, name)
            foreign = foreign if not marlin else 0
        else:
            foreign = samples_with_foreign_text(dataset, name, events)
        if foreign:
            problems_found[param] = (
                f"'{name}' holds values Marlin did not make on {foreign} sample(s); Marlin writes into such a "
                "field only with overwrite ('Recompute done samples'), and keeps those values even then")
    return problems_found


def _number(values: dict, name: str, *, integer: bool = False):
    """The parameter as a number, None when not given; raises ValueError when it is not one."""
    value = values.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError
    number = int(value) if integer and float(value) == int(float(value)) else float(value)
    if integer and not isinstance(number, int):
        raise ValueError
    if not math.isfinite(number):
        raise ValueError
    return number


def _range_problems(values: dict, checks) -> dict[str, str]:
    found = {}
    for name, integer, ok, reason in checks:
        try:
            value = _number(values, name, integer=integer)
        except (TypeError, ValueError):
            found[name] = f"{values.get(name)!r} is not {'a whole number' if integer else 'a number'}"
            continue
        if value is not None and not ok(value):
            found[name] = f"{value}: {reason}"
    return found


def _model_problems(values: dict) -> dict[str, str]:
    found = _range_problems(values, (
        ("window_s", False, lambda v: v > DEFAULT_OVERLAP_S,
         f"windows must be longer than their {DEFAULT_OVERLAP_S:g} s overlap (leave empty for the default)"),
        ("fps", False, lambda v: 0 < v <= MAX_FPS, f"frames per second must be in (0, {MAX_FPS:g}]"),
        ("max_frames", True, lambda v: v >= MIN_FRAMES, f"at least {MIN_FRAMES} frames"),
        ("max_pixels", True, lambda v: v >= MIN_PIXELS, f"at least {MIN_PIXELS} pixels (one 28x28 patch)"),
        ("batch_size", True, lambda v: v >= 1, "at least 1"),
        ("max_new_tokens", True, lambda v: v >= 1, "at least 1"),
        ("timeout_s", False, lambda v: v > 0, "seconds must be more than 0 (leave empty for the default)"),
    ))
    device = values.get("device")
    if device not in (None, "") and device not in DEVICES:
        found["device"] = f"{device!r}: choose one of {', '.join(DEVICES)}"
    run_key = values.get("run_key")
    if run_key not in (None, "") and (not str(run_key).isidentifier() or keyword.iskeyword(str(run_key))):
        found["run_key"] = f"{run_key!r}: a run key is a name made of letters, digits and '_'"
    return found


def _query_problems(values: dict) -> dict[str, str]:
    queries = parse_queries(values.get("queries"))
    if not queries:
        return {"queries": "enter at least one query"}
    bad = [problem for query in queries if (problem := query_problem(query))]
    return {"queries": "; ".join(bad)} if bad else {}


def _prompt_problems(values: dict) -> dict[str, str]:
    """A caption prompt spelling a control token (``<|video_pad|>``) would break every sample's chat prompt."""
    prompt = values.get("prompt")
    if prompt in (None, ""):
        return {}
    if not isinstance(prompt, str):
        return {"prompt": f"{prompt!r} is not text"}
    found = SPECIAL_TOKEN_PATTERN.search(prompt)
    return {"prompt": f"contains the special token text {found.group()!r}; remove it"} if found else {}


def _evaluate_problems(values: dict, dataset) -> dict[str, str]:
    found = _range_problems(values, (("iou", False, lambda v: 0 < v <= 1, "the tIoU threshold must be in (0, 1]"),))
    if values.get("mode") not in (None, "") and values.get("mode") not in MODES:
        found["mode"] = f"{values.get('mode')!r}: choose one of {', '.join(MODES)}"
    names = {}
    for param, default in (("pred_field", "marlin_events"), ("gt_field", "ground_truth")):
        name = values.get(param) or default
        names[param] = name
        if dataset is not None and not dataset.has_sample_field(name):
            found[param] = f"the dataset has no field '{name}'"
        elif (reason := _type_problem(dataset, name, TEMPORAL)) is not None:
            found[param] = reason
    if names["pred_field"] == names["gt_field"] and "gt_field" not in found:
        found["gt_field"] = "ground truth and predictions must be different fields"
    eval_key = values.get("eval_key") or "marlin_eval"
    if not str(eval_key).isidentifier() or keyword.iskeyword(str(eval_key)) or str(eval_key).startswith("_"):
        found["eval_key"] = f"{eval_key!r}: an evaluation key is a name made of letters, digits and '_'"
    elif any(f"{eval_key}{suffix}" in names.values() for suffix in ("", "_predictions", "_ground_truth", "_iou")):
        found["eval_key"] = f"{eval_key!r}: the evaluation would write over the fields it reads"
    elif dataset is not None and (foreign := foreign_copy_fields(dataset, str(eval_key))):
        found["eval_key"] = f"{eval_key!r}: fields {', '.join(foreign)} exist and are not this evaluation's"
    return found


def problems(operation: str, params: dict, dataset: fo.Dataset | None) -> dict[str, str]:
    """Every problem of ``params`` for ``operation`` (``caption``, ``find``, ``search`` or ``evaluate``).

    Args:
        operation: the operator's name.
        params: the request's parameters as given (form or SDK), before defaults.
        dataset: the dataset the run writes to (None: only the checks that need no dataset).

    Returns:
        ``{parameter name: reason}``; empty when the run can start.
    """
    values = dict(params or {})
    if operation == "evaluate":
        return _evaluate_problems(values, dataset)
    found = _model_problems(values)
    if (reason := model_problem(values.get("model"), values.get("revision"))) is not None:
        found["model"] = reason
    found.update(_field_problems(operation, values, dataset))
    found.update(_ownership_problems(operation, values, dataset, found))
    if operation == "find":
        found.update(_query_problems(values))
    if operation == "search":
        found.update(_query_problems(values))
    if operation == "caption":
        found.update(_prompt_problems(values))
    return found


def check(operation: str, params: dict, dataset: fo.Dataset | None) -> None:
    """Raise one ``ValueError`` listing every problem, before any work starts."""
    found = problems(operation, params, dataset)
    if found:
        listed = "; ".join(f"{name}: {reason}" for name, reason in found.items())
        raise ValueError(f"{operation}: invalid parameters: {listed}")
