"""Validate: run a configuration or preset on the real engine and compare with the prediction.

Predictions come from the simulator over the stored profile (the accuracy profile's
questions); measurements come from the executor over held-out questions (the
"validation" split by default). Seed S selects the S-th disjoint slice of the split.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from profilers import (
    ExecutionPlan,
    ExecutionReport,
    ProgressReporter,
    Question,
    SpeculativeConfig,
    StreamingEngine,
    Task,
    execute,
    get_task,
    model_name,
)
from profilers.statistics import P50, P90
from profilers.voting import vote_rule
from storage import (
    Database,
    LatencyCheckStore,
    PresetStore,
    ProfileSet,
    ProfileStore,
    TaskDefinitionStore,
    UserInputError,
    ValidationRecord,
    ValidationStore,
    tool_version,
)
from tuner.core.calibration import store_check
from tuner.core.configuration import Configuration, LatencyObjective
from tuner.core.machine import cost_source
from tuner.core.presets import Preset, draft_path, model_path
from tuner.core.simulator import Simulator, predictive_interval

logger = logging.getLogger(__name__)

DEFAULT_SPLIT = "validation"
WARMUP_QUESTIONS = 2
# model path, speculative config, max model length -> a running engine
EngineStarter = Callable[[str, SpeculativeConfig | None, int | None], StreamingEngine]


@dataclass(frozen=True)
class ValidationFigures:
    """Accuracy (95% interval) and latency of one configuration: fractions and seconds."""

    accuracy: float
    accuracy_low: float
    accuracy_high: float
    mean_latency_s: float
    p50_latency_s: float
    p90_latency_s: float


@dataclass(frozen=True, kw_only=True)
class Prediction(ValidationFigures):
    """Simulator figures, and where accuracy measured on `questions` new questions should
    fall (95%)."""

    questions: int | None = None
    expected_low: float | None = None
    expected_high: float | None = None


@dataclass(frozen=True, kw_only=True)
class Measurement(ValidationFigures):
    """Executor figures of one configuration over held-out questions."""

    questions: int
    aborted_branches: int

    @classmethod
    def of(cls, report: ExecutionReport) -> Measurement:
        low, high = report.accuracy_interval()
        return cls(accuracy=report.accuracy, accuracy_low=low, accuracy_high=high,
                   mean_latency_s=report.mean_latency_s,
                   p50_latency_s=report.latency_statistic_s(P50),
                   p90_latency_s=report.latency_statistic_s(P90),
                   questions=len(report.outcomes), aborted_branches=report.aborted_branches)


def predict(simulator: Simulator, config: Configuration, deadline_s: float | None = None,
            questions: int | None = None) -> Prediction:
    """Predicted accuracy (95% interval) and mean/p50/p90 latency; `deadline_s` = cutoff.

    With `questions`, also the 95% range a measurement on that many new questions should
    fall in (question and branch sampling both included).
    """
    cutoff = deadline_s is not None
    median = simulator.score(config, LatencyObjective("quantile", 0.5, cutoff), deadline_s)
    p90 = simulator.score(config, LatencyObjective("quantile", 0.9, cutoff), deadline_s)
    expected: tuple[float | None, float | None] = (None, None)
    if questions is not None:
        per_question = simulator.per_question_accuracy(config, deadline_s)
        expected = predictive_interval(per_question, questions, simulator.seed)
    return Prediction(accuracy=p90.accuracy, accuracy_low=p90.accuracy_low,
                      accuracy_high=p90.accuracy_high, mean_latency_s=p90.mean_latency_s,
                      p50_latency_s=median.latency_s, p90_latency_s=p90.latency_s,
                      questions=questions, expected_low=expected[0], expected_high=expected[1])


def select_questions(task: Task, split: str, count: int, seed: int) -> list[Question]:
    """The `seed`-th disjoint slice of `count` questions of `split`."""
    return task.load_questions(split, (seed + 1) * count)[seed * count:]


def engine_arguments(profile: ProfileSet,
                     config: Configuration) -> tuple[str, SpeculativeConfig | None]:
    """Model path and speculative config that run `config` (paths from the profile)."""
    speculative = None
    if config.speculation:
        speculative = SpeculativeConfig(config.speculation,
                                        draft_path(profile, config.speculation))
    return model_path(profile, config.model), speculative


def measure(engine: StreamingEngine, task: Task, questions: list[Question],
            plan: ExecutionPlan, progress: ProgressReporter | None = None) -> ExecutionReport:
    """Warm the engine up on training questions, then run `questions` under `plan`."""
    warmup = task.load_questions("train", WARMUP_QUESTIONS)
    execute(engine, task, warmup, plan)
    if progress is not None:
        progress.start(f"measuring {len(questions)} questions", len(questions))
    return execute(engine, task, questions, plan, progress)


def preset_engine_arguments(preset: Preset) -> tuple[str, SpeculativeConfig | None, int | None]:
    """Model path, speculative config and max model length of the preset's server side."""
    vllm = preset.serving.vllm  # the preset's schema checked these flags' types
    speculative = None
    if "speculative-config" in vllm:
        speculative = SpeculativeConfig.from_vllm(json.loads(str(vllm["speculative-config"])))
    max_model_len = vllm.get("max-model-len")
    return (str(vllm["model"]), speculative,
            int(max_model_len) if isinstance(max_model_len, int) else None)


