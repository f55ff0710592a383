"""The operations behind the CLI commands, so the CLI only parses and prints.

Hooks that belong to other wings (saving dashboard figures when a study finishes) are
passed in by the CLI, so the core never imports the review wing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from profilers import DEFINITION_PREFIX, Task, get_task
from storage import (
    Database,
    HardwareRecord,
    LatencyCheckStore,
    PresetRecord,
    PresetStore,
    ProfileSet,
    ProfileStore,
    StorageUnavailable,
    TaskDefinitionStore,
    UserInputError,
    read_profile_file,
    staged_files,
)
from tuner.core.configuration import LatencyObjective
from tuner.core.frontier import FrontierPoint, LoadPoint, frontier, load_frontier
from tuner.core.load import Load
from tuner.core.machine import (
    THIS_MACHINE,
    CostSource,
    MachineChoice,
    cost_source,
    covers_costs,
    own_profile,
    target_machine,
)
from tuner.core.presets import Preset, build_preset, preset_files, read_preset_file
from tuner.core.simulator import Simulator
from tuner.core.space import SearchSpace, build_space
from tuner.core.spec import StudySpec
from tuner.core.study import (
    OnFinish,
    StudyOutcome,
    StudySettings,
    load_trial,
    run_study,
    stored_settings,
)
from tuner.core.validate import repredict
from tuner.core.workers import (
    WorkerOptions,
    WorkerReport,
    open_worker_study,
    run_worker,
    study_exists,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Workspace:
    """A spec with the profile, space and simulator it resolves to, for one machine."""

    spec: StudySpec
    profile: ProfileSet
    space: SearchSpace
    simulator: Simulator
    source: CostSource
    definitions: TaskDefinitionStore  # stored task definitions, for `task`

    def task(self) -> Task:
        """The spec's task (a defined one from the database's definition)."""
        return get_task(self.spec.task, self.definitions)

    def settings(self, deadline_s: float, latency: LatencyObjective,
                 load: Load | None = None) -> StudySettings:
        return StudySettings.create(self.spec, self.profile, deadline_s, latency,
                                    self.source, load, self.simulator.max_num_seqs)


def open_workspace(db: Database, spec: StudySpec,
                   machine: MachineChoice = THIS_MACHINE,
                   max_num_seqs: int | None = None) -> Workspace:
    """Load (importing the spec's shipped profile if needed) the profile for the machine
    `machine` names (`tuner.core.machine`) and build space and simulator (`max_num_seqs`:
    the engine's cap under load, default the largest profiled batch)."""
    definitions = TaskDefinitionStore(db)
    if spec.task_file is not None:  # stored once; a changed file under the same id is refused
        get_task(f"{DEFINITION_PREFIX}{spec.task_file}", definitions)
    store = ProfileStore(db)
    target = target_machine(store, machine.hardware)
    reference = _reference_profile(store, spec, target)
    profile, source = cost_source(store, LatencyCheckStore(db), reference, target,
                                  machine.feedback)
    space = build_space(profile, spec)
    simulator = Simulator(profile, spec.task, split=spec.split,
                          corrections=source.corrections, max_num_seqs=max_num_seqs)
    return Workspace(spec, profile, space, simulator, source, definitions)


def _reference_profile(store: ProfileStore, spec: StudySpec,
                       target: HardwareRecord | None) -> ProfileSet:
    """The target's own profile when it covers the spec's (`covers_costs`), else the
    spec's; `cost_source` then corrects the spec's costs for the target. The spec's is
    loaded first: it may import the spec's file into the target's own profile."""
    try:
        spec_profile = load_profile(store, spec)
    except UserInputError:  # several machines and none named: the most measured other one
        own = own_profile(store, target)
        if own is None:
            raise
        others = [store.load_profile_set(*pair) for pair in store.cost_pairs()
                  if pair[0] != own.hardware.fingerprint]
        if not others:
            return own
        spec_profile = max(others, key=lambda profile: len(profile.cost_points))
    else:
        own = own_profile(store, target)
        if own is None:
            return spec_profile
    if spec_profile.hardware.fingerprint == own.hardware.fingerprint:
        return own
    return own if covers_costs(own, spec_profile) else spec_profile


def load_profile(store: ProfileStore, spec: StudySpec) -> ProfileSet:
    """The profile set the spec is about; imports `spec.profiles` when it is not stored."""
    pairs = store.measured_pairs()
    if spec.profiles is None or len(pairs) == 1:
        if pairs or spec.profiles is None:
            profile = store.load_profile_set()
            if spec.profiles is None or _covers(profile, spec):
                return profile
    if not spec.profiles.exists():
        raise UserInputError(f"profile file {spec.profiles} (named by the study spec) is "
                             "missing; profile first or fix `profiles:` in the spec")
    records = read_profile_file(spec.profiles)
    fingerprint, engine = _pair_of(records, spec.profiles)
    # another study's profile taken on the same machine shares the pair: import unless
    # the stored set already covers this spec (writing is an idempotent upsert)
    if ((fingerprint, engine) not in pairs
            or not _covers(store.load_profile_set(fingerprint, engine), spec)):
        counts = store.write(records)  # the file is parsed once
        logger.info("imported %s: %s", spec.profiles, counts)
    return store.load_profile_set(fingerprint, engine)


def _covers(profile: ProfileSet, spec: StudySpec) -> bool:
    measured = {s.model for s in profile.accuracy if s.task == spec.task}
    return bool(measured) and set(spec.models or measured) <= measured


def _pair_of(records, path: Path) -> tuple[str, str]:
    for kind in (records.accuracy, records.cost_points, records.acceptance):
        if kind:
            return kind[0].hardware_fingerprint, kind[0].engine_version
    raise UserInputError(f"{path}: holds no measurements")


def tune(db: Database, spec: StudySpec, deadline_s: float, latency: LatencyObjective,
         study_name: str | None = None, on_finish: OnFinish | None = None,
         machine: MachineChoice = THIS_MACHINE, load: Load | None = None,
         max_num_seqs: int | None = None) -> tuple[Workspace, StudyOutcome]:
    """Run (or resume) the study of `spec` at `deadline_s` for the machine `machine` names,
    under `load` (None: one request at a time); `on_finish` as `run_study`'s."""
    workspace = open_workspace(db, spec, machine, max_num_seqs)
    settings = workspace.settings(deadline_s, latency, load)
    with optuna_storage_errors(db):
        outcome = run_study(db.url, workspace.space, workspace.simulator, settings,
                            study_name=study_name, max_trials=spec.max_trials,
                            on_finish=on_finish)
    return workspace, outcome


@contextmanager
def optuna_storage_errors(db: Database) -> Iterator[None]:
    """Optuna's failed commits (e.g. a read-only database) as our one-line storage error."""
    from optuna.exceptions import StorageInternalError

    try:
        yield
    except StorageInternalError as error:
        cause = error.__cause__ or error
        raise StorageUnavailable(f"database {db.display_url!r} refused a write: "
                                 f"{str(cause).strip().splitlines()[0]}; check that it is "
                                 "writable") from error


def work_on_study(db: Database, spec: StudySpec, study_name: str, deadline_s: float | None,
                  latency: LatencyObjective, n_trials: int | None, options: WorkerOptions,
                  machine: MachineChoice = THIS_MACHINE, load: Load | None = None
                  ) -> WorkerReport:
    """Join (or create, given a deadline, under `load`) `study_name` and run trials until
    its budget is met; joining, the study's own deadline, objective and load hold."""
    if deadline_s is None and not study_exists(db.url, study_name):
        raise UserInputError(f"study {study_name!r} does not exist in {db.display_url}; give "
                             "--deadline (e.g. --deadline 150ms) to create it")
    with optuna_storage_errors(db):
        study = open_worker_study(db.url, study_name, options)
    max_num_seqs = None
    if deadline_s is None:
        stored = stored_settings(study)
        deadline_s, latency, load = stored.deadline_s, stored.objective, stored.load_value
        max_num_seqs = stored.max_num_seqs or None
    workspace = open_workspace(db, spec, machine, max_num_seqs)
    settings = workspace.settings(deadline_s, latency, load)
    default = min(len(workspace.space), spec.max_trials or len(workspace.space))
    return run_worker(study, workspace.space, workspace.simulator, settings, n_trials, default,
                      options.min_trial_s)


def deadline_frontier(db: Database, spec: StudySpec, deadlines_s: tuple[float, ...],
                      latency: LatencyObjective, machine: MachineChoice = THIS_MACHINE
                      ) -> tuple[Workspace, list[FrontierPoint]]:
    """Best configuration per deadline, for the machine `machine` names."""
    workspace = open_workspace(db, spec, machine)
    return workspace, frontier(workspace.space, workspace.simulator, deadlines_s, latency)


def load_switches(db: Database, spec: StudySpec, loads: tuple[Load, ...], deadline_s: float,
                  latency: LatencyObjective, machine: MachineChoice = THIS_MACHINE,
                  max_num_seqs: int | None = None) -> tuple[Workspace, list[LoadPoint]]:
    """Best configuration per load at `deadline_s`, for the machine `machine` names."""
    workspace = open_workspace(db, spec, machine, max_num_seqs)
    return workspace, load_frontier(workspace.space, workspace.simulator, loads, deadline_s,
                                    latency)


def export_preset(db: Database, study_name: str, trial_number: int | None,
                  output_format: str, directory: Path) -> tuple[Preset, list[Path]]:
    """Build the preset of a stored trial, write its files and save it in the database."""
    settings, summary = load_trial(db.url, study_name, trial_number)
    profile = ProfileStore(db).load_profile_set(settings.hardware_fingerprint,
                                                settings.engine_version)
    preset = build_preset(summary, profile, study_name=study_name, task=settings.task,
                          deadline_s=settings.deadline_s, latency=settings.objective,
                          tuned_for=settings.target_fingerprint,
                          corrections=settings.corrections, load=settings.load_value,
                          stop=get_task(settings.task, TaskDefinitionStore(db)).stop)
    # Files and database both or neither: the files are renamed into place once it is saved.
    with staged_files(preset_files(preset, output_format, directory)) as paths:
        PresetStore(db).save(PresetRecord(name=preset.name, study_name=study_name,
                                          trial_number=summary.number,
                                          body=preset.model_dump(mode="json")))
    return preset, paths


def import_preset(db: Database, path: Path) -> tuple[Preset, bool]:
    """Check a preset file (e.g. edited by hand) against its profile and store it under its
    name, its prediction made again for what it now deploys; (preset, whether the
    prediction changed)."""
    preset = read_preset_file(path)
    profile = ProfileStore(db).load_profile_set(preset.provenance.hardware_fingerprint,
                                                preset.provenance.engine_version)
    repredicted = repredict(preset, profile)
    PresetStore(db).save(PresetRecord(name=repredicted.name,
                                      study_name=repredicted.provenance.study,
                                      trial_number=repredicted.provenance.trial,
                                      body=repredicted.model_dump(mode="json")))
    return repredicted, repredicted.predicted != preset.predicted
