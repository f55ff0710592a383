"""The Engine over a running OpenAI-compatible server (`vllm serve`; SGLang untested here).

Requests go to ``/v1/completions`` with `n` branches and ``stream: true``, so timing is
the client's wall clock (`time.perf_counter`): submission to first token, first to last
token. Branch token counts come from vLLM's ``return_token_ids`` deltas. Speculative
counters are read from the server's Prometheus ``/metrics`` (take deltas: they are
cumulative for the server). The engine version comes from ``/version``; the hardware from
``/server_info`` when the server exposes it (vLLM with ``VLLM_SERVER_DEV_MODE=1``), else
it is recorded as "remote, unknown" keyed by the server's address.

The server's configuration is the server's: `speculative` states what it was started with
(model, draft, gamma), and is checked against the per-position counters it reports.

Every wait on the server is bounded: `timeout_s` for connecting and for each read (so a
stream may run long while tokens keep coming); a server that does not answer in time is a
`ServerTimeout`, one line naming what was awaited.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from profilers.engine import (
    BranchDelta,
    BranchOutput,
    BranchProgress,
    GenerationResult,
    SamplingConfig,
    SpecCounters,
    SpeculativeConfig,
    model_name,
    sampling_per_prompt,
)
from profilers.hardware import describe_local_hardware, fingerprint_of
from profilers.vllm_engine import SPEC_COUNTER_FIELDS, SPEC_PER_POSITION_COUNTER
from storage import NETWORK_TIMEOUT_S, HardwareRecord, UserInputError, announced

logger = logging.getLogger(__name__)

# The offline engine's counters, as Prometheus text names them (with `_total`)
_COUNTERS = {f"{name}_total": field for name, field in SPEC_COUNTER_FIELDS.items()}
_PER_POSITION = f"{SPEC_PER_POSITION_COUNTER}_total"
UNKNOWN_REMOTE = "remote, unknown"
STEP_WAIT_S = 0.01  # how long step() waits for output; bounds the deadline check delay


class ServerError(RuntimeError):
    """The server answered a request with an error or an unreadable stream."""


class ServerTimeout(UserInputError):
    """The server accepted no connection or sent nothing within the timeout."""


def parse_spec_counters(metrics_text: str) -> SpecCounters:
    """Speculative counters from Prometheus text (vLLM names), summed over label sets."""
    from prometheus_client.parser import text_string_to_metric_families

    totals = dict.fromkeys(_COUNTERS.values(), 0)
    per_position: dict[int, int] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name in _COUNTERS:
                totals[_COUNTERS[sample.name]] += int(sample.value)
            elif sample.name == _PER_POSITION:
                position = int(sample.labels["position"])
                per_position[position] = per_position.get(position, 0) + int(sample.value)
    positions = tuple(per_position.get(k, 0) for k in range(max(per_position, default=-1) + 1))
    return SpecCounters(accepted_per_position=positions, **totals)


def is_loopback_url(url: str) -> bool:
    """Whether `url` names this machine (localhost or a loopback address)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def hardware_from_server_info(info: dict | None, base_url: str) -> HardwareRecord:
    """Hardware from vLLM's ``/server_info`` system_env, or "remote, unknown" for the host."""
    env = (info or {}).get("system_env") or {}
    cpu_model, cpu_cores = UNKNOWN_REMOTE, 0
    for line in str(env.get("cpu_info") or "").splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Model name":
            cpu_model = value.strip()
        elif key.strip() == "CPU(s)" and value.strip().isdigit():
            cpu_cores = int(value.strip())
    gpus = [line.split(":", 1)[1].strip() for line in str(env.get("nvidia_gpu_models") or "")
            .splitlines() if line.startswith("GPU ") and ":" in line]
    if cpu_model == UNKNOWN_REMOTE and not gpus:
        cpu_model = f"{UNKNOWN_REMOTE} ({urlsplit(base_url).netloc})"
    gpu_model = gpus[0] if gpus else None
    return HardwareRecord(
        fingerprint=fingerprint_of(cpu_model, cpu_cores, 0.0, gpu_model, len(gpus)),
        cpu_model=cpu_model, cpu_cores=cpu_cores, memory_gib=0.0, gpu_model=gpu_model,
        gpu_count=len(gpus))


@dataclass
class _PromptTiming:
    first_token_s: float | None = None
    last_token_s: float | None = None


