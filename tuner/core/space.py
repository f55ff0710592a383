"""The search space: every configuration the profile can score, narrowed by a study spec.

Per target model: the profiled temperatures, branch counts from the spec's minimum up to
the samples per question (and the largest measured batch), and each speculation source
profiled for it (a draft model, a draft-free method with its options, ...) with the draft
lengths whose acceptance and decode cost are measured; then the spec's vote rules and token
budgets (the profiled budget, None, plus shorter ones replayed from its samples). Optuna's
params: model, temperature, branches, speculation (a source, or "none"), gamma (with a
speculation), vote (when several vote rules are searched) and max_tokens (when several
budgets are).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import optuna

from profilers.voting import MAJORITY, VoteRule, vote_rule
from storage import ProfileSet, Speculation, UserInputError
from tuner.core.configuration import Configuration
from tuner.core.cost_model import CostKey, cost_points_by_key, smallest_failed_batches
from tuner.core.spec import StudySpec

NO_SPECULATION = "none"


@dataclass(frozen=True)
class SpeculationChoice:
    """One speculation source of a model, the draft lengths profiled for it and, per
    length, the most branches its decode cost was measured at."""

    template: Speculation  # gamma of the template is the smallest profiled one
    gammas: tuple[int, ...]
    max_branches: tuple[int, ...]  # per gamma

    @property
    def source(self) -> str:
        return self.template.source_key

    def speculation(self, gamma: int) -> Speculation:
        t = self.template
        return Speculation(t.method, gamma, t.draft, t.options)

    def fits(self, gamma: int, branches: int) -> bool:
        return gamma in self.gammas and branches <= self.max_branches[self.gammas.index(gamma)]


@dataclass(frozen=True)
class ModelSpace:
    """What one target model can be scored with."""

    model: str
    temperatures: tuple[float, ...]
    max_branches: int
    min_branches: int
    speculations: tuple[SpeculationChoice, ...]

    def speculations_at(self, branches: int) -> Iterator[Speculation | None]:
        """None, then every speculation whose cost was measured at this many branches."""
        yield None
        for choice in self.speculations:
            for gamma in choice.gammas:
                if choice.fits(gamma, branches):
                    yield choice.speculation(gamma)

    def has(self, config: Configuration) -> bool:
        if config.temperature not in self.temperatures:
            return False
        if not self.min_branches <= config.branches <= self.max_branches:
            return False
        if config.speculation is None:
            return True
        return any(choice.source == config.speculation.source_key
                   and choice.fits(config.speculation.gamma, config.branches)
                   for choice in self.speculations)


@dataclass(frozen=True)
class SearchSpace:
    """All scorable configurations; `configurations()` enumerates them in a fixed order."""

    models: tuple[ModelSpace, ...]
    votes: tuple[VoteRule, ...] = (MAJORITY,)
    budgets: tuple[int | None, ...] = (None,)  # max_tokens; None: the profiled budget

    def configurations(self) -> list[Configuration]:
        return list(self._iterate())

    def __len__(self) -> int:
        return sum(1 for _ in self._iterate())

    def _iterate(self) -> Iterator[Configuration]:
        for entry in self.models:
            for temperature in entry.temperatures:
                for n in range(entry.min_branches, entry.max_branches + 1):
                    for speculation in entry.speculations_at(n):
                        for vote in self.votes:
                            for budget in self.budgets:
                                yield Configuration(entry.model, n, speculation, temperature,
                                                    vote, budget)

    def contains(self, config: Configuration) -> bool:
        return config.vote in self.votes and config.max_tokens in self.budgets and any(
            entry.model == config.model and entry.has(config) for entry in self.models)

    def suggest(self, trial: optuna.Trial) -> Configuration:
        """Suggest a configuration; prunes combinations the profile cannot score."""
        model = trial.suggest_categorical("model", [m.model for m in self.models])
        temperature = trial.suggest_categorical("temperature", self._temperatures())
        branches = trial.suggest_int("branches", 1, max(m.max_branches for m in self.models))
        source = trial.suggest_categorical("speculation", [NO_SPECULATION, *self._sources()])
        speculation = None
        if source != NO_SPECULATION:
            gamma = trial.suggest_int("gamma", 1, max(self._gammas()))
            speculation = Speculation.from_source_key(source, gamma)
        vote = self.votes[0]
        if len(self.votes) > 1:
            vote = vote_rule(trial.suggest_categorical("vote", [v.key() for v in self.votes]))
        budget = self.budgets[0]
        if len(self.budgets) > 1:
            suggested = trial.suggest_categorical("max_tokens", list(self.budgets))
            budget = None if suggested is None else int(suggested)
        config = Configuration(model, branches, speculation, temperature, vote, budget)
        if not self.contains(config):
            raise optuna.TrialPruned(f"{config.label()} is not profiled")
        return config

    def params(self, config: Configuration) -> dict:
        """The Optuna params `suggest` produces for `config`."""
        params: dict = {
            "model": config.model,
            "temperature": config.temperature,
            "branches": config.branches,
            "speculation": (config.speculation.source_key if config.speculation
                            else NO_SPECULATION),
        }
        if config.speculation:
            params["gamma"] = config.speculation.gamma
        if len(self.votes) > 1:
            params["vote"] = config.vote.key()
        if len(self.budgets) > 1:
            params["max_tokens"] = config.max_tokens
        return params

    def _temperatures(self) -> list[float]:
        return sorted({t for m in self.models for t in m.temperatures})

    def _sources(self) -> list[str]:
        return sorted({c.source for m in self.models for c in m.speculations})

    def _gammas(self) -> list[int]:
        return [g for m in self.models for c in m.speculations for g in c.gammas] or [1]



def configuration_from_params(params: dict) -> Configuration:
    """Inverse of `SearchSpace.params` (also reads trials stored by 0.1, whose "draft"
    param named a draft model)."""
    speculation = None
    if params.get("speculation", NO_SPECULATION) != NO_SPECULATION:
        speculation = Speculation.from_source_key(params["speculation"], int(params["gamma"]))
    elif params.get("draft", NO_SPECULATION) != NO_SPECULATION:
        speculation = Speculation("draft_model", int(params["gamma"]), params["draft"])
    vote = vote_rule(params["vote"]) if "vote" in params else MAJORITY
    budget = params.get("max_tokens")
    return Configuration(params["model"], int(params["branches"]), speculation,
                         float(params["temperature"]), vote,
                         None if budget is None else int(budget))


def build_space(profile: ProfileSet, spec: StudySpec) -> SearchSpace:
    """The space of what `profile` measured for `spec.task`, narrowed by `spec`."""
    samples = [s for s in profile.accuracy
               if s.task == spec.task and (spec.split is None or s.split == spec.split)]
    profiled = sorted({s.model for s in samples})
    if not profiled:
        raise UserInputError(f"no accuracy profile for task {spec.task!r}; profile it first")
    models = _narrow("models", spec.models, profiled)
    entries = [_model_space(profile, spec, samples, model) for model in models]
    mine = [s for s in samples if s.model in models]
    space = SearchSpace(tuple(e for e in entries if e is not None), _votes(spec, mine),
                        _budgets(spec, mine))
    if not space.models:
        raise UserInputError(_too_few_samples(samples, models, spec.branches.min)
                             or "the study spec leaves no configuration to search; widen it")
    return space


def _votes(spec: StudySpec, samples) -> tuple[VoteRule, ...]:
    """The spec's vote rules; rules that weigh log-probabilities need them profiled."""
    votes = tuple(dict.fromkeys(vote_rule(key) for key in spec.votes))
    weighted = [v.key() for v in votes if v.needs_logprobs]
    if weighted and any(s.mean_logprob is None for s in samples):
        raise UserInputError(f"votes: {', '.join(weighted)} weigh each branch by its mean "
                             "log-probability, which this accuracy profile lacks; profile "
                             "accuracy again (it records them) or drop them")
    return votes


