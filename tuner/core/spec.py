"""Study specs: YAML files (studies/*.yaml) that narrow the search space, validated by pydantic."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from profilers.tasks import DEFINITION_PREFIX, load_task_definition
from storage import MAX_SPEC_BYTES, UserInputError, load_document
from tuner.core.names import MAX_SPEC_NAME_CHARS, NAME_PATTERN

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SPEC_PATH = REPO_ROOT / "studies" / "testbed.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class BranchRange(_Strict):
    """Branch counts N searched (capped by the samples per question profiled)."""

    min: int = Field(default=1, gt=0)
    max: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> BranchRange:
        if self.max is not None and self.max < self.min:
            raise ValueError(f"max ({self.max}) must be >= min ({self.min})")
        return self


class GammaRange(_Strict):
    """Largest draft length searched; 0 turns speculative decoding off."""

    max: int | None = Field(default=None, ge=0)


class LatencySpec(_Strict):
    """The latency statistic the deadline applies to."""

    statistic: Literal["quantile", "mean"] = "quantile"
    quantile: float = Field(default=0.9, gt=0, le=1)


class StudySpec(_Strict):
    """What to search: task, models, speculation sources, vote rules, token budgets and
    ranges; see studies/testbed.yaml and studies/testbed-knobs.yaml."""

    name: str = Field(pattern=NAME_PATTERN, max_length=MAX_SPEC_NAME_CHARS)
    task: str = Field(min_length=1)
    # a task definition file (profilers.tasks.definition), relative to the spec; `task` is
    # then its id
    task_file: Path | None = None
    split: str | None = None
    profiles: Path | None = None
    models: list[str] | None = Field(default=None, min_length=1)
    # speculation sources as `latts-tune profiles` shows them: a draft model's name
    # ("tb-draft") or a method with its options ("ngram[prompt_lookup_max=3,...]")
    drafts: list[str] | None = None
    methods: list[str] | None = None  # speculation methods searched (None: all profiled)
    # vote rules searched, e.g. [majority, early-majority, "window(k=3)", weighted]
    votes: list[str] = Field(default=["majority"], min_length=1)
    # token budgets below the profiled one, replayed from its samples (it is always searched)
    max_tokens: list[int] | None = Field(default=None, min_length=1)
    branches: BranchRange = BranchRange()
    gamma: GammaRange = GammaRange()
    temperature: list[Annotated[float, Field(ge=0)]] | None = Field(default=None, min_length=1)
    latency: LatencySpec = LatencySpec()
    cutoff: bool = False
    max_trials: int | None = Field(default=None, gt=0)  # TPE budget for large spaces

    @field_validator("task")
    @classmethod
    def _not_a_definition_file(cls, value: str) -> str:
        if value.startswith(DEFINITION_PREFIX):
            raise ValueError("name a task definition file with task_file: PATH (relative to "
                             "the spec), not task:")
        return value


def load_spec(path: str | Path | None = None) -> StudySpec:
    """Read and validate a spec; `profiles` is resolved relative to the spec file.

    Raises UserInputError naming the file and the offending field.
    """
    spec_path = Path(path) if path is not None else DEFAULT_SPEC_PATH
    data = load_document(spec_path, "study spec", MAX_SPEC_BYTES)
    if not isinstance(data, dict):
        raise UserInputError(f"{spec_path}: a study spec is a mapping (name: ..., task: ...)")
    if data.get("task_file") is not None:
        data = _with_defined_task(data, spec_path)
    try:
        spec = StudySpec.model_validate(data)
    except ValidationError as error:
        raise UserInputError(f"{spec_path}: {_describe(error)}") from error
    if spec.profiles is not None and not spec.profiles.is_absolute():
        spec = spec.model_copy(update={"profiles": (spec_path.parent / spec.profiles).resolve()})
    return spec


def _with_defined_task(data: dict, spec_path: Path) -> dict:
    """`data` with `task` the id of its `task_file`, resolved relative to the spec."""
    if "task" in data:
        raise UserInputError(f"{spec_path}: give task or task_file, not both (task_file's "
                             "definition names the task)")
    if not isinstance(data["task_file"], str):
        raise UserInputError(f"{spec_path}: task_file: a path, e.g. smollm2/task.yaml")
    path = (spec_path.parent / data["task_file"]).resolve()
    return {**data, "task": load_task_definition(path).name, "task_file": path}


def _describe(error: ValidationError) -> str:
    messages = []
    for detail in error.errors():
        where = ".".join(str(part) for part in detail["loc"]) or "spec"
        messages.append(f"{where}: {detail['msg']}")
    return "; ".join(messages)
