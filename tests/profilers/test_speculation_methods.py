"""Speculation methods: each one's vLLM speculative_config goes through vLLM's own config
parser, its SGLang arguments name fields SGLang declares (its source is read, never
imported), and a server engine running it reads its counters."""

from __future__ import annotations

import ast
import importlib.util
import json
from pathlib import Path

import pytest
from unavailable import missing

from profilers.engine import SpeculativeConfig
from profilers.speculation import (
    METHODS,
    method_of,
    sglang_speculative_arguments,
    vllm_speculative_config,
)
from storage import Speculation, UserInputError

TESTBED = Path(__file__).resolve().parents[2] / "studies" / "testbed" / "models"
HEAD = str(TESTBED / "tb-draft")  # a Llama checkpoint stands in for a head's config

CASES = {
    "draft_model": Speculation("draft_model", 3, "tb-draft"),
    "ngram": Speculation("ngram", 3, None, (("prompt_lookup_min", 1),
                                            ("prompt_lookup_max", 3))),
    "suffix": Speculation("suffix", 4, None, (("suffix_decoding_max_tree_depth", 16),)),
    "eagle": Speculation("eagle", 3, "head"),
    "eagle3": Speculation("eagle3", 2, "head"),
    "mtp": Speculation("mtp", 1),
}


def test_every_registered_method_has_a_case():
    assert set(METHODS) == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_vllm_config_carries_the_method_length_options_and_draft(name):
    speculation = CASES[name]
    path = HEAD if speculation.draft else None
    config = vllm_speculative_config(speculation, path)
    assert config["method"] == name and config["num_speculative_tokens"] == speculation.gamma
    assert config.get("model") == path
    assert {k: config[k] for k, _ in speculation.options} == dict(speculation.options)
    assert SpeculativeConfig.from_vllm(config).speculation.options == speculation.options


def test_methods_refuse_what_does_not_fit():
    with pytest.raises(UserInputError, match="'eagle3' needs a draft"):
        vllm_speculative_config(Speculation("eagle3", 2), None)
    with pytest.raises(UserInputError, match="'ngram' takes no draft"):
        vllm_speculative_config(Speculation("ngram", 2, "tb-draft"), HEAD)
    with pytest.raises(UserInputError, match="prompt_lookup_min \\(4\\) must be <="):
        vllm_speculative_config(Speculation("ngram", 2, None, (("prompt_lookup_min", 4),
                                                               ("prompt_lookup_max", 2))), None)
    with pytest.raises(UserInputError, match="no option 'window'"):
        vllm_speculative_config(Speculation("ngram", 2, None, (("window", 4),)), None)
    # MTP takes the model's own layers, or a separate checkpoint
    assert "model" not in vllm_speculative_config(Speculation("mtp", 1), None)
    assert vllm_speculative_config(Speculation("mtp", 1, "mtp-head"), HEAD)["model"] == HEAD


def test_lookup_methods_do_not_draft_every_step():
    assert not method_of(CASES["ngram"]).proposes_every_step
    assert not method_of(CASES["suffix"]).proposes_every_step
    assert method_of(CASES["eagle3"]).proposes_every_step


# -- SGLang: names checked against its source -----------------------------------------------


def sglang_spec_fields() -> tuple[set[str], str]:
    """Field names of SGLang's `Spec` namespace and its speculative_algorithm help text."""
    spec = importlib.util.find_spec("sglang")
    if spec is None or spec.origin is None:
        missing("sglang's source is not installed (bash .ci/setup --test-tools)")
    source = Path(spec.origin).parent / "srt" / "arg_groups" / "fields" / "spec.py"
    tree = ast.parse(source.read_text())
    names, algorithms = set(), ""
    for node in ast.walk(tree):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
            if node.target.id == "speculative_algorithm":
                algorithms = ast.unparse(node.annotation)
    return names, algorithms


@pytest.mark.parametrize("name", sorted(set(CASES) - {"suffix"}))
def test_sglang_arguments_are_fields_sglang_declares(name):
    fields, algorithms = sglang_spec_fields()
    speculation = CASES[name]
    arguments = sglang_speculative_arguments(speculation, HEAD if speculation.draft else None)
    for key in arguments:
        assert key.replace("-", "_") in fields, key
    assert arguments["speculative-algorithm"] in algorithms
    if "speculative-num-steps" in arguments:  # a chain of gamma drafts after the root
        assert arguments["speculative-num-draft-tokens"] == speculation.gamma + 1


