"""MATH-500-format and generic JSONL tasks on hand-written fixtures (no network, no engine)."""

import json
import threading
from pathlib import Path

import pytest
from fake_cost_engine import FakeCostEngine

from profilers import BranchOutput, GenerationResult, profile_accuracy
from profilers.engine import sampling_per_prompt
from profilers.tasks import Math500Task, get_task
from profilers.tasks.latex import last_boxed, math_equal
from profilers.tasks.rows import SPLIT_BUCKETS, split_of
from storage import Database, ModelRecord, ProfileStore, UserInputError

FIXTURE = Path(__file__).parent / "fixtures" / "math_style.jsonl"
ROWS = [json.loads(line) for line in FIXTURE.read_text().splitlines()]


@pytest.fixture(scope="module")
def task():
    return get_task(f"math500:{FIXTURE}")


@pytest.mark.parametrize(("gold", "answer"), [
    ("\\frac{1}{2}", "0.5"),
    ("\\frac{1}{2}", "\\dfrac12"),
    ("\\frac{1}{2}", "1/2"),
    ("4\\sqrt{3}", "\\sqrt{48}"),
    ("\\frac{\\sqrt{3}}{2}", "\\frac{1}{2}\\sqrt{3}"),
    ("[0,1)", "[0, 1)"),
    ("(-\\infty,3]", "(-\\infty, 3]"),
    ("\\text{Monday}", "Monday"),
    ("30^\\circ", "30"),
    ("-3", "-3"),
    ("(1,2)", "(1, 2)"),
    ("3, -3", "-3, 3"),
    ("x^2+1", "1+x^2"),
    ("\\text{(B)}", "B"),
    ("\\frac{3}{2}", "1.5"),
])
def test_equivalent_forms_grade_correct(gold, answer):
    assert math_equal(gold, answer)


@pytest.mark.parametrize(("gold", "answer"), [
    ("\\frac{1}{2}", "0.25"),
    ("4\\sqrt{3}", "\\sqrt{12}"),
    ("[0,1)", "[0,1]"),
    ("\\text{Monday}", "\\text{Tuesday}"),
    ("-3", "3"),
    ("(1,2)", "(2,1)"),
    ("x^2+1", "x^2-1"),
    ("6", None),
    ("6", ""),
])
def test_wrong_answers_grade_incorrect(gold, answer):
    assert not math_equal(gold, answer)


def test_every_fixture_solution_grades_correct_against_its_gold(task):
    questions = {q.question_id: q for q in task.load_questions("test", len(ROWS))}
    for row in ROWS:
        answer = task.extract_answer(row["solution"])
        assert answer is not None, row["unique_id"]
        assert task.grade(questions[row["unique_id"]], answer), (row["answer"], answer)


def test_a_wrong_solution_grades_incorrect(task):
    question = task.load_questions("test", 1)[0]  # gold \frac{1}{2}
    assert not task.grade(question, task.extract_answer("so it is $\\boxed{\\frac{1}{3}}$"))


@pytest.mark.parametrize(("text", "boxed"), [
    ("first \\boxed{1} then \\boxed{\\frac{a}{\\sqrt{b}}} end", "\\frac{a}{\\sqrt{b}}"),
    ("nested \\boxed{\\left\\{ 1, 2 \\right\\}}", "\\left\\{ 1, 2 \\right\\}"),
    ("\\boxed{\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}}",
     "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}"),
    ("old style \\fbox{42}.", "42"),
    ("no braces $\\boxed 5$", "5"),
    ("cut off \\boxed{\\frac{1}{2", None),
    ("complete \\boxed{7} then cut \\boxed{\\frac{1", "7"),
    ("no box at all: 12", None),
    ("empty \\boxed{}", None),
])
def test_extracts_the_last_balanced_box(text, boxed):
    assert last_boxed(text) == boxed


def test_grading_works_outside_the_main_thread():
    # math-verify's SIGALRM timeouts fail in threads; we pass None there.
    results = []
    thread = threading.Thread(target=lambda: results.append(math_equal("\\frac{1}{2}", "0.5")))
    thread.start()
    thread.join()
    assert results == [True]


def test_splits_are_disjoint_cover_the_file_and_are_stable(task):
    sizes = {split: sum(split_of(row["unique_id"]) == split for row in ROWS)
             for split in SPLIT_BUCKETS}
    ids = {split: {q.question_id for q in task.load_questions(split, size)}
           for split, size in sizes.items()}
    assert sum(len(chosen) for chosen in ids.values()) == len(ROWS)
    assert set().union(*ids.values()) == {row["unique_id"] for row in ROWS}
    reordered = Math500Task(str(FIXTURE))
    reordered._rows = list(reversed(ROWS))  # file order does not move a row between splits
    assert {q.question_id for q in reordered.load_questions("heldout", sizes["heldout"])} == ids[
        "heldout"]


def test_asking_for_more_questions_than_a_split_has_names_the_size(task):
    with pytest.raises(UserInputError, match=r"split 'test' has 16 questions, 17 asked"):
        task.load_questions("test", 17)


