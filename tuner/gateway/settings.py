"""What the gateway needs to serve one preset: upstream, sampling, vote, deadline, limits."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from profilers import Task
from storage import UserInputError
from tuner.core.presets import Preset

API_KEY_VARIABLE = "LATTS_TUNE_API_KEY"  # bearer token for clients and for the upstream
QUEUE_POLICIES = ("reject", "queue")


def api_key_from_env() -> str | None:
    """The key in LATTS_TUNE_API_KEY, or None when it is unset or empty."""
    return os.environ.get(API_KEY_VARIABLE) or None


@dataclass(frozen=True)
class GatewaySettings:
    """Everything one gateway serves: built from a preset, checked on construction.

    `upstream_url`: ``http://HOST:PORT`` of an OpenAI-compatible server (vLLM); `served_model`
    the model name it serves (clients send the same name). `n_branches` branches are sampled
    per request with the preset's sampling; each finished branch's answer comes from
    `get_task(task).extract_answer`, and `vote_rule` (a `profilers.voting.vote_rule` key)
    combines them. `deadline_s` is counted from the request's arrival (monotonic clock).

    `stream_interval_tokens`: vLLM's per-request `stream_interval`. A branch's first and
    last tokens stream at once (finishes are seen without delay) and the tokens between in
    batches of this many, so vLLM serialises ~1/K the chunks (per token, its streaming cost
    was most of the gateway's overhead). None sends none (per token; any OpenAI server).

    Concurrency: `max_concurrent_requests` run at once. Above that, `queue_policy` "reject"
    answers 429 with Retry-After at once; "queue" lets up to `queue_limit` requests wait for
    a slot (their wait counts against their deadline) and rejects the rest with 429.
    """

    upstream_url: str
    served_model: str
    task: str
    n_branches: int
    deadline_s: float
    vote_rule: str = "majority"
    temperature: float = 0.6
    top_p: float = 1.0
    max_tokens: int = 96
    stop: tuple[str, ...] = ()
    stream_interval_tokens: int | None = 16
    max_concurrent_requests: int = 1
    queue_policy: str = "reject"
    queue_limit: int = 0
    max_request_bytes: int = 256 * 1024
    connect_timeout_s: float = 5.0
    client_read_timeout_s: float = 10.0  # reading a client's request body
    health_timeout_s: float = 2.0  # the upstream /health probe behind our /health
    api_key: str | None = field(default_factory=api_key_from_env, repr=False)
    upstream_api_key: str | None = field(default_factory=api_key_from_env, repr=False)
    # `task` already resolved (a defined task, from the database's definition); None: the
    # gateway resolves `task` itself
    resolved_task: Task | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._check_positive()
        if self.queue_policy not in QUEUE_POLICIES:
            raise UserInputError(f"queue policy {self.queue_policy!r} is not one of "
                                 f"{', '.join(QUEUE_POLICIES)}")
        if not self.upstream_url.startswith(("http://", "https://")):
            raise UserInputError(f"upstream URL {self.upstream_url!r} must start with http:// "
                                 "or https://, e.g. http://127.0.0.1:8000")
        object.__setattr__(self, "upstream_url", self.upstream_url.rstrip("/").removesuffix("/v1"))
        object.__setattr__(self, "stop", tuple(self.stop))

    def _check_positive(self) -> None:
        numbers = {"n_branches": self.n_branches, "deadline_s": self.deadline_s,
                   "max_tokens": self.max_tokens, "top_p": self.top_p,
                   "max_concurrent_requests": self.max_concurrent_requests,
                   "stream_interval_tokens": 1 if self.stream_interval_tokens is None
                   else self.stream_interval_tokens,
                   "max_request_bytes": self.max_request_bytes,
                   "connect_timeout_s": self.connect_timeout_s,
                   "client_read_timeout_s": self.client_read_timeout_s,
                   "health_timeout_s": self.health_timeout_s}
        for name, value in numbers.items():
            if not value > 0:
                raise UserInputError(f"gateway setting {name} must be positive (got {value})")
        if self.temperature < 0 or self.queue_limit < 0 or self.top_p > 1:
            raise UserInputError("gateway settings: temperature and queue_limit must be >= 0, "
                                 f"top_p in (0, 1] (got {self.temperature}, {self.queue_limit}, "
                                 f"{self.top_p})")

    @property
    def waiting_limit(self) -> int:
        """How many requests may wait for a slot (0 under the "reject" policy)."""
        return self.queue_limit if self.queue_policy == "queue" else 0


def settings_from_preset(preset: Preset, upstream_url: str, **overrides) -> GatewaySettings:
    """The gateway of a preset: its served model, task, branch count, sampling, vote rule
    and deadline; the concurrency its server was sized for: the preset's `max_in_flight`
    when it was tuned under a load (its engine holds that many requests' branches), else
    max-num-seqs / n."""
    request = preset.request
    vllm = preset.serving.vllm
    seqs = vllm.get("max-num-seqs")  # a whole number >= 1 when present (the preset's schema)
    concurrency = request.max_in_flight or max(
        1, (seqs if isinstance(seqs, int) else request.n) // request.n)
    values = dict(
        upstream_url=upstream_url, served_model=preset.serving.served_model(),
        task=preset.provenance.task, n_branches=request.n,
        deadline_s=request.timeout_s or preset.predicted.deadline_s,
        vote_rule=request.aggregation, temperature=request.temperature, top_p=request.top_p,
        max_tokens=request.max_tokens, stop=tuple(request.stop),
        max_concurrent_requests=concurrency)
    return GatewaySettings(**{**values, **overrides})
