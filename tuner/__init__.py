"""The tuner: simulator, search space, Optuna study, presets and the CLI.

Importing it never imports vLLM or torch (a test checks), so tuning stored profiles is fast.
"""

from tuner.cost_model import OutOfProfiledRange, ProfileIncomplete, StepCostModel
from tuner.durations import Duration, DurationRange, parse_duration, parse_duration_range
from tuner.presets import Preset, build_preset, write_preset
from tuner.simulator import Configuration, LatencyObjective, SimulationResult, Simulator
from tuner.space import SearchSpace, build_space
from tuner.spec import StudySpec, load_spec
from tuner.study import (
    FrontierPoint,
    NoFeasibleConfiguration,
    StudyOutcome,
    StudySettings,
    TrialSummary,
    exhaustive_optimum,
    frontier,
    run_study,
)

__all__ = [
    "Configuration",
    "Duration",
    "DurationRange",
    "FrontierPoint",
    "LatencyObjective",
    "NoFeasibleConfiguration",
    "OutOfProfiledRange",
    "Preset",
    "ProfileIncomplete",
    "SearchSpace",
    "SimulationResult",
    "Simulator",
    "StepCostModel",
    "StudyOutcome",
    "StudySettings",
    "StudySpec",
    "TrialSummary",
    "build_preset",
    "build_space",
    "exhaustive_optimum",
    "frontier",
    "load_spec",
    "parse_duration",
    "parse_duration_range",
    "run_study",
    "write_preset",
]
