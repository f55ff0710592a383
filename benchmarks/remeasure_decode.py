"""Re-measure every testbed decode grid on the real engine, as an independent measurement.

The same grids, repeats and engine settings as `latts-tune testbed card`, into a fresh
database; exported to OUT, a profile file `benchmarks/budgeted_profiling.py` reads (by
default every benchmarks/results/testbed_decode_remeasured_*.json.gz). Takes about 9
minutes on a 2-core CPU machine; run it on a quiet machine (other CPU work shifts the
timings).

Usage: python benchmarks/remeasure_decode.py OUT.json.gz
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from profilers import EnginePool, describe_local_hardware  # noqa: E402
from profilers.decode import profile_decode  # noqa: E402
from profilers.engine import SpeculativeConfig  # noqa: E402
from profilers.models import read_model_record  # noqa: E402
from profilers.testbed.card import TestbedSettings, _with_relative_path  # noqa: E402
from profilers.testbed.family import FAMILY, model_dir  # noqa: E402
from storage import Database, ProfileStore, export_profiles  # noqa: E402
from tuner.progress import RichProgress  # noqa: E402


def engine_configurations(settings: TestbedSettings):
    """(model, speculative config or None) for every decode slice the card measures."""
    drafts = [size.name for size in FAMILY if size.role == "draft"]
    for size in FAMILY:
        yield size.name, None
    for size in (size for size in FAMILY if size.role == "target"):
        for draft in drafts:
            for gamma in settings.gammas:
                yield size.name, SpeculativeConfig(str(model_dir(draft)), gamma)


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    out = Path(sys.argv[1])
    from profilers.vllm_engine import VllmEngine

    settings = TestbedSettings()
    with tempfile.TemporaryDirectory() as folder, \
            Database(f"sqlite:///{folder}/remeasure.db") as db:
        store = ProfileStore(db)
        for size in FAMILY:
            store.upsert_model(_with_relative_path(
                read_model_record(str(model_dir(size.name)), size.role)))
        pool = EnginePool(lambda model, speculative: VllmEngine(
            model, speculative, max_model_len=settings.max_model_len))
        with pool, RichProgress() as progress:
            for name, speculative in engine_configurations(settings):
                profile_decode(pool.get(str(model_dir(name)), speculative), store,
                               settings.grid, progress)
        export_profiles(store, out, describe_local_hardware().fingerprint)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
