"""`latts-tune run|frontier|export|presets`: tune under a deadline and ship presets (wiring)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from tuner.cli.common import open_database, print_note, stdout_console
from tuner.cli.options import (
    Duration,
    DurationRange,
    FiniteFloatRange,
    LoadParam,
    LoadRange,
    StudyName,
    confidence_option,
    cutoff_option,
    json_option,
    latency_objective,
    machine_choice,
    machine_options,
    max_num_seqs_option,
    mean_option,
    quantile_option,
    quiet_optuna,
    spec_option,
)


@click.command()
@click.option("--deadline", type=Duration(), required=True,
              help="Per-question latency deadline with a unit, e.g. 150ms (the testbed answers "
                   "in 50-200 ms; a large model on a GPU may need 60s or 2m).")
@click.option("--load", type=LoadParam(), default=None,
              help="Predict under this load: 2rps (Poisson arrivals), 4conc (4 clients, "
                   "closed loop) or trace:FILE (arrival seconds, one per line) "
                   "[default: one request at a time].")
@max_num_seqs_option
@spec_option
@quantile_option
@mean_option
@cutoff_option
@confidence_option
@machine_options
@click.option("--study-name", type=StudyName(), default=None,
              help="Study name [default: SPEC-DEADLINE-STATISTIC]; the same name resumes.")
@json_option
@click.option("--top", type=click.IntRange(min=1), default=5, show_default=True,
              help="How many of the best configurations to show.")
@click.option("--mode", type=click.Choice(["predict", "measure"]), default="predict",
              show_default=True,
              help="predict: score with the simulator; measure: run trials on the engine.")
@click.option("--budget-trials", type=click.IntRange(min=1), default=8, show_default=True,
              help="Measure mode: trials to complete (a rerun continues the study).")
@click.option("--questions", type=click.IntRange(min=1), default=20, show_default=True,
              help="Measure mode: validation-split questions per trial.")
@click.pass_context
def run(ctx, deadline, load, max_num_seqs, spec_path, quantile, mean, cutoff, confidence,
        hardware, feedback, study_name, as_json, top, mode, budget_trials, questions):
    """Find the most accurate configuration whose latency meets the deadline.

    Example: latts-tune run --deadline 150ms

    Under load: latts-tune run --deadline 150ms --load 4rps

    On the engine: latts-tune run --deadline 150ms --mode measure --budget-trials 8
    """
    from tuner.cli.tables import outcome_footer, outcome_json, outcome_table
    from tuner.core.operations import tune
    from tuner.core.spec import load_spec
    from tuner.review.dashboard import save_study_figures

    quiet_optuna()
    spec = load_spec(spec_path)
    latency = latency_objective(spec, quantile, mean, cutoff, confidence)
    machine = machine_choice(hardware, feedback)
    if mode == "measure" and (load is not None or max_num_seqs is not None):
        raise click.UsageError("--load and --max-num-seqs predict; measure mode runs one "
                               "request at a time")
    if max_num_seqs is not None and load is None:
        raise click.UsageError("--max-num-seqs applies under --load")
    if mode == "measure":
        _run_measured(ctx, spec, deadline, latency, study_name, as_json, budget_trials,
                      questions, machine)
        return
    # The figures are saved into the study for `latts-tune dashboard`.
    workspace, outcome = tune(open_database(ctx), spec, deadline, latency, study_name,
                              on_finish=save_study_figures, machine=machine, load=load,
                              max_num_seqs=max_num_seqs)
    if as_json:
        click.echo(json.dumps(outcome_json(outcome, top, workspace.source, load), indent=2))
        return
    console = stdout_console()
    print_note(console, workspace.source)
    console.print(outcome_table(outcome, top, workspace.source, load))
    for line in outcome_footer(outcome):
        console.print(line, soft_wrap=True)


def _run_measured(ctx, spec, deadline, latency, study_name, as_json, budget_trials,
                  questions, machine):
    from tuner.cli.common import interrupt_message_for_study, measure_engine_pool
    from tuner.cli.progress import RichProgress
    from tuner.cli.validation_tables import measured_footer, measured_json, measured_table
    from tuner.core.measure import MeasureSettings, measure_study

    measuring = MeasureSettings(budget_trials=budget_trials, questions=questions)
    database = open_database(ctx)
    with measure_engine_pool() as pool, RichProgress() as progress, \
            interrupt_message_for_study():
        outcome = measure_study(database, spec, deadline, latency, measuring, pool,
                                study_name=study_name, progress=progress, machine=machine)
    if as_json:
        click.echo(json.dumps(measured_json(outcome), indent=2))
        return
    console = stdout_console()
    console.print(measured_table(outcome))
    console.print(measured_footer(outcome))


@click.command()
@click.option("--deadlines", type=DurationRange(), default=None,
              help="START:STOP:COUNT evenly spaced deadlines, e.g. 70ms:200ms:8.")
@click.option("--loads", type=LoadRange(), default=None,
              help="Instead: START:STOP:COUNT loads at one --deadline, e.g. 0.5rps:8rps:6 "
                   "or 1conc:8conc:8; shows where the best configuration switches.")
@click.option("--deadline", type=Duration(), default=None,
              help="The deadline of --loads, e.g. 150ms.")
@max_num_seqs_option
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="With --loads: also write an HTML report with its figure.")
@spec_option
@quantile_option
@mean_option
@cutoff_option
@confidence_option
@machine_options
@json_option
@click.pass_context
def frontier(ctx, deadlines, loads, deadline, max_num_seqs, report_path, spec_path, quantile,
             mean, cutoff, confidence, hardware, feedback, as_json):
    """Show the best predicted accuracy for each deadline and where the optimum changes.

    Example: latts-tune frontier --deadlines 70ms:200ms:8

    Under load: latts-tune frontier --loads 0.5rps:8rps:6 --deadline 150ms
    """
    from tuner.cli.tables import frontier_json, frontier_table
    from tuner.core.operations import deadline_frontier
    from tuner.core.spec import load_spec

    if (deadlines is None) == (loads is None):
        raise click.UsageError("give --deadlines, or --loads with --deadline")
    if loads is None and (deadline is not None or max_num_seqs is not None or report_path):
        raise click.UsageError("--deadline, --max-num-seqs and --report go with --loads")
    spec = load_spec(spec_path)
    latency = latency_objective(spec, quantile, mean, cutoff, confidence)
    if loads is not None:
        if deadline is None:
            raise click.UsageError("--loads needs --deadline, e.g. --deadline 150ms")
        _load_frontier(ctx, spec, loads, deadline, latency, machine_choice(hardware, feedback),
                       max_num_seqs, report_path, as_json)
        return
    workspace, points = deadline_frontier(open_database(ctx), spec, deadlines, latency,
                                          machine_choice(hardware, feedback))
    if as_json:
        click.echo(json.dumps(frontier_json(points, workspace.source), indent=2))
        return
    console = stdout_console()
    print_note(console, workspace.source)
    console.print(frontier_table(points, latency, workspace.source))


def _load_frontier(ctx, spec, loads, deadline, latency, machine, max_num_seqs, report_path,
                   as_json):
    from tuner.cli.tables import load_frontier_json, load_frontier_table, switch_lines
    from tuner.core.operations import load_switches

    workspace, points = load_switches(open_database(ctx), spec, loads, deadline, latency,
                                      machine, max_num_seqs)
    if report_path is not None:
        from tuner.review.html_report import write_load_report

        write_load_report(points, deadline, latency, workspace.source, report_path)
    if as_json:
        click.echo(json.dumps(load_frontier_json(points, deadline, workspace.source),
                              indent=2))
        return
    console = stdout_console()
    print_note(console, workspace.source)
    console.print(load_frontier_table(points, deadline, latency, workspace.source))
    for line in switch_lines(points):
        console.print(line)
    if report_path is not None:
        click.echo(f"Report written to {report_path}")


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

    Example: latts-tune export --study testbed-150ms-q0.9 --format vllm -o presets/
    """
    from tuner.core.operations import export_preset

    quiet_optuna()
    preset, paths = export_preset(open_database(ctx), study_name, trial_number,
                                  output_format, output_dir)
    click.echo(f"Preset {preset.name} (stored in the database):")
    for path in paths:
        click.echo(f"  {path}")
    server_files = [path for path in paths if path.name.endswith(".vllm.yaml")]
    if server_files:
        click.echo(f"Start the server: {preset.serving.vllm_command(str(server_files[0]))}")


