"""Temporal annotations in and out: the benchmark formats read (validated whole first) and written.

Modules: :mod:`.annotations` (ActivityNet Captions, Charades-STA, TimeLens-Bench readers -> ``VideoAnnotation``),
:mod:`.annotation_export` (``VideoAnnotation`` -> those formats and densevid_eval's submission).

May import: the foundation modules (errors).
"""

from .annotation_export import EXPORT_FORMATS, write_annotations
from .annotations import LOADERS, AnnotationFormatError, Segment, VideoAnnotation, load_annotations

__all__ = ["EXPORT_FORMATS", "LOADERS", "AnnotationFormatError", "Segment", "VideoAnnotation", "load_annotations",
           "write_annotations"]
