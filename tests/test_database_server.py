"""The suite's own MongoDB (tests/mongod.py): every process of a run uses it, and it is FiftyOne's real one."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mongod import SERVED_BY_ENV, mongod_executable


def test_the_run_has_its_own_database_server():
    # conftest started it (or the caller gave FIFTYONE_DATABASE_URI); FiftyOne reads it from the environment
    uri = os.environ.get("FIFTYONE_DATABASE_URI")
    assert uri and uri.startswith("mongodb://127.0.0.1:")
    if os.environ.get(SERVED_BY_ENV):
        assert mongod_executable() is not None


@pytest.mark.heavy
def test_a_subprocess_reaches_the_same_database(dataset):
    """Subprocesses (App servers, delegated workers, the CLI) inherit the address and see this run's datasets."""
    dataset.persistent = True
    try:
        script = ("import fiftyone as fo, sys; name = sys.argv[1]; "
                  "print(fo.config.database_uri, fo.dataset_exists(name), fo.load_dataset(name).name)")
        out = subprocess.run([sys.executable, "-c", script, dataset.name], capture_output=True, text=True,
                             check=True, timeout=120).stdout.split()
        assert out == [os.environ["FIFTYONE_DATABASE_URI"], "True", dataset.name]
    finally:
        dataset.persistent = False
