"""Speculation methods: one class per method says how each engine is configured for it.

`storage.Speculation` is the value (method, draft, gamma, options); the class registered
under its `method` turns it into vLLM's `speculative_config` and SGLang's server arguments
and says whether the method needs a draft model or head. A new method is one subclass
registered with `@register_method`; the profilers, the simulator, the search space and the
presets all go through this registry (docs/design.md, "Extension axes").
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from storage import Speculation, UserInputError


class SpeculationMethod(ABC):
    """How one speculation method is configured; `name` is vLLM's method name."""

    name: ClassVar[str]
    needs_draft: ClassVar[bool]  # a draft model or head path is required
    draft_optional: ClassVar[bool] = False  # a draft may be named though none is needed
    option_names: ClassVar[tuple[str, ...]] = ()
    # False for lookup methods: a step without a match proposes nothing, and vLLM's draft
    # counters skip it, so steps are counted from tokens instead (profilers.decode).
    proposes_every_step: ClassVar[bool] = True

    def check(self, speculation: Speculation) -> None:
        """UserInputError when the speculation does not fit this method."""
        if self.needs_draft and not speculation.draft:
            raise UserInputError(f"speculation method {self.name!r} needs a draft model")
        if not (self.needs_draft or self.draft_optional) and speculation.draft:
            raise UserInputError(f"speculation method {self.name!r} takes no draft model "
                                 f"(got {speculation.draft!r})")
        unknown = [name for name, _ in speculation.options if name not in self.option_names]
        if unknown:
            known = ", ".join(self.option_names) or "none"
            raise UserInputError(f"speculation method {self.name!r} has no option "
                                 f"{unknown[0]!r}; known: {known}")

    def vllm_config(self, speculation: Speculation, draft_path: str | None) -> dict:
        """vLLM's `speculative_config` (dict) for this speculation."""
        config: dict = {"method": self.name}
        if draft_path is not None:
            config["model"] = draft_path
        config["num_speculative_tokens"] = speculation.gamma
        config.update(dict(speculation.options))
        return config

    @abstractmethod
    def sglang_arguments(self, speculation: Speculation, draft_path: str | None) -> dict:
        """SGLang server arguments (long names without dashes) for this speculation."""


METHODS: dict[str, SpeculationMethod] = {}


def register_method(method_class: type[SpeculationMethod]) -> type[SpeculationMethod]:
    """Class decorator: make a speculation method available under its `name`."""
    if method_class.name in METHODS and type(METHODS[method_class.name]) is not method_class:
        raise ValueError(f"speculation method {method_class.name!r} is registered already")
    METHODS[method_class.name] = method_class()
    return method_class


def method_of(speculation: Speculation) -> SpeculationMethod:
    """The registered method of a speculation; UserInputError naming the known ones."""
    method = METHODS.get(speculation.method)
    if method is None:
        raise UserInputError(f"unknown speculation method {speculation.method!r}; known: "
                             f"{', '.join(sorted(METHODS))}")
    return method


def vllm_speculative_config(speculation: Speculation, draft_path: str | None) -> dict:
    """vLLM's `speculative_config` for `speculation`, the draft at `draft_path`."""
    method = method_of(speculation)
    method.check(speculation)
    return method.vllm_config(speculation, draft_path)


def options_in(speculation_method: str, fields: dict) -> tuple[tuple[str, int], ...]:
    """The method's options found in a vLLM `speculative_config` dict."""
    method = METHODS.get(speculation_method)
    names = method.option_names if method else ()
    return tuple((name, int(fields[name])) for name in names if name in fields)


def sglang_speculative_arguments(speculation: Speculation, draft_path: str | None) -> dict:
    """SGLang's server arguments for `speculation`, the draft at `draft_path`."""
    method = method_of(speculation)
    method.check(speculation)
    return method.sglang_arguments(speculation, draft_path)


