"""`latts-tune profile decode|acceptance|accuracy`: measure on the real engine (wiring only)."""

from __future__ import annotations

import click

from tuner.cli.common import (
    IntList,
    engine_pool,
    interrupt_message,
    open_claims,
    open_database,
    open_profile_store,
    speculation_options,
    speculative_config,
)
from tuner.cli.options import FiniteFloatRange
from tuner.cli.progress import RichProgress

_model_option = click.option(
    "--model", "model_path", required=True, help="Model directory (written by save_pretrained)."
)
_engine_options = [
    click.option("--max-model-len", type=click.IntRange(min=16), default=None,
                 help="Engine context limit (tokens); default: the model's."),
    click.option("--dtype", default="auto", show_default=True,
                 help="Engine dtype (auto: the checkpoint's own, not vLLM's CPU downcast)."),
    click.option("--server-url", default=None, metavar="URL",
                 help="Measure through a running OpenAI-compatible server (vllm serve) at URL "
                      "instead of starting vLLM here; for decode and acceptance, --draft and "
                      "--gamma must say what the server runs (one gamma per server); its API "
                      "key, if any, from LATTS_TUNE_API_KEY."),
]


def _with_engine_options(command):
    for option in reversed(_engine_options):
        command = option(command)
    return command


@click.group()
def profile() -> None:
    """Measure decode cost, draft acceptance and accuracy on the real engine.

    Example: latts-tune profile decode --model studies/testbed/models/tb-large
    """


@profile.command()
@_model_option
@click.option("--role", type=click.Choice(["target", "draft"]), default="target",
              show_default=True,
              help="How the model is stored: a target to tune, or a draft for speculation.")
@click.option("--draft", "draft_path", default=None,
              help="Draft model (or head) directory, for speculative decoding.")
@speculation_options
@click.option("--gamma", "gammas", type=IntList(min_value=1), default="1,2,3,4",
              show_default=True,
              help="Draft lengths to measure (with --draft or a draft-free --method).")
@click.option("--baseline/--no-baseline", default=True, show_default=True,
              help="Also measure without speculative decoding.")
@click.option("--batch-sizes", type=IntList(min_value=1), default="1,2,4,8,16",
              show_default=True, help="Live branches per step.")
@click.option("--prompt-tokens", type=IntList(min_value=1), default=None,
              help="Prompt lengths (context = prompt + decode/2). Default: three lengths "
                   "spanning the model's stored accuracy samples (prompt to prompt + answer, "
                   "+10%), else 8,32,64.")
@click.option("--decode-tokens", type=click.IntRange(min=2), default=32, show_default=True,
              help="Tokens decoded per measurement (steps timed = this minus one).")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True,
              help="Measurements per point (the median is used; the spread is stored).")
@click.option("--budget", "budget_minutes", type=FiniteFloatRange(min=0, min_open=True),
              default=None, metavar="MINUTES",
              help="Time budget for the whole command (engine starts included), shared "
                   "equally by the configurations: coarse grid first, then the points where "
                   "the cost model is least certain. Default: measure every point.")
@_with_engine_options
@click.pass_context
def decode(ctx, model_path, role, draft_path, method, spec_options, gammas, baseline,
           batch_sizes, prompt_tokens, decode_tokens, repeats, budget_minutes, max_model_len,
           dtype, server_url) -> None:
    """Measure seconds per decode step vs batch size and context length.

    Example: latts-tune profile decode --model M --draft D --budget 30
    """
    from profilers import DecodeGrid, read_model_record

    models = [read_model_record(model_path, role)]  # a bad --model before the database opens
    if draft_path and method == "draft_model":  # a head is no model of its own to record
        models.append(read_model_record(draft_path, "draft"))
    speculating = bool(draft_path) or method != "draft_model"
    configs = ([None] if baseline or not speculating else []) + (
        [speculative_config(draft_path, gamma, method, tuple(spec_options))
         for gamma in gammas] if speculating else []
    )
    store = open_profile_store(ctx)
    if prompt_tokens is None:
        prompt_tokens = _derived_prompt_tokens(store, models[0].name, decode_tokens)
    grid = DecodeGrid(tuple(batch_sizes), tuple(prompt_tokens), decode_tokens, repeats)
    for record in models:
        store.upsert_model(record)
    with engine_pool(ctx, max_model_len, dtype, server_url) as pool, RichProgress() as progress, \
            interrupt_message(store):
        if budget_minutes is None:
            _decode_full_grid(pool, model_path, configs, store, grid, progress,
                              open_claims(ctx))
        else:
            _decode_budgeted(pool, model_path, configs, store, grid, progress,
                             60.0 * budget_minutes)


