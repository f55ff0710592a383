"""One self-contained HTML report of a study: figures, top configurations, profile, validation.

plotly.js is inlined once (about 4.5 MB), so the file opens offline; nothing is fetched.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from pathlib import Path

import plotly.graph_objects as go
import plotly.io as pio

from storage import Database, ProfileSet, UserInputError, write_files
from tuner.core.configuration import LatencyObjective
from tuner.core.durations import format_duration
from tuner.core.frontier import LoadPoint
from tuner.core.machine import CostSource, describe
from tuner.core.trials import TrialSummary
from tuner.review.figures import (
    acceptance_figure,
    decode_cost_figure,
    load_frontier_figure,
    speculation_source,
    validation_figure,
)
from tuner.review.study_review import (
    StudyReview,
    load_profile,
    load_study,
    no_winner_text,
    review_of,
    study_figures,
    validation_results,
)

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: right; }
th:nth-child(2), td:nth-child(2) { text-align: left; }
pre { background: #f4f4f4; padding: 0.8em; }
.figure { margin: 1.5em 0; }
.warning { background: #fdecea; border-left: 4px solid #d62728; padding: 0.6em 1em; }
"""


def render_report(review: StudyReview, profile: ProfileSet, validations: list[dict],
                  top: int = 10) -> str:
    """The whole report as one HTML document (str)."""
    figures = _Figures()
    sections = [
        _summary_section(review, profile, validations),
        _section("Trials", figures.html(study_figures(review).values())),
        _section(f"Top {top} configurations", _top_table(review.ranked[:top], review)),
        _section("Profile: decode cost", figures.html(_decode_figures(profile))),
        _section("Profile: draft acceptance", figures.html(
            [acceptance_figure(profile.acceptance)] if profile.acceptance else [])),
    ]
    if validations:
        sections.append(_section("Validation (predicted vs measured)", _validation_table(
            validations) + figures.html([validation_figure(validations)])))
    title = html.escape(f"latts-tune study {review.study_name}")
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{title}</title><style>{STYLE}</style></head>\n<body>\n<h1>{title}</h1>\n"
            + "\n".join(sections) + "\n</body></html>\n")


def write_report(text: str, path: Path) -> Path:
    """Write the report whole or not at all; UserInputError when the folder does not exist
    or cannot be written (under a file, in /proc, read-only)."""
    if not path.parent.exists():
        raise UserInputError(f"cannot write {path}: folder {path.parent} does not exist; "
                             "create it or pick another -o")
    write_files({path: text})
    return path


class _Figures:
    """Renders figures to <div>s; the first one carries plotly.js, the rest reuse it."""

    def __init__(self) -> None:
        self._count = 0

    def html(self, figures) -> str:
        parts = []
        for figure in figures:
            parts.append(pio.to_html(
                figure, full_html=False, include_plotlyjs=self._count == 0,
                div_id=f"figure-{self._count}", config={"displaylogo": False}))
            self._count += 1
        return "\n".join(f'<div class="figure">{part}</div>' for part in parts)


def _section(title: str, body: str) -> str:
    return f"<section>\n<h2>{html.escape(title)}</h2>\n{body}\n</section>"


def _summary_section(review: StudyReview, profile: ProfileSet,
                     validations: list[dict]) -> str:
    settings = review.settings
    created = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    tuned_for = ""
    if settings.corrections:
        target = settings.target_fingerprint or settings.hardware_fingerprint
        tuned_for = (f", corrected for <code>{html.escape(target[:12])}</code> by its "
                     "latency checks")
    facts = (f"Spec <b>{html.escape(settings.spec_name)}</b>, task "
             f"<b>{html.escape(settings.task)}</b>, step costs of "
             f"<b>{html.escape(describe(profile.hardware))}</b>{tuned_for}, engine "
             f"{html.escape(settings.engine_version)}; report written {created}.")
    deadline = (f"Deadline <b>{format_duration(settings.deadline_s)}</b> on the "
                f"{html.escape(review.latency.describe())} at {settings.confidence:.0%} "
                f"confidence; {len(review.summaries)} trials, {len(review.ranked)} feasible.")
    body = [_missed_warning(review, validations), f"<p>{facts}</p>", f"<p>{deadline}</p>",
            _winner_html(review)]
    return _section("Summary", "\n".join(part for part in body if part))


def _missed_warning(review: StudyReview, validations: list[dict]) -> str:
    """A warning at the top when a validation later missed the study's deadline."""
    deadline_s = review.settings.deadline_s
    missed = [v for v in validations if v["measured_s"] > deadline_s]
    if not missed:
        return ""
    items = "".join(f"<li>{html.escape(v['preset'])}: measured p90 "
                    f"{format_duration(v['measured_s'])}</li>" for v in missed)
    return (f'<div class="warning"><b>{len(missed)} of {len(validations)} validations '
            f"missed the {format_duration(deadline_s)} deadline</b> (see Validation below):"
            f"<ul>{items}</ul></div>")


