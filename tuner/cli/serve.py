"""`latts-tune serve`: the preset's test-time-scaling gateway (wiring only)."""

from __future__ import annotations

from pathlib import Path

import click

from tuner.cli.common import open_database


@click.command()
@click.option("--preset", "preset_name", required=True,
              help="Stored preset name (see `latts-tune presets list`).")
@click.option("--upstream", "upstream_url", default=None, metavar="URL",
              help="A running vLLM server started from the preset's file, e.g. "
                   "http://127.0.0.1:8000 (its API key, if any, in LATTS_TUNE_API_KEY).")
@click.option("--start-engine", is_flag=True,
              help="Start vLLM from the preset's own server file on 127.0.0.1 and stop it "
                   "with the gateway.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; anything but loopback exposes the gateway (its clients "
                   "then need LATTS_TUNE_API_KEY).")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True,
              help="TCP port to listen on.")
@click.option("--max-concurrent", type=click.IntRange(min=1), default=None,
              help="Requests served at once [default: what the preset's server was sized "
                   "for, max-num-seqs / n]; beyond it clients get 429 with Retry-After.")
@click.pass_context
def serve(ctx, preset_name, upstream_url, start_engine, host, port, max_concurrent):
    """Serve a preset behind an OpenAI-compatible API: N branches, the vote, the deadline.

    Example: latts-tune serve --preset testbed-150ms-q0.9-t202 --start-engine
    """
    import tempfile

    import yaml

    from profilers import get_task
    from storage import PresetStore, TaskDefinitionStore, UserInputError
    from tuner.core.presets import Preset
    from tuner.gateway import serve as run_gateway
    from tuner.gateway import settings_from_preset

    if bool(upstream_url) == start_engine:
        raise click.UsageError("give --upstream URL or --start-engine (one of them)")
    db = open_database(ctx)
    preset = Preset.model_validate(PresetStore(db).get(preset_name).body)
    overrides = {"max_concurrent_requests": max_concurrent} if max_concurrent else {}
    overrides["resolved_task"] = get_task(preset.provenance.task, TaskDefinitionStore(db))
    settings = settings_from_preset(preset, upstream_url or "http://127.0.0.1:1", **overrides)
    if host not in ("127.0.0.1", "localhost", "::1") and not settings.api_key:
        raise UserInputError(f"--host {host} exposes the gateway: set LATTS_TUNE_API_KEY so "
                             "clients need a key")
    click.echo(f"Gateway for {preset.name} on http://{host}:{port}/v1 "
               f"({settings.n_branches} branches, {settings.vote_rule}, deadline "
               f"{settings.deadline_s:g} s); Ctrl-C stops it.", err=True)
    with tempfile.TemporaryDirectory() as folder:
        config = None
        if start_engine:
            config = Path(folder) / f"{preset.name}.vllm.yaml"
            config.write_text(yaml.safe_dump(preset.serving.vllm, sort_keys=False))
        try:
            run_gateway(settings, host, port, engine_config=config,
                        engine_env=preset.serving.environment)
        except KeyboardInterrupt:
            click.echo("\nStopped.", err=True)
