"""marlin_core.errors: one exception root for the whole library, and one way to print an error as a line."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import marlin_core
from marlin_core.errors import MarlinError, error_summary


def library_exceptions() -> dict[str, type]:
    """Every exception class defined in a marlin_core module (found by walking the package)."""
    found = {}
    for info in pkgutil.walk_packages(marlin_core.__path__, prefix="marlin_core."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if (inspect.isclass(value) and issubclass(value, BaseException)
                    and value.__module__.startswith("marlin_core")):
                found[f"{value.__module__}.{name}"] = value
    return found


def test_the_walk_finds_the_known_exceptions():
    names = set(library_exceptions())
    assert {"marlin_core.errors.MarlinError", "marlin_core.errors.ModelLoadError"} <= names
    assert any(name.endswith("VideoError") for name in names)


def test_every_exception_derives_from_marlin_error():
    outside = sorted(name for name, cls in library_exceptions().items() if not issubclass(cls, MarlinError))
    assert outside == [], f"catchable only outside MarlinError: {outside}"


@pytest.mark.parametrize("error, where, expected", [
    (ValueError("bad value\nsecond line"), None, "bad value"),
    (ValueError(""), None, "ValueError"),
    (ValueError("  \n"), "/data/a.mp4", "/data/a.mp4: ValueError: ValueError"),
    (OSError("no such file"), "/data/a.mp4", "/data/a.mp4: OSError: no such file"),
    (MarlinError("/data/a.mp4: no video stream"), "/data/a.mp4", "/data/a.mp4: no video stream"),
    (RuntimeError("Could not open input file, Invalid data (src/torchcodec/_core/SingleStreamDecoder.cpp:52), "
                  "moov atom not found"), None, "moov atom not found"),
])
def test_error_summary_is_one_line_naming_where(error, where, expected):
    assert error_summary(error, where) == expected