def configuration_of(preset: Preset, profile: ProfileSet) -> Configuration:
    """The configuration a preset deploys, with model names as the profile stores them."""
    model, speculative, _ = preset_engine_arguments(preset)
    speculation = None
    if speculative is not None:
        draft = speculative.draft_path
        speculation = replace(speculative.speculation,
                              draft=_profile_name(profile, draft) if draft else None)
    name = _profile_name(profile, model)
    profiled = max((s.max_tokens for s in profile.accuracy
                    if s.model == name and s.task == preset.provenance.task), default=None)
    budget = preset.request.max_tokens
    return Configuration(name, preset.request.n, speculation, preset.request.temperature,
                         vote_rule(preset.request.aggregation),
                         None if profiled is None or budget >= profiled else budget)


def _profile_name(profile: ProfileSet, path: str) -> str:
    for record in profile.models:
        if model_path(profile, record.name) == path:
            return record.name
    return model_name(path)


def repredict(preset: Preset, profile: ProfileSet) -> Preset:
    """The preset with its prediction made again from `profile` for what it deploys now
    (e.g. after `request.n` was edited); UserInputError when the profile cannot predict
    it (more branches than samples per question, an unprofiled model or speculation)."""
    config = configuration_of(preset, profile)
    predicted = preset.predicted
    objective = LatencyObjective(predicted.latency_statistic, predicted.quantile or 0.9,
                                 predicted.cutoff, predicted.confidence or 0.5)
    simulator = Simulator(profile, preset.provenance.task)
    table = simulator.table(config.model, config.temperature)
    if config.branches > table.samples_per_question:
        raise UserInputError(
            f"preset {preset.name}: request.n is {config.branches} but the profile has "
            f"{table.samples_per_question} samples per question of {config.model}; lower n "
            f"to at most {table.samples_per_question} or profile accuracy with --samples "
            f"{config.branches}")
    result = simulator.score(config, objective, predicted.deadline_s)
    return preset.model_copy(update={"predicted": predicted.model_copy(update={
        "accuracy": result.accuracy,
        "accuracy_interval": (result.accuracy_low, result.accuracy_high),
        "latency_s": result.latency_s,
        "latency_upper_s": result.latency_upper_s if predicted.confidence else None,
        "mean_latency_s": result.mean_latency_s})})


def plan_of(preset: Preset, in_flight: int = 1) -> ExecutionPlan:
    """What the client sends for each question, from the preset's request section."""
    request = preset.request
    return ExecutionPlan(n=request.n, temperature=request.temperature,
                         max_tokens=request.max_tokens, top_p=request.top_p,
                         deadline_s=request.timeout_s, in_flight=in_flight,
                         vote=vote_rule(request.aggregation))


def validate_preset(db: Database, preset_name: str, start_engine: EngineStarter, *,
                    questions: int = 100, seed: int = 0, split: str = DEFAULT_SPLIT,
                    progress: ProgressReporter | None = None,
                    feedback: bool = True) -> ValidationRecord:
    """Run the stored preset on the engine, compare with the prediction for the engine's
    machine, store the result and (with `feedback`) a latency check that corrects later
    predictions for this machine."""
    preset = Preset.model_validate(PresetStore(db).get(preset_name).body)
    provenance = preset.provenance
    task = get_task(provenance.task, TaskDefinitionStore(db))
    chosen = select_questions(task, split, questions, seed)
    if progress is not None:
        progress.start(f"starting the engine of {preset_name} (20-60 s)", 1)
    engine = start_engine(*preset_engine_arguments(preset))
    if progress is not None:
        progress.advance()
    try:
        hardware, version = engine.hardware(), engine.engine_version()
        profile, simulator = _simulator_for(db, preset, hardware, feedback)
        config = configuration_of(preset, profile)
        prediction = predict(simulator, config, preset.request.timeout_s, questions)
        report = measure(engine, task, chosen, plan_of(preset), progress)
        if feedback and report.aborted_branches == 0:
            replayed = simulator.replay_latency(
                config, [o.prompt_tokens for o in report.outcomes],
                [list(o.branch_tokens) for o in report.outcomes])
            store_check(db, engine, profile, config, provenance.task,
                        f"validate:{preset_name}", report, replayed)
    finally:
        engine.close()
    record = validation_record(preset_name, provenance.task, split, seed, prediction,
                               Measurement.of(report), report)
    record = _with_environment(record, hardware.fingerprint, version)
    return ValidationStore(db).add(record)


