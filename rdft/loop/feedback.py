"""Stage `feedback`: compare with the confirmed best numerically (paired bootstrap over the
validation items' means), show up to 10 wrong validation samples, explain, decide.

A loop is *confirmed* when its primary metric is higher than the confirmed best's (or the base
model's) with p(not better) below RDFT_SIGNIFICANCE. Whether it is also the best by mean — what
the search builds on next — follows from the numbers in the trace. Failures
(coder exhaustion, OOM, timeouts, evaluation crashes, LLM outages) are feedback too: recorded
with their type, never fatal to the run. Rows the leakage guard dropped are named, and a model
whose answers are degenerate (one answer for nearly every item, mostly unreadable, or empty) is
flagged: it is never called an improvement without saying so."""

from __future__ import annotations

import json
import random
from pathlib import Path

from pydantic import BaseModel, Field

from rdft.errors import RdftError
from rdft.evaluation.benchmarks import Benchmark, get_benchmark
from rdft.evaluation.run import regression_split
from rdft.evaluation.score import compare_runs
from rdft.files import write_atomic
from rdft.knowledge import remember_recipe, remembered
from rdft.llm import ChatLLM
from rdft.loop.coding import CODE_FILES
from rdft.loop.layout import RunLayout
from rdft.loop.proposal import Proposal
from rdft.loop.scenario import Scenario
from rdft.loop.trace import Node, Trace
from rdft.settings import Settings

QUESTION_KEYS = ("problem", "Problem", "question", "query", "claim")
GOLD_KEYS = ("answer", "Answer", "gold_answers", "gt", "gold")
MAX_WRONG = 10


class Explanation(BaseModel):
    explanation: str = Field(description="3-5 sentences: what the outcome says about the hypothesis")
    next_steps: str = Field(description="What to try next; describe error patterns, never specific questions")


class Feedback(BaseModel):
    decision: bool  # confirmed: significantly better than the confirmed best (or the base model)
    status: str  # done | failed
    error_type: str | None = None
    error: str | None = None
    comparison: dict | None = None
    wrong_samples: list[dict] = []
    explanation: str
    next_steps: str = ""
    flags: list[str] = []  # degenerate answers (evaluation/score.py's diagnostics)
    leakage: dict[str, int] = {}  # rows the guard dropped, by reason
    # The forgetting check: benchmark → {score, base, delta, ci95}, in the metric's units (0-1)
    regression: dict[str, dict] = {}
    forgetting: list[str] = []  # the benchmarks it lost more than FT_REGRESSION_TOLERANCE points on

    @property
    def verdict(self) -> str:
        if self.status == "failed":
            return "failed"
        word = "confirmed" if self.decision else "not confirmed"
        if self.forgetting:
            word += f" (forgetting beyond the tolerance on {', '.join(self.forgetting)})"
        return f"{word} (degenerate: {'; '.join(self.flags)})" if self.flags else word

    def markdown(self, loop: int, proposal: Proposal | None) -> str:
        lines = [f"# Loop {loop} feedback", "", f"**Decision:** {self.verdict}"]
        if proposal is not None:
            lines += ["", f"**Hypothesis:** {proposal.hypothesis}"]
        if self.error_type:
            lines += ["", f"**Failed ({self.error_type}):**", "```", (self.error or "")[-1500:], "```"]
        if self.comparison:
            c = self.comparison
            lines += [
                "",
                f"Validation {c['metric']}: {c['candidate']} vs the confirmed best {c['base']} "
                f"(difference {c['difference']}, 95% CI {c['ci95']}, p(not better) {c['p_not_better']})",
            ]
        if self.regression:
            lines += ["", f"**Forgetting check** (against the base model): {forgetting_text(self.regression)}"]
        lines += ["", self.explanation]
        if self.next_steps:
            lines += ["", f"**Next:** {self.next_steps}"]
        return "\n".join(lines) + "\n"


def points(value: float) -> str:
    return f"{value * 100:+.1f}"


