"""One request's branches as they stream in: text by choice index, finish, answer, ballots."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from profilers.voting import Ballot


@dataclass
class Branch:
    """One sampled branch; `finished_s` is seconds from the request's arrival."""

    index: int
    parts: list[str] = field(default_factory=list)
    tokens: int = 0
    finish_reason: str | None = None
    finished_s: float | None = None
    answer: str | None = None

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None


def _chat_text(choice: dict) -> str:
    return (choice.get("delta") or {}).get("content") or ""


def _completion_text(choice: dict) -> str:
    return choice.get("text") or ""


class BranchSet:
    """The `n` branches of one request, fed with the upstream's stream chunks.

    `kind` is "chat" or "completions" (where a chunk's text sits). Token counts come from
    vLLM's `token_ids` per chunk (`return_token_ids`); without them, one token per chunk
    that carries text (exact without speculative decoding)."""

    def __init__(self, n: int, kind: str, extract_answer: Callable[[str], str | None]) -> None:
        self.branches = [Branch(index) for index in range(n)]
        self._text_of = _chat_text if kind == "chat" else _completion_text
        self._extract_answer = extract_answer
        self.finish_order: list[Branch] = []
        self.prompt_tokens: int | None = None

    def absorb(self, chunk: dict, elapsed_s: float) -> list[Branch]:
        """Add one stream chunk; returns the branches it finished."""
        finished = []
        for choice in chunk.get("choices") or ():
            branch = self._branch(choice.get("index"))
            if branch is None or branch.finished:
                continue  # an index we did not ask for, or a chunk after the finish
            self._add(branch, choice)
            if choice.get("finish_reason") is not None:
                self._finish(branch, choice["finish_reason"], elapsed_s)
                finished.append(branch)
        if self.prompt_tokens is None and chunk.get("prompt_token_ids") is not None:
            self.prompt_tokens = len(chunk["prompt_token_ids"])  # vLLM's first chat chunk
        usage = chunk.get("usage")
        if usage and usage.get("prompt_tokens") is not None:
            self.prompt_tokens = int(usage["prompt_tokens"])
        return finished

    def _branch(self, index: object) -> Branch | None:
        if isinstance(index, int) and 0 <= index < len(self.branches):
            return self.branches[index]
        return None

    def _add(self, branch: Branch, choice: dict) -> None:
        text = self._text_of(choice)
        if text:
            branch.parts.append(text)
        token_ids = choice.get("token_ids")
        branch.tokens += len(token_ids) if token_ids is not None else int(bool(text))
        if self.prompt_tokens is None and choice.get("prompt_token_ids") is not None:
            self.prompt_tokens = len(choice["prompt_token_ids"])

    def _finish(self, branch: Branch, reason: str, elapsed_s: float) -> None:
        branch.finish_reason = reason
        branch.finished_s = elapsed_s
        branch.answer = self._extract_answer(branch.text)
        self.finish_order.append(branch)

    def ballots(self) -> list[Ballot]:
        """Ballots of the finished branches, in the order they finished."""
        return [Ballot(b.answer, b.tokens, b.index) for b in self.finish_order]

    def votes(self) -> dict[str, int]:
        """Finished branches per parsed answer, most votes first."""
        counts = Counter(b.answer for b in self.finish_order if b.answer is not None)
        return dict(counts.most_common())

    def winner(self, answer: str | None) -> Branch | None:
        """The first finished branch that gave `answer` (any finished one if `answer` is
        None: no branch parsed an answer, so show what the first one said)."""
        for branch in self.finish_order:
            if answer is None or branch.answer == answer:
                return branch
        return None

    @property
    def generated_tokens(self) -> int:
        return sum(branch.tokens for branch in self.branches)
