"""Describe a model directory (parameters, size, vocabulary) without loading its weights."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from profilers.engine import Engine, local_path, model_name
from storage import ModelRecord, ProfileStore, UserInputError


def _safetensors_parameters(path: Path) -> int:
    """Count parameters from a safetensors header (8-byte length, then JSON)."""
    with path.open("rb") as handle:
        (header_length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(header_length))
    count = 0
    for name, tensor in header.items():
        if name == "__metadata__":
            continue
        size = 1
        for dimension in tensor["shape"]:
            size *= dimension
        count += size
    return count


def read_model_record(path: str, role: str) -> ModelRecord:
    """Return the ModelRecord of a local model directory written by save_pretrained."""
    directory = local_path(path)
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise UserInputError(f"model path '{path}' is not a model directory (no config.json); "
                             "pass a directory written by save_pretrained")
    try:
        config = json.loads(config_file.read_text())
        weights = sorted(directory.glob("*.safetensors"))
        parameter_count = sum(_safetensors_parameters(file) for file in weights)
        vocab_size = int(config.get("vocab_size", 0))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, struct.error) as error:
        raise UserInputError(f"model path '{path}' has an unreadable config.json or "
                             f"safetensors header ({error}); re-save the model with "
                             "save_pretrained") from error
    return ModelRecord(
        name=model_name(str(directory)),
        path=path,  # as the user gave it: a preset deploys the same reference
        role=role,
        parameter_count=parameter_count,
        size_bytes=sum(file.stat().st_size for file in weights),
        vocab_size=vocab_size,
    )


def checkpoint_dtype(path: str) -> str:
    """The dtype a local checkpoint was saved in (e.g. "float32"), "auto" when not known.

    Engines run at this dtype unless told otherwise: vLLM's "auto" downcasts float32
    checkpoints to bfloat16 on every x86 CPU, which without AVX512-BF16 decodes about 7x
    slower than the float32 the profiles were measured at (calibrate, AMD EPYC, 2026-11-27).
    """
    config = _checkpoint_config(path)
    dtype = config.get("dtype") or config.get("torch_dtype")
    return dtype if isinstance(dtype, str) and dtype in CHECKPOINT_DTYPES else "auto"


def checkpoint_positions(path: str) -> int | None:
    """The longest context a local checkpoint was built for (max_position_embeddings),
    None when not known (not a local directory, or no such entry)."""
    positions = _checkpoint_config(path).get("max_position_embeddings")
    return positions if isinstance(positions, int) and positions > 0 else None


def _checkpoint_config(path: str) -> dict:
    """config.json of a local checkpoint; {} when it cannot be read."""
    try:
        config = json.loads((local_path(path) / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


CHECKPOINT_DTYPES = ("float32", "float16", "bfloat16")


def register_engine_models(store: ProfileStore, engine: Engine) -> None:
    """Store the engine's target and draft models unless already known (measurements
    reference them); a model that is not a local directory is stored by name only."""
    models = [(engine.model, "target")]
    if engine.speculative is not None and engine.speculative.draft_path is not None:
        models.append((engine.speculative.draft_path, "draft"))
    for path, role in models:
        if store.get_model(model_name(path)) is not None:
            continue
        if (local_path(path) / "config.json").is_file():
            store.upsert_model(read_model_record(path, role))
        else:
            store.upsert_model(ModelRecord(model_name(path), path, role, 0, 0, 0))
