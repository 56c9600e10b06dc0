"""The plugin's operators: thin FiftyOne glue over :mod:`marlin_core`, one module per operator."""

from .caption import CaptionVideos
from .evaluate import EvaluateMarlin
from .export_annotations import ExportAnnotations
from .find import FindEvents
from .import_annotations import ImportAnnotations
from .open_view import OpenView
from .review import ReviewErrors
from .search import SearchLibrary

OPERATORS = [CaptionVideos, FindEvents, EvaluateMarlin, ImportAnnotations, ReviewErrors, ExportAnnotations,
             OpenView, SearchLibrary]

from .runs_panel import MarlinRunsPanel  # noqa: E402 - the panels after the operators

OPERATORS += [MarlinRunsPanel]
