"""`rdft report LOGDIR`: one static HTML file for a run, finished or still going.

The summary table (loop, hypothesis, decision, validation score ± CI, hidden test score,
durations), the score per loop against the base model and the best so far, and per loop: the
hypothesis, the files changed against the parent, the training loss curve and the errors.
Plots are drawn with matplotlib and embedded as PNG, so the file needs no server."""

from __future__ import annotations

import base64
import difflib
import html
import io
import json
from pathlib import Path

from rdft.errors import RdftError
from rdft.files import write_atomic
from rdft.loop.layout import RunLayout, read_json
from rdft.loop.records import RunArgs
from rdft.loop.trace import Trace

DIFFED = ("process_data.py", "data_recipe.json", "train.yaml")
STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;width:100%}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;
vertical-align:top}th{background:#f3f3f3}.best{background:#e8f6e8}.failed{background:#fbeaea}
pre{background:#f7f7f7;padding:8px;overflow-x:auto;font-size:12px}.add{color:#17692d}.del{color:#a11}
section{border-top:2px solid #ddd;margin-top:2em}img{max-width:100%}"""


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def score_plot(summary: dict) -> str | None:
    figure = score_figure(summary)
    if figure is None:
        return None
    import matplotlib.pyplot as plt

    image = _png(figure)
    plt.close(figure)
    return image


def score_figure(summary: dict):
    """Validation and hidden test score per loop, the base model's, and the best so far."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summary.get("loops", [])
    baseline = (summary.get("baseline") or {}).get("validation")
    if not rows and baseline is None:
        return None
    figure, axes = plt.subplots(figsize=(8, 3.6))
    loops = [r["loop"] for r in rows]
    scored = [(r["loop"], r["validation"]) for r in rows if r["validation"] is not None]
    if scored:
        axes.plot(*zip(*scored, strict=True), "o", color="#1f77b4", label="validation")
    tested = [(r["loop"], r["test"]) for r in rows if r.get("test") is not None]
    if tested:
        axes.plot(*zip(*tested, strict=True), "s", color="#ff7f0e", fillstyle="none", label="hidden test")
    base_test = (summary.get("baseline") or {}).get("test")
    if base_test is not None:
        axes.axhline(base_test, linestyle=":", color="#ff7f0e", label="base model (test)")
    failed = [r["loop"] for r in rows if r["decision"] == "failed"]
    if failed:
        axes.plot(failed, [baseline or 0] * len(failed), "x", color="#c00", label="failed")
    if baseline is not None:
        axes.axhline(baseline, linestyle="--", color="#888", label="base model")
    best, steps = baseline, []
    for row in rows:
        if row["decision"] == "confirmed":
            best = row["validation"]
        steps.append(best)
    if loops and any(s is not None for s in steps):
        axes.step(loops, steps, where="post", color="#2ca02c", label="confirmed best")
    axes.set_xlabel("loop")
    axes.set_ylabel(summary.get("metric") or "primary metric")
    if loops:
        axes.set_xticks(loops)
    axes.legend(loc="best", fontsize=8)
    axes.grid(alpha=0.3)
    return figure


def metric_plot(metrics: Path, key: str, label: str, color: str) -> str | None:
    """One curve of a training's metrics JSONL (loss; GRPO's reward mean), as an embedded PNG."""
    if not metrics.is_file():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = []
    for line in metrics.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line being written right now
        if isinstance(row, dict) and isinstance(row.get(key), (int, float)) and "step" in row:
            points.append((row["step"], row[key]))
    if not points:
        return None
    figure, axes = plt.subplots(figsize=(5, 2.4))
    axes.plot(*zip(*points, strict=True), color=color)
    axes.set_xlabel("step")
    axes.set_ylabel(label)
    axes.grid(alpha=0.3)
    image = _png(figure)
    plt.close(figure)
    return image


def loss_plot(metrics: Path) -> str | None:
    return metric_plot(metrics, "loss", "training loss", "#d62728")


def reward_plot(metrics: Path) -> str | None:
    """GRPO's mean reward per step (the benchmark's scorer on the sampled answers); None for SFT."""
    return metric_plot(metrics, "reward_mean", "mean reward", "#2ca02c")


def _css(line: str) -> str:
    return "add" if line.startswith("+") else "del" if line.startswith("-") else ""


def diff_html(parent: Path | None, child: Path) -> str:
    parts = []
    for name in DIFFED:
        new = (child / name).read_text().splitlines() if (child / name).is_file() else []
        old = (parent / name).read_text().splitlines() if parent and (parent / name).is_file() else []
        if not new and not old:
            continue
        lines = list(difflib.unified_diff(old, new, f"parent/{name}", f"this/{name}", lineterm="", n=2))
        if not lines:
            parts.append(f"<p>{name}: unchanged</p>")
            continue
        body = "\n".join(f'<span class="{_css(x)}">{html.escape(x)}</span>' for x in lines[:400])
        parts.append(f"<pre>{body}</pre>")
    return "".join(parts) or "<p>no files yet</p>"


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.4g}" if isinstance(value, float) else html.escape(str(value))


def build(log_dir: Path) -> str:
    raw = read_json(log_dir / "run.json")
    if raw is None:
        raise RdftError(f"{log_dir} is not an rdft run folder (no readable run.json)")
    try:
        run = RunArgs.model_validate(raw).model_dump()  # a record of another shape is refused, not a KeyError
    except ValueError:
        raise RdftError(
            f"{log_dir / 'run.json'} is not an rdft run's record; give the folder `rdft run` printed"
        ) from None
    summary = read_json(log_dir / "summary.json") or {"loops": [], "baseline": {}}
    scenario = read_json(log_dir / "scenario.json") or {}
    summary["metric"] = scenario.get("primary_metric")
    e = html.escape
    title = f"rdft: {run['base_model']} on {run['benchmark']}"
    out = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title><style>{STYLE}</style>"
        f"</head><body><h1>{e(title)}</h1>"
    ]
    base = summary.get("baseline") or {}
    best, confirmed = summary.get("best"), summary.get("confirmed")
    scoring = summary.get("scoring") or {}
    if scoring.get("standard") is False:
        out.append(
            f"<p id='non-standard'><b>Non-standard scores:</b> {e(non_standard(scoring))}; they are not the "
            "benchmark's published numbers.</p>"
        )
    if base.get("flags"):
        out.append(f"<p><b>Base model degenerate:</b> {e('; '.join(base['flags']))}</p>")
    out.append(
        f"<p>Base model: validation {_fmt(base.get('validation'))} {_fmt(base.get('validation_ci95'))}, "
        f"test {_fmt(base.get('test'))}. Best by mean: "
        + (
            f"loop {best['loop']} (validation {_fmt(best['validation'])}, test {_fmt(best['test'])})"
            if best
            else "the base model"
        )
        + ". Confirmed best (significant): "
        + (
            f"loop {confirmed['loop']} (validation {_fmt(confirmed['validation'])}, test {_fmt(confirmed['test'])})"
            if confirmed
            else "the base model"
        )
        + f". Scored with {_sampling(scoring)}. Loops planned: {run['loop_n']}.</p>"
    )
    if base.get("regression"):
        shown = ", ".join(f"{e(name)} {_fmt(value)}" for name, value in base["regression"].items())
        out.append(f"<p id='regression-base'>Forgetting check: the base model scores {shown} on its slices.</p>")
    out.append(
        "<table id='summary'><tr><th>loop</th><th>hypothesis</th><th>decision</th><th>validation ± 95% CI</th>"
        "<th>test</th><th>leakage dropped</th><th>durations (s)</th></tr>"
    )
    for row in summary.get("loops", []):
        ci = row.get("validation_ci95")
        shown = _fmt(row["validation"]) + (f" [{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else "")
        seconds = ", ".join(f"{k} {v:.0f}" for k, v in (row.get("seconds") or {}).items())
        css = "best" if row["decision"] == "confirmed" else "failed" if row["decision"] == "failed" else ""
        decision = row["decision"] + (f" (degenerate: {'; '.join(row['flags'])})" if row.get("flags") else "")
        leaked = ", ".join(f"{k} {v}" for k, v in (row.get("leakage") or {}).items() if v) or "0"
        out.append(
            f"<tr class='{css}'><td>{row['loop']}</td><td>{e(row['hypothesis'])}</td><td>{e(decision)}"
            f"</td><td>{shown}</td><td>{_fmt(row['test'])}</td><td>{e(leaked)}</td><td>{e(seconds)}</td></tr>"
        )
    out.append("</table>")
    plot = score_plot(summary)
    if plot:
        out.append(f"<h2>Score per loop</h2><img id='score-plot' alt='score per loop' src='{plot}'>")
    layout = RunLayout(log_dir)
    for row in summary.get("loops", []):
        loop_dir = layout.loop(row["loop"])
        proposal = read_json(layout.proposal(row["loop"])) or {}
        parent = row.get("parent")
        parent_ws = layout.workspace(parent)
        out.append(
            f"<section><h2>Loop {row['loop']} — {e(row['decision'])}</h2>"
            f"<p><b>Hypothesis:</b> {e(row['hypothesis'])}</p>"
            f"<p><b>Why:</b> {e(proposal.get('reason', ''))}</p>"
            f"<p><b>Parent:</b> {'loop ' + str(parent) if parent is not None else 'the base model'}</p>"
            f"<h3>Files changed against the parent</h3>{diff_html(parent_ws, loop_dir / 'workspace')}"
        )
        loss = loss_plot(loop_dir / "workspace" / "output" / "metrics.jsonl")
        if loss:
            out.append(f"<h3>Training loss</h3><img alt='training loss' src='{loss}'>")
        reward = reward_plot(loop_dir / "workspace" / "output" / "metrics.jsonl")
        if reward:
            out.append(f"<h3>Reward (GRPO)</h3><img alt='mean reward' src='{reward}'>")
        errors = []
        failure = layout.failure(row["loop"])
        if failure:
            errors.append(f"{failure.stage} ({failure.type}): {failure.error}")
        for evaluation in sorted((loop_dir / "coding").glob("round_*/evaluation.json")):
            record = read_json(evaluation) or {}
            if record.get("error"):
                errors.append(f"coding {evaluation.parent.name}: {record['error']}")
        if errors:
            out.append("<h3>Errors</h3>" + "".join(f"<pre>{e(text[-3000:])}</pre>" for text in errors))
        data = read_json(layout.running(row["loop"], "data"))
        if data and data.get("dropped_leakage"):
            reasons = ", ".join(f"{k} {v}" for k, v in (data.get("leakage") or {}).items() if v)
            out.append(
                f"<p class='leakage'><b>Leakage guard:</b> dropped {data['dropped_leakage']} of {data['written']} "
                f"rows ({e(reasons)}) holding {data.get('evaluation_items_hit', '?')} evaluation item(s)</p>"
            )
        if row.get("regression"):
            out.append(regression_table(row["regression"], row.get("forgetting") or []))
        feedback = read_json(layout.feedback(row["loop"]))
        if feedback:
            out.append(f"<h3>Feedback</h3><p>{e(feedback.get('explanation', ''))}</p>")
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out)


def regression_table(regression: dict[str, dict], forgetting: list[str]) -> str:
    """The forgetting check of one loop: each slice's score against the base model's, the paired
    difference and its 95% interval in points."""
    rows = []
    for name, r in regression.items():
        delta, ci = r.get("delta"), r.get("ci95")
        shown = "–" if delta is None else f"{delta * 100:+.1f}"
        interval = f"[{ci[0] * 100:+.1f}, {ci[1] * 100:+.1f}]" if ci else "–"
        css = " class='failed'" if name in forgetting else ""
        rows.append(
            f"<tr{css}><td>{html.escape(name)}</td><td>{_fmt(r.get('base'))}</td><td>{_fmt(r.get('score'))}</td>"
            f"<td>{shown}</td><td>{interval}</td></tr>"
        )
    return (
        "<h3>Forgetting check</h3><table class='regression'><tr><th>benchmark</th><th>base model</th>"
        "<th>this loop</th><th>difference (points)</th><th>95% CI (points)</th></tr>" + "".join(rows) + "</table>"
    )


def write_report(log_dir: Path, output: Path | None = None) -> Path:
    log_dir = log_dir.expanduser().resolve()
    output = (output or log_dir / "report.html").expanduser().resolve()
    text = build(log_dir)
    write_atomic(output, text)
    return output


# --- a run's summary.json and report.md (rdft run writes them as it goes) ---------------------------
def _sampling(scoring: dict) -> str:
    samples = scoring.get("samples") or 1
    if samples == 1:
        return "one greedy answer per item"
    settings = f"temperature {scoring.get('temperature')}, top-p {scoring.get('top_p')}"
    return f"{samples} samples per item (avg@{samples}; {settings})"


def _best(node) -> dict | None:
    return {"loop": node.loop, "validation": node.validation, "test": node.test, "flags": node.flags} if node else None


def summary(trace: Trace, args: RunArgs) -> dict:
    rows = []
    for node in trace.nodes:
        decision = (
            "confirmed"
            if node.confirmed
            else ("failed" if node.status == "failed" else "done" if node.status == "done" else "running")
        )
        rows.append(
            {
                "loop": node.loop,
                "parent": node.parent,
                "kind": node.kind,
                "hypothesis": node.hypothesis,
                "method": node.method,
                "decision": decision,
                "validation": node.validation,
                "validation_ci95": node.validation_ci95,
                "test": node.test,
                "error_type": node.error_type,
                "flags": node.flags,
                "leakage": node.leakage,
                "regression": node.regression,
                "forgetting": node.forgetting,
                "seconds": node.seconds,
            }
        )
    return {
        "benchmark": args.benchmark,
        "base_model": args.base_model,
        # Scores under a --max-gen-toks cap or on --eval-limit items are not the benchmark's
        # standard numbers (a 3-item split says little), and are marked so wherever they show.
        "scoring": {
            **trace.scoring,
            "max_gen_toks": args.max_gen_toks,
            "standard": args.max_gen_toks is None and args.eval_limit is None,
            "eval_limit": args.eval_limit,
        },
        "baseline": {
            "validation": trace.baseline_validation,
            "validation_ci95": trace.baseline_validation_ci95,
            "test": trace.baseline_test,
            "flags": trace.baseline_flags,
            "regression": trace.baseline_regression,
        },
        "best": _best(trace.best()),  # by validation mean, above the base model: what the search built on
        "confirmed": _best(trace.confirmed_best()),  # the last significant gain over the confirmed best
        "loops": rows,
    }


def non_standard(scoring: dict) -> str:
    """Why a run's scores are not the benchmark's standard numbers."""
    why = []
    if scoring.get("max_gen_toks"):
        why.append(f"generation capped at {scoring['max_gen_toks']} tokens (--max-gen-toks)")
    if scoring.get("eval_limit"):
        why.append(f"only the first {scoring['eval_limit']} items of each split (--eval-limit)")
    return " and ".join(why)


def write_markdown(log_dir: Path, trace: Trace, args: RunArgs) -> Path:
    s = summary(trace, args)
    lines = [f"# rdft run: {args.base_model} on {args.benchmark}", ""]
    if not s["scoring"]["standard"]:
        lines += [f"Non-standard scores: {non_standard(s['scoring'])}.", ""]
    base_flags = f" (degenerate: {'; '.join(s['baseline']['flags'])})" if s["baseline"]["flags"] else ""
    lines += [
        f"Base model: validation {s['baseline']['validation']}, test {s['baseline']['test']}{base_flags}",
        "",
        "| loop | decision | validation | 95% CI | test | leakage dropped | hypothesis |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in s["loops"]:
        decision = row["decision"] + (f" (degenerate: {'; '.join(row['flags'])})" if row["flags"] else "")
        leaked = ", ".join(f"{k} {v}" for k, v in (row["leakage"] or {}).items() if v) or "0"
        lines.append(
            f"| {row['loop']} | {decision} | {row['validation']} | {row['validation_ci95']} | "
            f"{row['test']} | {leaked} | {row['hypothesis'][:120]} |"
        )
    if any(row["regression"] for row in s["loops"]):
        names = list(s["baseline"]["regression"])
        lines += ["", "Forgetting check (points against the base model, 95% CI):", "",
                  "| loop | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]  # fmt: skip
        for row in s["loops"]:
            cells = []
            for name in names:
                r = (row["regression"] or {}).get(name) or {}
                ci = r.get("ci95")
                interval = f" [{ci[0] * 100:+.1f}, {ci[1] * 100:+.1f}]" if ci else ""
                cells.append("–" if r.get("delta") is None else f"{r['delta'] * 100:+.1f}{interval}")
            lines.append(f"| {row['loop']} | " + " | ".join(cells) + " |")
    best, confirmed = s["best"], s["confirmed"]
    lines += [
        "",
        f"Best by mean: loop {best['loop']} (validation {best['validation']}, test {best['test']})"
        if best
        else "Best by mean: the base model (no experiment beat its validation mean)",
        f"Confirmed best: loop {confirmed['loop']} (validation {confirmed['validation']}, test {confirmed['test']})"
        if confirmed
        else "Confirmed best: the base model (no experiment beat it significantly)",
        f"Scored with {_sampling(s['scoring'])}.",
    ]
    path = log_dir / "report.md"
    write_atomic(path, "\n".join(lines) + "\n")
    return path


def write_reports(log_dir: Path, trace: Trace, args: RunArgs) -> Path:
    """report.md (a plain summary) and report.html (tables, plots, diffs: rdft.loop.report)."""
    write_markdown(log_dir, trace, args)
    return write_report(log_dir)
