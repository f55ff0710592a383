"""Help and README examples speak the testbed's units (issue 19): every option of every
command has help text, and every deadline an example shows lies in the embedded study's
feasible range, unless the same line says why not (a real model on a GPU)."""

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


@pytest.fixture(scope="module")
def feasible_range_s(tmp_path_factory) -> tuple[float, float]:
    """(the fastest bound, twice the bound where accuracy stops rising) of the testbed."""
    url = f"sqlite:///{tmp_path_factory.mktemp('examples') / 'latts.db'}"
    with Database(url) as db:
        workspace = open_workspace(db, load_spec(None), MachineChoice("any"))
    scored = [workspace.simulator.score(c, LatencyObjective())
              for c in workspace.space.configurations()]
    fastest_s, saturated_s = ranking.feasible_range_s(scored)
    return fastest_s, 2 * saturated_s


def example_lines() -> list[str]:
    lines = []
    for _, command in commands(cli):
        lines += (command.help or "").splitlines()
        lines += [param.help or "" for param in command.params if isinstance(param, click.Option)]
    readme = (ROOT / "README.md").read_text().splitlines()
    return lines + [line for line in readme if "latts-tune" in line]


def test_example_deadlines_are_in_the_testbeds_feasible_range(feasible_range_s):
    low_s, high_s = feasible_range_s
    checked = 0
    for line in example_lines():
        if any(reason in line.lower() for reason in EXPLAINED):
            continue
        if "deadline" not in line.lower():
            continue  # other durations (a calibration budget) are not deadlines
        for text in DURATION.findall(line):
            checked += 1
            assert low_s <= parse_duration(text) <= high_s, (
                f"{text} in {line.strip()!r} is outside the testbed's feasible range "
                f"{low_s * 1000:.0f}-{high_s * 1000:.0f} ms")
    assert checked >= 8