@register_method
class DraftModel(SpeculationMethod):
    """A small model of the same tokenizer drafts gamma tokens; the target verifies them."""

    name = "draft_model"
    needs_draft = True

    def sglang_arguments(self, speculation: Speculation, draft_path: str | None) -> dict:
        # SGLang runs a small draft model as STANDALONE; with top-k 1 the draft tree is a
        # chain: gamma drafted tokens plus the root.
        return {
            "speculative-algorithm": "STANDALONE",
            "speculative-draft-model-path": draft_path,
            "speculative-num-steps": speculation.gamma,
            "speculative-eagle-topk": 1,
            "speculative-num-draft-tokens": speculation.gamma + 1,
        }



@register_method
class Ngram(SpeculationMethod):
    """Prompt lookup: the last n tokens (prompt_lookup_min <= n <= prompt_lookup_max) are
    matched in the prompt and output so far and what followed is proposed; no draft."""

    name = "ngram"
    needs_draft = False
    option_names = ("prompt_lookup_max", "prompt_lookup_min")
    proposes_every_step = False

    def check(self, speculation: Speculation) -> None:
        super().check(speculation)
        options = dict(speculation.options)
        low, high = options.get("prompt_lookup_min"), options.get("prompt_lookup_max")
        if low is not None and high is not None and low > high:
            raise UserInputError(f"ngram: prompt_lookup_min ({low}) must be <= "
                                 f"prompt_lookup_max ({high})")

    def sglang_arguments(self, speculation: Speculation, draft_path: str | None) -> dict:
        # SGLang's NGRAM matches a trie of recent prompts and outputs, with no lookup
        # window to set (vLLM's prompt_lookup_min/max have no counterpart); breadth 1 makes
        # its draft a chain of gamma tokens after the root, as vLLM's.
        return {
            "speculative-algorithm": "NGRAM",
            "speculative-num-draft-tokens": speculation.gamma + 1,
            "speculative-ngram-min-bfs-breadth": 1,
            "speculative-ngram-max-bfs-breadth": 1,
        }


@register_method
class Suffix(SpeculationMethod):
    """Suffix decoding (Arctic Inference): a suffix tree over this request's and earlier
    outputs proposes up to gamma tokens; no draft. vLLM needs the arctic-inference package.
    Only the integer options are searchable (Speculation options are integers)."""

    name = "suffix"
    needs_draft = False
    option_names = ("suffix_decoding_max_cached_requests", "suffix_decoding_max_tree_depth")
    proposes_every_step = False

    def sglang_arguments(self, speculation: Speculation, draft_path: str | None) -> dict:
        raise UserInputError("SGLang has no suffix decoding (its algorithms: EAGLE, EAGLE3, "
                             "NEXTN, STANDALONE, NGRAM, ...); export this preset for vLLM")


class _Head(SpeculationMethod):
    """A head trained on the target's hidden states proposes gamma tokens, one per step;
    SGLang runs it as a chain (top-k 1) of gamma steps."""

    needs_draft = True
    sglang_name: ClassVar[str]

    def sglang_arguments(self, speculation: Speculation, draft_path: str | None) -> dict:
        arguments: dict = {"speculative-algorithm": self.sglang_name}
        if draft_path is not None:
            arguments["speculative-draft-model-path"] = draft_path
        arguments.update({
            "speculative-num-steps": speculation.gamma,
            "speculative-eagle-topk": 1,
            "speculative-num-draft-tokens": speculation.gamma + 1,
        })
        return arguments


@register_method
class Eagle(_Head):
    """An EAGLE head (path in `draft`); GPU engines only."""

    name = "eagle"
    sglang_name = "EAGLE"


@register_method
class Eagle3(_Head):
    """An EAGLE-3 head (path in `draft`); GPU engines only."""

    name = "eagle3"
    sglang_name = "EAGLE3"


@register_method
class Mtp(_Head):
    """The model's own multi-token-prediction layers (DeepSeek-V3, Qwen3-Next, ...): no
    draft, or a separate MTP checkpoint in `draft`. SGLang calls it NEXTN."""

    name = "mtp"
    needs_draft = False
    draft_optional = True
    sglang_name = "NEXTN"