def _winner_html(review: StudyReview) -> str:
    best = review.best
    if best is None:
        return f"<p>{html.escape(no_winner_text(review))}</p>"
    return (f"<p><b>Winner (trial {best.number}):</b> "
            f"<code>{html.escape(best.configuration.label())}</code></p>\n<ul>"
            f"<li>predicted accuracy {best.accuracy:.1%} (95% CI {best.accuracy_low:.1%}-"
            f"{best.accuracy_high:.1%})</li>"
            f"<li>{html.escape(review.latency.describe())} {format_duration(best.latency_s)} "
            f"(bound {format_duration(best.latency_upper_s)}), mean "
            f"{format_duration(best.mean_latency_s)}: prefill "
            f"{format_duration(best.prefill_s)}, decode {format_duration(best.decode_s)}, "
            f"{best.tokens_per_step:.2f} tokens per step</li></ul>\n"
            f"<p>Export the preset:</p><pre>{html.escape(review.export_command)}</pre>")


def _top_table(ranked: tuple[TrialSummary, ...], review: StudyReview) -> str:
    if not ranked:
        return "<p>No configuration meets the deadline.</p>"
    headers = ("#", "configuration", "accuracy (95% CI)", "trial",
               f"{review.latency.describe()} (s)", "mean latency (s)", "prefill (s)",
               "decode (s)", "tokens/step")
    rows = [_top_row(index, summary) for index, summary in enumerate(ranked, start=1)]
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _top_row(index: int, s: TrialSummary) -> str:
    cells = (str(index), s.configuration.label(),
             f"{s.accuracy:.1%} ({s.accuracy_low:.1%}-{s.accuracy_high:.1%})", str(s.number),
             f"{s.latency_s:.3f}", f"{s.mean_latency_s:.3f}", f"{s.prefill_s:.3f}",
             f"{s.decode_s:.3f}", f"{s.tokens_per_step:.2f}")
    return "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>"


def _decode_figures(profile: ProfileSet) -> list[go.Figure]:
    keys = sorted({(p.model, speculation_source(p)) for p in profile.cost_points
                   if p.phase == "decode"}, key=lambda key: (key[0], key[1] or ""))
    return [decode_cost_figure(profile.cost_points, model, draft) for model, draft in keys]


def _validation_table(rows: list[dict]) -> str:
    headers = ("#", "preset", "predicted p90 (s)", "measured p90 (s)", "predicted accuracy",
               "measured accuracy")
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in (
            str(index), row["preset"], f"{row['predicted_s']:.3f}", f"{row['measured_s']:.3f}",
            f"{row['predicted_accuracy']:.1%}", f"{row['measured_accuracy']:.1%}")) + "</tr>"
        for index, row in enumerate(rows, start=1))
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_study_report(db: Database, study_name: str, output: Path, top: int = 10) -> Path:
    """Render the HTML report of a stored study to `output` (one self-contained file)."""
    review = review_of(load_study(db.url, study_name), db.url)
    profile = load_profile(db, review.settings)
    text = render_report(review, profile, validation_results(db, study_name), top=top)
    return write_report(text, output)


def render_load_report(points: list[LoadPoint], deadline_s: float, latency: LatencyObjective,
                       source: CostSource) -> str:
    """The best configuration per load as one HTML document: figure and table."""
    figures = _Figures()
    created = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    facts = (f"Step costs for <b>{html.escape(source.title())}</b>; each load replayed with "
             f"the arrival replay of the simulator; {html.escape(latency.describe())} over "
             f"requests within {deadline_s:g} s at {latency.confidence:.0%} confidence; "
             f"report written {created}.")
    headers = ("load", "configuration", "accuracy (95% CI)", f"{latency.describe()} (s)",
               "bound (s)", "mean latency (s)", "max-num-seqs", "optimum")
    rows = []
    for point in points:
        best = point.best
        cells = ((point.load.key(), "nothing meets it", "", "", "", "", "", "")
                 if best is None else
                 (point.load.key(), best.configuration.label(),
                  f"{best.accuracy:.1%} ({best.accuracy_low:.1%}-{best.accuracy_high:.1%})",
                  f"{best.latency_s:.3f}", f"{best.latency_upper_s:.3f}",
                  f"{best.mean_latency_s:.3f}", str(best.max_num_seqs),
                  "switch" if point.changed else ""))
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    title = "latts-tune: best configuration vs load"
    body = _section("Summary", f"<p>{facts}</p>") + "\n" + _section(
        "Switch points", figures.html([load_frontier_figure(points, deadline_s, latency)])
        + table)
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{title}</title><style>{STYLE}</style></head>\n<body>\n<h1>{title}</h1>\n"
            + body + "\n</body></html>\n")


def write_load_report(points: list[LoadPoint], deadline_s: float, latency: LatencyObjective,
                      source: CostSource, path: Path) -> Path:
    """Render the load report (`render_load_report`) to `path`."""
    return write_report(render_load_report(points, deadline_s, latency, source), path)
