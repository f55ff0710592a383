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
from profilers.testbed.card import (  # noqa: E402
    TestbedSettings,
    engine_configurations,
    register_family,
)
from storage import Database, ProfileStore, export_profiles  # noqa: E402
from tuner.cli.progress import RichProgress  # noqa: E402


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
        register_family(store)
        pool = EnginePool(lambda model, speculative: VllmEngine(
            model, speculative, max_model_len=settings.max_model_len))
        with pool, RichProgress() as progress:
            for config in engine_configurations(settings):
                profile_decode(config.start(pool), store, settings.grid, progress)
        export_profiles(store, out, describe_local_hardware().fingerprint)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
