"""What `profiles show` displays: one model's measurements grouped for reading."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from statistics import fmean

from storage.errors import UserInputError
from storage.records import AcceptanceRecord, ModelRecord, ProfileSet
from storage.speculation import Speculation


@dataclass(frozen=True)
class CostGrid:
    """Median seconds per (batch_size, context_tokens) of one phase and speculation.

    A failed point maps to None.
    """

    phase: str
    speculation: Speculation | None
    batch_sizes: tuple[int, ...]
    context_tokens: tuple[int, ...]
    median_seconds: dict[tuple[int, int], float | None]


@dataclass(frozen=True)
class AccuracyStats:
    """Accuracy@1 (mean correctness over all samples) of one task at one temperature."""

    task: str
    temperature: float
    questions: int
    samples_per_question: int
    accuracy_at_1: float
    mean_generated_tokens: float


@dataclass(frozen=True)
class ModelDetails:
    model: ModelRecord
    hardware_fingerprint: str
    engine_version: str
    cost_grids: tuple[CostGrid, ...]
    acceptance: tuple[AcceptanceRecord, ...]
    accuracy: tuple[AccuracyStats, ...]


def describe_model(profile_set: ProfileSet, model_name: str) -> ModelDetails:
    """Group one model's measurements; UserInputError naming the known models if absent."""
    models = {model.name: model for model in profile_set.models}
    if model_name not in models:
        known = ", ".join(sorted(models)) or "none"
        raise UserInputError(f"no model {model_name!r} in this profile; known models: {known}")
    acceptance = [a for a in profile_set.acceptance if a.target == model_name]
    return ModelDetails(
        model=models[model_name],
        hardware_fingerprint=profile_set.hardware.fingerprint,
        engine_version=profile_set.engine_version,
        cost_grids=_cost_grids(profile_set, model_name),
        acceptance=tuple(sorted(acceptance, key=lambda a: (a.speculation, a.task))),
        accuracy=_accuracy_stats(profile_set, model_name),
    )


def _cost_grids(profile_set: ProfileSet, model_name: str) -> tuple[CostGrid, ...]:
    groups = defaultdict(list)
    for point in profile_set.cost_points:
        if point.model == model_name:
            groups[(point.phase, point.speculation)].append(point)
    grids = []
    for (phase, speculation), points in sorted(groups.items(), key=_grid_order):
        medians = {
            (p.batch_size, p.context_tokens): p.seconds_median if p.status == "ok" else None
            for p in points
        }
        grids.append(CostGrid(
            phase=phase,
            speculation=speculation,
            batch_sizes=tuple(sorted({batch for batch, _ in medians})),
            context_tokens=tuple(sorted({context for _, context in medians})),
            median_seconds=medians,
        ))
    return tuple(grids)


def _grid_order(item) -> tuple:
    (phase, speculation), _ = item
    return (phase, speculation is not None, speculation or ())


def _accuracy_stats(profile_set: ProfileSet, model_name: str) -> tuple[AccuracyStats, ...]:
    groups = defaultdict(list)
    for sample in profile_set.accuracy:
        if sample.model == model_name:
            groups[(sample.task, sample.temperature)].append(sample)
    stats = []
    for (task, temperature), samples in sorted(groups.items()):
        per_question: defaultdict[str, int] = defaultdict(int)
        for sample in samples:
            per_question[sample.question_id] += 1
        stats.append(AccuracyStats(
            task=task,
            temperature=temperature,
            questions=len(per_question),
            samples_per_question=min(per_question.values()),
            accuracy_at_1=fmean(sample.correct for sample in samples),
            mean_generated_tokens=fmean(sample.generated_tokens for sample in samples),
        ))
    return tuple(stats)
