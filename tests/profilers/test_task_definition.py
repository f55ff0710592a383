"""Task definition files: the schema, the questions file's place, per-model chat templates,
and the definition stored once by id in the database."""

import json
from pathlib import Path

import pytest
import yaml

from profilers.tasks import get_task
from storage import Database, TaskDefinitionStore, UserInputError

TOKENIZER = Path("studies/testbed/models/tb-small").resolve()
ROWS = [{"id": f"q{i}", "question": f"What is {i} + 1?", "answer": str(i + 1)}
        for i in range(40)]
DEFINITION = {"id": "sums", "file": "questions.jsonl", "grader": "numeric",
              "instruction": "Answer with just the number.", "prompt_template": "Q: {question}",
              "stop": ["\n", "Q:"]}


def write_task(folder: Path, **changes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "questions.jsonl").write_text("\n".join(json.dumps(row) for row in ROWS))
    path = folder / "task.yaml"
    path.write_text(yaml.safe_dump({**DEFINITION, **changes}))
    return path


def chat_tokenizer(folder: Path, tag: str) -> Path:
    """A tokenizer directory whose chat template marks turns with `tag`."""
    folder.mkdir(parents=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).write_bytes((TOKENIZER / name).read_bytes())
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["chat_template"] = (f"{{% for m in messages %}}<{tag}>{{{{ m.content }}}}"
                               f"{{% endfor %}}{{% if add_generation_prompt %}}<{tag}-reply>"
                               "{% endif %}")
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture
def definitions(tmp_path):
    with Database(f"sqlite:///{tmp_path / 'p.db'}") as db:
        yield TaskDefinitionStore(db)


def test_a_definition_file_is_a_task_named_by_its_id(tmp_path):
    task = get_task(f"task:{write_task(tmp_path / 'sums')}")
    question = task.load_questions("test", 40)[2]
    assert (task.name, task.stop) == ("sums", ("\n", "Q:"))
    assert task.build_prompt(question) == "Q: What is 2 + 1?\n\nAnswer with just the number."
    assert task.extract_answer("It is 3.") == "3" and task.grade(question, "3.0")
    heldout = task.load_questions("heldout", 5)  # the split rule of every file-backed task
    assert {q.question_id for q in heldout}.isdisjoint(
        q.question_id for q in task.load_questions("validation", 5))


def test_chat_templates_per_model_let_models_share_the_task(tmp_path):
    first = chat_tokenizer(tmp_path / "tok-a", "a")
    second = chat_tokenizer(tmp_path / "tok-b", "b")
    templates = {"m-a": str(first), "m-b": str(second)}
    task = get_task(f"task:{write_task(tmp_path / 'sums', chat_template=templates)}")
    question = task.load_questions("test", 1)[0]
    assert task.build_prompt(question, "m-a").startswith("<a>Q: What is 0 + 1?")
    assert task.build_prompt(question, "m-b").endswith("number.<b-reply>")
    with pytest.raises(UserInputError, match="has no chat template for model 'm-c'; add it "
                                             "under chat_template: .it names m-a, m-b."):
        task.build_prompt(question, "m-c")


def test_the_cache_placeholder_names_latts_tunes_cache_folder(tmp_path, monkeypatch):
    chat_tokenizer(tmp_path / "cache" / "models" / "tok", "c")
    monkeypatch.setenv("LATTS_TUNE_CACHE", str(tmp_path / "cache"))
    task = get_task(f"task:{write_task(tmp_path / 'sums', chat_template='{cache}/models/tok')}")
    assert task.build_prompt(task.load_questions("test", 1)[0], "any").startswith("<c>Q:")


@pytest.mark.parametrize(("changes", "message"), [
    ({"file": "../questions.jsonl"}, "file '../questions.jsonl' must be a path inside"),
    ({"file": "/etc/passwd"}, "file '/etc/passwd' must be a path inside"),
    ({"grader": "fuzzy"}, "grader: Input should be 'exact', 'numeric' or 'math-verify'"),
    ({"id": "Has Space"}, "id: String should match pattern"),
    ({"id": "arithmetic"}, "'arithmetic' names a built-in task; choose another id"),
    ({"prompt_template": "Q:"}, r"must hold \{question\} exactly once"),
    ({"stop": ["x"] * 9}, "stop: List should have at most 8 items"),
    ({"rel_tol": -1}, "rel_tol: Input should be greater than or equal to 0"),
    ({"shots": 3}, "shots: Extra inputs are not permitted"),
])
def test_bad_definitions_say_what_is_wrong(tmp_path, changes, message):
    with pytest.raises(UserInputError, match=message):
        get_task(f"task:{write_task(tmp_path / 'sums', **changes)}")


def test_a_missing_or_oversized_definition_is_refused(tmp_path):
    with pytest.raises(UserInputError, match="task definition '/nope.yaml' does not exist"):
        get_task("task:/nope.yaml")
    huge = tmp_path / "huge.yaml"
    huge.write_text("id: x\n#" + "x" * 1_100_000)
    with pytest.raises(UserInputError, match="a task definition is at most 1 MB"):
        get_task(f"task:{huge}")


def test_the_definition_is_stored_once_and_rebuilt_from_the_database(tmp_path, definitions):
    path = write_task(tmp_path / "sums")
    loaded = get_task(f"task:{path}", definitions)
    get_task(f"task:{path}", definitions)  # the same definition again: nothing to refuse
    path.unlink()
    (tmp_path / "sums" / "questions.jsonl").unlink()  # another machine: no files
    stored = get_task("sums", definitions)
    assert (stored.name, stored.stop) == (loaded.name, loaded.stop)
    assert stored.load_questions("heldout", 5) == loaded.load_questions("heldout", 5)
    question = stored.load_questions("test", 1)[0]
    assert stored.build_prompt(question) == loaded.build_prompt(question)
    assert definitions.ids() == ["sums"]


def test_a_changed_definition_under_a_stored_id_is_refused(tmp_path, definitions):
    get_task(f"task:{write_task(tmp_path / 'sums')}", definitions)
    changed = write_task(tmp_path / "other", stop=["\n"])
    with pytest.raises(UserInputError, match=r"defines task 'sums' differently from the "
                       r"definition stored under that id in .* \(differs: definition\); give "
                       "the changed task a new id"):
        get_task(f"task:{changed}", definitions)
    ROWS.append({"id": "extra", "question": "2+2?", "answer": "4"})
    try:
        with pytest.raises(UserInputError, match=r"differs: questions"):
            get_task(f"task:{write_task(tmp_path / 'more')}", definitions)
    finally:
        ROWS.pop()


def test_an_unknown_id_names_the_task_kinds_and_definition_files(definitions):
    with pytest.raises(UserInputError, match="unknown task 'sums'; known tasks: arithmetic, "
                                             "jsonl, math500 .*task:DEFINITION.yaml"):
        get_task("sums", definitions)
