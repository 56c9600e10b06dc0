"""marlin_core: Marlin-2B video understanding (caption + temporal grounding) without FiftyOne.

Layers, each importing only the ones below it (``tests/test_layers.py`` holds the table):

- the foundation, one module per job: :mod:`.errors` (one exception root), :mod:`.defaults`,
  :mod:`.contract` (prompts and their parsers), :mod:`.sanitize` (clean times), :mod:`.queries` (query
  checks), :mod:`.metrics`, :mod:`.windows` (long videos), :mod:`.prefetch` (work ahead in a thread);
- capabilities: :mod:`.video` (probe, sample, resize), :mod:`.formats` (annotation files in and out),
  :mod:`.search` (library search over stored captions);
- :mod:`.engine` (``Marlin``: weights in this process), then :mod:`.serving` (the same methods answered by
  a vLLM server);
- :mod:`.cli` on top.

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
