"""Wall-clock milliseconds per decode step of a testbed model on vLLM, at a given dtype.

`python benchmarks/engine_step.py tb-small float32` (or bfloat16, auto): 64 greedy tokens
(ignore_eos) for 1, 1 and 8 prompts, after a warm-up, printed one line per run. It shows
what vLLM's dtype "auto" costs on a CPU without AVX512-BF16 (it downcasts float32
checkpoints to bfloat16) and how fast this machine runs the testbed compared with the
shipped profile's step costs (benchmarks/results/same_fingerprint.md).
"""

from __future__ import annotations

import os
import sys
import time

STEPS = 64


def main() -> None:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from vllm import LLM, SamplingParams

    from profilers.testbed.family import model_dir

    model, dtype = sys.argv[1], sys.argv[2]
    llm = LLM(model=str(model_dir(model)), enforce_eager=True, max_model_len=160, dtype=dtype)
    params = SamplingParams(temperature=0, max_tokens=STEPS, ignore_eos=True)
    llm.generate(["12+7:"] * 2, params, use_tqdm=False)
    for prompts in (1, 1, 8):
        began = time.perf_counter()
        llm.generate(["65-46+32:"] * prompts, params, use_tqdm=False)
        step_ms = (time.perf_counter() - began) * 1000 / STEPS
        print(f"{model} {dtype} prompts={prompts}: {step_ms:.2f} ms/step", flush=True)


if __name__ == "__main__":
    main()
