"""The plugin's operators and panels: thin FiftyOne glue over :mod:`marlin_core`, one module each."""

from .caption import CaptionVideos
from .colours import RestoreColours
from .evaluate import EvaluateMarlin
from .export_annotations import ExportAnnotations
from .find import FindEvents
from .import_annotations import ImportAnnotations
from .open_view import OpenView
from .review import ReviewErrors
from .review_panel import ReviewPanel
from .runs_panel import MarlinRunsPanel
from .search import SearchLibrary

OPERATORS = [CaptionVideos, FindEvents, EvaluateMarlin, ImportAnnotations, ReviewErrors, ExportAnnotations,
             OpenView, SearchLibrary, ReviewPanel, MarlinRunsPanel, RestoreColours]
