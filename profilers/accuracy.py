"""Accuracy profiler: K sampled answers per question, each graded, with its token count and
mean token log-probability.

Speculative decoding is lossless, so samples are drawn without a draft. Each question's K
samples are written in one transaction, so an interrupt never leaves half a question and
a rerun skips the questions already stored.

Each question is sampled with its own seed, derived from the run's seed and the question id:
with one seed for all, vLLM gives every question the same child seeds, the questions share
random streams, and intervals that treat questions as independent come out too narrow. The
derivation does not depend on batching, so a resumed or split run draws the same samples.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections import defaultdict
from collections.abc import Iterable

from profilers.engine import (
    Engine,
    GenerationResult,
    SamplingConfig,
    model_name,
    question_seed,
)
from profilers.models import register_engine_models
from profilers.progress import ProgressReporter, SilentProgress
from profilers.tasks.base import Question, Task
from profilers.voting import majority_vote
from storage import (
    AccuracySample,
    ClaimStore,
    HardwareRecord,
    ProfileStore,
    UserInputError,
)

QUESTIONS_PER_BATCH = 25


def _samples_of(question: Question, result: GenerationResult, task: Task, model: str,
                hardware: HardwareRecord, engine_version: str, split: str,
                sampling: SamplingConfig) -> list[AccuracySample]:
    samples = []
    for index, branch in enumerate(result.branches):
        answer = task.extract_answer(branch.text)
        samples.append(AccuracySample(
            hardware_fingerprint=hardware.fingerprint,
            engine_version=engine_version,
            model=model,
            task=task.name,
            split=split,
            question_id=question.question_id,
            sample_index=index,
            temperature=sampling.temperature,
            max_tokens=sampling.max_tokens,
            answer=answer,
            correct=task.grade(question, answer),
            generated_tokens=branch.generated_tokens,
            prompt_tokens=result.prompt_tokens,
            finish_reason=branch.finish_reason or "unknown",
            mean_logprob=branch.mean_logprob,
        ))
    return samples


def check_accuracy_settings(questions: int, samples_per_question: int) -> None:
    """Refuse counts that cannot be profiled; call it before starting an engine."""
    if samples_per_question < 1:
        raise UserInputError(f"--samples must be at least 1 (got {samples_per_question}); use "
                             "at least the largest branch count you want to search")
    if questions < 1:
        raise UserInputError(f"--questions must be at least 1 (got {questions})")


def profile_accuracy(
    engine: Engine,
    store: ProfileStore,
    task: Task,
    *,
    questions: int = 200,
    samples_per_question: int = 16,
    temperature: float = 1.0,
    max_tokens: int = 96,
    split: str = "heldout",
    seed: int = 0,
    progress: ProgressReporter | None = None,
    claims: ClaimStore | None = None,
) -> int:
    """Sample K answers for each question not yet stored; return how many were measured.

    With `claims`, each question is claimed first, so several workers split the questions."""
    check_accuracy_settings(questions, samples_per_question)
    if engine.speculative is not None:
        raise UserInputError("accuracy is profiled without a draft (speculative decoding "
                             "does not change answers); drop --draft")
    progress = progress or SilentProgress()
    hardware, version = engine.hardware(), engine.engine_version()
    store.upsert_hardware(hardware)
    register_engine_models(store, engine)
    model = model_name(engine.model)
    done = store.accuracy_question_ids(hardware.fingerprint, version, model, task.name,
                                       temperature)
    pending = [q for q in task.load_questions(split, questions) if q.question_id not in done]
    progress.start(f"accuracy {model} K={samples_per_question} T={temperature}", len(pending))
    # Log-probabilities do not change what is sampled; confidence-weighted votes need them.
    sampling = SamplingConfig(n=samples_per_question, temperature=temperature,
                              max_tokens=max_tokens, seed=seed, logprobs=True, stop=task.stop)
    claim_key = f"accuracy|{hardware.fingerprint}|{version}|{model}|{task.name}|{temperature}|"
    measured = 0
    for start in range(0, len(pending), QUESTIONS_PER_BATCH):
        batch = pending[start : start + QUESTIONS_PER_BATCH]
        # with claims, several workers on one database split the questions
        chunk = [q for q in batch if claims is None or claims.claim(claim_key + q.question_id)]
        progress.advance(len(batch) - len(chunk))
        if not chunk:
            continue
        measured += len(chunk)
        results = engine.generate(
            [task.build_prompt(q, model) for q in chunk],
            [dataclasses.replace(sampling, seed=question_seed(seed, q.question_id))
             for q in chunk])
        for question, result in zip(chunk, results, strict=True):
            store.add_accuracy_samples(_samples_of(question, result, task, model, hardware,
                                                   version, split, sampling))
            progress.advance()
    return measured


@dataclasses.dataclass(frozen=True)
class AccuracySummary:
    """accuracy@1 over every sample and the majority vote of `k` (disjoint groups of k
    samples of a question; None with fewer than k samples per question)."""

    questions: int
    samples: int
    accuracy_at_1: float
    majority_at_k: float | None
    k: int

    def describe(self) -> str:
        majority = ("" if self.majority_at_k is None
                    else f"; majority of {self.k}: {self.majority_at_k:.1%}")
        return (f"accuracy@1 {self.accuracy_at_1:.1%} over {self.questions} questions x "
                f"{self.samples // max(self.questions, 1)} samples{majority}")


def summarize_accuracy(samples: Iterable[AccuracySample], k: int = 8) -> AccuracySummary:
    """The summary of one model's samples (their answers are the task's vote keys)."""
    by_question: dict[str, list[AccuracySample]] = defaultdict(list)
    for sample in samples:
        by_question[sample.question_id].append(sample)
    every = [s for group in by_question.values() for s in group]
    if not every:
        raise UserInputError("no accuracy samples to summarize; run latts-tune profile "
                             "accuracy first")
    votes = []
    for group in by_question.values():
        group.sort(key=lambda sample: sample.sample_index)
        right = {s.answer for s in group if s.correct}
        for start in range(0, len(group) - k + 1, k):
            chunk = group[start:start + k]
            vote = majority_vote([s.answer for s in chunk], [s.generated_tokens for s in chunk])
            votes.append(vote is not None and vote in right)
    return AccuracySummary(len(by_question), len(every),
                           statistics.mean(s.correct for s in every),
                           statistics.mean(votes) if votes else None, k)


def stored_accuracy_summary(engine: Engine, store: ProfileStore, task: Task,
                            temperature: float, k: int = 8) -> AccuracySummary:
    """The summary of what `engine`'s model has stored for `task` at `temperature`."""
    return summarize_accuracy(store.accuracy_samples(
        engine.hardware().fingerprint, engine.engine_version(), model_name(engine.model),
        task.name, temperature), k)
