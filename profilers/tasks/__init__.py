"""Tasks: questions, prompts, answer extraction and grading.

A task string names a task and, for file-backed ones, its file and options::

    arithmetic
    math500                                   (from the hub; needs `datasets` and network)
    math500:data/math500.jsonl?chat_template=Qwen/Qwen2.5-1.5B-Instruct
    jsonl:data/mine.jsonl?grader=numeric&rel_tol=1e-4
    jsonl:data/sums.jsonl?grader=numeric&prompt_template=Q:%20{question}%0AA:&stop=%0A&stop=.
    task:studies/smollm2/task.yaml            (a task definition file: profilers.tasks.definition)
    smollm2-addition                          (the id of a definition stored in the database)

Option values are URL-unquoted (``%26`` for ``&``, ``%0A`` for a newline); ``stop`` may
repeat, one stop string each. The task string is the task's name in stored profiles, so
profiles of different files or prompts never mix; a defined task's name is its id.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from profilers.tasks.arithmetic import ArithmeticTask
from profilers.tasks.base import Question, Task
from profilers.tasks.definition import (
    DEFINITION_PREFIX,
    DefinedTask,
    TaskDefinition,
    load_task_definition,
    task_from_record,
)
from profilers.tasks.graders import GRADERS
from profilers.tasks.jsonl import JsonlTask
from profilers.tasks.math500 import Math500Task
from storage import TaskDefinitionStore, UserInputError

TASKS = {"arithmetic": ArithmeticTask, "math500": Math500Task, "jsonl": JsonlTask}
_PROMPT_OPTIONS = {"instruction": str, "chat_template": str, "prompt_template": str,
                   "stop": tuple}
_OPTIONS: dict[str, dict[str, Any]] = {
    "arithmetic": {},
    "math500": _PROMPT_OPTIONS,
    "jsonl": {"grader": str, "extract": str, "rel_tol": float, "abs_tol": float,
              **_PROMPT_OPTIONS},
}
_EXAMPLES = ("e.g. arithmetic, math500:FILE.jsonl, jsonl:FILE.jsonl?grader=numeric, "
             "task:DEFINITION.yaml")
MAX_TASK_STRING = 128  # the database's task column (storage/schema.py)


def parse_task_string(spec: str) -> tuple[str, str | None, dict[str, Any]]:
    """Split ``NAME[:PATH][?key=value&...]`` into (name, path, typed options)."""
    head, _, query = spec.partition("?")
    name, _, path = head.partition(":")
    if name not in TASKS:
        raise UserInputError(f"unknown task '{name}'; known tasks: {', '.join(sorted(TASKS))} "
                             f"({_EXAMPLES})")
    options: dict[str, Any] = {}
    for pair in filter(None, query.split("&")):
        key, equals, value = pair.partition("=")
        known = _OPTIONS[name]
        if key not in known or not equals:
            choices = ", ".join(known) or "none"
            raise UserInputError(f"task {name}: unknown option '{pair}'; options: {choices}")
        try:
            if known[key] is tuple:  # repeatable: one value each time
                options[key] = (*options.get(key, ()), unquote(value))
            else:
                options[key] = known[key](unquote(value))
        except ValueError as error:
            raise UserInputError(f"task {name}: {key}={value} is not a number") from error
    return name, path or None, options


def get_task(name: str, definitions: TaskDefinitionStore | None = None) -> Task:
    """Return the task a task string names; bad strings get a message with the fix.

    With `definitions` (the database's), a definition file (``task:PATH``) is stored under
    its id, or refused when the id is stored with another definition, and a bare id names
    a stored definition."""
    if name.startswith(DEFINITION_PREFIX):
        return _defined_task(name.removeprefix(DEFINITION_PREFIX), definitions)
    if definitions is not None and name.partition(":")[0] not in TASKS:
        record = definitions.get(name)
        if record is not None:
            return task_from_record(record, f"task {name!r} stored in the database")
    if len(name) > MAX_TASK_STRING:
        raise UserInputError(f"task string is {len(name)} characters; profiles store at most "
                             f"{MAX_TASK_STRING}: use a shorter path (e.g. a symlink), or a "
                             "task definition file (task:PATH.yaml), stored by its id")
    task_name, path, options = parse_task_string(name)
    if task_name == "arithmetic":
        if path or options:
            raise UserInputError("task arithmetic takes no file or options; pass 'arithmetic'")
        return ArithmeticTask()
    if task_name == "jsonl":
        if not path:
            raise UserInputError("task jsonl needs a file: jsonl:PATH.jsonl?grader=exact")
        return JsonlTask(path, name=name, **options)
    return Math500Task(path, name=name, **options)


def _defined_task(path: str, definitions: TaskDefinitionStore | None) -> DefinedTask:
    task = load_task_definition(path)
    if definitions is not None:
        store_definition(task, definitions)
    return task


def store_definition(task: Task, definitions: TaskDefinitionStore) -> None:
    """Store a defined task's definition under its id (other tasks have none); refused
    when the id is stored with another definition."""
    if isinstance(task, DefinedTask):
        definitions.save(task.name, task.record(), task.source)


__all__ = ["DEFINITION_PREFIX", "GRADERS", "TASKS", "ArithmeticTask", "DefinedTask", "JsonlTask",
           "Math500Task", "Question", "Task", "TaskDefinition", "get_task",
           "load_task_definition", "parse_task_string", "store_definition"]
