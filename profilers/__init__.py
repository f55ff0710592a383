"""Everything that talks to an engine: the engine interface, profilers, tasks, executor.

vllm and torch are imported only inside the functions that need them.
"""

from profilers.acceptance import profile_acceptance
from profilers.accuracy import check_accuracy_settings, profile_accuracy
from profilers.decode import DecodeGrid, profile_decode
from profilers.engine import (
    BranchOutput,
    Engine,
    GenerationResult,
    SamplingConfig,
    SpecCounters,
    SpeculativeConfig,
)
from profilers.hardware import describe_local_hardware
from profilers.models import read_model_record
from profilers.pool import EnginePool, model_name
from profilers.progress import ProgressReporter, SilentProgress
from profilers.tasks import Question, Task, get_task
from profilers.voting import majority_vote

__all__ = [
    "BranchOutput",
    "DecodeGrid",
    "Engine",
    "EnginePool",
    "GenerationResult",
    "ProgressReporter",
    "Question",
    "SamplingConfig",
    "SilentProgress",
    "SpecCounters",
    "SpeculativeConfig",
    "Task",
    "check_accuracy_settings",
    "describe_local_hardware",
    "get_task",
    "majority_vote",
    "model_name",
    "profile_acceptance",
    "profile_accuracy",
    "profile_decode",
    "read_model_record",
]
