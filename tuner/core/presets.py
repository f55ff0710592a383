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
from tuner.core.spec import REPO_ROOT
from tuner.core.trials import TrialSummary

FORMATS = ("vllm", "sglang", "json")
SEED = 0


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Serving(_Section):
    """Server arguments, keys exactly as each server's config file expects; `sglang` is
    None when SGLang cannot run the configuration (e.g. suffix decoding)."""

    vllm: dict
    sglang: dict | None


class Request(_Section):
    """What the client sends per question and how it combines the branches."""

    n: int = Field(ge=1)
    temperature: float = Field(ge=0)
    top_p: float = Field(gt=0, le=1)
    max_tokens: int = Field(ge=1)
    aggregation: str  # a vote rule key (profilers.voting), e.g. "majority"
    tie_rule: str
    timeout_s: float | None = Field(gt=0)


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


class Provenance(_Section):
    """Where the preset came from."""

    study: str
    trial: int
    task: str
    hardware_fingerprint: str
    engine_version: str
    tool_version: str


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
) -> Preset:
    """The preset of one trial; model paths come from the profile's model records."""
    config = summary.configuration
    samples = [s for s in profile.accuracy if s.model == config.model and s.task == task]
    max_tokens = config.max_tokens or max(s.max_tokens for s in samples)
    max_model_len = max(s.prompt_tokens for s in samples) + max_tokens
    return Preset(
        name=f"{study_name}-t{summary.number}",
        serving=Serving(
            vllm=vllm_arguments(config, profile, max_model_len),
            sglang=sglang_arguments(config, profile, max_model_len),
        ),
        request=Request(
            n=config.branches, temperature=config.temperature, top_p=1.0,
            max_tokens=max_tokens, aggregation=config.vote.key(), tie_rule=TIE_RULE,
            timeout_s=deadline_s if latency.cutoff else None,
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
        ),
        provenance=Provenance(
            study=study_name, trial=summary.number, task=task,
            hardware_fingerprint=profile.hardware.fingerprint,
            engine_version=profile.engine_version, tool_version=tool_version(),
        ),
    )


def vllm_arguments(config: Configuration, profile: ProfileSet, max_model_len: int) -> dict:
    """`vllm serve --config` keys: long flag names; the speculative config as a JSON string."""
    arguments: dict = {
        "model": model_path(profile, config.model),
        "max-model-len": max_model_len,
        # The prediction assumes the N branches of one request own the engine.
        "max-num-seqs": config.branches,
        "seed": SEED,
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
    if server is None:
        raise UserInputError(f"preset {preset.name}: {output_format} cannot run its "
                             "speculation; export it with --format vllm")
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
    try:
        return Preset.model_validate(body)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise UserInputError(f"{path}: {where}: {first['msg']}") from None
