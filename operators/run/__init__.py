"""Run machinery shared by every model operator: parameters, checks, run records, safe writes, progress.

Modules: :mod:`.params` (one frozen settings object per operator), :mod:`.validation` (every parameter
checked before any work), :mod:`.models` (the model a run names, loaded once), :mod:`.processing`
(samples -> answers -> labels, resumable), :mod:`.file_metadata` (ffprobe once per file version),
:mod:`.writes` (compare-and-swap writes), :mod:`.runs` (the ``marlin_runs`` records and FiftyOne runs),
:mod:`.scheduling` (time estimates, Execute vs Schedule), :mod:`.shards` (one view split over delegated
workers).

May import: :mod:`operators.adapters` and :mod:`marlin_core`; never an operator module or the forms.
"""
