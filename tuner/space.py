"""The search space: every configuration the profile can score, narrowed by a study spec."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import optuna

from storage.errors import UserInputError
from storage.records import ProfileSet
from tuner.cost_model import CostKey, cost_points_by_key, smallest_failed_batches
from tuner.simulator import Configuration
from tuner.spec import StudySpec

NO_DRAFT = "none"


@dataclass(frozen=True)
class ModelSpace:
    """What one target model can be scored with."""

    model: str
    temperatures: tuple[float, ...]
    max_branches: int
    min_branches: int
    drafts: tuple[tuple[str, tuple[int, ...]], ...]  # (draft, gammas)
    # (draft, gamma, most branches) where a draft slice measured (or ran) fewer batches
    draft_max_branches: tuple[tuple[str, int, int], ...] = ()

    def fits(self, draft: str, gamma: int, branches: int) -> bool:
        """Whether `branches` is within what the (draft, gamma) slice can be costed at."""
        return all(branches <= most for d, g, most in self.draft_max_branches
                   if (d, g) == (draft, gamma))


@dataclass(frozen=True)
class SearchSpace:
    """All scorable configurations; `configurations()` enumerates them in a fixed order."""

    models: tuple[ModelSpace, ...]

    def configurations(self) -> list[Configuration]:
        return list(self._iterate())

    def __len__(self) -> int:
        return sum(1 for _ in self._iterate())

    def _iterate(self) -> Iterator[Configuration]:
        for entry in self.models:
            for temperature in entry.temperatures:
                for n in range(entry.min_branches, entry.max_branches + 1):
                    yield Configuration(entry.model, n, None, 0, temperature)
                    for draft, gammas in entry.drafts:
                        for gamma in gammas:
                            if entry.fits(draft, gamma, n):
                                yield Configuration(entry.model, n, draft, gamma, temperature)

    def contains(self, config: Configuration) -> bool:
        return config in set(self._iterate())

    def suggest(self, trial: optuna.Trial) -> Configuration:
        """Suggest a configuration; prunes combinations the profile cannot score."""
        model = trial.suggest_categorical("model", [m.model for m in self.models])
        entry = next(m for m in self.models if m.model == model)
        temperature = trial.suggest_categorical("temperature", self._temperatures())
        branches = trial.suggest_int("branches", 1, max(m.max_branches for m in self.models))
        draft = trial.suggest_categorical("draft", [NO_DRAFT, *self._drafts()])
        gamma = 0
        if draft != NO_DRAFT:
            gamma = trial.suggest_int("gamma", 1, max(self._gammas()))
        config = Configuration(model, branches, None if draft == NO_DRAFT else draft, gamma,
                               temperature)
        if not _entry_has(entry, config):
            raise optuna.TrialPruned(f"{config.label()} is not profiled")
        return config

    def _temperatures(self) -> list[float]:
        return sorted({t for m in self.models for t in m.temperatures})

    def _drafts(self) -> list[str]:
        return sorted({d for m in self.models for d, _ in m.drafts})

    def _gammas(self) -> list[int]:
        return [g for m in self.models for _, gammas in m.drafts for g in gammas] or [1]


def configuration_params(config: Configuration) -> dict:
    """The Optuna params `SearchSpace.suggest` produces for `config`."""
    params = {
        "model": config.model,
        "temperature": config.temperature,
        "branches": config.branches,
        "draft": config.draft or NO_DRAFT,
    }
    if config.draft:
        params["gamma"] = config.gamma
    return params


def configuration_from_params(params: dict) -> Configuration:
    """Inverse of `configuration_params`."""
    draft = None if params["draft"] == NO_DRAFT else params["draft"]
    return Configuration(params["model"], int(params["branches"]), draft,
                         int(params.get("gamma", 0)), float(params["temperature"]))


def build_space(profile: ProfileSet, spec: StudySpec) -> SearchSpace:
    """The space of what `profile` measured for `spec.task`, narrowed by `spec`."""
    samples = [s for s in profile.accuracy
               if s.task == spec.task and (spec.split is None or s.split == spec.split)]
    profiled = sorted({s.model for s in samples})
    if not profiled:
        raise UserInputError(f"no accuracy profile for task {spec.task!r}; profile it first")
    models = _narrow("models", spec.models, profiled)
    entries = [_model_space(profile, spec, samples, model) for model in models]
    space = SearchSpace(tuple(e for e in entries if e is not None))
    if not space.models:
        raise UserInputError(_too_few_samples(samples, models, spec.branches.min)
                             or "the study spec leaves no configuration to search; widen it")
    return space


def _model_space(profile, spec, samples, model) -> ModelSpace | None:
    mine = [s for s in samples if s.model == model]
    temperatures = sorted({s.temperature for s in mine})
    if spec.temperature is not None:
        temperatures = [t for t in temperatures if t in spec.temperature]
    per_question: dict[tuple[str, float], int] = {}
    for sample in mine:
        key = (sample.question_id, sample.temperature)
        per_question[key] = per_question.get(key, 0) + 1
    k = min(per_question.values())
    points = _usable_points(profile)
    plain = _max_batch(points, model, None, 0)
    max_branches = min(k, plain, spec.branches.max or k)
    if not temperatures or max_branches < spec.branches.min:
        return None
    drafts = _drafts(profile, spec, model, points)
    limits = tuple((draft, gamma, _max_batch(points, model, draft, gamma))
                   for draft, gammas in drafts for gamma in gammas
                   if _max_batch(points, model, draft, gamma) < max_branches)
    return ModelSpace(model, tuple(temperatures), max_branches, spec.branches.min, drafts,
                      limits)


def _drafts(profile, spec, model, points) -> tuple[tuple[str, tuple[int, ...]], ...]:
    profiled = sorted({r.draft for r in profile.acceptance if r.target == model})
    chosen = [d for d in profiled if spec.drafts is None or d in spec.drafts]
    result = []
    for draft in chosen:
        accepted_up_to = max(r.gamma for r in profile.acceptance
                             if r.target == model and r.draft == draft)
        gammas = tuple(
            g for g in range(1, accepted_up_to + 1)
            if (spec.gamma.max is None or g <= spec.gamma.max)
            and _max_batch(points, model, draft, g) > 0
        )
        if gammas:
            result.append((draft, gammas))
    return tuple(result)


def _usable_points(profile: ProfileSet) -> dict[CostKey, list]:
    """Successful decode points below the smallest batch the engine failed at: a batch that
    ran out of memory once is not offered again, at any context."""
    failed = smallest_failed_batches(profile)
    return {key: [p for p in points if p.batch_size < failed.get(key, p.batch_size + 1)]
            for key, points in cost_points_by_key(profile).items()}


def _max_batch(points, model: str, draft: str | None, gamma: int) -> int:
    measured = points.get(CostKey(model, draft, gamma, "decode"), [])
    return max((p.batch_size for p in measured), default=0)


def _too_few_samples(samples, models: list[str], min_branches: int) -> str | None:
    """The message when every model has fewer samples per question than branches.min."""
    per_question = Counter((s.model, s.question_id, s.temperature) for s in samples)
    most = max((min(n for (m, _, _), n in per_question.items() if m == model)
                for model in models), default=0)
    if most >= min_branches:
        return None
    return (f"branches.min is {min_branches} but the accuracy profile has {most} samples per "
            f"question; lower branches.min or profile accuracy with --samples {min_branches}")


def _narrow(field: str, wanted: list[str] | None, profiled: list[str]) -> list[str]:
    if wanted is None:
        return profiled
    missing = [name for name in wanted if name not in profiled]
    if missing:
        raise UserInputError(
            f"{field}: {', '.join(missing)} not profiled for this task; "
            f"profiled: {', '.join(profiled)}"
        )
    return list(wanted)


def _entry_has(entry: ModelSpace, config: Configuration) -> bool:
    if config.temperature not in entry.temperatures:
        return False
    if not entry.min_branches <= config.branches <= entry.max_branches:
        return False
    if config.draft is None:
        return True
    return (any(d == config.draft and config.gamma in g for d, g in entry.drafts)
            and entry.fits(config.draft, config.gamma, config.branches))
