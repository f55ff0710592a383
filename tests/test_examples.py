"""Help and README examples speak the testbed's units (issue 19): every option of every
command has help text, and every deadline an example shows lies in its study's feasible
range (the embedded testbed's, or SmolLM2's on a line that names smollm2), unless the same
line says why not (a real model on a GPU)."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from storage import Database
from tuner.cli import cli
from tuner.core import ranking
from tuner.core.configuration import LatencyObjective
from tuner.core.durations import parse_duration
from tuner.core.machine import MachineChoice
from tuner.core.operations import open_workspace
from tuner.core.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
DURATION = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?(?:ms|s|m))(?![\w])")
EXPLAINED = ("gpu", "a large model", "real model", "e.g. 60s", "or 2m", "a slower machine")


def commands(group: click.Group, path=("latts-tune",)):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))
        else:
            yield " ".join((*path, name)), command


@pytest.mark.parametrize(("name", "command"), list(commands(cli)))
def test_every_option_has_help(name, command):
    bare = [param.opts[0] for param in command.params
            if isinstance(param, click.Option) and not (param.help or "").strip()]
    assert not bare, f"{name}: options without help: {', '.join(bare)}"


SMOLLM2_SPEC = ROOT / "studies" / "smollm2" / "smollm2.yaml"


def feasible_range_of(spec_path: Path | None, folder: Path) -> tuple[float, float]:
    """(the fastest bound, twice the bound where accuracy stops rising) of a study."""
    with Database(f"sqlite:///{folder / 'latts.db'}") as db:
        workspace = open_workspace(db, load_spec(spec_path), MachineChoice("any"))
    scored = [workspace.simulator.score(c, LatencyObjective())
              for c in workspace.space.configurations()]
    fastest_s, saturated_s = ranking.feasible_range_s(scored)
    return fastest_s, 2 * saturated_s


@pytest.fixture(scope="module")
def feasible_range_s(tmp_path_factory) -> dict[str, tuple[float, float]]:
    """The feasible range of the embedded testbed study and of the SmolLM2 study (lines
    that name smollm2 are its examples)."""
    return {"testbed": feasible_range_of(None, tmp_path_factory.mktemp("testbed")),
            "smollm2": feasible_range_of(SMOLLM2_SPEC, tmp_path_factory.mktemp("smollm2"))}


def example_lines() -> list[str]:
    lines = []
    for _, command in commands(cli):
        lines += (command.help or "").splitlines()
        lines += [param.help or "" for param in command.params if isinstance(param, click.Option)]
    readme = (ROOT / "README.md").read_text().splitlines()
    return lines + [line for line in readme if "latts-tune" in line]


def test_example_deadlines_are_in_their_studys_feasible_range(feasible_range_s):
    checked = 0
    for line in example_lines():
        if any(reason in line.lower() for reason in EXPLAINED):
            continue
        if "deadline" not in line.lower():
            continue  # other durations (a calibration budget) are not deadlines
        study = "smollm2" if "smollm2" in line.lower() else "testbed"
        low_s, high_s = feasible_range_s[study]
        for text in DURATION.findall(line):
            checked += 1
            assert low_s <= parse_duration(text) <= high_s, (
                f"{text} in {line.strip()!r} is outside the {study} study's feasible range "
                f"{low_s * 1000:.0f}-{high_s * 1000:.0f} ms")
    assert checked >= 8
