"""The shipped testbed family: tokenizer round trip, sizes and shared vocabulary."""

import json

from profilers.models import read_model_record
from profilers.testbed.family import FAMILY, MODELS_DIR, build_tokenizer, vocabulary


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
                       for target in targets for gamma in (1, 2, 3, 4)}
    assert len(configs) == 28
