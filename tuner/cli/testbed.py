"""`latts-tune testbed train|card`: rebuild the shipped model family and its card."""

from __future__ import annotations

import json

import click

from tuner.cli.common import engine_pool, interrupt_message, open_profile_store
from tuner.cli.progress import RichProgress


@click.group()
def testbed() -> None:
    """Rebuild the testbed model family (training) and its measured card and profile.

    Example: latts-tune testbed card
    """


@testbed.command()
@click.option("--seed", type=int, default=0, show_default=True,
              help="Training seed: the same seed rebuilds the same weights.")
@click.option("--only", multiple=True, help="Train only this model (repeat for several).")
def train(seed: int, only: tuple[str, ...]) -> None:
    """Train the testbed family deterministically into studies/testbed/models (CPU).

    Example: latts-tune testbed train --seed 0
    """
    from profilers.testbed.train import train_family

    click.echo(json.dumps(train_family(seed, only), indent=2))


@testbed.command()
@click.pass_context
def card(ctx: click.Context) -> None:
    """Profile the family on vLLM, export studies/testbed/profile.json.gz, write CARD.md.

    Example: latts-tune --storage sqlite:///testbed.db testbed card
    """
    from profilers import describe_local_hardware
    from profilers.testbed.card import TestbedSettings, profile_testbed, render_card
    from profilers.testbed.family import MODELS_DIR, TESTBED_DIR
    from profilers.vllm_engine import engine_version
    from storage import export_profiles

    settings = TestbedSettings()
    store = open_profile_store(ctx)
    with engine_pool(settings.max_model_len, "auto") as pool, RichProgress() as progress, \
            interrupt_message(store):
        profile_testbed(store, pool, settings, progress)
    fingerprint = describe_local_hardware().fingerprint
    profile_set = store.load_profile_set(fingerprint, engine_version())
    export_profiles(store, TESTBED_DIR / "profile.json.gz", profile_set.hardware.fingerprint)
    training_file = MODELS_DIR / "training.json"
    training = json.loads(training_file.read_text()) if training_file.exists() else None
    (TESTBED_DIR / "CARD.md").write_text(render_card(profile_set, settings, training))
    click.echo(f"wrote {TESTBED_DIR / 'CARD.md'} and {TESTBED_DIR / 'profile.json.gz'}")
