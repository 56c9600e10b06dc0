"""marlin_core: Marlin-2B video understanding (caption + temporal grounding) without FiftyOne.

Modules, one job each: :mod:`.contract` (prompts and parsers), :mod:`.sanitize` (clean times),
:mod:`.video` (probe, sample, resize), :mod:`.inputs` (model inputs), :mod:`.engine` (``Marlin``, a façade
over :mod:`.generation` and :mod:`.pipeline`), :mod:`.confidence`, :mod:`.windows` (long videos),
:mod:`.kernels`, :mod:`.metrics`, :mod:`.annotations` / :mod:`.annotation_export` (formats in and out),
:mod:`.queries` (query checks), :mod:`.remote` / :mod:`.backends` (an OpenAI-compatible server instead of
local weights), :mod:`.search` with :mod:`.ranking` / :mod:`.presence` (library search), :mod:`.cli`;
shared defaults in :mod:`.defaults`, exceptions in :mod:`.errors`.

``Marlin`` is imported lazily so that the pure modules load without torch.
"""

__version__ = "0.1.0"
__all__ = ["Marlin", "ModelLoadError", "MarlinError", "WorkItem", "__version__", "error_summary"]

from .errors import MarlinError, ModelLoadError, error_summary


def __getattr__(name):
    if name in ("Marlin", "WorkItem"):
        from . import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'marlin_core' has no attribute {name!r}")