def _derived_prompt_tokens(store, model: str, decode_tokens: int) -> list[int]:
    """The prompt lengths the study will need, from the model's accuracy samples."""
    from profilers.decode import prompt_tokens_covering

    extent = store.accuracy_token_extent(model)
    if extent is None:  # as --help says
        return [8, 32, 64]
    shortest_prompt, longest_context = extent
    lengths = list(prompt_tokens_covering(shortest_prompt, longest_context, decode_tokens))
    click.echo(f"Prompt lengths {','.join(map(str, lengths))} from the accuracy samples of "
               f"{model} (prompts of {extent[0]}+ tokens, contexts up to {extent[1]}).",
               err=True)
    return lengths


def _decode_full_grid(pool, model_path, configs, store, grid, progress, claims) -> None:
    from profilers import profile_decode

    for speculative in configs:
        profile_decode(pool.get(model_path, speculative), store, grid, progress, claims)


def _decode_budgeted(pool, model_path, configs, store, grid, progress, budget_s: float) -> None:
    from profilers.planner import profile_configurations_budgeted
    from tuner.core.cost_model import unbounded_step_cost

    runs = profile_configurations_budgeted(pool, model_path, configs, store, grid, budget_s,
                                           unbounded_step_cost, progress)
    total = len(grid.batch_sizes) * len(grid.prompt_tokens)
    for run in runs:
        label = (f"gamma={run.speculative.num_speculative_tokens}" if run.speculative
                 else "no draft")
        if run.report is None:
            click.echo(f"{label}: not started (its share of the budget was below an engine "
                       f"start, {run.engine_start_s:.0f} s)")
        else:
            click.echo(f"{label}: {len(run.report.points)} of {total} points in "
                       f"{run.report.elapsed_s:.0f} s ({run.report.stop_reason})")
    skipped = sum(run.report is None for run in runs)
    if skipped:
        click.echo(f"The budget covered {len(runs) - skipped} of {len(runs)} configurations; "
                   "rerun with a larger --budget to measure the rest (stored points are kept).")


@profile.command()
@_model_option
@click.option("--draft", "draft_path", default=None,
              help="Draft model (or head) directory; none for a draft-free --method.")
@speculation_options
@click.option("--gamma", "gammas", type=IntList(min_value=1), default="1,2,3,4",
              show_default=True, help="Draft lengths to measure, one engine each.")
@click.option("--task", "task_name", default="arithmetic", show_default=True,
              help="arithmetic | math500[:FILE.jsonl] | jsonl:FILE.jsonl[?grader=numeric] | "
                   "task:DEFINITION.yaml; options after ?: chat_template=MODEL, "
                   "instruction=TEXT, prompt_template=TEXT, stop=TEXT (docs/gpu.md).")
@click.option("--questions", type=click.IntRange(min=1), default=64, show_default=True,
              help="Prompts of the task's profiling split to sample.")
@click.option("--branches", type=click.IntRange(min=1), default=4, show_default=True,
              help="Sampled branches per prompt (n), as the executor sends them.")
@click.option("--temperature", type=FiniteFloatRange(min=0.0, min_open=True), default=1.0,
              show_default=True, help="Sampling temperature (acceptance depends on it).")
@click.option("--max-tokens", type=click.IntRange(min=1), default=96, show_default=True,
              help="Most tokens generated per branch.")