@dataclass
class _Stream:
    """A submitted streaming request: its id, and whether the client gave up on it."""

    request_id: str
    aborted: threading.Event = field(default_factory=threading.Event)


def _sse_events(response):
    """The JSON payloads of a server-sent-event stream, up to ``[DONE]``."""
    for line in response.iter_lines():
        if not line.startswith("data:"):
            continue
        payload = line[len("data:"):].strip()
        if payload == "[DONE]":
            return
        event = json.loads(payload)
        if "error" in event:
            raise ServerError(f"server error: {event['error']}")
        yield event


def _choice_tokens(choice: dict) -> int:
    if choice.get("token_ids") is not None:
        return len(choice["token_ids"])
    logprobs = choice.get("logprobs") or {}
    return len(logprobs.get("tokens") or ())


def _choice_logprob(choice: dict) -> float | None:
    """Sum of the delta's token log-probabilities (None when the server sent none)."""
    values = (choice.get("logprobs") or {}).get("token_logprobs")
    return None if values is None else float(sum(v for v in values if v is not None))


class OpenAIServerEngine:
    """A running OpenAI-compatible server for one model and one speculative configuration.

    `base_url`: ``http://HOST:PORT`` (a trailing ``/v1`` is accepted). `model`: the name
    to store measurements under (default: the served model id); with `model_must_be_served`
    the server must serve exactly that id (to run a preset on the model it deploys).
    `speculative`: what the server was started with; None when it runs without a draft.
    `api_key`: sent as a bearer token (a server started with --api-key). `timeout_s`: the
    longest wait to connect and for each read. `transport`: an httpx transport (tests).
    """

    def __init__(self, base_url: str, model: str | None = None,
                 speculative: SpeculativeConfig | None = None, api_key: str | None = None,
                 timeout_s: float = NETWORK_TIMEOUT_S, transport=None,
                 model_must_be_served: bool = False) -> None:
        import httpx

        self.base_url = base_url.rstrip("/").removesuffix("/v1")
        self.timeout_s = timeout_s
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(base_url=self.base_url, headers=headers,
                                    timeout=httpx.Timeout(timeout_s), transport=transport)
        self.served_model = self._served_model_id(model, model_must_be_served)
        self.model = model or self.served_model
        self.speculative = speculative
        self._hardware: HardwareRecord | None = None
        self._streams: dict[str, _Stream] = {}  # open streams; a reader removes its own
        self._aborted: set[str] = set()  # their late deltas are dropped
        self._outputs: queue.Queue = queue.Queue()
        self._check_speculative()

    # -- plain requests -------------------------------------------------------------------

    def _get(self, path: str):
        import httpx

        what = f"the server at {self.base_url} to answer GET {path}"
        try:
            with announced(what, self.timeout_s):
                return self._client.get(path)
        except httpx.TimeoutException as error:
            raise self._timeout(f"GET {path}") from error
        except httpx.TransportError as error:
            raise UserInputError(f"cannot reach the server at {self.base_url} ({error}); "
                                 "start it (vllm serve MODEL --port N) or fix --server-url"
                                 ) from error

    def _timeout(self, what: str) -> ServerTimeout:
        return ServerTimeout(f"the server at {self.base_url} did not answer {what} within "
                             f"{self.timeout_s:g} s; check that it is up and serving, or "
                             "raise --network-timeout")

    def _served_model_id(self, wanted: str | None, must_be_served: bool) -> str:
        response = self._get("/v1/models")
        if response.status_code == 401:
            raise UserInputError(f"{self.base_url} refused the request (401 Unauthorized); "
                                 "set LATTS_TUNE_API_KEY to the server's --api-key")
        if response.status_code != 200:
            raise UserInputError(f"{self.base_url}/v1/models answered {response.status_code}; "
                                 "is this an OpenAI-compatible server?")
        served = [entry["id"] for entry in response.json().get("data", [])]
        if not served:
            raise UserInputError(f"{self.base_url} serves no model; start it with a model")
        # A preset's server answers to the model's name (served-model-name), not its path.
        names = [name for name in (wanted, wanted and model_name(wanted)) if name in served]
        if must_be_served and not names:
            raise UserInputError(f"the server at {self.base_url} serves {', '.join(served)}, "
                                 f"not {wanted}; start it with the preset's command "
                                 "(latts-tune export prints it)")
        return str(names[0]) if names else str(served[0])

    def _metrics_text(self) -> str | None:
        response = self._get("/metrics")
        return response.text if response.status_code == 200 else None

    def _check_speculative(self) -> None:
        """Refuse a `speculative` that disagrees with the draft length the server reports."""
        text = self._metrics_text()
        if text is None or "vllm:" not in text:
            return  # not a vLLM server: it does not say
        served = len(parse_spec_counters(text).accepted_per_position)
        wanted = self.speculative.num_speculative_tokens if self.speculative else 0
        if served == wanted:
            return
        if served == 0:
            fix = "start it with --speculative-config or drop --draft"
        else:
            fix = (f"profile decode and acceptance take --draft and --gamma {served} (decode "
                   "also --no-baseline); profile accuracy needs a server without "
                   "--speculative-config")
        raise UserInputError(f"the server at {self.base_url} drafts {served} token(s) per step "
                             f"but gamma={wanted} was given; {fix}")

    def speculative_counters(self) -> SpecCounters:
        text = self._metrics_text()
        return SpecCounters() if text is None else parse_spec_counters(text)

    def _json(self, path: str) -> dict | None:
        """The JSON object at `path`, or None when the server has no such route."""
        response = self._get(path)
        try:
            payload = response.json() if response.status_code == 200 else None
        except ValueError:
            return None
        return payload if isinstance(payload, dict) else None

    def engine_version(self) -> str:
        vllm_version = (self._json("/version") or {}).get("version")
        if vllm_version:
            return f"vllm-server {vllm_version}"
        sglang_version = (self._json("/get_server_info") or {}).get("version")
        if sglang_version:
            return f"sglang-server {sglang_version}"
        return f"openai-server unknown ({self.base_url})"

    def hardware(self) -> HardwareRecord:
        """The server's machine; a server on this machine (a loopback address) is described
        as this machine, so one machine keeps one fingerprint whichever engine measured it."""
        if self._hardware is None:
            if is_loopback_url(self.base_url):
                self._hardware = describe_local_hardware()
            else:
                info = self._json("/server_info?config_format=json")
                self._hardware = hardware_from_server_info(info, self.base_url)
        return self._hardware

    # -- generation -----------------------------------------------------------------------

    def _body(self, prompt, sampling: SamplingConfig) -> dict:
        body = {
            "model": self.served_model, "prompt": prompt, "n": sampling.n,
            "temperature": sampling.temperature, "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens, "ignore_eos": sampling.ignore_eos,
            "stream": True, "stream_options": {"include_usage": True},
            "return_token_ids": True,  # per-branch token counts from the deltas
        }
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        if sampling.logprobs:
            body["logprobs"] = 0  # the sampled tokens' log-probabilities only
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        return body

    def _stream(self, body: dict):
        """Open a streaming completion; the caller iterates `_sse_events` of the response."""
        return self._client.stream("POST", "/v1/completions", json=body)

    def generate(self, prompts: list[str] | list[list[int]],
                 sampling: SamplingConfig | Sequence[SamplingConfig]
                 ) -> list[GenerationResult]:
        """One request for all prompts when they share a config (the server batches them),
        else one concurrent request per prompt; client-clock timing."""
        configs = sampling_per_prompt(sampling, len(prompts))
        if len(set(configs)) <= 1:
            return self._generate_together(prompts, configs[0]) if prompts else []
        with ThreadPoolExecutor(max_workers=len(prompts)) as pool:
            return [results[0] for results in pool.map(
                lambda prompt, config: self._generate_together([prompt], config),
                prompts, configs)]

    def _generate_together(self, prompts: list[str] | list[list[int]],
                           sampling: SamplingConfig) -> list[GenerationResult]:
        n = sampling.n
        branches = [[BranchProgress() for _ in range(n)] for _ in prompts]
        timings = [_PromptTiming() for _ in prompts]
        prompt_tokens = [len(p) if isinstance(p, list) else 0 for p in prompts]
        submitted_s = time.perf_counter()
        try:
            with self._stream(self._body(list(prompts), sampling)) as response:
                _raise_for_status(response)
                for event in _sse_events(response):
                    now_s = time.perf_counter()
                    for choice in event.get("choices") or ():
                        prompt_index, branch_index = divmod(choice["index"], n)
                        if choice.get("prompt_token_ids"):
                            prompt_tokens[prompt_index] = len(choice["prompt_token_ids"])
                        _apply(branches[prompt_index][branch_index], timings[prompt_index],
                               choice, now_s)
        except _timeouts() as error:
            raise self._timeout("a completion request") from error
        return [_result(b, t, tokens, submitted_s)
                for b, t, tokens in zip(branches, timings, prompt_tokens, strict=True)]

    # -- streaming interface (the executor) -----------------------------------------------

    def submit(self, request_id: str, prompt: str | list[int],
               sampling: SamplingConfig) -> None:
        stream = _Stream(request_id)
        self._streams[request_id] = stream
        thread = threading.Thread(target=self._read_stream, name=f"latts-{request_id}",
                                  args=(stream, self._body(prompt, sampling)), daemon=True)
        thread.start()

    def _read_stream(self, stream: _Stream, body: dict) -> None:
        prompt_tokens = len(body["prompt"]) if isinstance(body["prompt"], list) else 0
        unfinished = body["n"]
        try:
            with self._stream(body) as response:
                _raise_for_status(response)
                for event in _sse_events(response):
                    if stream.aborted.is_set():
                        return  # closing the connection makes the server abort the request
                    for choice in event.get("choices") or ():
                        if choice.get("prompt_token_ids"):
                            prompt_tokens = len(choice["prompt_token_ids"])
                        unfinished -= choice.get("finish_reason") is not None
                        if unfinished == 0:
                            # Done before the last delta is handed over, so the caller
                            # never sees every branch finished while has_unfinished() holds.
                            self._streams.pop(stream.request_id, None)
                        self._outputs.put(BranchDelta(
                            stream.request_id, choice["index"], choice.get("text") or "",
                            _choice_tokens(choice), choice.get("finish_reason"),
                            prompt_tokens, _choice_logprob(choice)))
        except Exception as error:  # handed to step(), raised in the caller's thread
            if not stream.aborted.is_set():
                self._outputs.put(error)
        finally:
            self._streams.pop(stream.request_id, None)

    def step(self) -> list[BranchDelta]:
        """Deltas that arrived since the last call; waits briefly when none has yet."""
        deltas: list[BranchDelta] = []
        if not self._streams and self._outputs.empty():
            return deltas
        try:
            item = self._outputs.get(timeout=STEP_WAIT_S)
        except queue.Empty:
            return deltas
        while True:
            if isinstance(item, _timeouts()):
                raise self._timeout("a streaming completion request") from item
            if isinstance(item, Exception):
                raise ServerError(f"streaming request failed: {item}") from item
            if item.request_id not in self._aborted:
                deltas.append(item)
            try:
                item = self._outputs.get_nowait()
            except queue.Empty:
                return deltas

    def abort(self, request_ids: list[str]) -> None:
        for request_id in request_ids:
            self._aborted.add(request_id)
            stream = self._streams.pop(request_id, None)
            if stream is not None:
                stream.aborted.set()

    def has_unfinished(self) -> bool:
        return bool(self._streams)

    def close(self) -> None:
        self.abort(list(self._streams))
        self._client.close()


