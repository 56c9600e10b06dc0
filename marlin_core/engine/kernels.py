"""Which implementation runs the hot spots of a loaded model: fast kernels or PyTorch fallbacks.

Why: Qwen3.5's gated-delta-net layers (18 of Marlin's 24) run ``flash-linear-attention``'s Triton kernels when
that package imports, else a plain-PyTorch reference (correct, several times slower: issue 16 measured prefill
1.12 s -> 0.26 s and decode 142 -> 89 ms/step on the 2B shape with fla 0.6.0 on an H100). transformers
decides once, when its modeling module is imported, and only warns at the first call; this reads its
decision back so the engine can log it at load time and users can check it (``pip install
fiftyone-marlin[cuda]`` installs the kernels).
"""

from __future__ import annotations

import inspect
import sys

__all__ = ["KERNEL_FUNCTIONS", "TORCH_FALLBACK", "kernel_report"]

TORCH_FALLBACK = "torch fallback"
# report key -> the modeling module's function names that transformers may route to a kernel package
# (transformers 5.24, models/qwen3_5/modeling_qwen3_5.py: ``use_kernel_func_from_hub_with_fallback``).
KERNEL_FUNCTIONS = {
    "linear_attention": ("torch_chunk_gated_delta_rule", "torch_recurrent_gated_delta_rule"),
    "causal_conv1d": ("causal_conv1d_fn", "causal_conv1d_update"),
}


def _implementation(function) -> str | None:
    """The package behind a ``use_kernel_func_from_hub_with_fallback`` wrapper, ``TORCH_FALLBACK``, or None."""
    try:
        closure = inspect.getclosurevars(function).nonlocals
    except (TypeError, ValueError):
        return None
    if "is_new_implementation" not in closure:
        return None
    if not closure["is_new_implementation"]:
        return TORCH_FALLBACK
    implementation = closure.get("implementation")
    return str(getattr(implementation, "__module__", None) or closure.get("package") or "kernel").split(".")[0]


def kernel_report(model) -> dict[str, str]:
    """What runs each hot spot of ``model``, e.g. ``{"linear_attention": "fla", "causal_conv1d": "torch fallback",
    "attention": "sdpa"}``.

    Args:
        model: a loaded transformers model.

    Returns:
        ``linear_attention`` / ``causal_conv1d``: the kernel package's name, or ``"torch fallback"``; absent
        for models without those layers. ``attention``: transformers' attention implementation
        (``sdpa``, ``flash_attention_2``, ``eager``).
    """
    report: dict[str, str] = {}
    modules = {sys.modules.get(type(m).__module__) for m in model.modules()}
    for key, names in KERNEL_FUNCTIONS.items():
        found = {_implementation(getattr(module, name)) for module in modules if module is not None
                 for name in names if hasattr(module, name)} - {None}
        if found:
            # Several functions per hot spot (prefill and decode): a fallback in either is what the user must know.
            report[key] = TORCH_FALLBACK if TORCH_FALLBACK in found else "+".join(sorted(found))
    attention = getattr(getattr(model, "config", None), "_attn_implementation", None)
    if attention:
        report["attention"] = str(attention)
    return report
