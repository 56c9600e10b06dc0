"""One home for the defaults every layer shares (library, CLI, FiftyOne operators), with the reason beside each.

Import them from here; the older homes (``marlin_core.engine.loading.DEFAULT_MODEL``,
``marlin_core.windows.DEFAULT_WINDOW_S``, ...) re-export these same objects.
"""

from __future__ import annotations

__all__ = [
    "CAPTION_MAX_NEW_TOKENS",
    "CAPTION_RUN_KEY",
    "DEFAULT_MODEL",
    "DEFAULT_OVERLAP_S",
    "DEFAULT_WINDOW_S",
    "EVALUATION_RUN_SUFFIX",
    "FIND_MAX_NEW_TOKENS",
    "FIND_RUN_KEY",
    "evaluation_run_key",
]

# The gated hub id of the model this project wraps (marlin-facts.md).
DEFAULT_MODEL = "NemoStation/Marlin-2B"

# The reference helpers' defaults (marlin-facts.md): a caption may be long (270-385 tokens recorded on an
# 11 s clip), a find answer is ~12 tokens ("From 14.3 to 18.2.").
CAPTION_MAX_NEW_TOKENS = 2048
FIND_MAX_NEW_TOKENS = 64

# The longest clip Marlin sees at its training rate: 240 frames at 2 fps; longer videos are windowed.
DEFAULT_WINDOW_S = 120.0
# Marlin's events last a few seconds (0.5-3 s in the reference outputs). An event no longer than the
# overlap that is cut at the end of one window starts inside the overlap, so the next window sees it
# whole. 10 s covers that with margin at < 10% extra frames per seam (the official CLI uses 5 s).
DEFAULT_OVERLAP_S = 10.0

# FiftyOne run keys the operators record their settings under (a run per operation).
CAPTION_RUN_KEY = "marlin_caption"
FIND_RUN_KEY = "marlin_find"
# An evaluation ``<eval_key>`` keeps its aggregate table in the custom run ``<eval_key>_marlin``.
EVALUATION_RUN_SUFFIX = "_marlin"


def evaluation_run_key(eval_key: str) -> str:
    """The custom run holding the aggregate table of evaluation ``eval_key``."""
    return f"{eval_key}{EVALUATION_RUN_SUFFIX}"
