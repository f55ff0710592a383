"""Re-measure decode/prefill cost on the client's clock (the executor's request shape).

The shipped profile times decode steps on the engine's clock with identical greedy
requests. A client streaming one request of N sampled branches also waits for the front
end's per-step output processing, which on a small CPU model is comparable to the step
itself. This measures the same grid on the client's clock (profilers.decode, clock
"client": one request, n = batch sampled branches, wall time between first and last token)
into benchmarks/results/client_clock.db; fidelity.py --decode-clock client uses it.

Usage: python benchmarks/client_clock_profile.py [--slices tb-small:0,tb-large:2 ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine_runs import RESULTS  # noqa: E402

from profilers import DecodeGrid, SpeculativeConfig, profile_decode  # noqa: E402
from profilers.testbed.family import model_dir  # noqa: E402
from storage import Database, ProfileStore  # noqa: E402

CLIENT_DB = RESULTS / "client_clock.db"
GRID = DecodeGrid(batch_sizes=(1, 2, 4, 8, 16), prompt_tokens=(8, 112), repeats=2,
                  clock="client", temperature=0.6)  # the testbed study's temperature
DEFAULT_SLICES = ("tb-small:0", "tb-small:2", "tb-medium:0", "tb-medium:1", "tb-medium:4",
                  "tb-large:0", "tb-large:2", "tb-large:3", "tb-large:4")


def main() -> None:
    args = parse_args()
    from profilers.models import read_model_record
    from profilers.vllm_engine import VllmEngine

    with Database(f"sqlite:///{CLIENT_DB}") as db:
        store = ProfileStore(db)
        for name in ("tb-draft", "tb-small", "tb-medium", "tb-large"):
            store.upsert_model(read_model_record(str(model_dir(name)),
                                                 "draft" if name == "tb-draft" else "target"))
        for item in args.slices:
            model, gamma = item.split(":")
            speculative = (SpeculativeConfig.draft_model(str(model_dir("tb-draft")), int(gamma))
                           if int(gamma) else None)
            engine = VllmEngine(str(model_dir(model)), speculative, max_model_len=160)
            try:
                measured = profile_decode(engine, store, GRID)
            finally:
                engine.close()
            print(f"{item}: {measured} points", file=sys.stderr, flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", nargs="*", default=list(DEFAULT_SLICES))
    return parser.parse_args()


if __name__ == "__main__":
    main()
