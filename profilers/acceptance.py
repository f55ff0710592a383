"""Acceptance profiler: per-position draft acceptance for (target, draft, gamma) on a task.

Read from the engine's own speculative-decoding counters, as deltas around the run, while
sampling the task's prompts at the temperature the study will use.
"""

from __future__ import annotations

from datetime import UTC, datetime

from profilers.engine import Engine, SamplingConfig, model_name
from profilers.models import register_engine_models
from profilers.progress import ProgressReporter, SilentProgress
from profilers.speculation import method_of
from profilers.tasks.base import Task
from storage import AcceptanceRecord, ProfileStore, UserInputError, speculation_columns

PROMPTS_PER_BATCH = 16


def profile_acceptance(
    engine: Engine,
    store: ProfileStore,
    task: Task,
    *,
    questions: int = 64,
    branches: int = 4,
    temperature: float = 1.0,
    max_tokens: int = 96,
    split: str = "heldout",
    seed: int = 0,
    progress: ProgressReporter | None = None,
) -> AcceptanceRecord:
    """Sample `branches` answers to `questions` prompts and store the acceptance counters."""
    if engine.speculative is None:
        raise UserInputError("acceptance needs a speculation: pass --draft PATH and --gamma N")
    if questions < 1 or branches < 1:
        raise UserInputError("--questions and --branches must be at least 1")
    progress = progress or SilentProgress()
    model = model_name(engine.model)
    prompts = [task.build_prompt(q, model) for q in task.load_questions(split, questions)]
    speculation = engine.speculative.speculation
    progress.start(f"acceptance {model} <- {speculation.label()}",
                   len(prompts))
    before = engine.speculative_counters()
    decode_tokens = 0  # tokens after each branch's first (which prefill produced)
    for start in range(0, len(prompts), PROMPTS_PER_BATCH):
        chunk = prompts[start : start + PROMPTS_PER_BATCH]
        sampling = SamplingConfig(n=branches, temperature=temperature, max_tokens=max_tokens,
                                  seed=seed + start, stop=task.stop)
        for result in engine.generate(chunk, sampling):
            decode_tokens += sum(max(b.generated_tokens - 1, 0) for b in result.branches)
        progress.advance(len(chunk))
    delta = engine.speculative_counters() - before
    hardware = engine.hardware()
    store.upsert_hardware(hardware)
    register_engine_models(store, engine)
    record = AcceptanceRecord(
        hardware_fingerprint=hardware.fingerprint,
        engine_version=engine.engine_version(),
        target=model_name(engine.model),
        **speculation_columns(speculation),
        task=task.name,
        temperature=temperature,
        num_drafts=delta.num_drafts,
        num_draft_tokens=delta.num_draft_tokens,
        num_accepted_tokens=delta.num_accepted_tokens,
        accepted_per_position=tuple(delta.accepted_per_position[:speculation.gamma]),
        measured_at=datetime.now(UTC),
        verification_steps=verification_steps(speculation, delta.num_drafts,
                                              delta.num_accepted_tokens, decode_tokens),
    )
    store.add_acceptance(record)
    return record


def verification_steps(speculation, drafts: int, accepted: int, decode_tokens: int
                       ) -> int | None:
    """Target steps of a run when the method may propose nothing in a step (its draft
    counter then skips the step): each step yields one token plus those accepted. None when
    every step verifies a draft. Tokens accepted past a branch's end are counted by vLLM but
    not generated, so this can fall a little short; it is never below the drafts."""
    if method_of(speculation).proposes_every_step:
        return None
    return max(decode_tokens - accepted, drafts)