def forgetting_text(regression: dict[str, dict]) -> str:
    """'mmlu -4.0 points (95% CI [-7.0, -1.0]; 0.52 vs 0.56)' per benchmark: the paired
    difference with the base model on the same slice, in points of the metric."""
    parts = []
    for name, r in regression.items():
        if r.get("delta") is None:
            parts.append(f"{name}: no score")
            continue
        ci = f"95% CI [{points(r['ci95'][0])}, {points(r['ci95'][1])}]; " if r.get("ci95") else ""
        parts.append(f"{name} {points(r['delta'])} points ({ci}{r['score']:.3g} vs {r['base']:.3g})")
    return "; ".join(parts)


def base_slices(layout: RunLayout, names: list[str]) -> dict[str, Path]:
    """The base model's per-item scores on each forgetting-check slice (benchmark → items)."""
    records = {name: layout.baseline / f"{regression_split(name)}.json" for name in names}
    return {name: Path(json.loads(path.read_text())["items"]) for name, path in records.items()}


def regression_of(settings: Settings, outcome: dict, base: dict[str, Path]) -> dict[str, dict]:
    """Each forgetting-check slice of the candidate against the base model's on the same items
    (evaluation/compare.py's paired bootstrap): {score, base, delta, ci95}."""
    out = {}
    for name, base_items in base.items():
        record = outcome.get(regression_split(name))
        if record is None:
            continue
        c = compare_runs(settings, name, base_items, Path(record["items"]))
        out[name] = {"score": c["candidate"], "base": c["base"], "delta": c["difference"], "ci95": c["ci95"]}
    return out


def wrong_samples(eval_dir: Path, benchmark: Benchmark, limit: int = MAX_WRONG, seed: int = 0) -> list[dict]:
    """Up to `limit` validation items the model got wrong (without full marks by the family's own
    rule, which score.py writes into each item): question, gold, response (truncated). The
    question and the gold are the benchmark's own fields (a user benchmark's prompt and answer
    fields), else the usual names."""
    docs_files = sorted(eval_dir.glob("docs.*.jsonl"))
    if not docs_files or not (eval_dir / "items.jsonl").exists():
        return []
    docs = [json.loads(line) for line in docs_files[0].read_text().splitlines() if line.strip()]
    items = [json.loads(line) for line in (eval_dir / "items.jsonl").read_text().splitlines() if line.strip()]
    responses: dict[int, str] = {}
    for line in (eval_dir / "predictions.jsonl").read_text().splitlines():
        row = json.loads(line)
        responses.setdefault(int(row["doc_id"]), row["response"])
    if benchmark.custom:
        question_keys, gold_keys = benchmark.custom["fields"][:-1], benchmark.custom["fields"][-1:]
    else:
        gold_keys = [name for field in benchmark.scored_fields for name in field.split("|")]
        question_keys = [name for field in benchmark.fields for name in field.split("|") if name not in gold_keys]
    wrong = [i for i, item in enumerate(items) if item.get("full_marks") is False]
    random.Random(seed).shuffle(wrong)
    out = []
    for index in sorted(wrong[:limit]):
        doc = docs[index]
        question = "\n".join(str(doc[k]) for k in question_keys if doc.get(k) not in (None, "")) or next(
            (doc[k] for k in QUESTION_KEYS if doc.get(k)), json.dumps(doc)[:1000]
        )
        gold = next((doc[k] for k in [*gold_keys, *GOLD_KEYS] if doc.get(k) not in (None, "")), None)
        out.append({"question": str(question)[:1000], "gold": gold, "response": responses.get(index, "")[:500]})
    return out


