"""`rdft report LOGDIR`: one HTML file for a run, finished or still going, and the live report.

The summary table (loop, hypothesis, decision, validation score ± CI and against the base model,
hidden test score, durations), the score per loop against the base model and the best so far,
the stages' durations as a timeline, and per loop: the hypothesis, the files changed against the
parent, the training loss curve (and GRPO's reward), the errors. Plots are drawn with matplotlib
and embedded as PNG, the timeline is inline SVG: the file needs no server and no network.

While a session works on the run it keeps `live.json` (which process, which stage, since when)
and rewrites report.html at every stage's start and end and every HEARTBEAT_S between
(`LiveReport`). A page written while the run is active says so and reloads itself; one written
when it is not (finished, stopped, or its session gone: `live_state`) does not. `rdft report
--serve` serves the run folder on 127.0.0.1 (`serve`)."""

from __future__ import annotations

import base64
import datetime
import difflib
import errno
import functools
import html
import io
import ipaddress
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock, Timeout

from rdft.errors import RdftError
from rdft.files import HOST, write_atomic
from rdft.loop.layout import STAGES, RunLayout, read_json
from rdft.loop.records import RunArgs
from rdft.loop.trace import Trace

DIFFED = ("process_data.py", "data_recipe.json", "train.yaml")
STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;width:100%}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;
vertical-align:top}th{background:#f3f3f3}.best{background:#e8f6e8}.failed{background:#fbeaea}
pre{background:#f7f7f7;padding:8px;overflow-x:auto;font-size:12px}.add{color:#17692d}.del{color:#a11}
section{border-top:2px solid #ddd;margin-top:2em}img{max-width:100%}
#live{padding:8px 12px;border-left:6px solid #999;background:#f5f5f5}#live.active{border-color:#2ca02c;
background:#eef8ee}#live.gone{border-color:#c00;background:#fbeaea}#timeline text{font-size:12px}"""
LIVE = "live.json"  # the run's live state: which session, which stage since when (LiveReport writes it)
HEARTBEAT_S = 30.0  # the run rewrites its report this often while it goes on
RELOAD_S = 10  # an open page of an active run reloads itself this often
STALE_S = 300  # ... until it has not changed for this long (a run killed with -9 says nothing)
CLOCK_SKEW_S = 3600  # a browser's clock may differ this much from the run's host before a page counts as stale
STAGE_NAMES = {"direct_exp_gen": "proposal", "coding": "coding", "running": "running", "feedback": "feedback"}
STAGE_COLORS = {"direct_exp_gen": "#9467bd", "coding": "#1f77b4", "running": "#ff7f0e", "feedback": "#2ca02c"}

# Plots already drawn, by what they were drawn from: the live report is rewritten every
# HEARTBEAT_S, and only the curve of the loop that is training changes between two writes.
_PLOTS: dict[tuple, str | None] = {}


def _cached(key: tuple, draw: Callable[[], str | None]) -> str | None:
    if key not in _PLOTS:
        if len(_PLOTS) > 512:
            _PLOTS.clear()
        _PLOTS[key] = draw()
    return _PLOTS[key]


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def score_plot(summary: dict) -> str | None:
    def draw() -> str | None:
        figure = score_figure(summary)
        return None if figure is None else _png(figure)

    return _cached(("score", json.dumps(summary, sort_keys=True, default=str)), draw)


def score_figure(summary: dict):
    """Validation and hidden test score per loop, the base model's, and the best so far."""
    from matplotlib.figure import Figure  # no pyplot: figures drawn in the run's report thread too

    rows = summary.get("loops", [])
    baseline = (summary.get("baseline") or {}).get("validation")
    if not rows and baseline is None:
        return None
    figure = Figure(figsize=(8, 3.6))
    axes = figure.subplots()
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
    if axes.get_legend_handles_labels()[0]:  # nothing scored yet: no legend
        axes.legend(loc="best", fontsize=8)
    axes.grid(alpha=0.3)
    return figure


def metric_plot(metrics: Path, key: str, label: str, color: str) -> str | None:
    """One curve of a training's metrics JSONL (loss; GRPO's reward mean), as an embedded PNG;
    a training still going is drawn as far as it got."""
    try:
        stat = metrics.stat()
    except OSError:
        return None
    return _cached(
        ("metric", str(metrics), stat.st_mtime_ns, stat.st_size, key), lambda: _metric_png(metrics, key, label, color)
    )


def _metric_png(metrics: Path, key: str, label: str, color: str) -> str | None:
    from matplotlib.figure import Figure

    points = []
    for line in metrics.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line being written right now
        if isinstance(row, dict) and isinstance(row.get(key), (int, float)) and "step" in row:
            points.append((row["step"], row[key]))
    if not points:
        return None
    figure = Figure(figsize=(5, 2.4))
    axes = figure.subplots()
    axes.plot(*zip(*points, strict=True), color=color)
    axes.set_xlabel("step")
    axes.set_ylabel(label)
    axes.grid(alpha=0.3)
    return _png(figure)


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


def build(log_dir: Path, now: float | None = None) -> str:
    now = time.time() if now is None else now
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
    # No request leaves the page: the icon is empty (a served page would ask for /favicon.ico).
    out = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title><link rel='icon' "
        f"href='data:,'><style>{STYLE}</style></head><body><h1>{e(title)}</h1>"
    ]
    state = live_state(log_dir)
    out.append(live_html(log_dir, run, state, now))
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
        "<th>against the base</th><th>test</th><th>leakage dropped</th><th>durations (s)</th></tr>"
    )
    for row in summary.get("loops", []):
        ci = row.get("validation_ci95")
        shown = _fmt(row["validation"]) + (f" [{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else "")
        seconds = ", ".join(f"{k} {v:.0f}" for k, v in (row.get("seconds") or {}).items())
        css = "best" if row["decision"] == "confirmed" else "failed" if row["decision"] == "failed" else ""
        decision = row["decision"] + (f" (degenerate: {'; '.join(row['flags'])})" if row.get("flags") else "")
        leaked = ", ".join(f"{k} {v}" for k, v in (row.get("leakage") or {}).items() if v) or "0"
        against = (
            "–" if row["validation"] is None or base.get("validation") is None
            else f"{row['validation'] - base['validation']:+.4g}"
        )  # fmt: skip
        out.append(
            f"<tr class='{css}'><td>{row['loop']}</td><td>{e(row['hypothesis'])}</td><td>{e(decision)}"
            f"</td><td>{shown}</td><td>{against}</td><td>{_fmt(row['test'])}</td><td>{e(leaked)}</td>"
            f"<td>{e(seconds)}</td></tr>"
        )
    out.append("</table>")
    plot = score_plot(summary)
    if plot:
        out.append(f"<h2>Score per loop</h2><img id='score-plot' alt='score per loop' src='{plot}'>")
    timeline = timeline_svg(summary.get("loops", []), state, now)
    if timeline:
        out.append(f"<h2>Stage durations</h2>{timeline}")
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
            out.append(f"<h3>Training loss</h3><img id='loss-{row['loop']}' alt='training loss' src='{loss}'>")
        reward = reward_plot(loop_dir / "workspace" / "output" / "metrics.jsonl")
        if reward:
            out.append(f"<h3>Reward (GRPO)</h3><img id='reward-{row['loop']}' alt='mean reward' src='{reward}'>")
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


# --- the live report: what the run is doing now ------------------------------------------------
def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _utc(stamp: float) -> str:
    return datetime.datetime.fromtimestamp(stamp, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def session_holder(log_dir: Path) -> int | None:
    """The process id of the session that holds the run folder now (`rdft.loop.run.owned`), or
    None. Its lock is the operating system's, so a session killed with -9 holds none. The lock is
    only tried where an owner is recorded: a run that ended cleanly removed it."""
    layout = RunLayout(log_dir)
    try:
        owner = int(layout.owner.read_text().strip())
    except (OSError, ValueError):
        return None
    lock = FileLock(str(layout.lock))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return owner
    except OSError:  # a read-only copy of a run: nobody works on it here
        return None
    lock.release()
    return None


def live_state(log_dir: Path) -> dict:
    """live.json as the run last wrote it, with `active`: whether a session works on the run now.

    Not active when the record says the session ended (finished, stopped by --step-n or its
    budget, an error, Ctrl-C), or when no live process holds the run folder's lock: a session
    killed with -9 recorded nothing, and its lock went with it (`gone`). A session on another
    host (a Slurm job on shared storage, whose lock may not be visible here) counts as active
    while its heartbeat is recent."""
    record = read_json(log_dir / LIVE) or {}
    if record.get("ended") is not None:
        return {**record, "active": False}
    if record.get("pid") == os.getpid() and record.get("host") == HOST:
        return {**record, "active": True}  # this process is the run
    holder = session_holder(log_dir)
    if holder is not None and holder != record.get("pid"):  # a new session, before its first mark
        since = RunLayout(log_dir).owner.stat().st_mtime
        return {"pid": holder, "stage": "starting", "since": since, "session_started": since, "active": True}
    if holder is not None:
        return {**record, "active": True}
    recent = time.time() - float(record.get("updated") or 0) < 3 * HEARTBEAT_S
    if record and record.get("host") != HOST and recent:
        return {**record, "active": True}
    return {**record, "active": False, "gone": bool(record)}


def _stage_elapsed(state: dict, now: float) -> float:
    return float(state.get("carried") or 0) + max(0.0, now - float(state.get("since") or now))


def _running_step(layout: RunLayout, loop: int) -> str:
    """Which part of the running stage is under way, from the records its steps wrote."""
    if not layout.running(loop, "data").is_file():
        return "the data script and the leakage guard"
    if layout.running(loop, "train").is_file():
        return "scoring"
    metrics = layout.loop(loop) / "workspace" / "output" / "metrics.jsonl"
    try:
        with open(metrics, "rb") as handle:
            handle.seek(max(0, metrics.stat().st_size - 4096))
            last = json.loads(handle.read().decode(errors="replace").strip().splitlines()[-1])
        return f"training, step {last['step']}/{last.get('total_steps') or '?'}"
    except (OSError, ValueError, IndexError, KeyError, TypeError):
        return "training"


def _budget(log_dir: Path, run: dict, state: dict, now: float) -> str:
    """What is left of the --timeout budget: run.json's time spent, as of its last write, plus
    the session's time after it (up to now while it is active; to its end or its last sign of
    life otherwise: a session's last report is written before its time is)."""
    spent = float(run.get("spent_s") or 0)
    until = now if state.get("active") else state.get("ended") or state.get("updated")
    try:  # from the session's start at the earliest: the time between two sessions is no work
        recorded = max((log_dir / "run.json").stat().st_mtime, float(state.get("session_started") or 0))
        spent += max(0.0, float(until) - recorded) if until else 0.0
    except OSError:
        pass
    if run.get("timeout_s") is None:
        return f"no --timeout budget ({_duration(spent)} spent)"
    left = run["timeout_s"] - (spent - float(run.get("budget_from_s") or 0))
    return f"budget left {_duration(left)} of {_duration(run['timeout_s'])}"


def live_html(log_dir: Path, run: dict, state: dict, now: float) -> str:
    """The line on what the run is doing now; while it is active, a script that reloads the page
    every RELOAD_S, until the page has not changed for STALE_S (its run was killed)."""
    e = html.escape
    loop, stage = state.get("loop"), state.get("stage")
    where = f"loop {loop} of {run['loop_n']}" if loop is not None else ""
    if stage == "starting":
        doing = "starting: the envs, the scenario and the base model's scores"
    elif stage in STAGES:
        doing = f"{where} · {STAGE_NAMES[stage]}"
        if stage == "running" and loop is not None:
            doing += f" ({_running_step(RunLayout(log_dir), loop)})"
        doing += f" for {_duration(_stage_elapsed(state, now))} (since {_utc(float(state['since']))})"
    elif state.get("after"):
        doing = f"{where} · {STAGE_NAMES.get(state['after'], state['after'])} done, the next step starting"
    else:
        doing = where or "nothing recorded yet"
    resume = f"rdft run --resume {log_dir}"
    if state.get("active"):
        process = f"process {state.get('pid')}" + (f" on {state['host']}" if state.get("host") else "")
        script = RELOAD_SCRIPT % {"written": int(now * 1000), "reload": RELOAD_S * 1000, "stale": STALE_S * 1000,
                                  "skew": CLOCK_SKEW_S * 1000, "minutes": STALE_S // 60}  # fmt: skip
        return (
            f"<p id='live' class='active' data-stage='{e(str(stage))}' data-loop='{e(str(loop))}'><b>Running now</b> "
            f"({e(process)}): {e(doing)}; {e(_budget(log_dir, run, state, now))}. Written {_utc(now)}; "
            f"<span id='live-note'>this page reloads every {RELOAD_S} s while the run goes on.</span></p>{script}"
        )
    if state.get("gone"):
        return (
            f"<p id='live' class='gone'><b>Not running:</b> its session (process {e(str(state.get('pid')))}) ended "
            f"without saying why (killed?) during {e(doing)}, last heard from at "
            f"{_utc(float(state.get('updated') or now))}; {e(_budget(log_dir, run, state, now))}. Resume with "
            f"<code>{e(resume)}</code>.</p>"
        )
    why = state.get("why")
    if why is None:
        return ""  # a run from before live.json: nothing to say
    if why == "finished":
        return f"<p id='live' class='done'><b>Finished</b> at {_utc(float(state['ended']))}.</p>"
    hint = " --timeout DURATION" if "budget" in why else ""
    return (
        f"<p id='live' class='stopped'><b>Not running:</b> {e(why)} (at {_utc(float(state['ended']))}, "
        f"{e(doing)}); {e(_budget(log_dir, run, state, now))}. Resume with <code>{e(resume + hint)}</code>.</p>"
    )


# The page's clock is the browser's, which may differ from the run host's: a page counts as stale
# when it has not changed for STALE_S since this tab first saw it, or is older than STALE_S plus
# CLOCK_SKEW_S by its own date (a page of a long-dead run opened anew).
RELOAD_SCRIPT = """<script>
(function () {
  var written = %(written)d, now = Date.now(), first = now, note = document.getElementById("live-note");
  try {
    var key = "rdft-report " + location.pathname, seen = JSON.parse(sessionStorage.getItem(key) || "null");
    if (seen && seen.written === written) { first = seen.first; }
    else { sessionStorage.setItem(key, JSON.stringify({written: written, first: now})); }
  } catch (error) {}
  if (now - first > %(stale)d || now - written > %(stale)d + %(skew)d) {
    note.dataset.reloading = "no";
    note.textContent = "this page stopped reloading: it has not changed for over %(minutes)d minutes, so its run " +
      "may have been killed (`rdft report` rewrites it).";
  } else {
    note.dataset.reloading = "yes";
    setTimeout(function () { location.reload(); }, %(reload)d);
  }
})();
</script>"""


def timeline_svg(rows: list[dict], state: dict, now: float) -> str | None:
    """Each loop's stage durations as one bar (inline SVG, no script); the stage under way, as
    far as it got, hatched."""
    bars = []
    for row in rows:
        seconds = dict(row.get("seconds") or {})
        active = state.get("stage") if state.get("active") and state.get("loop") == row["loop"] else None
        if active in STAGES:
            seconds[active] = _stage_elapsed(state, now)
        parts = [(name, float(seconds[name]), name == active) for name in STAGES if name in seconds]
        if parts:
            bars.append((row["loop"], parts))
    if not bars:
        return None
    longest = max(sum(s for _, s, _ in parts) for _, parts in bars) or 1.0
    left, width, height, top = 70, 640, 22, 28
    scale = width / longest
    out = [
        f"<svg id='timeline' xmlns='http://www.w3.org/2000/svg' width='{left + width + 90}' "
        f"height='{top + len(bars) * (height + 6) + 4}' role='img' aria-label='stage durations per loop'>",
        "<defs><pattern id='under-way' width='6' height='6' patternUnits='userSpaceOnUse' "
        "patternTransform='rotate(45)'><rect width='3' height='6' fill='#bbb'/></pattern></defs>",
    ]
    x = left
    for name in STAGES:
        out.append(f"<rect x='{x}' y='4' width='12' height='12' fill='{STAGE_COLORS[name]}'/>"
                   f"<text x='{x + 16}' y='14'>{STAGE_NAMES[name]}</text>")  # fmt: skip
        x += 110
    out.append(f"<rect x='{x}' y='4' width='12' height='12' fill='url(#under-way)'/>"
               f"<text x='{x + 16}' y='14'>under way</text>")  # fmt: skip
    for index, (loop, parts) in enumerate(bars):
        y = top + index * (height + 6)
        out.append(f"<text x='0' y='{y + 15}'>loop {loop}</text>")
        x = float(left)
        for name, seconds, under_way in parts:
            w = max(1.0, seconds * scale)
            label = f"{STAGE_NAMES[name]}: {_duration(seconds)}" + (" so far" if under_way else "")
            fill = "url(#under-way)" if under_way else STAGE_COLORS[name]
            edge = f" stroke='{STAGE_COLORS[name]}' stroke-width='2'" if under_way else ""
            out.append(
                f"<rect class='stage' data-stage='{name}' x='{x:.1f}' y='{y}' width='{w:.1f}' height='{height}' "
                f"fill='{fill}'{edge}><title>{html.escape(label)}</title></rect>"
            )
            x += w
        total = sum(s for _, s, _ in parts)
        out.append(f"<text x='{x + 6:.1f}' y='{y + 15}'>{_duration(total)}</text>")
    out.append("</svg>")
    return "".join(out)


class LiveReport:
    """A session's live state: `live.json` (its process, the stage under way and since when, the
    time of its last write) and report.html, rewritten at every stage's start and end and every
    HEARTBEAT_S between (the heartbeat keeps an open page reloading, and draws a training's loss
    as far as it got). A failure to write either never stops the run: the report is told once."""

    def __init__(self, log_dir: Path, console=None):
        self.log_dir, self.console = log_dir, console  # a rich Console: where the one warning goes
        now = time.time()
        self.record: dict = {"pid": os.getpid(), "host": HOST, "session_started": now, "loop": None,
                             "stage": "starting", "since": now, "carried": 0.0, "ended": None}  # fmt: skip
        self._lock, self._stop = threading.Lock(), threading.Event()
        self._thread: threading.Thread | None = None
        self._warned = False

    def start(self) -> None:
        """The session begins: marked, and the heartbeat started."""
        self.write()
        self._thread = threading.Thread(target=self._beat, name="rdft-live-report", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            self.write()

    def stage(self, loop: int, name: str, since: float, carried: float = 0.0) -> None:
        """A stage starts (`carried`: the seconds earlier sessions spent on it)."""
        self.record.update(loop=loop, stage=name, since=since, carried=carried, after=None)
        self.write()

    def stage_done(self, loop: int, name: str) -> None:
        self.record.update(loop=loop, stage=None, after=name, since=time.time(), carried=0.0)
        self.write()

    def end(self, stopped: str | None, error: BaseException | None) -> None:
        """The session ends: why, recorded before the run's last report (which then says so)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if isinstance(error, KeyboardInterrupt):
            why = "interrupted (Ctrl-C or a signal)"
        elif error is not None:
            why = f"stopped by an error: {(str(error).strip().splitlines() or [type(error).__name__])[0]}"
        else:
            why = stopped or "finished"
        self.record.update(ended=time.time(), why=why)
        self.write(report=False)

    def write(self, report: bool = True) -> None:
        with self._lock:  # the heartbeat and the stages write in turn, never an older page over a newer one
            self.record["updated"] = time.time()
            try:
                write_atomic(self.log_dir / LIVE, json.dumps(self.record, indent=1))
                if report:
                    write_report(self.log_dir)
            except Exception as error:  # a report must never stop a run
                if not self._warned and self.console is not None:
                    why = f"{type(error).__name__}: {error}"
                    self.console.print(f"rdft: warning: the live report was not written ({why})", markup=False)
                self._warned = True


# --- rdft report --serve -------------------------------------------------------------------------
def bind_address(bind: str, port: int, allow_remote: bool) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The address to serve on: loopback, unless --allow-remote says otherwise."""
    try:
        address = ipaddress.ip_address("127.0.0.1" if bind == "localhost" else bind)
    except ValueError:
        raise RdftError(f"--bind {bind!r} is not an IP address; give 127.0.0.1 (the default) or ::1") from None
    if not address.is_loopback and not allow_remote:
        raise RdftError(
            f"--bind {bind} would serve the whole run folder (logs, data, weights) to anyone who can reach this "
            f"host, with no password; keep 127.0.0.1 and forward the port (ssh -N -L {port}:127.0.0.1:{port} "
            f"{socket.gethostname()}), or add --allow-remote"
        )
    return address


def serve(log_dir: Path, *, port: int, bind: str, allow_remote: bool, echo: Callable[[str], None]) -> None:
    """Serve the run folder over HTTP, read-only (GET and HEAD), until Ctrl-C; report.html is
    written first, so that it says whether the run is going on now."""
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    address = bind_address(bind, port, allow_remote)
    log_dir = log_dir.expanduser().resolve()
    page = write_report(log_dir)

    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self):
            if self.path in ("", "/"):  # the folder's own listing stays one click away
                self.send_response(302)
                self.send_header("Location", "/" + page.name)
                self.end_headers()
                return
            super().do_GET()

        def end_headers(self):
            self.send_header("Cache-Control", "no-cache")  # a reload shows the report the run wrote last
            super().end_headers()

        def log_message(self, format, *args):  # quiet: the URL was printed once
            pass

    class Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        daemon_threads = True

    try:
        server = Server((str(address), port), functools.partial(Handler, directory=str(log_dir)))
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise RdftError(f"port {port} is in use on {address}; give another --port (0: any free one)") from None
        if error.errno == errno.EACCES:
            raise RdftError(f"port {port} needs root here; give a --port above 1023") from None
        raise RdftError(f"cannot serve on {address} port {port} ({error.strerror}); give another --bind") from None
    host = f"[{address}]" if address.version == 6 else str(address)
    actual = server.server_address[1]
    echo(f"serving {log_dir} read-only at http://{host}:{actual}/{page.name} (Ctrl-C stops)")
    if address.is_loopback:
        echo(
            f"from another machine: ssh -N -L {actual}:127.0.0.1:{actual} {socket.gethostname()}, then open "
            f"http://127.0.0.1:{actual}/{page.name}"
        )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        echo("stopped serving")
    finally:
        server.server_close()


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
