"""The generic JSONL task: graders, extraction, the task-string syntax."""

from pathlib import Path

import pytest
from fake_cost_engine import FakeCostEngine

from profilers import BranchOutput, GenerationResult, profile_accuracy
from profilers.engine import sampling_per_prompt
from profilers.tasks import JsonlTask, get_task
from profilers.voting import Ballot, MajorityVote
from storage import Database, ModelRecord, ProfileStore, UserInputError
from tuner.core.simulator.accuracy import build_accuracy_table

FIXTURE = Path(__file__).parent / "fixtures" / "qa.jsonl"


def question(task, question_id):
    return next(q for q in task.load_questions("test", 6) if q.question_id == question_id)


def test_exact_grader_compares_the_last_line_trimmed():
    task = get_task(f"jsonl:{FIXTURE}")
    capital = question(task, "capital-fr")
    assert task.grade(capital, task.extract_answer("Let me think.\nIt is in Europe.\n  Paris \n"))
    assert not task.grade(capital, task.extract_answer("Paris\nLyon"))
    assert not task.grade(capital, task.extract_answer("   "))


def test_numeric_grader_uses_the_tolerances():
    strict = get_task(f"jsonl:{FIXTURE}?grader=numeric")
    loose = get_task(f"jsonl:{FIXTURE}?grader=numeric&abs_tol=1e-3")
    pi = question(strict, "pi")
    answer = strict.extract_answer("pi is about 3.14159 so the answer is 3.14159")
    assert answer == "3.14159"
    assert not strict.grade(pi, answer)
    assert loose.grade(question(loose, "pi"), answer)
    assert strict.grade(question(strict, "speed"), strict.extract_answer("150/2 = 75.0 km/h"))
    assert strict.grade(question(strict, "big"), strict.extract_answer("It is 1,000,000."))
    assert not strict.grade(question(strict, "speed"), strict.extract_answer("no number"))


def test_math_verify_grader_extracts_the_box():
    task = get_task(f"jsonl:{FIXTURE}?grader=math-verify")
    assert task.grade(question(task, "half"), task.extract_answer("so \\boxed{0.5}."))
    assert not task.grade(question(task, "half"), task.extract_answer("so \\boxed{0.4}."))


def test_rows_without_id_get_a_stable_hash_id_and_the_name_is_the_task_string():
    spec = f"jsonl:{FIXTURE}?grader=numeric"
    task = get_task(spec)
    ids = [q.question_id for q in task.load_questions("test", 6)]
    assert len(set(ids)) == 6 and ids == [q.question_id for q in get_task(spec).load_questions(
        "test", 6)]
    assert task.name == spec


def test_instruction_is_appended_to_the_question():
    task = JsonlTask(str(FIXTURE), instruction="Answer with a number.")
    prompt = task.build_prompt(question(task, "speed"))
    assert "150 km" in prompt and "Answer with a number." in prompt


@pytest.mark.parametrize(("options", "message"), [
    ("grader=fuzzy", "unknown grader 'fuzzy'; choose one of exact, numeric, math-verify"),
    ("extract=first-word", "unknown extract 'first-word'; choose one of boxed, last-number"),
    ("rel_tol=small", "task jsonl: rel_tol=small is not a number"),
    ("rel_tol=-1", "rel_tol and abs_tol must be >= 0"),
    ("tolerance=1", "task jsonl: unknown option 'tolerance=1'; options: grader, extract"),
    ("instruction=" + "x" * 120, "task string is .* characters; profiles store at most 128"),
])
def test_bad_options_name_the_choices(options, message):
    with pytest.raises(UserInputError, match=message):
        get_task(f"jsonl:{FIXTURE}?{options}")


def test_a_non_json_line_is_named(tmp_path):
    data = tmp_path / "broken.jsonl"
    data.write_text('{"question": "q", "answer": "a"}\nnot json\n')
    with pytest.raises(UserInputError, match=r"broken.jsonl:2: not JSON"):
        get_task(f"jsonl:{data}")


@pytest.mark.parametrize(("text", "key"), [
    ("so 17.", "17"), ("17", "17"), ("it is 17.0", "17"), ("+17.00", "17"), ("1,700", "1700"),
    ("0.50", "0.5"), ("-0.0", "0"), ("2.5e-3", "0.0025"), ("no number", None),
])
def test_numeric_answers_are_keyed_by_their_number(text, key):
    assert get_task(f"jsonl:{FIXTURE}?grader=numeric").extract_answer(text) == key


def test_exact_answers_are_keyed_by_their_trimmed_text():
    task = get_task(f"jsonl:{FIXTURE}")
    assert task.extract_answer("think\n  Paris  \n") == "Paris"
    assert task.extract_answer("Paris.") == "Paris."  # exact means exact: no number rules


def test_17_with_a_period_and_17_point_0_are_one_vote_under_the_numeric_grader():
    task = get_task(f"jsonl:{FIXTURE}?grader=numeric")
    texts = ["9+8=17.", "17", "18", "17.0", "18"]
    ballots = [Ballot(task.extract_answer(text), 5, index) for index, text in enumerate(texts)]
    verdict = MajorityVote().decide(ballots, len(ballots))
    assert verdict.answer == "17"  # 3 votes; split by spelling, "18" (2) would have won


class SpellingEngine(FakeCostEngine):
    """Answers every prompt with one number spelled three ways, then a wrong number."""

    model = "tb-small"
    TEXTS = ("The answer is 17.", "17", "17.0", "18")

    def generate(self, prompts, sampling):
        return [GenerationResult(9, tuple(BranchOutput(text, 3 + i, "stop")
                                          for i, text in enumerate(self.TEXTS[:config.n])),
                                 0.01, 0.1, 12)
                for config in sampling_per_prompt(sampling, len(prompts))]


def test_profiled_samples_store_the_vote_key_and_the_simulator_counts_one_answer(tmp_path):
    data = tmp_path / "sums.jsonl"
    data.write_text("\n".join(f'{{"id": "q{i}", "question": "9+8?", "answer": "17"}}'
                               for i in range(20)))
    task = get_task(f"jsonl:{data}?grader=numeric")
    store = ProfileStore(Database(f"sqlite:///{tmp_path / 'p.db'}"))
    store.upsert_model(ModelRecord("tb-small", "tb-small", "target", 1, 1, 64))
    profile_accuracy(SpellingEngine(), store, task, questions=3, samples_per_question=4)
    samples = store.load_profile_set().accuracy
    assert [s.answer for s in samples if s.question_id == samples[0].question_id] == [
        "17", "17", "17", "18"]
    table = build_accuracy_table(samples)
    assert (table.answer_codes == [0, 0, 0, 1]).all()
    assert table.code_correct[:, :2].tolist() == [[True, False]] * 3
