"""Behaviour kept across the restructuring of release 0.2: without a margin (confidence
0.5, which release 0.1 did not have) and with the profiled machine's costs, `run` prints
the rows release 0.1 printed, on a fresh database and on a database release 0.1 wrote."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

from click.testing import CliRunner

from tuner.cli import cli

TESTS = Path(__file__).resolve().parents[1]
GOLDEN_150MS = TESTS / "tuner" / "golden" / "run_150ms.txt"
RELEASE_0_1 = TESTS / "fixtures" / "release_0_1_0"


def rows_of(output: str) -> list[tuple[str, ...]]:
    """The printed table's data rows as cells (the title names the hardware, the footer
    the database path; column widths follow the labels)."""
    return [tuple(cell.strip() for cell in line.strip("│").split("│"))
            for line in output.splitlines() if line.startswith("│")]


def relabelled(rows: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """Release 0.1's cells with the label renamed since (issue 19): "g=2" reads "gamma=2",
    as everywhere else."""
    return [tuple(cell.replace(" g=", " gamma=") for cell in row) for row in rows]


def run(storage: str, *args: str) -> str:
    result = CliRunner().invoke(cli, ["--storage", storage, "run", *args],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_run_150ms_on_a_fresh_database_prints_release_0_1s_table(tmp_path):
    output = run(f"sqlite:///{tmp_path / 'fresh.db'}", "--deadline", "150ms",
                 "--confidence", "0.5", "--hardware", "any")
    assert rows_of(output) == relabelled(rows_of(GOLDEN_150MS.read_text()))
    assert "240 trials (240 new;" in output


def test_a_release_0_1_database_resumes_its_study_unchanged(tmp_path):
    database = tmp_path / "old.db"
    with gzip.open(RELEASE_0_1 / "latts-tune.db.gz") as source, database.open("wb") as target:
        shutil.copyfileobj(source, target)
    shutil.copy(RELEASE_0_1 / "profile_v1.json.gz", tmp_path)
    spec = shutil.copy(RELEASE_0_1 / "small.yaml", tmp_path)
    output = run(f"sqlite:///{database}", "--deadline", "60ms", "--spec", str(spec),
                 "--confidence", "0.5", "--hardware", "any", "--study-name", "small-60ms-q0.9")
    assert rows_of(output) == relabelled(rows_of((RELEASE_0_1 / "run_60ms.txt").read_text()))
    assert "48 trials (0 new;" in output  # every stored trial was read back, none re-scored