def _budgets(spec: StudySpec, samples) -> tuple[int | None, ...]:
    """None (the profiled budget) and the spec's shorter token budgets."""
    if spec.max_tokens is None:
        return (None,)
    profiled = min(s.max_tokens for s in samples)
    too_long = [b for b in spec.max_tokens if not 0 < b < profiled]
    if too_long:
        raise UserInputError(f"max_tokens: {too_long[0]} is not below the profiled budget "
                             f"({profiled} tokens), which is always searched; budgets are "
                             "replayed from its samples")
    return (None, *sorted(set(spec.max_tokens), reverse=True))


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
    plain = _max_batch(points, model, None)
    max_branches = min(k, plain, spec.branches.max or k)
    if not temperatures or max_branches < spec.branches.min:
        return None
    return ModelSpace(model, tuple(temperatures), max_branches, spec.branches.min,
                      _speculations(profile, spec, model, points, max_branches))


def _speculations(profile, spec, model, points, max_branches) -> tuple[SpeculationChoice, ...]:
    by_source: dict[str, list[Speculation]] = {}
    for record in profile.acceptance:
        if record.target == model:
            by_source.setdefault(record.speculation.source_key, []).append(record.speculation)
    choices = []
    for source in sorted(by_source):
        if spec.drafts is not None and by_source[source][0].source not in spec.drafts:
            continue
        if spec.methods is not None and by_source[source][0].method not in spec.methods:
            continue
        template = by_source[source][0]
        accepted_up_to = max(s.gamma for s in by_source[source])
        lengths = [Speculation(template.method, g, template.draft, template.options)
                   for g in range(1, accepted_up_to + 1)
                   if spec.gamma.max is None or g <= spec.gamma.max]
        measured = [(s.gamma, _max_batch(points, model, s)) for s in lengths]
        measured = [(g, most) for g, most in measured if most > 0]
        if measured:
            choices.append(SpeculationChoice(
                template=lengths[0], gammas=tuple(g for g, _ in measured),
                max_branches=tuple(min(most, max_branches) for _, most in measured)))
    return tuple(choices)


def _usable_points(profile: ProfileSet) -> dict[CostKey, list]:
    """Successful decode points below the smallest batch the engine failed at: a batch that
    ran out of memory once is not offered again, at any context."""
    failed = smallest_failed_batches(profile)
    return {key: [p for p in points if p.batch_size < failed.get(key, p.batch_size + 1)]
            for key, points in cost_points_by_key(profile).items()}


def _max_batch(points, model: str, speculation: Speculation | None) -> int:
    measured = points.get(CostKey(model, speculation, "decode"), [])
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