def assess(
    settings: Settings,
    scenario: Scenario,
    outcome: dict | None,
    failure: tuple[str, str] | None,
    reference_items: Path,
    regression_base: dict[str, Path] | None = None,
) -> Feedback:
    """The numbers of the feedback (no explanation yet): the failure, or the comparison with
    the confirmed best's validation items, the wrong samples, the flags and the leakage; the
    forgetting check against the base model's slices (`regression_base`: benchmark → its items),
    whose loss beyond FT_REGRESSION_TOLERANCE points keeps a loop from being confirmed."""
    regression_base = regression_base or {}
    if failure is not None:
        kind, message = failure
        return Feedback(decision=False, status="failed", error_type=kind, error=message[-4000:], explanation="")
    validation = outcome["validation"]
    try:
        comparison = compare_runs(settings, scenario.benchmark, reference_items, Path(validation["items"]))
    except RdftError as error:  # an evaluation crash is this loop's feedback, not the run's end
        return Feedback(
            decision=False,
            status="failed",
            error_type="eval",
            error=str(error),
            explanation=f"The comparison failed: {error}",
        )
    confirmed = (comparison["difference"] or 0) > 0 and comparison["p_not_better"] < settings.rdft_significance
    try:
        regression = regression_of(settings, outcome, regression_base)
    except RdftError as error:
        return Feedback(decision=False, status="failed", error_type="eval", error=str(error),
                        explanation=f"The forgetting check's comparison failed: {error}")  # fmt: skip
    tolerance = scenario.regression_tolerance
    forgetting = [
        name
        for name, r in regression.items()
        if tolerance is not None and r["delta"] is not None and -r["delta"] * 100 > tolerance
    ]
    return Feedback(
        decision=confirmed and not forgetting,
        regression=regression,
        forgetting=forgetting,
        status="done",
        comparison=comparison,
        wrong_samples=wrong_samples(Path(validation["dir"]), get_benchmark(scenario.benchmark)),
        explanation="",
        flags=(validation.get("diagnostics") or {}).get("flags", []),
        leakage=outcome["data"].get("leakage") or {},
    )


def facts(scenario: Scenario, result: Feedback, outcome: dict | None, reference: str, best: str) -> str:
    """What the reviewer reads: the numbers, the leakage, the flags, the wrong samples.
    `reference`: what the loop was compared with (the confirmed best); `best`: the best by mean."""
    if result.error_type and not outcome:
        return f"The experiment failed at {result.error_type}:\n{(result.error or '')[-3000:]}"
    if result.error_type:
        return f"The comparison with {reference} failed: {result.error}"
    validation, data, train = outcome["validation"], outcome["data"], outcome["train"]
    comparison = result.comparison
    text = (
        f"Validation {scenario.primary_metric}: {validation['value']} (95% CI {validation['ci95']}; "
        f"{validation.get('samples', 1)} sample(s) per item) against {reference} {comparison['base']}; paired "
        f"bootstrap difference {comparison['difference']}, p(not better) {comparison['p_not_better']}. The best by "
        f"mean so far: {best}. Training loss {train.get('first_loss')} -> {train.get('final_loss')} over "
        f"{train.get('steps')} steps; {data['samples']} training samples."
    )
    too_long = (train.get("data") or {}).get("dropped_too_long")
    if too_long:
        text += f" Training dropped {too_long} samples longer than data.max_length."
    leakage = result.leakage
    if sum(leakage.values()):
        reasons = ", ".join(f"{reason} {n}" for reason, n in leakage.items() if n)
        text += (
            f" The leakage guard dropped {sum(leakage.values())} of {data['written']} rows the data script wrote "
            f"({reasons}; {data.get('evaluation_items_hit', '?')} evaluation item(s) copied): the data must not "
            "contain evaluation items, and the score is on the cleaned data."
        )
    if result.regression:
        text += f" Forgetting check against the base model: {forgetting_text(result.regression)}."
    if result.forgetting:
        text += (
            f" It lost more than the tolerance ({scenario.regression_tolerance:g} points) on "
            f"{', '.join(result.forgetting)}: not confirmed, whatever the target gain."
        )
    if result.flags:
        text += f" Degenerate answers: {'; '.join(result.flags)} — the score does not show that the task was learned."
    verdict = "significantly better: confirmed" if result.decision else "not significantly better: not confirmed"
    if result.forgetting:
        verdict = "not confirmed because of the forgetting check"
    if result.decision and result.flags:
        verdict += ", flagged as degenerate"
    wrong = "\n".join(
        f"- Q: {w['question'][:300]} | gold: {w['gold']} | model: {w['response'][:200]}" for w in result.wrong_samples
    )
    return f"{text} Decision: {verdict}.\nWrong validation samples:\n{wrong}"


