"""The speculation a measurement or configuration uses, as a value: method, draft, length.

A plain value type shared by every layer: storage keys cost and acceptance rows by it,
profilers turn it into engine arguments (`profilers.speculation` holds one class per
method), the tuner searches over it. `method` is the discriminator, as in vLLM's
`speculative_config["method"]`; `draft` names the draft model or head when the method
uses one (None for draft-free methods such as n-gram lookup).
"""

from __future__ import annotations

from dataclasses import dataclass

NO_METHOD = ""  # stored for "no speculation"


@dataclass(frozen=True, order=True)
class Speculation:
    """Speculative decoding: `method`, its `draft` (model or head name, or None), draft
    length `gamma` (tokens proposed per step) and method options as sorted (name, value)."""

    method: str
    gamma: int
    draft: str | None = None
    options: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        if not self.method:
            raise ValueError("a speculation needs a method, e.g. 'draft_model'")
        if self.gamma < 1:
            raise ValueError(f"draft length must be at least 1 (got {self.gamma})")
        object.__setattr__(self, "options", tuple(sorted(self.options)))

    @property
    def source(self) -> str:
        """What proposes the drafts, without the length: "tb-draft" (a draft model),
        "eagle3:head", "ngram[prompt_lookup_max=3,prompt_lookup_min=1]"."""
        if self.method == "draft_model" and self.draft:
            base = self.draft
        else:
            base = f"{self.method}:{self.draft}" if self.draft else self.method
        return f"{base}[{options_text(self.options)}]" if self.options else base

    def label(self) -> str:
        """For people: "tb-draft gamma=2", "ngram[prompt_lookup_max=3] gamma=3"."""
        return f"{self.source} gamma={self.gamma}"

    @property
    def source_key(self) -> str:
        """The source as text that `from_source_key` parses back: "draft_model:tb-draft",
        "ngram[prompt_lookup_max=3,prompt_lookup_min=1]"."""
        base = f"{self.method}:{self.draft}" if self.draft else self.method
        return f"{base}[{options_text(self.options)}]" if self.options else base

    @classmethod
    def from_source_key(cls, key: str, gamma: int) -> Speculation:
        """The speculation of `source_key` text at draft length `gamma`."""
        base, _, rest = key.partition("[")
        method, _, draft = base.partition(":")
        return cls(method, gamma, draft or None, parse_options(rest.rstrip("]")))


def options_text(options: tuple[tuple[str, int], ...]) -> str:
    """The stored form of method options: "name=value,..." sorted by name ("" for none)."""
    return ",".join(f"{name}={value}" for name, value in sorted(options))


def parse_options(text: str) -> tuple[tuple[str, int], ...]:
    """Inverse of `options_text`; ValueError for a malformed text."""
    if not text:
        return ()
    pairs = []
    for part in text.split(","):
        name, sep, value = part.partition("=")
        if not sep or not name:
            raise ValueError(f"speculation options {text!r}: expected name=value,...")
        pairs.append((name, int(value)))
    return tuple(sorted(pairs))


def speculation_of(method: str, draft: str | None, gamma: int,
                   options: str = "") -> Speculation | None:
    """The speculation stored as columns (method, draft, gamma, options); None when off.

    Rows written before `method` existed have an empty method and a draft: draft_model.
    """
    if not method and draft:
        method = "draft_model"
    if not method:
        return None
    return Speculation(method, gamma, draft or None, parse_options(options))
