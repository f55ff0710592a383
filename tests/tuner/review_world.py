"""A database with one finished study for the review tests: the shipped testbed profile
when `studies/testbed/profile.json.gz` exists, else the synthetic family profile."""

from __future__ import annotations

from pathlib import Path

from tuner_synthetic import HARDWARE, family_profile

from storage import Database, ProfileRecords, ProfileStore
from tuner.core.configuration import LatencyObjective
from tuner.core.operations import tune
from tuner.core.spec import StudySpec, load_spec
from tuner.review.dashboard import save_study_figures

SHIPPED_PROFILE: Path | None = load_spec(None).profiles
SYNTHETIC_SPEC = StudySpec(name="fam", task="arithmetic")
SYNTHETIC_DEADLINE_S = 6.0
TESTBED_DEADLINE_S = 0.1  # inside the testbed's range (53-210 ms), so some trials miss it


def synthetic_study(url: str) -> str:
    """Store the synthetic profile, run its study at 6 s; returns the study name."""
    profile = family_profile(questions=20, k=8)
    with Database(url) as db:
        ProfileStore(db).write(ProfileRecords(
            hardware=(HARDWARE,), models=profile.models, cost_points=profile.cost_points,
            acceptance=profile.acceptance, accuracy=profile.accuracy))
        _, outcome = tune(db, SYNTHETIC_SPEC, SYNTHETIC_DEADLINE_S, LatencyObjective(),
                          on_finish=save_study_figures)
    return outcome.study_name


def testbed_study(url: str) -> str:
    """Run the embedded testbed spec at 2 s (imports the shipped profile)."""
    spec = load_spec(None)
    with Database(url) as db:
        _, outcome = tune(db, spec, TESTBED_DEADLINE_S, LatencyObjective(
            spec.latency.statistic, spec.latency.quantile, spec.cutoff),
            on_finish=save_study_figures)
    return outcome.study_name


def preferred_study(url: str) -> str:
    """The testbed study when its profile is shipped, else the synthetic one."""
    shipped = SHIPPED_PROFILE is not None and SHIPPED_PROFILE.exists()
    return testbed_study(url) if shipped else synthetic_study(url)
