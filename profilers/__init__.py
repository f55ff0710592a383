"""Everything that talks to an engine: the engine interface, profilers, tasks, executor.

vllm and torch are imported only inside the functions that need them.
"""

from profilers.acceptance import profile_acceptance
from profilers.accuracy import (
    AccuracySummary,
    check_accuracy_settings,
    profile_accuracy,
    stored_accuracy_summary,
    summarize_accuracy,
)
from profilers.decode import DecodeGrid, profile_decode
from profilers.engine import (
    BranchDelta,
    BranchOutput,
    Engine,
    GenerationResult,
    SamplingConfig,
    SpecCounters,
    SpeculativeConfig,
    StreamingEngine,
)
from profilers.executor import ExecutionPlan, ExecutionReport, QuestionOutcome, execute
from profilers.hardware import describe_local_hardware
from profilers.models import read_model_record
from profilers.openai_engine import OpenAIServerEngine
from profilers.planner import BudgetReport, profile_decode_budgeted
from profilers.pool import EnginePool, model_name
from profilers.progress import ProgressReporter, SilentProgress
from profilers.tasks import DEFINITION_PREFIX, Question, Task, get_task, store_definition
from profilers.voting import majority_vote

__all__ = [
    "BranchDelta",
    "BranchOutput",
    "BudgetReport",
    "DecodeGrid",
    "Engine",
    "EnginePool",
    "ExecutionPlan",
    "ExecutionReport",
    "GenerationResult",
    "OpenAIServerEngine",
    "ProgressReporter",
    "Question",
    "QuestionOutcome",
    "SamplingConfig",
    "SilentProgress",
    "SpecCounters",
    "SpeculativeConfig",
    "StreamingEngine",
    "Task",
    "DEFINITION_PREFIX",
    "check_accuracy_settings",
    "describe_local_hardware",
    "execute",
    "get_task",
    "store_definition",
    "majority_vote",
    "model_name",
    "profile_acceptance",
    "profile_accuracy",
    "stored_accuracy_summary",
    "summarize_accuracy",
    "AccuracySummary",
    "profile_decode",
    "profile_decode_budgeted",
    "read_model_record",
]
