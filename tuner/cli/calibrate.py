"""`latts-tune calibrate`: measure this machine against the profile (wiring only)."""

from __future__ import annotations

import json

import click

from tuner.cli.common import interrupt_message_for_study, open_database, stdout_console
from tuner.cli.options import Duration, spec_option


@click.command()
@spec_option
@click.option("--budget", type=Duration(), default="3m", show_default=True,
              help="Time for the whole calibration, engine starts included (e.g. 3m, 90s).")
@click.option("--questions", type=click.IntRange(min=2), default=8, show_default=True,
              help="Requests per branch count and engine configuration.")
@click.option("--json", "as_json", is_flag=True, help="JSON on stdout.")
@click.pass_context
def calibrate(ctx, spec_path, budget, questions, as_json):
    """Correct the profiled step costs for this machine: a few real requests per engine
    configuration, measured against their predicted latency, within a time budget.

    Example: latts-tune calibrate --budget 3m
    """
    from tuner.cli.progress import RichProgress
    from tuner.cli.tables import calibration_json, calibration_table
    from tuner.core.calibrate import calibrate as run_calibration
    from tuner.core.machine import MachineChoice
    from tuner.core.operations import open_workspace
    from tuner.core.spec import load_spec

    database = open_database(ctx)
    workspace = open_workspace(database, load_spec(spec_path), MachineChoice(feedback=False))
    with RichProgress() as progress, interrupt_message_for_study():
        report = run_calibration(workspace, database, _start_vllm_engine, budget_s=budget,
                                 questions=questions, progress=progress)
    if as_json:
        click.echo(json.dumps(calibration_json(report, workspace.source), indent=2))
        return
    stdout_console().print(calibration_table(report, workspace.source))


def _start_vllm_engine(model: str, speculative):
    from profilers.vllm_engine import VllmEngine

    return VllmEngine(model, speculative)
