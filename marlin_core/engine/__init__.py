"""The in-process engine: Marlin's weights loaded with transformers, answering with real ``generate`` calls.

Modules, from the façade down: :mod:`.marlin` (``Marlin``: caption / find with the reference API),
:mod:`.pipeline` (requests over videos: windows, batches, decoding ahead, one result or error per item),
:mod:`.generation` (answers from model inputs: the decode loop or ``generate``, the confidence recorder),
:mod:`.loop` (requests through the decode loop; ``find_many``'s queries as one batch), :mod:`.decode` (the
loop itself: static caches, one-token steps over the model's own layers, token choice on the device),
:mod:`.graphs` (the step in CUDA graphs), :mod:`.inputs` (frames -> model inputs, equal to the processor's),
:mod:`.confidence` (per-token log-probs -> per time range), :mod:`.kernels` (which kernels run),
:mod:`.loading` (``from_pretrained`` on a hub id or a folder).

What a decode step costs and why the loop exists: ``docs/decode.md`` (``bench/decode_profile.py``'s figures).

May import: :mod:`marlin_core.video` and the foundation modules (contract, defaults, errors, prefetch,
windows). Names are imported lazily so that ``marlin_core.engine.confidence`` and the pure modules load
without torch.
"""

from importlib import import_module

__all__ = ["DEFAULT_MODEL", "Marlin", "WorkItem", "kernel_report", "load_model_and_processor"]

_HOMES = {"Marlin": ".marlin", "WorkItem": ".pipeline", "kernel_report": ".kernels", "DEFAULT_MODEL": ".loading",
          "load_model_and_processor": ".loading"}


def __getattr__(name):
    if name in _HOMES:
        return getattr(import_module(_HOMES[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
