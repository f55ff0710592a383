"""Tasks defined by a file: a stable id with the task's full definition (YAML).

::

    id: smollm2-addition               # the name profiles store the task under
    file: questions.jsonl              # rows {"question", "answer"[, "id"]}, in this folder
    grader: numeric                    # exact | numeric | math-verify (+ rel_tol, abs_tol)
    instruction: Answer with just the number.
    prompt_template: "{question}"      # the user message (chat) or the whole prompt (plain)
    stop: ["\\n"]
    chat_template:                     # one model directory or hub id for every model, or
      SmolLM2-135M-Instruct: "{cache}/models/SmolLM2-135M-Instruct"   # one per model name

`--task task:PATH` (or ``task_file:`` in a study spec) loads it. In a chat template location,
``{cache}`` stands for latts-tune's cache folder ($LATTS_TUNE_CACHE, else
~/.cache/latts-tune), where `latts-tune` writes converted models.

The definition and its questions are stored once in the database under the id
(`storage.TaskDefinitionStore`), so a profile names the task by its id and another machine
rebuilds the same task from the database; a file that defines a stored id differently is
refused. Questions are split by the rule of `profilers.tasks.rows`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from profilers.engine import local_path
from profilers.tasks.base import Question
from profilers.tasks.graders import Grader, make_grader
from profilers.tasks.jsonl import DEFAULT_EXTRACTOR, EXTRACT, row_id
from profilers.tasks.prompts import (
    MAX_STOP_CHARS,
    MAX_STOP_STRINGS,
    PromptBuilder,
    check_prompt_template,
)
from profilers.tasks.rows import read_jsonl, rows_of_split
from storage import MAX_SPEC_BYTES, UserInputError, load_document

DEFINITION_PREFIX = "task:"
TASK_ID_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"
MAX_TASK_ID_CHARS = 64
# Stored in the database with the definition: a few thousand questions, not a corpus.
MAX_DEFINED_QUESTIONS_BYTES = 8_000_000
MAX_TEXT_CHARS = 4000
RESERVED_IDS = ("arithmetic", "math500", "jsonl", "task")  # task kinds of a task string

Text = Annotated[str, Field(max_length=MAX_TEXT_CHARS)]
StopString = Annotated[str, Field(min_length=1, max_length=MAX_STOP_CHARS)]
ModelName = Annotated[str, Field(min_length=1, max_length=256)]


class TaskDefinition(BaseModel):
    """The schema of a task definition file (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    id: str = Field(pattern=TASK_ID_PATTERN, max_length=MAX_TASK_ID_CHARS)
    file: str = Field(min_length=1, max_length=1000)
    grader: Literal["exact", "numeric", "math-verify"]
    extract: Literal["boxed", "last-number", "last-line"] | None = None
    rel_tol: float = Field(default=1e-6, ge=0)
    abs_tol: float = Field(default=0.0, ge=0)
    instruction: Text = ""
    prompt_template: Text | None = None
    stop: list[StopString] = Field(default_factory=list, max_length=MAX_STOP_STRINGS)
    chat_template: Text | dict[ModelName, Text] | None = Field(default=None)

    @field_validator("id")
    @classmethod
    def _not_a_task_kind(cls, value: str) -> str:
        if value in RESERVED_IDS:
            raise ValueError(f"{value!r} names a built-in task; choose another id")
        return value

    @field_validator("prompt_template")
    @classmethod
    def _placeholder(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                check_prompt_template(value)
            except UserInputError as error:
                raise ValueError(str(error)) from None
        return value

    @field_validator("chat_template")
    @classmethod
    def _some_models(cls, value: str | dict | None) -> str | dict | None:
        if isinstance(value, dict) and not 1 <= len(value) <= 64:
            raise ValueError("name 1 to 64 models, each with its model directory or hub id")
        return value


def _questions_file(definition: TaskDefinition, folder: Path, source: Path) -> Path:
    """The questions file, which must stay inside the definition's folder."""
    path = (folder / definition.file).resolve()
    if Path(definition.file).is_absolute() or not path.is_relative_to(folder.resolve()):
        raise UserInputError(f"{source}: file {definition.file!r} must be a path inside "
                             f"{folder} (relative to the definition file)")
    return path


def _chat_location(location: str) -> str:
    """A chat template location with {cache} and ~ expanded."""
    return str(local_path(location))


class DefinedTask:
    """A task from a `TaskDefinition` and its question rows; `name` is the definition's id."""

    def __init__(self, definition: TaskDefinition, rows: list[dict], source: str) -> None:
        self.definition, self.source = definition, source
        self.name = definition.id
        self.stop = tuple(definition.stop)
        self.grader: Grader = make_grader(definition.grader, definition.rel_tol,
                                          definition.abs_tol)
        self.extract = definition.extract or DEFAULT_EXTRACTOR[definition.grader]
        self._rows = rows
        for row in rows:
            row["id"] = row_id(row)
        self._prompts: dict[str | None, PromptBuilder] = {}

    def record(self) -> dict:
        """What the database stores under the id: the definition and its questions."""
        return {"definition": self.definition.model_dump(mode="json"), "questions": self._rows}

    def _prompt(self, model: str | None) -> PromptBuilder:
        if model not in self._prompts:
            self._prompts[model] = PromptBuilder(self.definition.instruction,
                                                 self._chat_template(model),
                                                 self.definition.prompt_template)
        return self._prompts[model]

    def _chat_template(self, model: str | None) -> str | None:
        templates = self.definition.chat_template
        if templates is None or isinstance(templates, str):
            return None if templates is None else _chat_location(templates)
        if model not in templates:
            raise UserInputError(f"task {self.name} ({self.source}) has no chat template for "
                                 f"model {model!r}; add it under chat_template: (it names "
                                 f"{', '.join(sorted(templates))})")
        return _chat_location(templates[model])

    def load_questions(self, split: str, count: int) -> list[Question]:
        chosen = rows_of_split(self._rows, "id", split, count, self.source)
        return [Question(row["id"], str(row["question"]), str(row["answer"])) for row in chosen]

    def build_prompt(self, question: Question, model: str | None = None) -> str:
        return self._prompt(model)(question.text)

    def extract_answer(self, completion: str) -> str | None:
        """The grader's vote key of the answer `extract` finds."""
        return self.grader.vote_key(EXTRACT[self.extract](completion))

    def grade(self, question: Question, answer: str | None) -> bool:
        return self.grader.correct(question.gold_answer, answer)


def _validated(body: object, source: str) -> TaskDefinition:
    if not isinstance(body, dict):
        raise UserInputError(f"{source}: a task definition is a mapping (id: ..., file: ...)")
    try:
        return TaskDefinition.model_validate(body)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise UserInputError(f"{source}: {where}: {first['msg']}") from None


def load_task_definition(path: str | Path) -> DefinedTask:
    """The task a definition file defines, with its questions (read and checked now)."""
    source = Path(path).expanduser()
    if not source.is_file():
        raise UserInputError(f"task definition '{path}' does not exist; pass the path of a "
                             "task YAML file: task:PATH.yaml")
    definition = _validated(load_document(source, "task definition", MAX_SPEC_BYTES),
                            str(source))
    questions = _questions_file(definition, source.parent, source)
    rows = read_jsonl(questions, ("question", "answer"), MAX_DEFINED_QUESTIONS_BYTES)
    return DefinedTask(definition, rows, str(source))


def task_from_record(record: dict, source: str) -> DefinedTask:
    """The task a database record of `DefinedTask.record` holds."""
    definition = _validated(record.get("definition"), source)
    rows = record.get("questions")
    if not isinstance(rows, list) or not rows:
        raise UserInputError(f"{source}: the stored task {definition.id!r} has no questions")
    return DefinedTask(definition, [dict(row) for row in rows], source)
