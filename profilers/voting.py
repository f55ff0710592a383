"""Majority vote over branches: the one rule the executor applies and the simulator models."""

from __future__ import annotations

from collections.abc import Sequence


def majority_vote(answers: Sequence[str | None], generated_tokens: Sequence[int]) -> str | None:
    """Return the most frequent answer among branches that gave one, or None if none did.

    Tie rule: among equally frequent answers, the one whose earliest branch finished
    first wins, i.e. the fewest generated tokens, then the lowest branch index. Branches
    decode together, so fewer tokens means finished earlier.
    """
    counts: dict[str, int] = {}
    first_finish: dict[str, tuple[int, int]] = {}
    for index, (answer, tokens) in enumerate(zip(answers, generated_tokens, strict=True)):
        if answer is None:
            continue
        counts[answer] = counts.get(answer, 0) + 1
        first_finish[answer] = min(first_finish.get(answer, (tokens, index)), (tokens, index))
    if not counts:
        return None
    return min(counts, key=lambda answer: (-counts[answer], first_finish[answer]))