@_with_engine_options
@click.pass_context
def acceptance(ctx, model_path, draft_path, method, spec_options, gammas, task_name, questions,
               branches, temperature, max_tokens, max_model_len, dtype, server_url) -> None:
    """Measure per-position draft acceptance on the task's prompts.

    Example: latts-tune profile acceptance --model M --method ngram --gamma 1,2
    """
    from profilers import get_task, profile_acceptance, read_model_record, store_definition
    from storage import TaskDefinitionStore

    task = get_task(task_name)  # checked before the database opens
    speculations = [speculative_config(draft_path, gamma, method, tuple(spec_options))
                    for gamma in gammas]
    models = [read_model_record(model_path, "target")]
    if draft_path and method == "draft_model":  # a head is no model of its own to record
        models.append(read_model_record(draft_path, "draft"))
    store = open_profile_store(ctx)
    store_definition(task, TaskDefinitionStore(open_database(ctx)))
    for record in models:
        store.upsert_model(record)
    with engine_pool(ctx, max_model_len, dtype, server_url) as pool, RichProgress() as progress, \
            interrupt_message(store):
        for gamma, speculative in zip(gammas, speculations, strict=True):
            engine = pool.get(model_path, speculative)
            measured = profile_acceptance(engine, store, task, questions=questions,
                                          branches=branches, temperature=temperature,
                                          max_tokens=max_tokens, progress=progress)
            rates = ", ".join(f"{rate:.3f}" for rate in measured.position_rates())
            click.echo(f"gamma={gamma}: per-position acceptance {rates}")


@profile.command()
@click.option("--model", "model_paths", required=True, multiple=True,
              help="Model directory (repeat for several).")
@click.option("--role", type=click.Choice(["target", "draft"]), default="target",
              show_default=True,
              help="How the model is stored: a target to tune, or a draft for speculation.")
@click.option("--task", "task_name", default="arithmetic", show_default=True,
              help="arithmetic | math500[:FILE.jsonl] | jsonl:FILE.jsonl[?grader=numeric] | "
                   "task:DEFINITION.yaml; options after ?: chat_template=MODEL, "
                   "instruction=TEXT, prompt_template=TEXT, stop=TEXT (docs/gpu.md).")
@click.option("--questions", type=click.IntRange(min=1), default=200, show_default=True,
              help="Questions of the task's profiling split (heldout) to sample.")
@click.option("--samples", "samples", type=int, default=16, show_default=True,
              help="K samples per question (>= the largest branch count to search).")
@click.option("--temperature", type=FiniteFloatRange(min=0.0, min_open=True), default=1.0,
              show_default=True, help="Sampling temperature of every sample.")
@click.option("--max-tokens", type=click.IntRange(min=1), default=96, show_default=True,
              help="Most tokens generated per sample (the largest budget searched).")
@_with_engine_options
@click.pass_context
def accuracy(ctx, model_paths, role, task_name, questions, samples, temperature, max_tokens,
             max_model_len, dtype, server_url) -> None:
    """Sample K graded answers per question for each model.

    Example: latts-tune profile accuracy --model M --questions 200 --samples 16
    """
    from profilers import (
        check_accuracy_settings,
        get_task,
        profile_accuracy,
        read_model_record,
        store_definition,
        stored_accuracy_summary,
    )
    from storage import TaskDefinitionStore

    check_accuracy_settings(questions, samples)
    task = get_task(task_name)  # checked before the database opens
    records = [read_model_record(path, role) for path in model_paths]
    store = open_profile_store(ctx)
    store_definition(task, TaskDefinitionStore(open_database(ctx)))
    with engine_pool(ctx, max_model_len, dtype, server_url) as pool, RichProgress() as progress, \
            interrupt_message(store):
        for path, record in zip(model_paths, records, strict=True):
            store.upsert_model(record)
            engine = pool.get(path)
            profile_accuracy(engine, store, task, questions=questions,
                             samples_per_question=samples, temperature=temperature,
                             max_tokens=max_tokens, progress=progress,
                             claims=open_claims(ctx))
            summary = stored_accuracy_summary(engine, store, task, temperature,
                                              k=min(8, samples))
            click.echo(f"{record.name} on {task.name}: {summary.describe()}")
