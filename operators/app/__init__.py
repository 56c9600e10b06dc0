"""What the App shows around the operators: shared form pieces and where the buttons are placed.

Modules: :mod:`.forms` (model, device, sampling and output-field inputs, marked invalid from
:mod:`operators.run.validation`), :mod:`.placements` (buttons in the grid and the modal).

May import: :mod:`operators.run`, :mod:`operators.adapters` and :mod:`marlin_core`.
"""
