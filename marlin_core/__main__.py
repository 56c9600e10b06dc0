"""``python -m marlin_core``: the command line (see :mod:`marlin_core.cli`)."""

import sys

from .cli import main

sys.exit(main())
