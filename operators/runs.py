"""Provenance: every Marlin run is a FiftyOne custom run, and its settings have a fingerprint.

The run config (``dataset.get_run_info(key).config``) holds the model id and revision, the prompt,
the decoding and preprocessing settings and the package versions; users list, inspect and delete
runs with FiftyOne's own API. The fingerprint of the settings that change the answer is stored on
each label, so a rerun knows which samples are already done with the same settings.
"""

from __future__ import annotations

import hashlib
import json
from importlib import metadata as importlib_metadata

import fiftyone as fo

PACKAGES = ("fiftyone-marlin", "torch", "transformers", "torchcodec", "qwen-vl-utils", "fiftyone")


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def settings_fingerprint(settings: dict) -> str:
    """Short stable hash of the settings that determine the model's answer."""
    encoded = json.dumps(settings, sort_keys=True, default=str).encode()
    return hashlib.sha1(encoded).hexdigest()[:12]


def record_run(collection: fo.core.collections.SampleCollection, run_key: str, method: str, settings: dict,
               outcome: dict | None = None) -> None:
    """Register (or update) the custom run ``run_key`` with its settings and, when given, its outcome.

    Existing labels are never touched (``cleanup=False``).
    """
    config = collection.init_run(
        method=f"marlin.{method}",
        settings=settings,
        settings_fingerprint=settings_fingerprint(settings),
        versions=package_versions(),
        outcome=outcome or {},
    )
    dataset = collection._root_dataset
    dataset.register_run(run_key, config, overwrite=True, cleanup=False)
