"""Run questions through a latts-tune gateway: one plain completion per question, the vote
done by the gateway (what a deployed client sees); latency is the client's wall clock."""

from __future__ import annotations

import time

from profilers.engine import model_name
from profilers.executor import ExecutionReport, QuestionOutcome
from profilers.progress import ProgressReporter, SilentProgress
from profilers.tasks.base import Question, Task
from storage import UserInputError

CONNECT_TIMEOUT_S = 10.0


def run_through_gateway(base_url: str, model: str, task: Task, questions: list[Question],
                        deadline_s: float, api_key: str | None = None,
                        progress: ProgressReporter | None = None) -> ExecutionReport:
    """Send every question to the gateway at `base_url`, one at a time; outcomes in order."""
    import httpx

    progress = progress or SilentProgress()
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    # The gateway answers by its deadline; anything much later is a fault.
    timeout = httpx.Timeout(deadline_s + 30.0, connect=CONNECT_TIMEOUT_S)
    outcomes = []
    started_s = time.perf_counter()
    with httpx.Client(base_url=base_url.rstrip("/").removesuffix("/v1"), headers=headers,
                      timeout=timeout) as client:
        for question in questions:
            outcomes.append(_ask(client, model, task, question))
            progress.advance()
    return ExecutionReport(tuple(outcomes), time.perf_counter() - started_s)


def _ask(client, model: str, task: Task, question: Question) -> QuestionOutcome:
    import httpx

    sent_s = time.perf_counter()
    try:
        prompt = task.build_prompt(question, model_name(model))
        response = client.post("/v1/completions", json={"model": model, "prompt": prompt})
    except httpx.TransportError as error:
        raise UserInputError(f"cannot reach the gateway at {client.base_url} ({error}); start "
                             "it with latts-tune serve or fix --gateway-url") from error
    latency_s = time.perf_counter() - sent_s
    if response.status_code != 200:
        raise UserInputError(f"the gateway at {client.base_url} answered "
                             f"{response.status_code}: {response.text[:200]}")
    body = response.json()
    vote = body.get("latts") or {}
    answer = vote.get("answer")
    branches = vote.get("branches") or []
    return QuestionOutcome(
        question_id=question.question_id, answer=answer,
        correct=task.grade(question, answer), latency_s=latency_s,
        prompt_tokens=int((body.get("usage") or {}).get("prompt_tokens") or 0),
        branch_tokens=tuple(int(b["tokens"]) for b in branches if b.get("finish_reason")),
        branches_aborted=int(vote.get("branches_aborted") or 0))
