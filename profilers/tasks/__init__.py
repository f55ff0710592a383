"""Tasks: questions, prompts, answer extraction and grading."""

from profilers.tasks.arithmetic import ArithmeticTask
from profilers.tasks.base import Question, Task
from storage import UserInputError

TASKS = {"arithmetic": ArithmeticTask}


def get_task(name: str) -> Task:
    """Return the task called `name`; unknown names get a message listing the known ones."""
    if name not in TASKS:
        raise UserInputError(f"unknown task '{name}'; known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name]()


__all__ = ["TASKS", "ArithmeticTask", "Question", "Task", "get_task"]
