"""The decode profiler's bookkeeping with a scripted engine that runs out of memory.

Not the engine under test (tests/profilers/test_vllm_profilers.py runs vLLM): a stand-in
that fails at large batches, to check what is stored and that a rerun skips it.
"""

from __future__ import annotations

from profilers.decode import DecodeGrid, profile_decode
from profilers.engine import BranchOutput, GenerationResult, SpecCounters
from storage import Database, HardwareRecord, ModelRecord, ProfileStore

OOM = "CPU out of memory: tried to allocate 2.00 GiB for the KV cache"


class OutOfMemoryEngine:
    """Decodes at 1 ms per step per sequence below `fail_at` sequences, else fails."""

    speculative = None

    def __init__(self, fail_at: int) -> None:
        self.model = "fake-target"
        self.fail_at = fail_at
        self.calls: list[int] = []

    def generate(self, prompts, sampling):
        self.calls.append(len(prompts))
        if len(prompts) >= self.fail_at:
            raise RuntimeError(OOM)
        branch = BranchOutput("x" * sampling.max_tokens, sampling.max_tokens, "length")
        return [GenerationResult(len(prompt), (branch,), 0.01, 1e-3 * len(prompts)
                                 * (sampling.max_tokens - 1), sampling.max_tokens)
                for prompt in prompts]

    def speculative_counters(self) -> SpecCounters:
        return SpecCounters()

    def hardware(self) -> HardwareRecord:
        return HardwareRecord("fa11ed0000000000", "fake cpu", 2, 8.0)

    def engine_version(self) -> str:
        return "fake 1.0"


def test_failed_points_are_stored_with_the_reason_and_the_run_goes_on(tmp_path):
    grid = DecodeGrid(batch_sizes=(1, 2, 8, 16), prompt_tokens=(8,), decode_tokens=4,
                      repeats=2, warmup=0)
    with Database(f"sqlite:///{tmp_path / 'p.db'}") as db:
        store = ProfileStore(db)
        store.upsert_model(ModelRecord("fake-target", "/models/fake-target", "target", 1, 1, 64))
        engine = OutOfMemoryEngine(fail_at=8)
        assert profile_decode(engine, store, grid) == 4
        points = store.load_profile_set().cost_points
        failed = {(p.batch_size, p.failure_reason) for p in points if p.status == "failed"}
        assert failed == {(8, OOM), (16, OOM)}
        ok = sorted((p.phase, p.batch_size) for p in points if p.status == "ok")
        assert ok == [("decode", 1), ("decode", 2), ("prefill", 1), ("prefill", 2)]
        assert all(p.seconds_samples == () for p in points if p.status == "failed")
        # A rerun measures nothing: failed points are results too, not gaps.
        engine.calls.clear()
        assert profile_decode(engine, store, grid) == 0
        assert engine.calls == []
        assert len(store.load_profile_set().cost_points) == len(points)


def test_workers_sharing_a_database_split_the_grid_without_repeats(tmp_path):
    import threading

    from storage import ClaimStore

    grid = DecodeGrid(batch_sizes=(1, 2, 4, 8), prompt_tokens=(8, 16, 32), decode_tokens=4,
                      repeats=1, warmup=0)
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    engines = [OutOfMemoryEngine(fail_at=1000) for _ in range(3)]
    with Database(url) as db:
        ProfileStore(db).upsert_model(
            ModelRecord("fake-target", "/models/fake-target", "target", 1, 1, 64))

    def worker(engine, owner):
        with Database(url) as db:
            profile_decode(engine, ProfileStore(db), grid,
                           claims=ClaimStore(db, owner=owner))

    threads = [threading.Thread(target=worker, args=(engine, f"host:{index}"))
               for index, engine in enumerate(engines)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    measured = [calls for engine in engines for calls in engine.calls]
    assert len(measured) == len(grid.batch_sizes) * len(grid.prompt_tokens)
    with Database(url) as db:
        decode = [p for p in ProfileStore(db).load_profile_set().cost_points
                  if p.phase == "decode"]
    assert len(decode) == 12
    assert len({(p.batch_size, p.context_tokens) for p in decode}) == 12


class StaggeredEngine(OutOfMemoryEngine):
    """Each later request's decode window is shorter: its prefill came in a later step, so
    the earlier requests' windows also hold that prefill step."""

    def generate(self, prompts, sampling):
        steps = sampling.max_tokens - 1
        branch = BranchOutput("x" * sampling.max_tokens, sampling.max_tokens, "length")
        return [GenerationResult(len(prompt), (branch,), 0.01,
                                 1e-3 * steps + 5e-3 * (len(prompts) - 1 - index),
                                 sampling.max_tokens)
                for index, prompt in enumerate(prompts)]


def test_step_cost_comes_from_the_window_without_other_requests_prefills(tmp_path):
    grid = DecodeGrid(batch_sizes=(1, 4), prompt_tokens=(8,), decode_tokens=5, repeats=1,
                      warmup=0)
    with Database(f"sqlite:///{tmp_path / 'p.db'}") as db:
        store = ProfileStore(db)
        store.upsert_model(ModelRecord("fake-target", "/models/fake-target", "target", 1, 1, 64))
        profile_decode(StaggeredEngine(fail_at=99), store, grid)
        decode = {p.batch_size: p.seconds_samples[0]
                  for p in store.load_profile_set().cost_points if p.phase == "decode"}
    assert decode[1] == decode[4] == 1e-3  # not (4e-3 + 15e-3) / 4 from the first request
