"""FiftyOne plugin entry point: registers the Marlin operators.

The plugin folder also holds the ``marlin_core`` library; when it is not pip-installed (plugin added
with ``fiftyone plugins download`` or ``FIFTYONE_PLUGINS_DIR``), the folder itself is put on
``sys.path`` so the operators can import it. Operators are imported inside ``register`` so that
importing this folder as a package (pytest does, from the repo root) does not import FiftyOne.
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
