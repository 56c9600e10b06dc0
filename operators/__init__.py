"""The plugin's operators: thin FiftyOne glue over :mod:`marlin_core`, one module per operator."""

from .caption import CaptionVideos
from .find import FindEvents

OPERATORS = [CaptionVideos, FindEvents]
