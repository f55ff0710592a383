"""`latts-tune profiles ...`: list, show, export and import measured profiles (wiring only)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click
from rich.table import Table

from storage import (
    CostGrid,
    ModelDetails,
    ProfileSummary,
    describe_model,
    export_profiles,
    import_profiles,
    short_fingerprint,
)
from tuner.cli.common import open_profile_store, stdout_console

HARDWARE_HELP = "Hardware fingerprint (a unique prefix is enough)."


@click.group()
def profiles() -> None:
    """Inspect, export and import measured profiles.

    Example: latts-tune profiles list
    """


@profiles.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def list_profiles(ctx: click.Context, as_json: bool) -> None:
    """List what is measured, one row per hardware, engine and model.

    Example: latts-tune profiles list --json
    """
    store = open_profile_store(ctx)
    summaries = store.summaries()
    if as_json:
        click.echo(json.dumps([dataclasses.asdict(summary) for summary in summaries], indent=2))
    elif not summaries:
        click.echo(f"No profiles in {store.url} yet. `latts-tune run` imports the embedded "
                   "testbed profile (studies/testbed/profile.json.gz) when it first runs; "
                   "`latts-tune profiles import FILE` imports another, `latts-tune profile "
                   "...` measures one.", err=True)
    else:
        stdout_console().print(_summary_table(summaries))


@profiles.command("show")
@click.argument("model")
@click.option("--hardware", help=HARDWARE_HELP + " Default: this machine's, when stored.")
@click.option("--engine-version", help="Engine version, when one hardware has several.")
@click.pass_context
def show_profile(
    ctx: click.Context, model: str, hardware: str | None, engine_version: str | None
) -> None:
    """Show one model's decode costs, acceptance rates and accuracy.

    Example: latts-tune profiles show tb-small --hardware 3f2a
    """
    from tuner.core.machine import this_machine_if_profiled

    store = open_profile_store(ctx)
    profile_set = store.load_profile_set(hardware or this_machine_if_profiled(store),
                                         engine_version)
    details = describe_model(profile_set, model)
    console = stdout_console()
    console.print(_details_header(details))
    for grid in details.cost_grids:
        what = "ms per step" if grid.phase == "decode" else "ms to first token"
        speculation = grid.speculation
        console.print(f"\n{grid.phase}: median {what}, draft "
                      f"{speculation.source if speculation else 'none'}, "
                      f"gamma {speculation.gamma if speculation else 0}")
        console.print(_cost_table(grid))
    if details.acceptance:
        console.print("\nacceptance")
        console.print(_acceptance_table(details))
    if details.accuracy:
        console.print("\naccuracy")
        console.print(_accuracy_table(details))


@profiles.command("card")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The Markdown file to write (e.g. studies/mine/CARD.md).")
@click.option("--title", default="Profile card", show_default=True, help="The card's heading.")
@click.option("--regenerate", default="latts-tune profiles card",
              help="The command the card names as the one that regenerates it.")
@click.option("--hardware", help=HARDWARE_HELP + " Default: this machine's, when stored.")
@click.pass_context
def card_command(ctx: click.Context, output: Path, title: str, regenerate: str,
                 hardware: str | None) -> None:
    """Write a profile's card: accuracy, step costs and acceptance per position.

    Example: latts-tune profiles card -o CARD.md --hardware 3f2a
    """
    from profilers.card import render_profile_card
    from storage import write_files
    from tuner.core.machine import this_machine_if_profiled

    store = open_profile_store(ctx)
    profile_set = store.load_profile_set(hardware or this_machine_if_profiled(store))
    write_files({output: render_profile_card(profile_set, title, regenerate)})
    click.echo(f"wrote {output}")


@profiles.command("export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--hardware", help=HARDWARE_HELP + " Default: all hardware.")
@click.pass_context
def export_command(ctx: click.Context, file: Path, hardware: str | None) -> None:
    """Export profiles to a .json, .json.gz or .csv file.

    Example: latts-tune profiles export profiles.json.gz --hardware 3f2a
    """
    counts = export_profiles(open_profile_store(ctx), file, hardware)
    click.echo(f"exported {_describe_counts(counts)} to {file}")


@profiles.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
def import_command(ctx: click.Context, file: Path) -> None:
    """Import profiles from a file written by `profiles export` (all or nothing).

    Example: latts-tune profiles import profiles.json.gz
    """
    counts = import_profiles(open_profile_store(ctx), file)
    click.echo(f"imported from {file}: new {_describe_counts(counts)}")


def _describe_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{kind.replace('_', ' ')} {count}" for kind, count in counts.items())


def _summary_table(summaries: list[ProfileSummary]) -> Table:
    table = Table("hardware", "engine", "model", "role", "decode", "prefill", "failed",
                  "acceptance drafts", "accuracy q x k")
    for summary in summaries:
        table.add_row(
            short_fingerprint(summary.hardware_fingerprint),
            summary.engine_version,
            summary.model,
            summary.role,
            str(summary.decode_points),
            str(summary.prefill_points),
            str(summary.failed_points),
            ", ".join(summary.acceptance_drafts) or "-",
            _questions_by_samples(summary),
        )
    return table


def _questions_by_samples(summary: ProfileSummary) -> str:
    if not summary.accuracy_questions:
        return "-"
    return f"{summary.accuracy_questions} x {summary.accuracy_samples_per_question}"


def _details_header(details: ModelDetails) -> str:
    model = details.model
    return (f"[bold]{model.name}[/bold] ({model.role}, {model.parameter_count:,} parameters) "
            f"on hardware {short_fingerprint(details.hardware_fingerprint)}, "
            f"engine {details.engine_version}")


def _cost_table(grid: CostGrid) -> Table:
    table = Table("batch \\ context", *map(str, grid.context_tokens))
    for batch_size in grid.batch_sizes:
        cells = [_milliseconds(grid.median_seconds, (batch_size, context))
                 for context in grid.context_tokens]
        table.add_row(str(batch_size), *cells)
    return table


def _milliseconds(medians: dict[tuple[int, int], float | None], key: tuple[int, int]) -> str:
    if key not in medians:
        return ""
    seconds = medians[key]
    return "failed" if seconds is None else f"{seconds * 1000:.2f}"


def _acceptance_table(details: ModelDetails) -> Table:
    table = Table("draft", "gamma", "task", "temperature", "drafts", "accepted",
                  "P(first k accepted), k = 1..gamma")
    for record in details.acceptance:
        accepted = record.num_accepted_tokens / max(record.num_draft_tokens, 1)
        table.add_row(record.speculation.source, str(record.gamma), record.task,
                      f"{record.temperature:g}",
                      str(record.num_drafts), f"{accepted:.3f}",
                      " ".join(f"{rate:.3f}" for rate in record.position_rates()))
    return table


def _accuracy_table(details: ModelDetails) -> Table:
    table = Table("task", "temperature", "questions x samples", "accuracy@1",
                  "mean generated tokens")
    for stats in details.accuracy:
        table.add_row(stats.task, f"{stats.temperature:g}",
                      f"{stats.questions} x {stats.samples_per_question}",
                      f"{stats.accuracy_at_1:.3f}", f"{stats.mean_generated_tokens:.1f}")
    return table