def _timeouts() -> type[Exception]:
    import httpx

    return httpx.TimeoutException


def _raise_for_status(response) -> None:
    if response.status_code != 200:
        response.read()
        raise ServerError(f"server answered {response.status_code}: {response.text[:300]}")


def _apply(branch: BranchProgress, timing: _PromptTiming, choice: dict, now_s: float) -> None:
    tokens = _choice_tokens(choice)
    branch.text += choice.get("text") or ""
    branch.tokens += tokens
    logprob = _choice_logprob(choice)
    if logprob is not None:
        branch.logprob_sum = (branch.logprob_sum or 0.0) + logprob
    branch.finish_reason = choice.get("finish_reason") or branch.finish_reason
    if tokens:
        timing.first_token_s = timing.first_token_s or now_s
        timing.last_token_s = now_s


def _result(branches: list[BranchProgress], timing: _PromptTiming, prompt_tokens: int,
            submitted_s: float) -> GenerationResult:
    first_s = decode_s = None
    if timing.first_token_s is not None and timing.last_token_s is not None:
        first_s = timing.first_token_s - submitted_s
        decode_s = timing.last_token_s - timing.first_token_s
    return GenerationResult(
        prompt_tokens=prompt_tokens,
        branches=tuple(BranchOutput(b.text, b.tokens, b.finish_reason, b.mean_logprob)
                       for b in branches),
        first_token_s=first_s, decode_s=decode_s,
        generated_tokens_timed=max(b.tokens for b in branches))
