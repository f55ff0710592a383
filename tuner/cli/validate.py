"""`latts-tune validate`: run a stored preset on the real engine (wiring only)."""

from __future__ import annotations

import json
import os

import click

from tuner.cli.common import API_KEY_VARIABLE, open_database, server_engine, stdout_console


def _start_vllm_engine(model: str, speculative, max_model_len: int | None):
    from profilers.vllm_engine import VllmEngine

    return VllmEngine(model, speculative, max_model_len=max_model_len)


def _server_starter(server_url: str):
    def start(model: str, speculative, max_model_len: int | None):
        return server_engine(server_url, model, speculative, model_must_be_served=True)

    return start


@click.command()
@click.option("--preset", "preset_name", required=True,
              help="Stored preset name (see `latts-tune presets list`).")
@click.option("--questions", type=click.IntRange(min=1), default=100, show_default=True,
              help="How many questions of --split to run (the validation split by default).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Which disjoint slice of the split to run (0: the first questions).")
@click.option("--split", default="validation", show_default=True,
              help="Question split; 'heldout' is the accuracy profile's own.")
@click.option("--server-url", default=None, metavar="URL",
              help="Run through a server already started with the preset's command "
                   "(vllm serve ...) at URL instead of starting vLLM here; its API key, if "
                   f"any, from {API_KEY_VARIABLE}.")
@click.option("--gateway-url", default=None, metavar="URL",
              help="Run through the preset's gateway (latts-tune serve) on this machine, one "
                   "request per question as a deployed client sends it.")
@click.option("--feedback/--no-feedback", default=True, show_default=True,
              help="Store this run as a latency check that corrects later predictions for "
                   "this machine.")
@click.option("--json", "as_json", is_flag=True, help="JSON on stdout.")
@click.pass_context
def validate(ctx, preset_name, questions, seed, split, server_url, gateway_url, feedback,
             as_json):
    """Run a preset on the real engine and compare measured with predicted figures.

    Example: latts-tune validate --preset testbed-150ms-q0.9-t202 --questions 100
    """
    from tuner.cli.progress import RichProgress
    from tuner.cli.validation_tables import validation_footer, validation_json, validation_table
    from tuner.core.validate import validate_preset, validate_through_gateway

    if server_url and gateway_url:
        raise click.UsageError("give --server-url or --gateway-url, not both")
    with RichProgress() as progress:
        if gateway_url:
            record = validate_through_gateway(
                open_database(ctx), preset_name, gateway_url, questions=questions, seed=seed,
                split=split, api_key=os.environ.get(API_KEY_VARIABLE) or None,
                progress=progress)
        else:
            starter = _server_starter(server_url) if server_url else _start_vllm_engine
            record = validate_preset(open_database(ctx), preset_name, starter,
                                     questions=questions, seed=seed, split=split,
                                     progress=progress, feedback=feedback)
    if as_json:
        click.echo(json.dumps(validation_json(record), indent=2))
        return
    console = stdout_console()
    console.print(validation_table(record))
    console.print(validation_footer(record))