def validate_through_gateway(db: Database, preset_name: str, gateway_url: str, *,
                             questions: int = 100, seed: int = 0,
                             split: str = DEFAULT_SPLIT, api_key: str | None = None,
                             progress: ProgressReporter | None = None) -> ValidationRecord:
    """Run the preset's questions through its gateway (`latts-tune serve`) on this machine,
    as a deployed client would, and store predicted vs measured. The gateway votes and
    cuts at the deadline itself; latency is the client's wall clock."""
    from profilers import describe_local_hardware
    from profilers.gateway_client import run_through_gateway
    from profilers.openai_engine import is_loopback_url

    if not is_loopback_url(gateway_url):
        raise UserInputError(f"--gateway-url {gateway_url}: validate predicts for this "
                             "machine, so the gateway must run here (127.0.0.1)")
    preset = Preset.model_validate(PresetStore(db).get(preset_name).body)
    task = get_task(preset.provenance.task, TaskDefinitionStore(db))
    hardware = describe_local_hardware()
    profile, simulator = _simulator_for(db, preset, hardware, feedback=True)
    config = configuration_of(preset, profile)
    deadline_s = preset.request.timeout_s or preset.predicted.deadline_s
    # The gateway answers at the deadline with the branches done by then: a cutoff.
    prediction = predict(simulator, config, deadline_s, questions)
    model = preset.serving.served_model()
    run_through_gateway(gateway_url, model, task, task.load_questions("train",
                        WARMUP_QUESTIONS), deadline_s, api_key)
    chosen = select_questions(task, split, questions, seed)
    if progress is not None:
        progress.start(f"measuring {len(chosen)} questions through the gateway", len(chosen))
    report = run_through_gateway(gateway_url, model, task, chosen, deadline_s, api_key,
                                 progress)
    record = validation_record(preset_name, preset.provenance.task, split, seed, prediction,
                               Measurement.of(report), report)
    record = _with_environment(record, hardware.fingerprint, f"gateway {gateway_url}")
    return ValidationStore(db).add(record)


def _simulator_for(db: Database, preset: Preset, hardware, feedback: bool
                   ) -> tuple[ProfileSet, Simulator]:
    """The profile and simulator that predict the preset on `hardware`: its own step costs
    or the preset's, corrected by its latency checks made before this validation."""
    provenance = preset.provenance
    store = ProfileStore(db)
    reference = store.load_profile_set(provenance.hardware_fingerprint,
                                       provenance.engine_version)
    profile, source = cost_source(store, LatencyCheckStore(db), reference, hardware, feedback)
    if source.foreign and not source.corrections:
        logger.warning("%s", source.note())
    return profile, Simulator(profile, provenance.task, corrections=source.corrections)


def validation_record(preset_name: str, task: str, split: str, seed: int,
                      prediction: Prediction, measured: Measurement,
                      report: ExecutionReport) -> ValidationRecord:
    """The stored form of one validation (environment fields filled by the caller)."""
    return ValidationRecord(
        preset_name=preset_name, task=task, split=split, seed=seed,
        hardware_fingerprint="", engine_version="", tool_version=tool_version(),
        predicted_accuracy=prediction.accuracy,
        predicted_accuracy_low=prediction.accuracy_low,
        predicted_accuracy_high=prediction.accuracy_high,
        predicted_mean_latency_s=prediction.mean_latency_s,
        predicted_p50_latency_s=prediction.p50_latency_s,
        predicted_p90_latency_s=prediction.p90_latency_s,
        measured_accuracy=measured.accuracy, measured_accuracy_low=measured.accuracy_low,
        measured_accuracy_high=measured.accuracy_high,
        measured_mean_latency_s=measured.mean_latency_s,
        measured_p50_latency_s=measured.p50_latency_s,
        measured_p90_latency_s=measured.p90_latency_s,
        latencies_s=tuple(float(o.latency_s) for o in report.outcomes),
        correct=tuple(bool(o.correct) for o in report.outcomes),
        aborted_branches=measured.aborted_branches,
        expected_accuracy_low=prediction.expected_low,
        expected_accuracy_high=prediction.expected_high,
    )


def _with_environment(record: ValidationRecord, fingerprint: str,
                      version: str) -> ValidationRecord:
    from dataclasses import replace

    return replace(record, hardware_fingerprint=fingerprint, engine_version=version)
