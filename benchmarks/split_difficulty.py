"""Are the testbed's heldout and validation questions equally hard for each model?

Profiles accuracy (the accuracy profiler: K=16 samples, temperature 0.6, max 96 tokens,
per-question seeds) on the first 600 questions of both splits into a scratch database
(benchmarks/results/split_difficulty.db) and prints accuracy@1 per split and per slice of
100. Writes benchmarks/results/split_difficulty.md.

Usage: python benchmarks/split_difficulty.py [MODEL ...]   (default: tb-small tb-large)
"""

from __future__ import annotations

import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine_runs import RESULTS  # noqa: E402

from profilers.accuracy import profile_accuracy  # noqa: E402
from profilers.tasks.arithmetic import ArithmeticTask  # noqa: E402
from profilers.testbed.family import model_dir  # noqa: E402
from storage import Database, ProfileStore  # noqa: E402

SPLITS, QUESTIONS, SLICE = ("heldout", "validation"), 600, 100


def main() -> None:
    from profilers.vllm_engine import VllmEngine

    models = sys.argv[1:] or ["tb-small", "tb-large"]
    with Database(f"sqlite:///{RESULTS / 'split_difficulty.db'}") as db:
        store = ProfileStore(db)
        for model in models:
            engine = VllmEngine(str(model_dir(model)), max_model_len=160)
            try:
                for split in SPLITS:
                    profile_accuracy(engine, store, ArithmeticTask(), questions=QUESTIONS,
                                     samples_per_question=16, temperature=0.6,
                                     max_tokens=96, split=split)
            finally:
                engine.close()
        samples = store.load_profile_set().accuracy
    lines = ["# Heldout vs validation difficulty (measured)", "",
             f"`python {' '.join(sys.argv)}` — {datetime.now(UTC).isoformat(timespec='seconds')}",
             "", "| model | split | accuracy@1 (600 questions) | per slice of 100 |",
             "|---|---|---:|---|"]
    for model in models:
        for split in SPLITS:
            per_question: dict[str, list[bool]] = {}
            for sample in samples:
                if sample.model == model and sample.split == split:
                    per_question.setdefault(sample.question_id, []).append(sample.correct)
            means = [statistics.mean(per_question[f"{split}-{i}"]) for i in range(QUESTIONS)]
            slices = [statistics.mean(means[k:k + SLICE]) for k in range(0, QUESTIONS, SLICE)]
            lines.append(f"| {model} | {split} | {statistics.mean(means):.3f} | "
                         f"{', '.join(f'{s:.2f}' for s in slices)} |")
    (RESULTS / "split_difficulty.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
