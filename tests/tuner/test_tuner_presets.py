"""Presets: vLLM's own parser accepts the server file; SGLang's argument names exist."""

from __future__ import annotations

import json
import re
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from tuner_synthetic import drafted, family_profile
from unavailable import missing

from tuner.core.configuration import Configuration, LatencyObjective
from tuner.core.presets import Preset, build_preset, write_preset
from tuner.core.trials import TrialSummary
from tuner.gateway import settings_from_preset

PROFILE = family_profile(questions=3, k=4)
# engine-notes.md, "SGLang server arguments": used only when sglang's source is absent.
SGLANG_NOTED_ARGUMENTS = {
    "model-path", "speculative-algorithm", "speculative-draft-model-path",
    "speculative-num-steps", "speculative-eagle-topk", "speculative-num-draft-tokens",
    "context-length", "random-seed",
}


def summary(config: Configuration) -> TrialSummary:
    return TrialSummary(number=7, configuration=config, accuracy=0.8, accuracy_low=0.7,
                        accuracy_high=0.9, latency_s=1.5, latency_upper_s=1.7,
                        mean_latency_s=1.2,
                        mean_generated_tokens=300.0, prefill_s=0.1, decode_s=1.1,
                        tokens_per_step=2.0, feasible=True)


P90 = LatencyObjective()


def preset(config: Configuration, latency=P90) -> Preset:
    return build_preset(summary(config), PROFILE, study_name="fam-2s-q0.9",
                        task="arithmetic", deadline_s=2.0, latency=latency)


SPECULATIVE = Configuration("big", 4, drafted("draft", 3), 1.0)


def test_preset_sections_and_request():
    body = preset(SPECULATIVE).model_dump(mode="json")
    assert body["latts_preset"] == 1 and body["name"] == "fam-2s-q0.9-t7"
    assert body["request"]["n"] == 4 and body["request"]["aggregation"] == "majority"
    assert body["request"]["max_tokens"] == 512
    assert body["request"]["timeout_s"] is None
    assert body["predicted"]["accuracy_interval"] == [0.7, 0.9]
    assert body["predicted"]["quantile"] == 0.9
    assert body["provenance"]["trial"] == 7
    assert body["provenance"]["hardware_fingerprint"] == PROFILE.hardware.fingerprint
    cut = preset(SPECULATIVE, LatencyObjective(cutoff=True))
    assert cut.request.timeout_s == 2.0


def test_the_task_stop_strings_go_into_the_preset_and_its_gateway():
    stopping = build_preset(summary(SPECULATIVE), PROFILE, study_name="fam-2s-q0.9",
                            task="arithmetic", deadline_s=2.0, latency=P90, stop=("\n", "Q:"))
    assert stopping.request.stop == ["\n", "Q:"]
    settings = settings_from_preset(stopping, "http://127.0.0.1:8000")
    assert settings.stop == ("\n", "Q:")
    body = preset(SPECULATIVE).model_dump(mode="json")
    assert body["request"]["stop"] == []
    del body["request"]["stop"]  # a preset written before stop strings existed
    assert Preset.model_validate(body).request.stop == []


def test_written_files_per_format(tmp_path):
    vllm_files = write_preset(preset(SPECULATIVE), "vllm", tmp_path)
    assert [p.name for p in vllm_files] == ["fam-2s-q0.9-t7.vllm.yaml",
                                            "fam-2s-q0.9-t7.request.json"]
    request = json.loads(vllm_files[1].read_text())
    assert request["request"]["n"] == 4 and "serving" not in request
    (json_file,) = write_preset(preset(SPECULATIVE), "json", tmp_path)
    assert Preset.model_validate_json(json_file.read_text()) == preset(SPECULATIVE)


def vllm_serve_parser():
    try:
        from vllm.utils import argparse_utils as vllm_argparse
    except ImportError:
        missing("vLLM is not installed (install the cpu or gpu extra); its own serve parser "
                "checks the preset")
    from vllm.entrypoints.cli.serve import ServeSubcommand

    parser = vllm_argparse.FlexibleArgumentParser(prog="vllm")
    ServeSubcommand().subparser_init(parser.add_subparsers(dest="subparser"))
    return parser


def test_vllm_serve_accepts_the_preset(tmp_path):
    parser = vllm_serve_parser()
    from vllm.engine.arg_utils import AsyncEngineArgs

    path = write_preset(preset(SPECULATIVE), "vllm", tmp_path)[0]
    args = parser.parse_args(["serve", "--config", str(path)])
    engine_args = AsyncEngineArgs.from_cli_args(args)
    assert engine_args.model == "/models/big"
    assert engine_args.speculative_config == {
        "method": "draft_model", "model": "/models/draft", "num_speculative_tokens": 3}
    assert (engine_args.max_num_seqs, engine_args.seed) == (4, 0)
    assert engine_args.max_model_len == 2 * 16 + 512  # room for prompts twice the profiled

    plain = write_preset(preset(Configuration("small", 1, None, 1.0)), "vllm",
                         tmp_path / "plain")[0]
    plain_args = AsyncEngineArgs.from_cli_args(parser.parse_args(["serve", "--config",
                                                                  str(plain)]))
    assert plain_args.speculative_config is None

    # The parser does check names: a misspelt key is refused (so the test can fail).
    bogus = tmp_path / "bogus.yaml"
    bogus.write_text(yaml.safe_dump({"model": "/m", "speculative-configuration": "{}"}))
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--config", str(bogus)])


def sglang_argument_names() -> set[str] | None:
    """Flag names from the installed sglang's source text (never imported), or None."""
    try:
        distribution = metadata.distribution("sglang")
    except metadata.PackageNotFoundError:
        return None
    root = Path(distribution.locate_file("sglang/srt"))
    sources = [root / "server_args.py", *sorted((root / "arg_groups" / "fields").glob("*.py"))]
    names: set[str] = set()
    for source in sources:
        if not source.exists():
            continue
        text = source.read_text()
        names |= set(re.findall(r'"--([a-z0-9-]+)"', text))
        names |= {name.replace("_", "-")
                  for name in re.findall(r"^    ([a-z][a-z0-9_]*)\s*:\s*A\[", text, re.M)}
    return names or None


def test_sglang_arguments_are_valid_names(tmp_path):
    path = write_preset(preset(SPECULATIVE), "sglang", tmp_path)[0]
    arguments = yaml.safe_load(path.read_text())
    assert arguments["speculative-algorithm"] == "STANDALONE"
    assert arguments["speculative-num-draft-tokens"] == arguments["speculative-num-steps"] + 1
    known = sglang_argument_names() or SGLANG_NOTED_ARGUMENTS
    assert set(arguments) <= known


def test_the_served_context_leaves_room_for_longer_prompts_within_the_checkpoint(tmp_path):
    from tuner.core.presets import served_context

    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"max_position_embeddings": 192}))
    assert served_context(19, 96, []) == 2 * 19 + 96  # no checkpoint to read: no limit
    assert served_context(60, 96, [str(model)]) == 192  # 216 wanted, the checkpoint's 192
    # never below what the profile itself ran (the server would refuse its own prompts)
    assert served_context(150, 96, [str(model)]) == 150 + 96