def feedback_messages(scenario: Scenario, proposal: Proposal | None, text: str) -> list[dict]:
    hypothesis = proposal.hypothesis if proposal else "(no proposal: the proposal step failed)"
    return [
        {"role": "system", "content": FEEDBACK_SYSTEM.format(scenario=scenario.text())},
        {"role": "user", "content": f"Hypothesis: {hypothesis}\n\n{text}"},
    ]


def judge(
    settings: Settings,
    scenario: Scenario,
    proposal: Proposal | None,
    outcome: dict | None,
    failure: tuple[str, str] | None,
    reference_items: Path,
    *,
    llm: ChatLLM | None,
    regression_base: dict[str, Path] | None = None,
    reference: str,
    best: str,
) -> Feedback:
    result = assess(settings, scenario, outcome, failure, reference_items, regression_base)
    text = facts(scenario, result, outcome, reference, best)
    if llm is None:
        if result.status == "failed" and outcome is None:
            text = f"The experiment failed at the {result.error_type} step; the run goes on without it."
        return result.model_copy(update={"explanation": result.explanation or text})
    try:
        explained = llm.structured(feedback_messages(scenario, proposal, text), Explanation, purpose="feedback")
    except RdftError as error:  # the explanation is optional; the numbers decide
        return result.model_copy(update={"explanation": f"{text} (no LLM explanation: {error})"})
    return result.model_copy(update={"explanation": explained.explanation, "next_steps": explained.next_steps})


FEEDBACK_SYSTEM = """You review one fine-tuning experiment. Explain the outcome in 3-5 sentences and say what to
try next. Describe error patterns; never name or target specific evaluation questions, and never
suggest building data aimed at them.

{scenario}"""


def reference(layout: RunLayout, trace: Trace, loop: int) -> tuple[Path, str, str]:
    """(the confirmed best's validation items, its label, the best by mean's label) among the
    loops before `loop`: what it is compared with for confirmation, and measured against."""
    confirmed = trace.confirmed_best(before=loop)
    if confirmed is None:
        record, label = layout.score(None, "validation"), "the base model (the confirmed best)"
    else:
        record, label = layout.score(confirmed.loop, "validation"), f"loop {confirmed.loop} (the confirmed best)"
    if record is None or record.items is None:
        raise RdftError(f"{label} has no readable validation record in {layout.root}; the log is damaged")
    best = trace.best(before=loop)
    by_mean = f"loop {best.loop} ({best.validation})" if best else f"the base model ({trace.baseline_validation})"
    return Path(record.items), label, by_mean


def remember(settings: Settings, layout: RunLayout, scenario: Scenario, node: Node, base: float | None) -> None:
    """An experiment that beat the base model teaches the knowledge store its recipe (once: a
    resumed loop does not add it again; degenerate answers teach nothing worth repeating; a gain
    measured on --eval-limit items or under --max-gen-toks is no gain to rank recipes by)."""
    marker = layout.stage(node.loop, "feedback") / "remembered"
    if node.status != "done" or node.validation is None or base is None or node.validation <= base:
        return
    if scenario.scoring.limit or scenario.scoring.max_gen_toks:  # non-standard scores rank no recipe
        return
    if marker.exists() or node.flags:
        return
    workspace = layout.workspace(node.loop)
    files = {name: (workspace / name).read_text() for name in CODE_FILES if (workspace / name).is_file()}
    source = f"{layout.root}#{layout.loop(node.loop).name}"
    if remembered(settings, source):  # a redone feedback (its marker went with it) adds nothing twice
        write_atomic(marker, "")
        return
    remember_recipe(
        settings,
        family=scenario.benchmark_family,
        benchmark=scenario.benchmark,
        base_model=scenario.base_model.name,
        gain=node.validation - base,
        validation=node.validation,
        files=files,
        hypothesis=node.hypothesis,
        source=source,
    )
    write_atomic(marker, "")
