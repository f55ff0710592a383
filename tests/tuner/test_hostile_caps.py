"""Every cap of the bounded loader (storage.files), hit by an input at least 10x over it: the
command fails with its one line, exit code 2, in under 5 s and under 500 MB.

Each case runs the command in a fresh Python process and reports the seconds from the
command's start (imports excluded: they are the same for every command) and the process's
peak resident memory, imports included (VmHWM: unlike `ru_maxrss`, which a child inherits
from the parent it was forked from, it starts afresh at exec).
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from storage import MAX_PRESET_BYTES, MAX_PROFILE_BYTES, MAX_SPEC_BYTES, Database
from storage.files import YAML_MAX_ALIASES, YAML_MAX_DEPTH, YAML_MAX_VALUES

REPO = Path(__file__).resolve().parents[2]
MAX_SECONDS = 5.0
MAX_PEAK_MB = 500.0
OVER = 10  # how many times over its cap each input is
PROFILE_MB = MAX_PROFILE_BYTES // 1_000_000

MEASURE = """
import json, sys, time
from click.testing import CliRunner
from tuner.cli import cli
start = time.perf_counter()
result = CliRunner().invoke(cli, sys.argv[1:])
seconds = time.perf_counter() - start
status = open("/proc/self/status").read().split("VmHWM:")[1].split()
print(json.dumps({"exit_code": result.exit_code, "output": result.output, "seconds": seconds,
                  "peak_mb": int(status[0]) / 1024}))
"""


def measured(*args: str) -> dict:
    """Run `latts-tune ARGS` in a fresh process; its exit code, output, seconds, peak MB."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", MEASURE, *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def url(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("caps") / "latts.db"
    Database(str(path)).close()
    return f"sqlite:///{path}"


def _spec(path: Path, extra: str) -> Path:
    path.write_text("name: fam\ntask: arithmetic\n" + extra)
    return path


def _nested_aliases(levels: int, width: int) -> str:
    """YAML aliases that expand to width**levels values."""
    lines = [f"  a0: &a0 [{', '.join(['x'] * width)}]"]
    lines += [f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def _gzip_bomb(path: Path, expanded_bytes: int) -> int:
    """Write a gzip file of a few MB that expands to at least `expanded_bytes` of JSON
    whitespace: one compressed member of 16 MiB, repeated (a gzip file may hold several
    members). Returns the expanded size."""
    member_bytes = 16 << 20
    member = gzip.compress(b" " * member_bytes, compresslevel=9)
    members = -(-expanded_bytes // member_bytes)
    with path.open("wb") as stream:
        for _ in range(members):
            stream.write(member)
    return members * member_bytes


def _cases(tmp: Path) -> dict[str, tuple[list[str], str, float]]:
    """Case -> (command, expected last line, how many times over its cap the input is)."""
    big_spec = _spec(tmp / "big.yaml", "# " + "x" * (OVER * MAX_SPEC_BYTES) + "\n")
    big_preset = tmp / "big.preset.json"
    big_preset.write_text(json.dumps({"pad": "x" * (OVER * MAX_PRESET_BYTES)}))
    sparse = tmp / "sparse.json"
    with sparse.open("wb") as stream:  # sparse: 2.56 GB that take no disk
        stream.truncate(OVER * MAX_PROFILE_BYTES)
    bomb = tmp / "bomb.json.gz"
    expanded_bytes = _gzip_bomb(bomb, OVER * MAX_PROFILE_BYTES)
    aliases = _spec(tmp / "aliases.yaml",
                    "v: &v 1\nw: [" + ", ".join(["*v"] * OVER * YAML_MAX_ALIASES) + "]\n")
    levels = OVER * YAML_MAX_DEPTH
    deep = _spec(tmp / "deep.yaml", "w: " + "[" * levels + "]" * levels + "\n")
    laughs = tmp / "laughs.preset.yaml"  # the 1.2 KB preset
    laughs.write_text("latts_preset: 1\nname: x\nserving:\n vllm:\n"
                      + _nested_aliases(9, 10))
    return {
        "spec-size": (["run", "--deadline", "6s", "--spec", str(big_spec)],
                      f"Error: {big_spec} is 10.0 MB; a study spec is at most 1 MB",
                      big_spec.stat().st_size / MAX_SPEC_BYTES),
        "preset-size": (["presets", "import", str(big_preset)],
                        f"Error: {big_preset} is 10.0 MB; a preset file is at most 1 MB",
                        big_preset.stat().st_size / MAX_PRESET_BYTES),
        "profile-size": (["profiles", "import", str(sparse)],
                         f"Error: {sparse} is {OVER * PROFILE_MB:.1f} MB; a profile file is at "
                         f"most {PROFILE_MB} MB",
                         sparse.stat().st_size / MAX_PROFILE_BYTES),
        "profile-decompressed": (["profiles", "import", str(bomb)],
                                 f"Error: {bomb} expands to more than {PROFILE_MB} MB; a "
                                 f"profile file is at most {PROFILE_MB} MB uncompressed",
                                 expanded_bytes / MAX_PROFILE_BYTES),
        "yaml-aliases": (["run", "--deadline", "6s", "--spec", str(aliases)],
                         f"Error: {aliases}: more than 100 YAML aliases", OVER),
        "yaml-depth": (["run", "--deadline", "6s", "--spec", str(deep)],
                       f"Error: {deep}: YAML nested deeper than 32 levels", OVER),
        "yaml-expansion": (["presets", "import", str(laughs)],
                           f"Error: {laughs}: YAML aliases expand to more than 100,000 values",
                           10**9 / YAML_MAX_VALUES),
    }


CASE_NAMES = ("spec-size", "preset-size", "profile-size", "profile-decompressed",
              "yaml-aliases", "yaml-depth", "yaml-expansion")


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    return _cases(tmp_path_factory.mktemp("over-cap"))


@pytest.mark.parametrize("case", CASE_NAMES)
def test_ten_times_over_a_cap_fails_fast_in_bounded_memory(url, cases, case):
    args, expected, times_over = cases[case]
    assert times_over >= OVER
    result = measured("--storage", url, *args)
    print(f"\n{case}: {times_over:.0f}x over its cap, {result['seconds']:.2f} s, "
          f"peak {result['peak_mb']:.0f} MB")
    assert result["exit_code"] == 2, result["output"]
    assert result["output"].strip().splitlines()[-1] == expected
    assert result["seconds"] < MAX_SECONDS
    assert result["peak_mb"] < MAX_PEAK_MB
