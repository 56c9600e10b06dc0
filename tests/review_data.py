"""Marlin's proposals the review tests start from: four events of a 10 s video, as the caption operator writes
them (fingerprinted, so they are Marlin's own labels)."""

from __future__ import annotations

from operators.adapters.labels import events_to_detections

EVENTS = [{"start": 0.0, "end": 2.0, "description": "a door opens", "confidence": 0.9},
          {"start": 3.0, "end": 5.0, "description": "a person walks", "confidence": 0.4},
          {"start": 5.5, "end": 7.0, "description": "the person sits", "confidence": 0.7},
          {"start": 8.0, "end": 9.0, "description": "a cat jumps", "confidence": 0.2}]


def propose(sample, settings_hash: str = "settings-hash") -> None:
    """Put :data:`EVENTS` in ``sample``'s ``marlin_events`` (not saved)."""
    sample["marlin_events"], _ = events_to_detections(EVENTS, sample.metadata, settings_hash)
