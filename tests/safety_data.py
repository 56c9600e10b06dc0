"""Datasets and checks shared by the chaos and concurrency tests: what a user has, and what must survive.

Every dataset mixes what a user meets: ordinary clips, a clip whose fields hold labels the user made, a
file that is not a video, a clip with stale stored metadata, and a clip with Marlin labels of older
settings (stamped as Marlin writes them). Every sample carries user data (a ``note`` field and a tag) that no run may change.
"""

from __future__ import annotations

import os
from collections import Counter

import fiftyone as fo

from operators.adapters.labels import marlin_owns, stamp
from operators.run.runs import run_history
from tiny_model import TRAINED_TARGETS

CAPTION = "@marlin/marlin/caption"
FIND = "@marlin/marlin/find"
EVALUATE = "@marlin/marlin/evaluate"
RED_QUERY = TRAINED_TARGETS["red"]["find"]["query"]
QUERIES = [RED_QUERY, "red fades"]
# Fields a Marlin run may write on a sample; everything else on a sample belongs to the user.
MARLIN_FIELDS = {"marlin_events", "marlin_scene", "marlin_caption", "marlin_error", "marlin_events_partial",
                 "marlin_find", "marlin_find_not_found", "marlin_find_partial", "metadata", "last_modified_at",
                 "marlin_events_seconds", "marlin_find_seconds"}  # the tiles' texts, derived from the labels


def make_dataset(color_videos, broken, folder, clips: int = 6) -> tuple[fo.Dataset, dict[str, str]]:
    """A persistent dataset (other processes open it by name); returns it and the ids of the special samples."""
    folder.mkdir(parents=True, exist_ok=True)
    dataset = fo.Dataset(persistent=True)
    samples = []
    for index in range(clips + 3):
        color = "red" if index % 2 == 0 else "blue"
        link = folder / f"{index:02d}-{color}.mp4"
        if not link.exists():
            os.link(color_videos[color], link)
        samples.append(fo.Sample(filepath=str(link), note=f"user note {index}", tags=["user"]))
    samples.append(fo.Sample(filepath=str(broken["text"]), note="not a video", tags=["user"]))
    ids = dataset.add_samples(samples)
    roles = {"hand_made": ids[clips], "stale": ids[clips + 1], "older": ids[clips + 2], "broken": ids[-1]}
    hand_made = dataset[roles["hand_made"]]
    hand_made["marlin_events"] = fo.TemporalDetections(detections=[fo.TemporalDetection(label="mine", support=[1, 5])])
    hand_made["marlin_scene"] = "my own scene"
    hand_made["marlin_find"] = fo.TemporalDetections(detections=[
        fo.TemporalDetection(label=RED_QUERY, support=[2, 9], reviewer="me")])
    hand_made.save()
    stale = dataset[roles["stale"]]
    stale.metadata = fo.VideoMetadata(duration=0.3, frame_rate=10.0, total_frame_count=3, frame_width=64,
                                      frame_height=64)
    stale.save()
    older = dataset[roles["older"]]
    # Marlin's labels of older settings, beside which the user added one and corrected another
    corrected = stamp(fo.TemporalDetection(label="old event 2", support=[2, 3]))
    corrected.label = "old event 2, corrected"
    older["marlin_events"] = fo.TemporalDetections(
        detections=[stamp(fo.TemporalDetection(label="old event", support=[1, 2])), corrected,
                    fo.TemporalDetection(label="added by me", support=[1, 4])], marlin_settings="older")
    older["marlin_find"] = fo.TemporalDetections(
        detections=[stamp(fo.TemporalDetection(label=RED_QUERY, support=[1, 2], marlin_settings="older")),
                    fo.TemporalDetection(label="my own query", support=[2, 4])],
        searched=[[RED_QUERY, "older"]])
    older.save()
    return dataset, roles


def raw(dataset: fo.Dataset) -> dict:
    """Every sample document as stored, by id."""
    return {str(doc["_id"]): doc for doc in dataset._sample_collection.find({})}


def user_part(doc: dict) -> dict:
    """What belongs to the user: all but Marlin's outputs and the fields of evaluation ``ev``."""
    return {key: value for key, value in doc.items()
            if key not in MARLIN_FIELDS and key != "ev" and not key.startswith("ev_")}


def user_labels(doc: dict, field: str) -> list[dict]:
    """The detections of ``field`` that are the user's (no Marlin hash, or content changed since), as stored."""
    labels = doc.get(field) or {}
    return [d for d in labels.get("detections", []) if not marlin_owns(fo.TemporalDetection.from_dict(d))]


def assert_user_data_kept(before: dict, after: dict, roles: dict) -> None:
    """User fields of every sample, and the hand-made labels, are exactly as they were (text, ids, attributes).

    Hand-made labels include those a user added to, or corrected in, Marlin's own fields (every sample).
    """
    assert set(after) == set(before)
    for sample_id, doc in before.items():
        assert user_part(after[sample_id]) == user_part(doc), sample_id
        for field in ("marlin_events", "marlin_find"):
            assert user_labels(after[sample_id], field) == user_labels(doc, field), (sample_id, field)
    hand_made = roles["hand_made"]
    for field in ("marlin_events", "marlin_scene"):
        assert after[hand_made].get(field) == before[hand_made].get(field)
    mine = [d for d in before[hand_made]["marlin_find"]["detections"] if "marlin_settings" not in d]
    assert [d for d in after[hand_made]["marlin_find"]["detections"] if "marlin_settings" not in d] == mine


def caption_state(docs: dict, roles: dict) -> dict[str, list]:
    """``{sample id: [detection ids]}`` of the Marlin captions written with current settings, checked whole."""
    done = {}
    for sample_id, doc in docs.items():
        events = doc.get("marlin_events")
        if sample_id == roles["hand_made"] or not events or events.get("marlin_settings") in (None, "older"):
            continue
        # a caption is written in one update: events, scene and raw answer together
        mine = [d["_id"] for d in user_labels(doc, "marlin_events")]
        marlin = [d["_id"] for d in events["detections"] if d["_id"] not in mine]
        assert len(marlin) == 2 and doc.get("marlin_scene") and doc.get("marlin_caption"), doc
        done[sample_id] = marlin
    return done


def find_state(docs: dict) -> dict[str, dict[str, object]]:
    """``{sample id: {query: detection id or "not found"}}`` of the current answers; fails on duplicates."""
    answers = {}
    for sample_id, doc in docs.items():
        labels = doc.get("marlin_find") or {}
        current = {q: f for q, f in labels.get("searched", []) if f != "older"}
        detections = [d for d in labels.get("detections", []) if d.get("marlin_settings") not in (None, "older")]
        counts = Counter(d["label"] for d in detections)
        assert all(n == 1 for n in counts.values()), (sample_id, counts)
        missing = doc.get("marlin_find_not_found") or []
        assert not set(missing) & set(counts), (sample_id, missing, counts)
        by_query = {d["label"]: d["_id"] for d in detections}
        by_query.update({q: "not found" for q in missing})
        # an answer is written in one update: the query's detection (or not-found entry) and its fingerprint
        assert set(current) == set(by_query), (sample_id, current, by_query)
        if by_query:
            answers[sample_id] = by_query
    return answers


def statuses(dataset: fo.Dataset, pid: int) -> list[str]:
    """The statuses of the runs process ``pid`` started on ``dataset`` (interrupted ones marked so)."""
    return [record["status"] for record in run_history(dataset) if record.get("pid") == pid]
