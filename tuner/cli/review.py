"""`latts-tune dashboard|report`: review stored studies in a browser (wiring)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from tuner.cli.common import open_database

HOST_ENV = "LATTS_TUNE_DASHBOARD_HOST"


@click.command()
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True,
              help="TCP port to listen on.")
@click.option("--host", default=None,
              help="Address to bind [default: 127.0.0.1]; anything else exposes the studies "
                   "to the network and must be given here explicitly.")
@click.pass_context
def dashboard(ctx, port, host):
    """Serve optuna-dashboard over the project database (studies, trials, figures).

    Example: latts-tune dashboard --port 8080
    """
    from tuner.review.dashboard import check_host, is_loopback, serve

    bind = check_host(host, os.environ.get(HOST_ENV))
    if not is_loopback(bind):
        click.echo(f"Warning: binding {bind}: anyone who can reach this machine on port "
                   f"{port} can read and edit the studies.", err=True)
    click.echo(f"Dashboard on http://{_url_host(bind)}:{port}/ (Ctrl-C stops it)", err=True)
    serve(open_database(ctx).url, bind, port)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@click.command()
@click.option("--study", "study_name", required=True, help="Study name (see `latts-tune run`).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("report.html"), show_default=True, help="HTML file to write.")
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True,
              help="How many of the best configurations to list.")
@click.pass_context
def report(ctx, study_name, output, top):
    """Write one self-contained HTML report of a study (opens offline).

    Example: latts-tune report --study testbed-150ms-q0.9 -o report.html
    """
    from tuner.review.html_report import write_study_report

    path = write_study_report(open_database(ctx), study_name, output, top)
    click.echo(f"Report written to {path} ({path.stat().st_size / 1e6:.1f} MB)")
