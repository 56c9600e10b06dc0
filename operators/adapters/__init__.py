"""FiftyOne adapters: Marlin's answers as FiftyOne labels, evaluations of them, and how the App shows them.

Modules: :mod:`.labels` (seconds <-> ``TemporalDetection``, Marlin's own labels told from the user's),
:mod:`.search_labels` (search moments as labels), :mod:`.evaluation` (``evaluate_detections`` on copies),
:mod:`.display` (colours and sidebar settings). The lowest layer of the plugin: imports only FiftyOne and
:mod:`marlin_core`.
"""
