"""marlin_core: Marlin-2B video understanding (caption + temporal grounding) without FiftyOne.

Modules, one job each: :mod:`.contract` (prompts and parsers), :mod:`.sanitize` (clean times),
:mod:`.video` (probe, sample, resize), :mod:`.inputs` (model inputs), :mod:`.engine` (``Marlin``),
:mod:`.confidence`, :mod:`.windows` (long videos), :mod:`.metrics`, :mod:`.annotations`, :mod:`.cli`.

``Marlin`` is imported lazily so that the pure modules load without torch.
"""

__version__ = "0.1.0"
__all__ = ["Marlin", "ModelLoadError", "MarlinError", "__version__"]

from .errors import MarlinError, ModelLoadError


def __getattr__(name):
    if name == "Marlin":
        from .engine import Marlin

        return Marlin
    raise AttributeError(f"module 'marlin_core' has no attribute {name!r}")
