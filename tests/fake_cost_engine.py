"""A fake Engine whose decode step cost is a known function, for planner and CLI tests."""

from profilers import BranchOutput, GenerationResult, SpecCounters
from storage import HardwareRecord


def step_s(batch: int, tokens: int) -> float:
    """Linear in batch and tokens, plus a jump above batch 8 the linear form cannot follow."""
    return 1e-3 * (1 + 0.05 * batch + 0.002 * tokens) * (1.6 if batch > 8 else 1.0)


class FakeCostEngine:
    """Reports decode time from `step_s` as a real engine's own clock would."""

    model = "fake-model"
    speculative = None

    def __init__(self):
        self.calls = 0

    def generate(self, prompts, sampling):
        self.calls += 1
        tokens = len(prompts[0]) + sampling.max_tokens // 2
        decode_s = step_s(len(prompts), tokens) * (sampling.max_tokens - 1)
        branch = BranchOutput("x", sampling.max_tokens, "length")
        return [GenerationResult(len(prompts[0]), (branch,), 0.01, decode_s, sampling.max_tokens)
                for _ in prompts]

    def speculative_counters(self):
        return SpecCounters()

    def hardware(self):
        return HardwareRecord("fa4e0000fa4e0000", "fake cpu", 2, 4.0)

    def engine_version(self):
        return "fake 1.0"
