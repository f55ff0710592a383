"""The tuner: simulator, search space, Optuna study, presets (the core wing), figures and
reports (the review wing) and the command line (the CLI wing); see docs/design.md.

Importing it never imports vLLM or torch (a test checks), so tuning stored profiles is fast.
"""

from tuner.core.configuration import Configuration, Figures, LatencyObjective
from tuner.core.cost_model import OutOfProfiledRange, ProfileIncomplete, StepCostModel
from tuner.core.durations import parse_duration, parse_duration_range
from tuner.core.frontier import FrontierPoint, exhaustive_optimum, frontier
from tuner.core.presets import Preset, build_preset, write_preset
from tuner.core.ranking import NoFeasibleConfiguration, rank
from tuner.core.simulator import SimulationResult, Simulator
from tuner.core.space import SearchSpace, build_space
from tuner.core.spec import StudySpec, load_spec
from tuner.core.study import StudyOutcome, StudySettings, run_study
from tuner.core.trials import TrialSummary

__all__ = [
    "Configuration",
    "Figures",
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
    "rank",
    "run_study",
    "write_preset",
]
