"""Deterministic training of the testbed family (CPU, fixed seeds).

Run as ``python -m profilers.testbed.train`` (or ``latts-tune testbed train``). Each model
is trained on a fresh stream of the task's training split; held-out questions can never
appear in it (the task's splits are disjoint by construction).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from profilers.tasks.arithmetic import iter_examples
from profilers.testbed.family import (
    FAMILY,
    MAX_POSITIONS,
    MODELS_DIR,
    ModelSize,
    build_tokenizer,
    model_dir,
)
from storage import UserInputError

logger = logging.getLogger(__name__)

BATCH_SIZE = 64
PEAK_LEARNING_RATE = 3e-3
WARMUP_STEPS = 50


def _batches(tokenizer, seed: int):
    """Yield (input_ids, labels) tensors; the loss covers the solution and </s> only."""
    import torch

    examples = iter_examples("train", seed)
    while True:
        rows, label_rows = [], []
        for _ in range(BATCH_SIZE):
            text, solution, _ = next(examples)
            prompt_ids = tokenizer(f"{text}:")["input_ids"]
            solution_ids = tokenizer(solution, add_special_tokens=False)["input_ids"]
            ids = prompt_ids + solution_ids + [tokenizer.eos_token_id]
            rows.append(ids)
            label_rows.append([-100] * len(prompt_ids) + ids[len(prompt_ids) :])
        width = max(len(row) for row in rows)
        pad = tokenizer.pad_token_id
        input_ids = torch.tensor([row + [pad] * (width - len(row)) for row in rows])
        labels = torch.tensor([row + [-100] * (width - len(row)) for row in label_rows])
        yield input_ids, labels


def _model_config(size: ModelSize, tokenizer):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=size.hidden_size,
        intermediate_size=size.intermediate_size,
        num_hidden_layers=size.num_layers,
        num_attention_heads=size.num_heads,
        num_key_value_heads=size.num_heads,
        head_dim=size.hidden_size // size.num_heads,
        max_position_embeddings=MAX_POSITIONS,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def train_model(size: ModelSize, seed: int, out_dir: Path) -> float:
    """Train one model and save it with the tokenizer; return the final training loss."""
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    model = LlamaForCausalLM(_model_config(size, tokenizer))
    total_steps = size.train_steps
    optimizer = torch.optim.AdamW(model.parameters(), lr=PEAK_LEARNING_RATE, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=PEAK_LEARNING_RATE,
        total_steps=total_steps,
        pct_start=min(0.3, WARMUP_STEPS / total_steps),
    )
    model.train()
    started = time.perf_counter()
    batches = _batches(tokenizer, seed)
    loss_value = float("nan")
    for step in range(total_steps):
        input_ids, labels = next(batches)
        loss = model(input_ids=input_ids, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        loss_value = loss.item()
        if step % 100 == 0 or step == total_steps - 1:
            elapsed = time.perf_counter() - started
            logger.info("%s step %d/%d loss %.4f (%.0f s)", size.name, step, total_steps,
                        loss_value, elapsed)
    model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return loss_value


def train_family(seed: int = 0, only: tuple[str, ...] = ()) -> dict:
    """Train the testbed models (all, or those in `only`) into studies/testbed/models/.

    Writes training.json with each model's steps, final loss and seconds; models trained
    by an earlier run keep their entries, so the file always describes the shipped weights.
    """
    import torch

    from profilers.hardware import describe_local_hardware

    unknown = set(only) - {size.name for size in FAMILY}
    if unknown:
        raise UserInputError(f"unknown testbed model(s) {sorted(unknown)}; "
                             f"known: {[size.name for size in FAMILY]}")
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    summary_file = MODELS_DIR / "training.json"
    summary = json.loads(summary_file.read_text()) if only and summary_file.exists() else {}
    runs = summary.get("models", {})
    for size in FAMILY:
        if only and size.name not in only:
            continue
        started = time.perf_counter()
        final_loss = train_model(size, seed, model_dir(size.name))
        runs[size.name] = {"steps": size.train_steps, "final_loss": final_loss,
                           "seconds": time.perf_counter() - started}
    hardware = describe_local_hardware()
    summary = {
        "command": "latts-tune testbed train",
        "seed": seed,
        "seconds": sum(run["seconds"] for run in runs.values()),
        "machine": f"{hardware.cpu_model}, {hardware.cpu_cores} cores",
        "models": runs,
    }
    summary_file.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    print(json.dumps(train_family(), indent=2))