@click.group()
def presets():
    """List and show stored presets.

    Example: latts-tune presets list
    """


@presets.command("list")
@json_option
@click.pass_context
def presets_list(ctx, as_json):
    """List stored presets: name, study, trial, predicted accuracy and latency statistic.

    Example: latts-tune presets list
    """
    from storage import PresetStore
    from tuner.cli.tables import preset_rows, presets_table

    records = PresetStore(open_database(ctx)).list()
    if as_json:
        click.echo(json.dumps(preset_rows(records), indent=2))
    elif not records:
        click.echo("No presets yet: `latts-tune export --study NAME -o presets/` stores one.")
    else:
        stdout_console().print(presets_table(records))


@presets.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
def presets_import(ctx, path):
    """Check a preset file (e.g. edited by hand) and store it, replacing one of its name.

    Example: latts-tune presets import presets/testbed-150ms-q0.9-t203.preset.json
    """
    from tuner.core.operations import import_preset

    preset, changed = import_preset(open_database(ctx), path)
    click.echo(f"stored preset {preset.name}"
               + ("; its prediction was made again for what it now deploys (the file's "
                  "no longer matched)" if changed else ""))


@presets.command("show")
@click.argument("name")
@click.pass_context
def presets_show(ctx, name):
    """Print a stored preset as JSON.

    Example: latts-tune presets show testbed-150ms-q0.9-t202
    """
    from storage import PresetStore

    record = PresetStore(open_database(ctx)).get(name)
    click.echo(json.dumps(record.body, indent=2))


