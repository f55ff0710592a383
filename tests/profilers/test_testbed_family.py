"""The shipped testbed family: tokenizer round trip, sizes and shared vocabulary."""

import json

from profilers.models import read_model_record
from profilers.testbed.family import FAMILY, MODELS_DIR, build_tokenizer, vocabulary
from storage import ProfileSet


def test_tokenizer_is_character_level_and_round_trips():
    tokenizer = build_tokenizer()
    ids = tokenizer("37+25:")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id
    assert len(ids) == 1 + len("37+25:")
    assert tokenizer.decode(ids, skip_special_tokens=True) == "37+25:"


def test_every_shipped_model_shares_one_vocabulary_and_fits_the_budget():
    sizes = []
    for size in FAMILY:
        directory = MODELS_DIR / size.name
        config = json.loads((directory / "config.json").read_text())
        assert config["vocab_size"] == len(vocabulary())
        assert config["num_hidden_layers"] == size.num_layers
        record = read_model_record(str(directory), size.role)
        assert record.parameter_count > 0
        sizes.append(record.size_bytes)
    assert sum(sizes) < 40e6
    targets = [s for s in FAMILY if s.role == "target"]
    assert len(targets) >= 3 and any(s.role == "draft" for s in FAMILY)


def test_the_card_measures_every_model_alone_then_every_target_with_each_speculation():
    from profilers.testbed.card import TestbedSettings, engine_configurations

    configs = engine_configurations(TestbedSettings())
    alone = [c.model for c in configs if c.speculation is None]
    assert sorted(alone) == ["tb-draft", "tb-large", "tb-medium", "tb-small"]
    assert configs[:4] == [c for c in configs if c.speculation is None]  # alone ones first
    targets = ("tb-small", "tb-medium", "tb-large")
    drafted = {(c.model, c.draft, c.gamma) for c in configs[4:] if c.draft}
    assert drafted == {(target, "tb-draft", gamma) for target in targets
                       for gamma in (1, 2, 3, 4)}
    lookups = {(c.model, c.speculation.source, c.gamma) for c in configs[4:] if not c.draft}
    assert lookups == {(target, "ngram[prompt_lookup_max=3,prompt_lookup_min=1]", gamma)
                       for target in targets for gamma in (1, 2)}
    assert len(configs) == 22


def test_the_card_shows_each_speculation_per_position_per_target_step():
    import dataclasses

    from profilers.testbed.card import TestbedSettings, render_card
    from profilers.testbed.family import TESTBED_DIR
    from storage import read_profile_file

    records = read_profile_file(TESTBED_DIR / "profile.json.gz")
    template = next(r for r in records.acceptance if r.target == "tb-large")
    ngram = dataclasses.replace(
        template, draft=None, method="ngram", gamma=2, num_drafts=500, num_draft_tokens=1000,
        num_accepted_tokens=300, accepted_per_position=(200, 100),
        spec_options="prompt_lookup_max=3,prompt_lookup_min=1", verification_steps=1000)
    profile = ProfileSet(hardware=records.hardware[0], engine_version=template.engine_version,
                         models=records.models, cost_points=records.cost_points,
                         acceptance=(*records.acceptance, ngram), accuracy=records.accuracy)
    card = render_card(profile, TestbedSettings(), None)
    # 200 and 100 of 1000 target steps (half of them proposed nothing)
    assert ("| tb-large | ngram[prompt_lookup_max=3,prompt_lookup_min=1] | 2 | 0.200, 0.100 "
            "| 1.30 |") in card
    assert "| tb-large | tb-draft | 4 |" in card
