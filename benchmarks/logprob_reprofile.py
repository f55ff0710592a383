"""Re-profile the testbed's accuracy with log-probabilities, keeping the stored samples.

The shipped accuracy samples predate `mean_logprob`. This samples every target again with
the card's settings and the same seeds (per-question seeds from run seed 0), into a scratch
database, checks that every sample's answer, grade, token count and finish reason equal the
stored one, and only then writes the mean log-probabilities into the stored samples. A
single mismatch stops it, and nothing is written for that model.

Usage: python benchmarks/logprob_reprofile.py --storage sqlite:///testbed.db [--only tb-large]
Appends one record per model to benchmarks/results/logprob_reprofile.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from profilers.accuracy import profile_accuracy  # noqa: E402
from profilers.hardware import describe_local_hardware  # noqa: E402
from profilers.tasks.arithmetic import ArithmeticTask  # noqa: E402
from profilers.testbed.card import TestbedSettings, register_family  # noqa: E402
from profilers.testbed.family import FAMILY, model_dir  # noqa: E402
from storage import Database, ProfileRecords, ProfileStore  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "logprob_reprofile.json"
COMPARED = ("answer", "correct", "generated_tokens", "finish_reason", "prompt_tokens")


def key(sample) -> tuple:
    return (sample.question_id, sample.sample_index)


def reprofile(store: ProfileStore, model: str, settings: TestbedSettings) -> dict:
    from profilers.vllm_engine import VllmEngine, engine_version

    fingerprint, version = describe_local_hardware().fingerprint, engine_version()
    stored = {key(s): s for s in store.load_profile_set(fingerprint, version).accuracy
              if s.model == model}
    with tempfile.TemporaryDirectory() as scratch, \
            Database(f"sqlite:///{Path(scratch) / 'fresh.db'}") as db:
        fresh_store = ProfileStore(db)
        register_family(fresh_store)
        engine = VllmEngine(str(model_dir(model)), max_model_len=settings.max_model_len)
        started_s = time.perf_counter()
        try:
            profile_accuracy(engine, fresh_store, ArithmeticTask(),
                             questions=settings.questions,
                             samples_per_question=settings.samples_per_question,
                             temperature=settings.temperature, max_tokens=settings.max_tokens)
        finally:
            engine.close()
        seconds = time.perf_counter() - started_s
        fresh = {key(s): s for s in fresh_store.load_profile_set(fingerprint, version).accuracy}
    differing = [k for k, s in stored.items()
                 if k not in fresh or any(getattr(s, f) != getattr(fresh[k], f)
                                          for f in COMPARED)]
    record = {"model": model, "samples": len(stored), "fresh": len(fresh),
              "differing": len(differing), "first_differing": differing[:5],
              "seconds": seconds, "written": False}
    if stored and not differing and len(fresh) == len(stored):
        updated = tuple(dataclasses.replace(s, mean_logprob=fresh[k].mean_logprob)
                        for k, s in stored.items())
        store.write(ProfileRecords(accuracy=updated))
        record["written"] = True
        logprobs = [s.mean_logprob for s in updated]
        record["mean_logprob_range"] = [min(logprobs), max(logprobs)]
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", required=True)
    parser.add_argument("--only", action="append")
    args = parser.parse_args()
    settings = TestbedSettings()
    targets = [s.name for s in FAMILY if s.role == "target"]
    records = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    with Database(args.storage) as db:
        store = ProfileStore(db)
        for model in args.only or targets:
            record = reprofile(store, model, settings)
            record["created"] = datetime.now(UTC).isoformat(timespec="seconds")
            record["command"] = "python benchmarks/logprob_reprofile.py " + " ".join(sys.argv[1:])
            print(json.dumps(record))
            records.append(record)
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(json.dumps(records, indent=2) + "\n")


if __name__ == "__main__":
    main()