@click.command()
@click.option("--study", "study_name", type=StudyName(), required=True,
              help="Study to join; created when missing (needs --deadline).")
@spec_option
@click.option("--deadline", type=Duration(), default=None,
              help="Deadline of a new study, e.g. 150ms [default: the stored study's].")
@click.option("--load", type=LoadParam(), default=None,
              help="Load of a new study, as `run --load` [default: the stored study's].")
@quantile_option
@mean_option
@cutoff_option
@confidence_option
@machine_options
@click.option("--n-trials", type=click.IntRange(min=1), default=None,
              help="Budget of complete trials for a new study [default: the space's size, "
                   "at most the spec's max_trials].")
@click.option("--heartbeat-seconds", type=click.IntRange(min=1), default=10, show_default=True,
              help="How often a running trial records that its worker is alive.")
@click.option("--grace-seconds", type=click.IntRange(min=2), default=30, show_default=True,
              help="A running trial silent this long is failed and retried by another worker.")
@click.option("--min-trial-seconds", type=FiniteFloatRange(min=0), default=0.0,
              help="Pace trials: each holds its slot at least this long (spreads the load "
                   "on a shared database; the fault tests use it to catch a trial running).")
@click.pass_context
def worker(ctx, study_name, spec_path, deadline, load, quantile, mean, cutoff, confidence,
           hardware, feedback, n_trials, heartbeat_seconds, grace_seconds, min_trial_seconds):
    """Join a study on a shared database and run trials until its budget is complete.

    Example: latts-tune worker --study testbed-150ms --deadline 150ms
    """
    from tuner.core.operations import work_on_study
    from tuner.core.spec import load_spec
    from tuner.core.workers import WorkerOptions, quiet_worker_warnings

    quiet_optuna()
    quiet_worker_warnings()
    spec = load_spec(spec_path)
    options = WorkerOptions(heartbeat_seconds, grace_seconds, min_trial_s=min_trial_seconds)
    try:
        latency = latency_objective(spec, quantile, mean, cutoff, confidence)
        report = work_on_study(open_database(ctx), spec, study_name, deadline, latency,
                               n_trials, options, machine_choice(hardware, feedback), load)
    except KeyboardInterrupt:
        click.echo("\nInterrupted: the running trial is marked failed; completed trials are "
                   "stored and other workers go on.", err=True)
        raise SystemExit(130) from None
    click.echo(f"worker {report.worker}: {report.completed} trials completed "
               f"({report.pruned} pruned); study {report.study_name} has "
               f"{report.study_complete}/{report.budget} complete trials")


COMMANDS = (run, frontier, export, presets, worker)
