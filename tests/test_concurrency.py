"""Two runs at once on the same samples, in two processes: every answer of both is kept, none twice.

Each pair starts two forked runs together on a dataset that already holds answers of an earlier run
(their ids must not change), hand-made labels and user fields (byte-identical after), and checks the
merged result after both ended.
"""

from __future__ import annotations

import pytest

from safety_data import (CAPTION, EVALUATE, FIND, QUERIES, RED_QUERY, assert_user_data_kept, caption_state,
                         find_state, make_dataset, raw, statuses)
from zygote import wait_exit

TRIALS = 3
EARLIER_QUERY = "blue light"
PAIRS = {
    "caption+caption": ((CAPTION, {}), (CAPTION, {})),
    "find+find, different queries": ((FIND, {"queries": [RED_QUERY]}), (FIND, {"queries": ["red fades"]})),
    "find+find, same queries": ((FIND, {"queries": QUERIES}), (FIND, {"queries": QUERIES})),
    "caption+find": ((CAPTION, {}), (FIND, {"queries": QUERIES})),
    "evaluate while find runs": ((EVALUATE, {"pred_field": "marlin_find", "gt_field": "ground_truth",
                                             "mode": "grounding", "eval_key": "ev"}), (FIND, {"queries": QUERIES})),
}


@pytest.fixture(scope="module")
def prepared(zygote, color_videos, broken, trained_model_dir, tmp_path_factory):
    """A dataset with earlier answers (find ``blue light``) and ground truth, and its stored state."""
    import fiftyone as fo

    dataset, roles = make_dataset(color_videos, broken, tmp_path_factory.mktemp("concurrency") / "videos")
    wait_exit(zygote.start(FIND, dataset.name, model=str(trained_model_dir), queries=[EARLIER_QUERY]))
    dataset.reload()
    for sample in dataset.select_fields("metadata").exists("metadata"):
        truth = fo.TemporalDetection.from_timestamps([1.0, 2.0], sample=sample, label=RED_QUERY)
        dataset._sample_collection.update_one({"_id": sample._id}, {"$set": {
            "ground_truth": fo.TemporalDetections(detections=[truth]).to_mongo()}})
    dataset.add_sample_field("ground_truth", fo.EmbeddedDocumentField, embedded_doc_type=fo.TemporalDetections)
    yield dataset, roles, raw(dataset)
    dataset.delete()


def _earlier_ids(docs: dict) -> dict:
    return {sid: [d["_id"] for d in (doc.get("marlin_find") or {}).get("detections", []) if d["label"] == EARLIER_QUERY]
            for sid, doc in docs.items()}


def _restore(dataset, snapshot: dict) -> None:
    for doc in snapshot.values():
        dataset._sample_collection.replace_one({"_id": doc["_id"]}, doc)
    dataset.reload()


@pytest.mark.parametrize("pair", sorted(PAIRS))
def test_two_runs_at_once_keep_every_answer(pair, prepared, zygote, trained_model_dir):
    dataset, roles, snapshot = prepared
    model = dict(model=str(trained_model_dir))
    clips = [sid for sid in snapshot if sid not in (roles["broken"], roles["hand_made"])]
    for trial in range(TRIALS):
        _restore(dataset, snapshot)
        pids = [zygote.start(uri, dataset.name, **(params if uri == EVALUATE else dict(model, **params)))
                for uri, params in PAIRS[pair]]
        for pid in pids:
            wait_exit(pid)
        for pid in pids:
            assert statuses(dataset, pid) == ["completed"], (pair, trial, statuses(dataset, pid))
        final = raw(dataset)
        assert_user_data_kept(snapshot, final, roles)
        assert {sid: doc.get("ground_truth") for sid, doc in final.items()} == \
            {sid: doc.get("ground_truth") for sid, doc in snapshot.items()}
        assert _earlier_ids(final) == _earlier_ids(snapshot), (pair, trial)
        asked = {q for uri, params in PAIRS[pair] if uri == FIND for q in params["queries"]}
        answers = find_state(final)  # fails on a duplicate answer
        for sid in clips:
            assert asked | {EARLIER_QUERY} <= set(answers.get(sid, {})), (pair, trial, sid, answers.get(sid))
        if any(uri == CAPTION for uri, _ in PAIRS[pair]):
            assert set(caption_state(final, roles)) >= set(clips), (pair, trial)
        if pair.startswith("evaluate"):
            dataset.reload()
            assert dataset.get_run_info("ev_marlin").config.samples > 0
    print(f"{pair}: {TRIALS} trials")
