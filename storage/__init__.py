"""Storage: profiles, presets and their database (SQLite or PostgreSQL, beside Optuna's).

Callers get frozen records; ORM rows never leave this package. Imports nothing of ours.
"""

from storage.checks import LatencyCheckStore
from storage.claims import ClaimStore, worker_id
from storage.database import Database, resolve_url
from storage.details import AccuracyStats, CostGrid, ModelDetails, describe_model
from storage.errors import LattsError, StorageError, StorageUnavailable, UserInputError
from storage.files import (
    MAX_PRESET_BYTES,
    MAX_PROFILE_BYTES,
    MAX_SPEC_BYTES,
    MAX_TASK_BYTES,
    YamlRefused,
    inside,
    load_document,
    load_yaml,
    output_folder,
    read_text,
    staged_files,
    write_files,
)
from storage.presets import PresetStore
from storage.profiles import ProfileRecords, ProfileStore, short_fingerprint
from storage.records import (
    AcceptanceRecord,
    AccuracySample,
    CostPoint,
    HardwareRecord,
    LatencyCheck,
    ModelRecord,
    PresetRecord,
    ProfileSet,
    ProfileSummary,
    ValidationRecord,
    speculation_columns,
)
from storage.speculation import Speculation, speculation_of
from storage.tasks import TaskDefinitionStore, definition_digest
from storage.transfer import (
    FORMAT_VERSION,
    export_profiles,
    import_profiles,
    read_profile_file,
    tool_version,
)
from storage.validations import ValidationStore
from storage.waits import NETWORK_TIMEOUT_S, announced

__all__ = [
    "ClaimStore",
    "worker_id",
    "FORMAT_VERSION",
    "MAX_PRESET_BYTES",
    "NETWORK_TIMEOUT_S",
    "MAX_PROFILE_BYTES",
    "MAX_SPEC_BYTES",
    "MAX_TASK_BYTES",
    "YamlRefused",
    "announced",
    "inside",
    "load_document",
    "load_yaml",
    "output_folder",
    "read_text",
    "staged_files",
    "write_files",
    "AcceptanceRecord",
    "AccuracySample",
    "AccuracyStats",
    "CostGrid",
    "CostPoint",
    "Database",
    "HardwareRecord",
    "LatencyCheck",
    "LatencyCheckStore",
    "LattsError",
    "TaskDefinitionStore",
    "definition_digest",
    "ModelDetails",
    "ModelRecord",
    "PresetRecord",
    "PresetStore",
    "ProfileRecords",
    "ProfileSet",
    "ProfileStore",
    "ProfileSummary",
    "StorageError",
    "StorageUnavailable",
    "UserInputError",
    "Speculation",
    "ValidationRecord",
    "ValidationStore",
    "describe_model",
    "export_profiles",
    "import_profiles",
    "read_profile_file",
    "resolve_url",
    "short_fingerprint",
    "speculation_columns",
    "speculation_of",
    "tool_version",
]
