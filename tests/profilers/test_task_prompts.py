"""File-backed tasks' prompt templates and stop strings, and where the stop strings go:
the profilers' and the executor's requests, the exported preset and the gateway."""

from pathlib import Path

import pytest
from fake_cost_engine import FakeCostEngine
from fake_streaming import ScriptedEngine

from profilers import ExecutionPlan, execute, profile_accuracy
from profilers.tasks import JsonlTask, get_task
from storage import Database, ModelRecord, ProfileStore, UserInputError

FIXTURE = Path(__file__).parent / "fixtures" / "qa.jsonl"


def speed(task):
    return next(q for q in task.load_questions("test", 6) if q.question_id == "speed")


def test_the_prompt_template_wraps_question_and_instruction():
    task = JsonlTask(str(FIXTURE), instruction="Answer with a number.",
                     prompt_template="Q: {question}\nA:")
    assert task.build_prompt(speed(task)) == (
        "Q: A car drives 150 km in 2 hours. Average speed in km/h?\n\n"
        "Answer with a number.\nA:")


def test_without_a_template_the_plain_prompt_is_unchanged():
    task = JsonlTask(str(FIXTURE))
    assert task.build_prompt(speed(task)) == (
        "Problem:\nA car drives 150 km in 2 hours. Average speed in km/h?\n\nSolution:")


def test_only_the_placeholder_is_replaced_so_latex_braces_stay():
    task = JsonlTask(str(FIXTURE), prompt_template="\\boxed{} {question} {x}")
    assert task.build_prompt(speed(task)).endswith("km/h? {x}")


@pytest.mark.parametrize("template", ["Q: {q}", "{question} and {question}"])
def test_a_template_without_exactly_one_placeholder_is_refused(template):
    with pytest.raises(UserInputError, match=r"must hold \{question\} exactly once"):
        JsonlTask(str(FIXTURE), prompt_template=template)


def test_the_task_string_takes_a_template_and_repeated_stop_strings(monkeypatch):
    # a relative path: the string's length must not depend on where the checkout is (the
    # 128-character cap refused it in a clean clone under /tmp)
    monkeypatch.chdir(FIXTURE.parent)
    task = get_task(f"jsonl:{FIXTURE.name}?grader=numeric&prompt_template=Q:%20{{question}}"
                    "%0AA:&stop=%0A&stop=Q:")
    assert task.stop == ("\n", "Q:")
    assert task.build_prompt(speed(task)).startswith("Q: A car") and task.name.endswith("Q:")


@pytest.mark.parametrize(("stop", "message"), [
    (tuple("abcdefghi"), "9 stop strings; a task takes at most 8"),
    (("",), "stop string '' must be 1 to 64 characters"),
    (("x" * 65,), "must be 1 to 64 characters"),
])
def test_bad_stop_strings_are_refused(stop, message):
    with pytest.raises(UserInputError, match=message):
        JsonlTask(str(FIXTURE), stop=stop)


class RecordingEngine(FakeCostEngine):
    model = "tb-small"

    def __init__(self):
        super().__init__()
        self.sampling = []

    def generate(self, prompts, sampling):
        self.sampling += sampling
        return super().generate(prompts, sampling[0])


def test_accuracy_profiling_sends_the_task_stop_strings(tmp_path):
    task = JsonlTask(str(FIXTURE), grader="numeric", stop=("\n", "."))
    store = ProfileStore(Database(f"sqlite:///{tmp_path / 'p.db'}"))
    store.upsert_model(ModelRecord("tb-small", "tb-small", "target", 1, 1, 64))
    engine = RecordingEngine()
    profile_accuracy(engine, store, task, questions=2, samples_per_question=2, split="test")
    assert [config.stop for config in engine.sampling] == [("\n", ".")] * 2


def test_the_executor_sends_the_task_stop_strings():
    task = JsonlTask(str(FIXTURE), grader="numeric", stop=("\n",))
    engine = ScriptedEngine(["75"])
    execute(engine, task, task.load_questions("test", 2), ExecutionPlan(n=1, temperature=0.0,
                                                                        max_tokens=8))
    assert [sampling.stop for _, _, sampling in engine.submitted] == [("\n",)] * 2

