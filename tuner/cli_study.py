"""`latts-tune run|frontier|export|presets`: tune under a deadline and ship presets (wiring)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from tuner.durations import Duration, DurationRange

_spec_option = click.option(
    "--spec", "spec_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None, help="Study spec YAML [default: the embedded studies/testbed.yaml].",
)
_quantile_option = click.option(
    "--quantile", type=click.FloatRange(0, 1, min_open=True), default=None,
    help="Deadline applies to this latency quantile [default: the spec's, 0.9].",
)
_mean_option = click.option("--mean", is_flag=True, help="Deadline applies to mean latency.")
_cutoff_option = click.option(
    "--cutoff/--no-cutoff", default=None,
    help="Model a hard cutoff: branches still running at the deadline are dropped.",
)
_json_option = click.option("--json", "as_json", is_flag=True, help="JSON on stdout.")


def _open_database(ctx: click.Context):
    from storage import Database

    database = Database(ctx.obj["storage"])
    ctx.call_on_close(database.close)
    return database


def _latency(spec, quantile: float | None, mean: bool, cutoff: bool | None):
    from tuner.simulator import LatencyObjective

    if mean and quantile is not None:
        raise click.UsageError("give --quantile or --mean, not both")
    statistic = "mean" if mean else ("quantile" if quantile else spec.latency.statistic)
    return LatencyObjective(statistic, quantile or spec.latency.quantile,
                            spec.cutoff if cutoff is None else cutoff)


def _quiet_optuna() -> None:
    import optuna

    # Optuna logs every trial at INFO on its own handler; our -v controls logging.
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _console():
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        console = Console(width=120)  # piped output: keep table rows on one line
    return console


@click.command()
@click.option("--deadline", type=Duration(), required=True,
              help="Per-question latency deadline, e.g. 60s, 1.5s, 500ms, 2m.")
@_spec_option
@_quantile_option
@_mean_option
@_cutoff_option
@click.option("--study-name", default=None,
              help="Study name [default: SPEC-DEADLINE-STATISTIC]; the same name resumes.")
@_json_option
@click.option("--top", type=click.IntRange(min=1), default=5, show_default=True,
              help="How many of the best configurations to show.")
@click.pass_context
def run(ctx, deadline, spec_path, quantile, mean, cutoff, study_name, as_json, top):
    """Find the most accurate configuration whose predicted latency meets the deadline.

    Example: latts-tune run --deadline 2s
    """
    from tuner.report import outcome_footer, outcome_json, outcome_table
    from tuner.service import tune
    from tuner.spec import load_spec

    _quiet_optuna()
    spec = load_spec(spec_path)
    latency = _latency(spec, quantile, mean, cutoff)
    _, outcome = tune(_open_database(ctx), spec, deadline, latency, study_name)
    if as_json:
        click.echo(json.dumps(outcome_json(outcome, top), indent=2))
        return
    console = _console()
    console.print(outcome_table(outcome, top))
    console.print(outcome_footer(outcome))


@click.command()
@click.option("--deadlines", type=DurationRange(), required=True,
              help="START:STOP:COUNT evenly spaced deadlines, e.g. 0.5s:5s:10.")
@_spec_option
@_quantile_option
@_mean_option
@_cutoff_option
@_json_option
@click.pass_context
def frontier(ctx, deadlines, spec_path, quantile, mean, cutoff, as_json):
    """Show the best predicted accuracy for each deadline and where the optimum changes.

    Example: latts-tune frontier --deadlines 0.5s:5s:10
    """
    from tuner.report import frontier_json, frontier_table
    from tuner.service import deadline_frontier
    from tuner.spec import load_spec

    spec = load_spec(spec_path)
    latency = _latency(spec, quantile, mean, cutoff)
    points = deadline_frontier(_open_database(ctx), spec, deadlines, latency)
    if as_json:
        click.echo(json.dumps(frontier_json(points), indent=2))
        return
    _console().print(frontier_table(points, latency))


@click.command()
@click.option("--study", "study_name", required=True, help="Study name (see `latts-tune run`).")
@click.option("--trial", "trial_number", type=click.IntRange(min=0), default=None,
              help="Trial number [default: the best feasible trial].")
@click.option("--format", "output_format", type=click.Choice(["vllm", "sglang", "json"]),
              default="vllm", show_default=True, help="Which files to write.")
@click.option("-o", "--output-dir", type=click.Path(file_okay=False, path_type=Path),
              required=True, help="Directory for the preset files.")
@click.pass_context
def export(ctx, study_name, trial_number, output_format, output_dir):
    """Write a study's best (or a chosen) trial as a preset and store it in the database.

    Example: latts-tune export --study testbed-2s-q0.9 --format vllm -o presets/
    """
    from tuner.service import export_preset

    _quiet_optuna()
    preset, paths = export_preset(_open_database(ctx), study_name, trial_number,
                                  output_format, output_dir)
    click.echo(f"Preset {preset.name} (stored in the database):")
    for path in paths:
        click.echo(f"  {path}")


@click.group()
def presets():
    """List and show stored presets.

    Example: latts-tune presets list
    """


@presets.command("list")
@click.pass_context
def presets_list(ctx):
    """List stored presets: name, study, trial, predicted accuracy and latency.

    Example: latts-tune presets list
    """
    from storage import PresetStore

    for record in PresetStore(_open_database(ctx)).list():
        predicted = record.body.get("predicted", {})
        click.echo(f"{record.name}\tstudy={record.study_name}\ttrial={record.trial_number}\t"
                   f"accuracy={predicted.get('accuracy', float('nan')):.3f}\t"
                   f"latency_s={predicted.get('latency_s', float('nan')):.3f}")


@presets.command("show")
@click.argument("name")
@click.pass_context
def presets_show(ctx, name):
    """Print a stored preset as JSON.

    Example: latts-tune presets show testbed-2s-q0.9-t12
    """
    from storage import PresetStore

    record = PresetStore(_open_database(ctx)).get(name)
    click.echo(json.dumps(record.body, indent=2))


COMMANDS = (run, frontier, export, presets)
