"""FiftyOne plugin entry point (registers the Marlin operators) and remote model-zoo source.

The plugin folder also holds the ``marlin_core`` library; when it is not pip-installed (plugin added
with ``fiftyone plugins download`` or ``FIFTYONE_PLUGINS_DIR``, or this folder registered as a zoo
source), the folder itself is put on ``sys.path`` so the operators can import it. Operators and the
zoo model are imported inside the functions so that importing this folder as a package (pytest
does, from the repo root) does not import FiftyOne.

``manifest.json`` beside this file makes the folder a FiftyOne remote zoo source: FiftyOne calls
``download_model`` / ``load_model`` / ``resolve_input`` / ``parse_parameters`` here (see :mod:`.zoo`).
"""

import os
import sys

try:
    import marlin_core  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def register(plugin):
    from .operators import OPERATORS

    for operator in OPERATORS:
        plugin.register(operator)


def download_model(model_name, model_path):
    """Zoo entry point: download the weights of ``model_name`` to ``model_path``."""
    from .zoo import download_model as download

    download(model_name, model_path)


def load_model(model_name, model_path, **kwargs):
    """Zoo entry point: the ``fom.Model`` that ``apply_model`` runs (see :func:`.zoo.load_model`)."""
    from .zoo import load_model as load

    return load(model_name, model_path, **kwargs)


def resolve_input(model_name, ctx):
    """Zoo entry point: the App form for the model's parameters."""
    from .zoo import resolve_input as resolve

    return resolve(model_name, ctx)


def parse_parameters(model_name, ctx, params):
    """Zoo entry point: tidy the form's parameters in place."""
    from .zoo import parse_parameters as parse

    parse(model_name, ctx, params)
