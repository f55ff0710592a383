"""Option types and decorators the commands share (click only; no logic)."""

from __future__ import annotations

import math
from pathlib import Path

import click

from storage.errors import UserInputError
from tuner.core.durations import parse_duration, parse_duration_range
from tuner.core.names import check_name


class Duration(click.ParamType):
    """A click parameter holding a positive duration in seconds."""

    name = "duration"

    def convert(self, value, param, ctx) -> float:
        if isinstance(value, int | float):
            return float(value)
        try:
            return parse_duration(value)
        except UserInputError as error:
            self.fail(str(error), param, ctx)


class DurationRange(click.ParamType):
    """A click parameter holding START:STOP:COUNT deadlines, as a tuple of seconds."""

    name = "start:stop:count"

    def convert(self, value, param, ctx) -> tuple[float, ...]:
        if isinstance(value, tuple):
            return value
        try:
            return parse_duration_range(value)
        except UserInputError as error:
            self.fail(str(error), param, ctx)


class FiniteFloatRange(click.FloatRange):
    """click.FloatRange that also refuses nan and infinity (its range check lets nan pass:
    every comparison with nan is false)."""

    def convert(self, value, param, ctx) -> float:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number{self._range_hint()}", param, ctx)
        return number

    def _range_hint(self) -> str:
        bounded = self.min is not None or self.max is not None
        return f" in the range {self._describe_range()}" if bounded else ""


class StudyName(click.ParamType):
    """A study name that is safe as a file name (`tuner.core.names`)."""

    name = "name"

    def convert(self, value, param, ctx) -> str:
        try:
            return check_name(str(value))
        except UserInputError as error:
            self.fail(str(error), param, ctx)


class LoadParam(click.ParamType):
    """A click parameter holding a load: 2rps, 4conc or trace:FILE (`tuner.core.load`)."""

    name = "load"

    def convert(self, value, param, ctx):
        from tuner.core.load import Load, parse_load

        if isinstance(value, Load):
            return value
        try:
            return parse_load(value)
        except UserInputError as error:
            self.fail(str(error), param, ctx)


class LoadRange(click.ParamType):
    """A click parameter holding START:STOP:COUNT loads, e.g. 0.5rps:8rps:6."""

    name = "start:stop:count"

    def convert(self, value, param, ctx):
        from tuner.core.load import parse_load_range

        if isinstance(value, tuple):
            return value
        try:
            return parse_load_range(value)
        except UserInputError as error:
            self.fail(str(error), param, ctx)


max_num_seqs_option = click.option(
    "--max-num-seqs", type=click.IntRange(min=1), default=None,
    help="Under load: the engine's cap on running branches (vLLM's max-num-seqs) "
         "[default: the largest batch the decode profile measured].",
)

spec_option = click.option(
    "--spec", "spec_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None, help="Study spec YAML [default: the embedded studies/testbed.yaml].",
)
quantile_option = click.option(
    "--quantile", type=FiniteFloatRange(0, 1, min_open=True), default=None,
    help="Deadline applies to this latency quantile [default: the spec's, 0.9].",
)
mean_option = click.option("--mean", is_flag=True, help="Deadline applies to mean latency.")
cutoff_option = click.option(
    "--cutoff/--no-cutoff", default=None,
    help="Model a hard cutoff: branches still running at the deadline are dropped.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="JSON on stdout.")


confidence_option = click.option(
    "--confidence", type=FiniteFloatRange(0.5, 0.999), default=None,
    help="Feasible only if the latency statistic meets the deadline with this probability "
         "(its bound from the prediction's uncertainty; 0.5 = no margin) [default: 0.9].",
)


def latency_objective(spec, quantile: float | None, mean: bool, cutoff: bool | None,
                      confidence: float | None = None):
    """The latency objective of --quantile/--mean/--cutoff/--confidence, defaults from the
    spec."""
    from tuner.core.configuration import LatencyObjective
    from tuner.core.margin import DEFAULT_CONFIDENCE

    if mean and quantile is not None:
        raise click.UsageError("give --quantile or --mean, not both")
    statistic = "mean" if mean else ("quantile" if quantile else spec.latency.statistic)
    return LatencyObjective(statistic, quantile or spec.latency.quantile,
                            spec.cutoff if cutoff is None else cutoff,
                            DEFAULT_CONFIDENCE if confidence is None else confidence)


def quiet_optuna() -> None:
    """Optuna logs every trial at INFO on its own handler; our -v controls logging."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def machine_options(function):
    """--hardware and --feedback/--no-feedback: which machine to tune for, and whether its
    validations correct the predictions (the command gets `hardware` and `feedback`)."""
    function = click.option(
        "--feedback/--no-feedback", default=True, show_default=True,
        help="Let validations stored on the machine correct its step costs.")(function)
    return click.option(
        "--hardware", default="current", show_default=True, metavar="current|any|ID",
        help="Tune for this machine (current), the profiled one (any) or a stored machine "
             "(fingerprint prefix, see `latts-tune profiles list`).")(function)


def machine_choice(hardware: str, feedback: bool):
    """The MachineChoice of --hardware and --feedback."""
    from tuner.core.machine import MachineChoice

    return MachineChoice(hardware, feedback)
