"""Pieces the CLI commands share: parameter types, opening the store, engines, Ctrl-C."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import click

from storage import ClaimStore, Database, ProfileStore

API_KEY_VARIABLE = "LATTS_TUNE_API_KEY"  # bearer token for --server-url


class IntList(click.ParamType):
    """A comma-separated list of integers, each at least `min_value` (e.g. ``1,2,4,8``)."""

    name = "int-list"

    def __init__(self, min_value: int = 0) -> None:
        self.min_value = min_value

    def convert(self, value, param, ctx) -> list[int]:
        if isinstance(value, list):
            return value
        try:
            numbers = [int(part) for part in str(value).split(",") if part.strip()]
        except ValueError:
            self.fail(f"'{value}' is not a comma-separated list of integers, e.g. 1,2,4", param,
                      ctx)
        if not numbers:
            self.fail("give at least one value, e.g. 1,2,4", param, ctx)
        too_small = [number for number in numbers if number < self.min_value]
        if too_small:
            self.fail(f"{too_small[0]} is below the minimum {self.min_value}", param, ctx)
        return sorted(set(numbers))


DATABASE_KEY = "latts_database"
NETWORK_TIMEOUT_KEY = "network_timeout_s"


def network_timeout_s(ctx: click.Context) -> float:
    """--network-timeout: how long any one network wait may last, in seconds."""
    return ctx.find_root().obj[NETWORK_TIMEOUT_KEY]


def open_database(ctx: click.Context) -> Database:
    """The database named by --storage, opened once per command and closed when it ends:
    the one way every command opens it."""
    root = ctx.find_root()
    if DATABASE_KEY not in root.meta:
        database = Database(root.obj["storage"], connect_timeout_s=network_timeout_s(ctx))
        root.call_on_close(database.close)
        root.meta[DATABASE_KEY] = database
    return root.meta[DATABASE_KEY]


def open_profile_store(ctx: click.Context) -> ProfileStore:
    """The profile store of `open_database`."""
    return ProfileStore(open_database(ctx))


def open_claims(ctx: click.Context) -> ClaimStore:
    """Work claims in the command's database: several `latts-tune profile` processes on
    one database split the work instead of repeating it."""
    return ClaimStore(open_database(ctx))


def speculative_config(draft_path: str | None, gamma: int, method: str = "draft_model",
                       options: tuple[tuple[str, int], ...] = ()):
    """The engine's speculative config of --method/--draft/--gamma/--option, checked by the
    method (a UserInputError names what does not fit)."""
    from profilers import SpeculativeConfig
    from profilers.speculation import vllm_speculative_config

    config = SpeculativeConfig.of(method, gamma, draft_path, options)
    vllm_speculative_config(config.speculation, draft_path)  # check before an engine starts
    return config


class SpeculationOption(click.ParamType):
    """A speculation method option NAME=INTEGER, e.g. ``prompt_lookup_max=3``."""

    name = "name=value"

    def convert(self, value, param, ctx) -> tuple[str, int]:
        if isinstance(value, tuple):
            return value
        name, sep, number = str(value).partition("=")
        try:
            return name.strip(), int(number)
        except ValueError:
            self.fail(f"'{value}' is not NAME=INTEGER, e.g. prompt_lookup_max=3", param, ctx)
        raise AssertionError  # unreachable: fail raises


def speculation_options(function):
    """--method and --option: which speculation method, and its options."""
    function = click.option(
        "--option", "spec_options", type=SpeculationOption(), multiple=True,
        help="A speculation method option NAME=VALUE (repeat), e.g. prompt_lookup_min=1 "
             "for ngram.")(function)
    return click.option(
        "--method", default="draft_model", show_default=True,
        help="Speculation method: draft_model (--draft), ngram, suffix (no draft), eagle, "
             "eagle3 (--draft HEAD), mtp.")(function)


def server_engine(server_url: str, model: str, speculative, timeout_s: float, *,
                  model_must_be_served: bool = False):
    """A client of the OpenAI-compatible server at `server_url`, waiting at most
    `timeout_s` for any answer; the API key (a server started with --api-key) comes from
    LATTS_TUNE_API_KEY, never from the command line, where other users could read it."""
    from profilers.openai_engine import OpenAIServerEngine

    return OpenAIServerEngine(server_url, model=model, speculative=speculative,
                              api_key=os.environ.get(API_KEY_VARIABLE) or None,
                              timeout_s=timeout_s, model_must_be_served=model_must_be_served)


def engine_pool(ctx: click.Context, max_model_len: int | None, dtype: str,
                server_url: str | None = None):
    """An EnginePool of vLLM engines (one live at a time; they are closed on exit), or of
    clients of the server at `server_url` (which runs one configuration)."""
    from profilers import EnginePool

    if server_url is not None:
        timeout_s = network_timeout_s(ctx)
        return EnginePool(lambda model, speculative: server_engine(server_url, model,
                                                                   speculative, timeout_s))

    from profilers.vllm_engine import VllmEngine

    def start(model: str, speculative) -> VllmEngine:
        return VllmEngine(model, speculative, max_model_len=max_model_len, dtype=dtype)

    return EnginePool(start)


@contextlib.contextmanager
def interrupt_message(store: ProfileStore) -> Iterator[None]:
    """On Ctrl-C, say that finished points are kept and a rerun resumes; exit code 130."""
    try:
        yield
    except KeyboardInterrupt:
        click.echo(f"\nInterrupted: every finished point is stored in {store.url}; "
                   "rerun the same command to resume.", err=True)
        raise SystemExit(130) from None


def measure_engine_pool():
    """An EnginePool of vLLM engines for measure mode: two live, so trials alternating
    between two engines do not restart them."""
    from profilers import EnginePool
    from profilers.vllm_engine import VllmEngine

    def start(model: str, speculative) -> VllmEngine:
        return VllmEngine(model, speculative)

    return EnginePool(start, max_live=2)


@contextlib.contextmanager
def interrupt_message_for_study() -> Iterator[None]:
    """On Ctrl-C, say that finished trials are kept and a rerun continues; exit code 130."""
    try:
        yield
    except KeyboardInterrupt:
        click.echo("\nInterrupted: finished trials are stored; rerun the same command to "
                   "continue the study.", err=True)
        raise SystemExit(130) from None


def stdout_console():
    """A rich console for results; piped output gets a wide fixed width so rows stay whole."""
    from rich.console import Console

    console = Console(highlight=False)
    return console if console.is_terminal else Console(highlight=False, width=160)


def print_note(console, source) -> None:
    """The cost source's note (which machine the step costs come from), as the first line
    of the output, when there is one."""
    note = source.note()
    if note:
        console.print(note, soft_wrap=True)
