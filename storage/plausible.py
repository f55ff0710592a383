"""What no measurement can be: the physical checks a profile record read from a file must pass.

A NaN, infinite or negative step time, a negative token count or more accepted than drafted
tokens cannot come from an engine; imported unchecked, they made `latts-tune run` crash or
predict nonsense (16.7 ms for a 148 ms configuration).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import fields
from typing import Any

from storage.records import AcceptanceRecord, AccuracySample, CostPoint


def impossible_value(record: Any) -> str | None:
    """'FIELD: what is wrong' for the first impossible value of `record`, or None.

    Every number must be finite and non-negative, a log-probability finite and at most 0;
    each record kind adds its own rules.
    """
    for field in fields(record):
        value = getattr(record, field.name)
        check = _logprob_problem if field.name in LOG_PROBABILITIES else _number_problem
        for item in value if isinstance(value, tuple) else (value,):
            problem = check(item)
            if problem:
                return f"{field.name}: {problem}"
    rule = _RULES.get(type(record))
    return rule(record) if rule else None


LOG_PROBABILITIES = {"mean_logprob"}


def _logprob_problem(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value):
        return f"{value!r} is not a finite number"
    if value > 0:
        return f"{value!r} is positive; a log-probability is at most 0"
    return None


def _number_problem(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value):
        return f"{value!r} is not a finite number"
    if value < 0:
        return f"{value!r} is negative"
    return None


def _cost_point(point: CostPoint) -> str | None:
    if point.batch_size < 1:
        return f"batch_size: {point.batch_size} live branches; a step runs at least 1"
    if point.status == "ok" and not point.seconds_samples:
        return "seconds_samples: a measured point needs at least one time"
    if any(seconds == 0 for seconds in point.seconds_samples):
        return "seconds_samples: 0.0 seconds; an engine step takes time"
    return None


def _acceptance(record: AcceptanceRecord) -> str | None:
    if record.num_accepted_tokens > record.num_draft_tokens:
        return (f"num_accepted_tokens: {record.num_accepted_tokens} accepted but only "
                f"{record.num_draft_tokens} drafted")
    if record.num_draft_tokens > record.num_drafts * record.gamma:
        return (f"num_draft_tokens: {record.num_draft_tokens} drafted tokens in "
                f"{record.num_drafts} drafts of at most {record.gamma}")
    counts = record.accepted_per_position
    if len(counts) > record.gamma:
        return f"accepted_per_position: {len(counts)} positions for gamma {record.gamma}"
    if counts and counts[0] > record.num_drafts:
        return (f"accepted_per_position: {counts[0]} accepted at position 0 of only "
                f"{record.num_drafts} drafts")
    if any(later > earlier for earlier, later in zip(counts, counts[1:], strict=False)):
        return (f"accepted_per_position: {list(counts)} rises; a draft token is accepted only "
                "after every one before it")
    return None


def _accuracy(sample: AccuracySample) -> str | None:
    if sample.max_tokens < 1:
        return f"max_tokens: {sample.max_tokens}; a sample is allowed at least 1 token"
    if sample.generated_tokens > sample.max_tokens:
        return (f"generated_tokens: {sample.generated_tokens} generated with max_tokens "
                f"{sample.max_tokens}")
    return None


_RULES: dict[type, Callable[[Any], str | None]] = {
    CostPoint: _cost_point,
    AcceptanceRecord: _acceptance,
    AccuracySample: _accuracy,
}