def test_sglang_has_no_suffix_decoding():
    _, algorithms = sglang_spec_fields()
    assert "SUFFIX" not in algorithms.upper()
    with pytest.raises(UserInputError, match="SGLang has no suffix decoding"):
        sglang_speculative_arguments(CASES["suffix"], None)


# -- vLLM's own parser --------------------------------------------------------------------


@pytest.fixture(scope="module")
def vllm_parser():
    if importlib.util.find_spec("vllm") is None:
        missing("vllm is not installed (pip install -e .[cpu])")
    from vllm.config import ModelConfig, ParallelConfig
    from vllm.config.speculative import SpeculativeConfig as VllmSpeculativeConfig

    target = ModelConfig(model=str(TESTBED / "tb-large"))

    def parse(config: dict, target_config=target):
        return VllmSpeculativeConfig(**config, target_model_config=target_config,
                                     target_parallel_config=ParallelConfig())

    return parse


@pytest.mark.parametrize("name", ["draft_model", "ngram", "eagle", "eagle3"])
def test_vllm_parses_the_config(vllm_parser, name):
    speculation = CASES[name]
    config = vllm_speculative_config(speculation, HEAD if speculation.draft else None)
    parsed = vllm_parser(config)
    assert parsed.method == name and parsed.num_speculative_tokens == speculation.gamma
    if name == "ngram":
        assert (parsed.prompt_lookup_min, parsed.prompt_lookup_max) == (1, 3)


def test_vllm_parses_mtp_on_a_model_with_mtp_layers(vllm_parser, tmp_path):
    from transformers import DeepseekV3Config
    from vllm.config import ModelConfig

    tiny = DeepseekV3Config(
        vocab_size=64, hidden_size=64, intermediate_size=128, moe_intermediate_size=32,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, n_routed_experts=4,
        n_shared_experts=1, num_experts_per_tok=2, first_k_dense_replace=1, kv_lora_rank=16,
        q_lora_rank=16, qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=8,
        max_position_embeddings=256, num_nextn_predict_layers=1, n_group=1, topk_group=1,
        architectures=["DeepseekV3ForCausalLM"])
    tiny.save_pretrained(tmp_path)
    target = ModelConfig(model=str(tmp_path), tokenizer=str(TESTBED / "tb-large"),
                         skip_tokenizer_init=True)
    parsed = vllm_parser(vllm_speculative_config(CASES["mtp"], None), target)
    assert parsed.method == "mtp" and parsed.model == str(tmp_path)


def test_vllm_parses_suffix_when_arctic_inference_is_installed(vllm_parser):
    config = vllm_speculative_config(CASES["suffix"], None)
    if importlib.util.find_spec("arctic_inference") is None:
        with pytest.raises(ImportError, match="Arctic Inference is required"):
            vllm_parser(config)
    else:
        assert vllm_parser(config).method == "suffix"


# -- a server running a head: its counters --------------------------------------------------


def test_a_server_engine_reads_the_counters_of_a_head(monkeypatch):
    from test_openai_engine import FakeServer, engine_on

    metrics = "\n".join([
        "# TYPE vllm:spec_decode_num_drafts_total counter",
        "vllm:spec_decode_num_drafts_total 100",
        "# TYPE vllm:spec_decode_num_draft_tokens_total counter",
        "vllm:spec_decode_num_draft_tokens_total 300",
        "# TYPE vllm:spec_decode_num_accepted_tokens_total counter",
        "vllm:spec_decode_num_accepted_tokens_total 150",
        "# TYPE vllm:spec_decode_num_accepted_tokens_per_pos_total counter",
        *(f'vllm:spec_decode_num_accepted_tokens_per_pos_total{{position="{k}"}} {v}'
          for k, v in enumerate((80, 50, 20))),
    ]) + "\n"
    eagle3 = SpeculativeConfig.of("eagle3", 3, "/heads/eagle3-llama")
    engine = engine_on(FakeServer(metrics=metrics), speculative=eagle3)
    counters = engine.speculative_counters()
    assert (counters.num_drafts, counters.accepted_per_position) == (100, (80, 50, 20))
    assert json.loads(json.dumps(eagle3.vllm_config()))["method"] == "eagle3"
    with pytest.raises(UserInputError, match="drafts 3 token"):
        engine_on(FakeServer(metrics=metrics), speculative=SpeculativeConfig.of("mtp", 1))