def test_plain_prompt_holds_problem_and_instruction(task):
    prompt = task.build_prompt(task.load_questions("test", 1)[0])
    assert prompt.startswith("Problem:\n") and prompt.endswith("Solution:")
    assert "\\boxed{}" in prompt and "\\frac{3}{4}" in prompt


def test_chat_template_prompt_uses_the_tokenizer_template(tmp_path, monkeypatch):
    source = Path("studies/testbed/models/tb-small").resolve()
    monkeypatch.chdir(tmp_path)  # a short relative path keeps the task string short
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (tmp_path / name).write_bytes((source / name).read_bytes())
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    config["chat_template"] = (
        "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    task = get_task(f"math500:{FIXTURE}?chat_template=.&instruction=Box%20it.")
    prompt = task.build_prompt(task.load_questions("test", 1)[0])
    assert prompt.startswith("<|user|>What is") and prompt.endswith("Box it.<|assistant|>")


def test_a_tokenizer_without_chat_template_is_refused():
    task = get_task(f"math500:{FIXTURE}?chat_template=studies/testbed/models/tb-small")
    with pytest.raises(UserInputError, match="has no chat template"):
        task.build_prompt(task.load_questions("test", 1)[0])


@pytest.mark.parametrize(("spec", "message"), [
    ("math501", "unknown task 'math501'; known tasks: arithmetic, jsonl, math500"),
    ("math500:/nope.jsonl", "task file '/nope.jsonl' does not exist"),
    (f"math500:{FIXTURE}?grader=exact", "task math500: unknown option 'grader=exact'"),
    ("jsonl", "task jsonl needs a file"),
    ("arithmetic:x", "task arithmetic takes no file or options"),
])
def test_bad_task_strings_say_what_to_do(spec, message):
    with pytest.raises(UserInputError, match=message.replace("(", r"\(")) as error:
        get_task(spec).load_questions("test", 1)
    assert "\n" not in str(error.value)


def test_a_row_without_answer_names_the_line(tmp_path):
    data = tmp_path / "bad.jsonl"
    data.write_text(json.dumps(ROWS[0]) + "\n" + json.dumps({"problem": "x", "unique_id": 1}))
    with pytest.raises(UserInputError, match=r"bad.jsonl:2: missing field\(s\) answer"):
        Math500Task(str(data)).load_questions("test", 1)


@pytest.mark.parametrize(("answer", "canonical"), [
    ("\\dfrac{1}{2}", "\\frac{1}{2}"),
    ("\\frac {1} {2}", "\\frac{1}{2}"),
    ("\\left( 1, 2 \\right)", "(1,2)"),
    ("3,\\! 000.", "3,000"),
    ("\\text{Monday morning}", "\\text{Monday morning}"),
    ("x \\rightarrow \\infty", "x\\rightarrow\\infty"),
    ("  ", None),
])
def test_extracted_answers_are_canonical_so_equal_spellings_vote_together(answer, canonical):
    assert Math500Task(str(FIXTURE)).extract_answer(f"so \\boxed{{{answer}}}") == canonical


class ScriptedMathEngine(FakeCostEngine):
    """Answers each MATH-style prompt with the fixture's solution, an equivalent decimal
    form where one exists, and a wrong box."""

    model = "tb-small"
    DECIMALS = {"\\frac{1}{2}": "0.5", "\\frac{6}{5}": "1.2", "\\frac{3}{2}": "1.50"}

    def generate(self, prompts, sampling):
        results = []
        for prompt, config in zip(prompts, sampling_per_prompt(sampling, len(prompts)),
                                  strict=True):
            row = next(row for row in ROWS if row["problem"] in prompt)
            other = self.DECIMALS.get(row["answer"], row["answer"])
            texts = [row["solution"], f"so \\boxed{{{other}}}.", "\\boxed{\\frac{1}{7}}"]
            branches = tuple(BranchOutput(text, 10 + i, "stop") for i, text in enumerate(texts))
            results.append(GenerationResult(20, branches[:config.n], 0.01, 0.1, 12))
        return results


def test_accuracy_profile_of_math500_grades_equivalent_forms_correct(tmp_path):
    task = get_task(f"math500:{FIXTURE}")
    store = ProfileStore(Database(f"sqlite:///{tmp_path / 'p.db'}"))
    store.upsert_model(ModelRecord("tb-small", "tb-small", "target", 1, 1, 64))
    heldout = sum(split_of(row["unique_id"]) == "heldout" for row in ROWS)
    assert profile_accuracy(ScriptedMathEngine(), store, task, questions=heldout,
                            samples_per_question=3) == heldout
    samples = store.load_profile_set().accuracy
    assert {s.task for s in samples} == {f"math500:{FIXTURE}"}
    by_index = {i: [s.correct for s in samples if s.sample_index == i] for i in range(3)}
    assert all(by_index[0]) and all(by_index[1]) and not any(by_index[2])
