"""Which machine a study tunes for, and where its step costs come from.

Step costs belong to a machine; accuracy samples and draft acceptance belong to (model,
task, sampling, engine release) and are valid anywhere (`storage.ProfileStore`). The target
machine is this one by default (`--hardware current`), another known machine (`--hardware
ID`) or whichever machine the profile was taken on (`--hardware any`). Its step costs are
its own when it has a cost profile; otherwise the profiled machine's, corrected by the
target's latency checks (`tuner.core.calibration`) when it has some. `CostSource.note`
says which, for the first line of a command's output.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from storage import HardwareRecord, LatencyCheckStore, ProfileSet, ProfileStore, short_fingerprint
from storage.profiles import portable_release
from tuner.core.calibration import Corrections
from tuner.core.cost_model import MIN_POINTS

CURRENT = "current"
ANY = "any"
CALIBRATE_COMMAND = "latts-tune calibrate"


@dataclass(frozen=True)
class MachineChoice:
    """`--hardware` (current, any or a fingerprint prefix) and `--feedback/--no-feedback`:
    whether this machine's validations correct later predictions."""

    hardware: str = CURRENT
    feedback: bool = True


THIS_MACHINE = MachineChoice()


@dataclass(frozen=True)
class CostSource:
    """The machine a workspace tunes for and how its step costs were obtained."""

    target: HardwareRecord | None  # None: `--hardware any`, the profiled machine itself
    costs: HardwareRecord  # where the step costs were measured
    corrections: Corrections
    partial_own_points: int = 0  # the target's own step costs, set aside as incomplete

    @property
    def foreign(self) -> bool:
        """The costs were measured on another machine than the target."""
        return self.target is not None and self.target.fingerprint != self.costs.fingerprint

    def note(self) -> str | None:
        """One line for the top of the output: which machine measured the step costs and
        what corrected them (None only with `--hardware any`)."""
        if self.foreign and not self.corrections:
            assert self.target is not None
            return (f"Step costs come from another machine, {describe(self.costs)}, not this "
                    f"one ({describe(self.target)}): predicted latencies may be far off. "
                    f"Measure this machine first: {CALIBRATE_COMMAND} (about 3 minutes)."
                    + self._partial())
        if self.corrections:
            where = (f"profiled on {describe(self.costs)}, corrected for "
                     f"{describe(self.target or self.costs)}" if self.foreign
                     else f"measured on {describe(self.costs)}, corrected")
            return f"Step costs {where} by {self.corrections.describe()}.{self._partial()}"
        if self.target is not None:
            # One fingerprint is no promise: two AMD EPYC machines with the testbed's
            # fingerprint decoded 4-9x apart (results/same_fingerprint.md, drift.md).
            return (f"Step costs measured on {describe(self.costs)}, a machine of this "
                    "type, and not yet checked on this one; check them with "
                    f"{CALIBRATE_COMMAND} (about 3 minutes).")
        return None

    def _partial(self) -> str:
        if not self.partial_own_points:
            return ""
        return (f" This machine's own {self.partial_own_points} step-cost points do not "
                "cover every slice the profile has, so they are not used yet.")

    def title(self) -> str:
        """The machine the predictions are for, e.g. "AMD EPYC, 2 cores (2f2de913389d)"."""
        return describe(self.target or self.costs)

    def corrections_digest(self) -> str:
        """Which checks corrected the costs ("" without corrections)."""
        ids = sorted(check.id or 0 for check in self.corrections.checks)
        return hashlib.sha1(repr(ids).encode()).hexdigest()[:8] if ids else ""


def describe(hardware: HardwareRecord) -> str:
    gpus = f", {hardware.gpu_count} x {hardware.gpu_model}" if hardware.gpu_count else ""
    cores = f"{hardware.cpu_cores} core{'s' if hardware.cpu_cores != 1 else ''}"
    return (f"{hardware.cpu_model}, {cores}{gpus} "
            f"({short_fingerprint(hardware.fingerprint)})")


def target_machine(store: ProfileStore, choice: str) -> HardwareRecord | None:
    """The machine `--hardware` names: this one, a stored one (ID prefix) or None (any)."""
    if choice == ANY:
        return None
    if choice == CURRENT:
        from profilers import describe_local_hardware

        return describe_local_hardware()
    fingerprint = store.resolve_hardware(choice)
    return next(h for h in store.hardware() if h.fingerprint == fingerprint)


def this_machine_if_profiled(store: ProfileStore) -> str | None:
    """This machine's fingerprint when the store has its measurements, else None: where
    several machines are stored, a command shows this one's unless told otherwise."""
    from profilers import describe_local_hardware

    fingerprint = describe_local_hardware().fingerprint
    stored = {pair[0] for pair in store.cost_pairs() or store.measured_pairs()}
    return fingerprint if fingerprint in stored else None


def own_profile(store: ProfileStore, target: HardwareRecord | None) -> ProfileSet | None:
    """The target's own profile when it has step costs (the engine with the most of them),
    else None."""
    if target is None:
        return None
    own = [pair for pair in store.cost_pairs() if pair[0] == target.fingerprint]
    if not own:
        return None
    profiles = [store.load_profile_set(*pair) for pair in own]
    return max(profiles, key=lambda profile: len(profile.cost_points))


def covers_costs(own: ProfileSet, reference: ProfileSet) -> bool:
    """Whether `own`'s step costs can stand in for `reference`'s: every cost slice
    (phase, model, speculation) of the reference with enough points to fit, up to the
    reference's largest batch and context. A partial profile (one budgeted `profile
    decode`) would leave slices the search needs unfitted or out of range."""
    def extents(profile: ProfileSet) -> dict[tuple, tuple[int, int, int]]:
        slices: dict[tuple, tuple[int, int, int]] = {}
        for point in profile.cost_points:
            if point.status != "ok":
                continue
            key = (point.phase, point.model, point.speculation)
            count, batch, context = slices.get(key, (0, 0, 0))
            slices[key] = (count + 1, max(batch, point.batch_size),
                           max(context, point.context_tokens))
        return slices

    mine = extents(own)
    return all(key in mine and mine[key][0] >= min(count, MIN_POINTS)
               and mine[key][1] >= batch and mine[key][2] >= context
               for key, (count, batch, context) in extents(reference).items())


def cost_source(store: ProfileStore, checks: LatencyCheckStore, reference: ProfileSet,
                target: HardwareRecord | None, feedback: bool
                ) -> tuple[ProfileSet, CostSource]:
    """The target's profile (its own step costs when they cover `reference`'s, else
    `reference`'s) and its corrections:
    latency checks run on the target against those costs (validations only with
    `feedback`)."""
    profile, partial_own_points = reference, 0
    if target is not None and target.fingerprint != reference.hardware.fingerprint:
        own = [pair for pair in store.cost_pairs()
               if pair[0] == target.fingerprint
               and portable_release(pair[1]) == portable_release(reference.engine_version)]
        if own:
            candidate = store.load_profile_set(*own[0])
            if covers_costs(candidate, reference):
                profile = candidate
            else:
                partial_own_points = len(candidate.cost_points)
    corrections = Corrections(())
    if target is not None:
        relevant = [check for check in checks.on(target.fingerprint,
                                                 profile.hardware.fingerprint)
                    if check.cost_engine_version == profile.engine_version
                    and (feedback or not check.source.startswith("validate"))]
        corrections = Corrections(relevant)
    return profile, CostSource(target, profile.hardware, corrections, partial_own_points)
