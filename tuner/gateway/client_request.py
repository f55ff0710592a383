"""A client's request body, checked against the preset.

Sampling belongs to the preset: the deadline and accuracy the tuner promised hold for its
n, temperature, top_p, max_tokens and stop only. A client may repeat those values (many
clients always send temperature or n=1) but a different value is refused with a 400 naming
the parameter, rather than silently ignored. `stream: true` is refused: the answer is known
only once the vote is. `seed` is passed upstream (the same seed gives the same branches).
Parameters that would change the output (tools, logprobs, penalties, ...) are refused
unless they hold their neutral value; `user` and `metadata` are accepted and ignored.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from tuner.gateway.errors import GatewayError, bad_request
from tuner.gateway.settings import GatewaySettings

IGNORED = frozenset({"user", "metadata", "store", "service_tier"})
NEUTRAL: dict[str, tuple] = {"frequency_penalty": (0, 0.0), "presence_penalty": (0, 0.0),
           "logprobs": (False, 0), "top_logprobs": (0,), "echo": (False,), "best_of": (1,),
           "logit_bias": ({},), "suffix": ("",), "tools": ([],), "stream_options": ()}
PRESET_NUMBERS = {"temperature": "temperature", "top_p": "top_p",
                  "max_tokens": "max_tokens", "max_completion_tokens": "max_tokens"}
ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
PROMPT_FIELD = {"chat": "messages", "completions": "prompt"}


@dataclass(frozen=True)
class ClientRequest:
    """What the gateway forwards: the prompt field (messages or prompt) and the seed."""

    kind: str
    prompt: dict
    seed: int | None


def parse_request(kind: str, body: bytes, settings: GatewaySettings) -> ClientRequest:
    """Check a request body (`kind` "chat" or "completions"); GatewayError if refused."""
    fields = _json_object(body)
    _check_model(fields.get("model"), settings)
    prompt_field = PROMPT_FIELD[kind]
    prompt = _messages(fields.get("messages")) if kind == "chat" else _prompt(
        fields.get("prompt"))
    for name, value in fields.items():
        if name not in ("model", prompt_field, "seed") and value is not None:
            _check_parameter(name, value, settings)
    return ClientRequest(kind, {prompt_field: prompt}, _seed(fields.get("seed")))


def _json_object(body: bytes) -> dict:
    try:
        fields = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise bad_request("We could not parse the JSON body of your request. The body must "
                          "be a JSON object (Content-Type: application/json).",
                          code="invalid_json") from None
    if not isinstance(fields, dict):
        raise bad_request("The request body must be a JSON object.", code="invalid_json")
    return fields


def _check_model(model: object, settings: GatewaySettings) -> None:
    if model is None:
        raise bad_request("you must provide a model parameter", param="model",
                          code="missing_required_parameter")
    if model != settings.served_model:
        raise GatewayError(404, f"The model `{model}` does not exist; this gateway serves "
                           f"`{settings.served_model}` (GET /v1/models).", param="model",
                           code="model_not_found")


def _messages(messages: object) -> list:
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' must be a non-empty array of messages",
                          param="messages", code="invalid_type")
    for position, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise bad_request(f"messages[{position}] needs a role, one of "
                              f"{', '.join(sorted(ROLES))}", param=f"messages[{position}]",
                              code="invalid_value")
        if not isinstance(message.get("content"), str | list | None):
            raise bad_request(f"messages[{position}].content must be a string or an array",
                              param=f"messages[{position}].content", code="invalid_type")
    return messages


def _prompt(prompt: object) -> str:
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]  # a one-prompt batch is one prompt
    if not isinstance(prompt, str) or not prompt:
        raise bad_request("'prompt' must be one non-empty string: the gateway answers one "
                          "prompt per request", param="prompt", code="invalid_type")
    return prompt


def _seed(seed: object) -> int | None:
    if seed is None or (isinstance(seed, int) and not isinstance(seed, bool)):
        return seed
    raise bad_request("'seed' must be an integer", param="seed", code="invalid_type")


def _check_parameter(name: str, value: object, settings: GatewaySettings) -> None:
    """Accept a parameter only when it agrees with the preset or is neutral."""
    if name in IGNORED:
        return
    if name == "n":
        _require(value == 1 and not isinstance(value, bool), name,
                 f"the gateway returns one voted answer of {settings.n_branches} branches; "
                 "n must be 1 or omitted")
    elif name == "stream":
        _require(value is False, name, "streaming is not supported: the answer is known "
                 "only when the vote is; send stream: false or omit it")
    elif name == "stop":
        _require(_stop_strings(value) == set(settings.stop), name,
                 f"stop is set by the preset ({list(settings.stop)}); omit it")
    elif name in PRESET_NUMBERS:
        preset_value = getattr(settings, PRESET_NUMBERS[name])
        _require(_same_number(value, preset_value), name,
                 f"{name} is set by the preset ({preset_value}); omit it or send that value")
    elif name in NEUTRAL:
        _require(value in NEUTRAL[name], name, f"{name} is not supported by the gateway")
    else:
        raise bad_request(f"Unrecognized request argument supplied: {name}", param=name,
                          code="unsupported_parameter")


def _require(condition: bool, name: str, message: str) -> None:
    if not condition:
        raise bad_request(message, param=name, code="unsupported_value")


def _same_number(value: object, preset_value: float) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isclose(value, preset_value, rel_tol=1e-9, abs_tol=1e-12)


def _stop_strings(value: object) -> set[str] | None:
    if isinstance(value, str):
        return {value}
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return set(value)
    return None
