"""The `latts-tune` command line: wires storage, profilers and tuner; holds no logic.

User mistakes (our `UserInputError`s) become one ``Error: ...`` line and exit code 2;
anything else is a bug and keeps its traceback. SIGTERM is handled like Ctrl-C, so a
terminated run closes its engines and stores what it finished; either ends the command
with one ``Interrupted...`` line and exit code 130 (commands that resume say how).
"""

from __future__ import annotations

import logging
import signal
import sys

import click

from storage.errors import UserInputError
from tuner.cli.calibrate import calibrate
from tuner.cli.common import NETWORK_TIMEOUT_KEY
from tuner.cli.models import models
from tuner.cli.options import Duration
from tuner.cli.profile import profile
from tuner.cli.profiles import profiles
from tuner.cli.review import dashboard, report
from tuner.cli.serve import serve
from tuner.cli.study import export, frontier, presets, run, worker
from tuner.cli.testbed import testbed
from tuner.cli.validate import validate

DEFAULT_STORAGE = "sqlite:///latts-tune.db"
DEFAULT_NETWORK_TIMEOUT = "30s"
INTERRUPTED_EXIT_CODE = 130  # 128 + SIGINT, as shells report it


class LattsGroup(click.Group):
    """A click group that turns our user errors into a one-line message, exit code 2, and
    an interrupt (Ctrl-C, SIGTERM) into one line, exit code 130."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserInputError as error:
            click.echo(f"Error: {error}", err=True)
            ctx.exit(2)
        except KeyboardInterrupt:
            click.echo("Interrupted: stopped before writing anything half-done.", err=True)
            ctx.exit(INTERRUPTED_EXIT_CODE)


@click.group(cls=LattsGroup)
@click.option(
    "--storage",
    envvar="LATTS_TUNE_STORAGE",
    default=DEFAULT_STORAGE,
    show_default=True,
    help="Database URL (SQLite file or PostgreSQL); a plain path means a SQLite file.",
)
@click.option(
    "--network-timeout", envvar="LATTS_TUNE_NETWORK_TIMEOUT", type=Duration(),
    default=DEFAULT_NETWORK_TIMEOUT, show_default=True,
    help="Longest wait for a database server to accept a connection or an inference "
         "server to answer (each connect and each read).",
)
@click.option("-v", "--verbose", count=True, help="More log output (repeat for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors in the log.")
@click.pass_context
def cli(ctx: click.Context, storage: str, network_timeout: float, verbose: int,
        quiet: bool) -> None:
    """Tune test-time scaling (model, branches, speculative decoding) under a deadline.

    Example: latts-tune run --deadline 150ms
    """
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[
        min(verbose, 2)
    ]
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    ctx.obj = {"storage": storage, NETWORK_TIMEOUT_KEY: network_timeout}


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    signal.signal(signal.SIGTERM, _interrupt)
    cli(prog_name="latts-tune")


cli.add_command(profile)
cli.add_command(profiles)
cli.add_command(testbed)
cli.add_command(run)
cli.add_command(frontier)
cli.add_command(export)
cli.add_command(presets)
cli.add_command(worker)
cli.add_command(dashboard)
cli.add_command(report)
cli.add_command(validate)
cli.add_command(calibrate)
cli.add_command(serve)
cli.add_command(models)


def _storage_here(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.find_root().obj["storage"] = value


def _all_commands(command: click.Command):
    yield command
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            yield from _all_commands(sub)


def _unwrapped_examples(help_text: str | None) -> str | None:
    """Help whose example lines click prints as written, so a copied command is whole."""
    if help_text is None:
        return None
    lines = []
    for line in help_text.splitlines():
        if line.strip().startswith(("Example:", "On the engine:")):
            lines.append(line[:len(line) - len(line.lstrip())] + "\b")
        lines.append(line)
    return "\n".join(lines)


for _command in _all_commands(cli):
    _command.help = _unwrapped_examples(_command.help)
    if not isinstance(_command, click.Group):
        # `--storage` also after the subcommand (latts-tune run --storage X ...), where
        # people put it; it overrides the global option.
        _command.params.append(click.Option(
            ["--storage"], default=None, expose_value=False, callback=_storage_here,
            metavar="URL", help="Database URL, as the global --storage (either place works)."))
