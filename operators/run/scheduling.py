"""Immediate or Schedule: estimate how long a run takes and steer long ones to a delegated worker.

The App cuts an immediate run off after ``fo.config.operator_timeout`` seconds
(``FIFTYONE_OPERATOR_TIMEOUT``, 600 by default) while the run keeps writing labels and its summary
is lost; a delegated run ("Schedule", executed by ``fiftyone delegated launch``) has no such limit.
The estimate is deliberately simple and documented in the README: seconds per 120 s window of video
on each kind of device, times the windows the target videos need.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import fiftyone as fo
import fiftyone.operators as foo

from marlin_core.windows import DEFAULT_OVERLAP_S, DEFAULT_WINDOW_S, plan_windows

__all__ = ["SECONDS_PER_WINDOW", "RunEstimate", "estimate_run", "execution_options", "estimate_notice"]

# Rough seconds of Marlin-2B per window of up to 120 s of video (one caption, or a few find queries):
# about 10 s on a recent GPU (issue 15), a few times that on Apple silicon, minutes on a CPU.
SECONDS_PER_WINDOW = {"cuda": 10.0, "mps": 40.0, "cpu": 120.0}
# Above this many videos the App proposes delegated execution even when the estimate is short.
DELEGATE_ABOVE_SAMPLES = 5


@dataclass(frozen=True)
class RunEstimate:
    """How many videos and windows a run covers, on which device, and about how long it takes."""

    videos: int
    windows: int
    device: str
    seconds: float
    timeout_s: float

    @property
    def too_long_for_immediate(self) -> bool:
        return self.seconds > self.timeout_s

    def describe(self) -> str:
        return (f"{self.videos} video(s), {self.windows} window(s) of up to {DEFAULT_WINDOW_S:.0f} s: "
                f"about {_duration_text(self.seconds)} on {self.device} "
                f"(~{SECONDS_PER_WINDOW[self.device]:.0f} s per window)")


def _duration_text(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def estimate_device(requested: str | None) -> str:
    """The device kind the estimate assumes: the one asked for, else what ``auto`` would pick here."""
    if requested in SECONDS_PER_WINDOW:
        return requested
    if requested and requested.startswith("cuda"):
        return "cuda"
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return "cuda"
    if torch is not None and getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def _windows_of(durations_s, window_s: float) -> int:
    """Windows of the videos; a video whose duration is not known yet counts as one window."""
    total = 0
    for duration_s in durations_s:
        if duration_s and math.isfinite(duration_s) and duration_s > 0 and window_s > DEFAULT_OVERLAP_S:
            total += len(plan_windows(float(duration_s), window_s))
        else:
            total += 1
    return total


def estimate_run(view, device: str | None, window_s: float | None = None) -> RunEstimate:
    """Estimate the run of a model operator on ``view`` (durations from the stored metadata)."""
    durations = view.values("metadata.duration")
    kind = estimate_device(device)
    windows = _windows_of(durations, float(window_s or DEFAULT_WINDOW_S))
    return RunEstimate(videos=len(durations), windows=windows, device=kind,
                       seconds=windows * SECONDS_PER_WINDOW[kind], timeout_s=float(fo.config.operator_timeout))


def target_estimate(ctx, params: dict) -> RunEstimate | None:
    """The estimate for the operator's current target, or None while the form has no target yet."""
    try:
        return estimate_run(ctx.target_view(), params.get("device"), params.get("window_s"))
    except Exception:  # noqa: BLE001 - the App resolves forms before a target or dataset exists
        return None


def execution_options(ctx, params: dict) -> foo.executor.ExecutionOptions:
    """Both modes allowed; Schedule is the default for many videos or a run longer than the timeout."""
    estimate = target_estimate(ctx, params)
    delegate = estimate is not None and (estimate.videos > DELEGATE_ABOVE_SAMPLES or estimate.too_long_for_immediate)
    return foo.executor.ExecutionOptions(
        allow_immediate_execution=True,
        allow_delegated_execution=True,
        default_choice_to_delegated=delegate,
    )


def estimate_notice(inputs, ctx, params: dict) -> None:
    """A warning with the estimate when the run would outlast the App's limit for immediate runs."""
    estimate = target_estimate(ctx, params)
    if estimate is None or not estimate.too_long_for_immediate:
        return
    inputs.view("estimate", foo.types.Warning(
        label="Long run: choose Schedule",
        description=(f"{estimate.describe()}, longer than the {estimate.timeout_s:.0f} s the App allows an "
                     "immediate run. Schedule runs it on a delegated worker (`make app` starts one; "
                     "`fiftyone delegated list` shows it)."),
    ))
