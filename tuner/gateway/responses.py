"""The gateway's answer: an ordinary OpenAI completion plus the `latts` extension field.

Content: the text of the first finished branch that gave the winning answer (the first
finished branch when none parsed an answer; empty when none finished, finish_reason
"length"). Usage counts every token the gateway received, aborted branches' included:
that is the cost (an aborted branch may have generated up to `stream_interval_tokens` - 1
more that were never streamed). The `latts` field holds the vote (OpenAI clients keep
unknown fields: with the `openai` package, `response.model_extra["latts"]`).
"""

from __future__ import annotations

import time
import uuid

from tuner.gateway.branches import Branch, BranchSet
from tuner.gateway.upstream import Outcome

OBJECTS = {"chat": "chat.completion", "completions": "text_completion"}
ID_PREFIXES = {"chat": "chatcmpl-latts-", "completions": "cmpl-latts-"}


def completion_body(kind: str, outcome: Outcome, model: str, extension: dict) -> dict:
    """The response body for `kind` ("chat" or "completions")."""
    winner = outcome.branches.winner(outcome.verdict.answer)
    text = winner.text if winner else ""
    finish_reason = winner.finish_reason if winner else "length"
    choice: dict = {"index": 0, "finish_reason": finish_reason, "logprobs": None}
    if kind == "chat":
        choice["message"] = {"role": "assistant", "content": text}
    else:
        choice["text"] = text
    return {"id": ID_PREFIXES[kind] + uuid.uuid4().hex, "object": OBJECTS[kind],
            "created": int(time.time()), "model": model, "choices": [choice],
            "usage": _usage(outcome.branches), "latts": extension}


def latts_extension(outcome: Outcome, rule_key: str, deadline_s: float,
                    elapsed_s: float) -> dict:
    """The vote and how the request ended, for the `latts` field."""
    branches = outcome.branches
    winner = branches.winner(outcome.verdict.answer)
    finished = len(branches.finish_order)
    return {
        "answer": outcome.verdict.answer, "votes": branches.votes(), "vote_rule": rule_key,
        "winner_branch": winner.index if winner else None,
        "branches_started": len(branches.branches), "branches_finished": finished,
        "branches_aborted": len(branches.branches) - finished,
        "deadline_s": deadline_s, "deadline_cut": outcome.deadline_cut,
        "early_stop": outcome.early_stop, "elapsed_s": round(elapsed_s, 6),
        "branches": [_branch_summary(branch) for branch in branches.branches],
    }


def _branch_summary(branch: Branch) -> dict:
    return {"index": branch.index, "answer": branch.answer, "tokens": branch.tokens,
            "finish_reason": branch.finish_reason,
            "finished_s": None if branch.finished_s is None else round(branch.finished_s, 6)}


def _usage(branches: BranchSet) -> dict:
    prompt_tokens = branches.prompt_tokens or 0
    generated = branches.generated_tokens
    return {"prompt_tokens": prompt_tokens, "completion_tokens": generated,
            "total_tokens": prompt_tokens + generated}


def vote_margin(votes: dict[str, int]) -> int:
    """Votes for the most-voted answer minus the runner-up's (0 when no votes)."""
    counts = sorted(votes.values(), reverse=True) + [0, 0]
    return counts[0] - counts[1]
