"""Stage `feedback`: compare with the best so far numerically (paired bootstrap over the
validation items), show up to 10 wrong validation samples, explain, decide.

A new best needs a higher primary metric with p(not better) below RDFT_SIGNIFICANCE. Failures
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
from rdft.evaluation.score import compare_runs
from rdft.llm import ChatLLM
from rdft.loop.proposal import Proposal
from rdft.loop.scenario import Scenario
from rdft.settings import Settings

QUESTION_KEYS = ("problem", "Problem", "question", "query", "claim")
GOLD_KEYS = ("answer", "Answer", "gold_answers", "gt", "gold")
MAX_WRONG = 10


class Explanation(BaseModel):
    explanation: str = Field(description="3-5 sentences: what the outcome says about the hypothesis")
    next_steps: str = Field(description="What to try next; describe error patterns, never specific questions")


class Feedback(BaseModel):
    decision: bool  # the experiment becomes the best node
    status: str  # done | failed
    error_type: str | None = None
    error: str | None = None
    comparison: dict | None = None
    wrong_samples: list[dict] = []
    explanation: str
    next_steps: str = ""
    flags: list[str] = []  # degenerate answers (evaluation/score.py's diagnostics)
    leakage: dict[str, int] = {}  # rows the guard dropped, by reason

    @property
    def verdict(self) -> str:
        if self.status == "failed":
            return "failed"
        word = "new best" if self.decision else "rejected"
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
                f"Validation {c['metric']}: {c['candidate']} vs best {c['base']} "
                f"(difference {c['difference']}, 95% CI {c['ci95']}, p(not better) {c['p_not_better']})",
            ]
        lines += ["", self.explanation]
        if self.next_steps:
            lines += ["", f"**Next:** {self.next_steps}"]
        return "\n".join(lines) + "\n"


def wrong_samples(eval_dir: Path, metric: str, limit: int = MAX_WRONG, seed: int = 0) -> list[dict]:
    """Up to `limit` validation items the model got wrong: question, gold, response (truncated)."""
    docs_files = sorted(eval_dir.glob("docs.*.jsonl"))
    if not docs_files or not (eval_dir / "items.jsonl").exists():
        return []
    docs = [json.loads(line) for line in docs_files[0].read_text().splitlines() if line.strip()]
    items = [json.loads(line) for line in (eval_dir / "items.jsonl").read_text().splitlines() if line.strip()]
    responses: dict[int, str] = {}
    for line in (eval_dir / "predictions.jsonl").read_text().splitlines():
        row = json.loads(line)
        responses.setdefault(int(row["doc_id"]), row["response"])
    wrong = [i for i, item in enumerate(items) if isinstance(item.get(metric), (int, float)) and item[metric] < 1]
    random.Random(seed).shuffle(wrong)
    out = []
    for index in sorted(wrong[:limit]):
        doc = docs[index]
        question = next((doc[k] for k in QUESTION_KEYS if doc.get(k)), json.dumps(doc)[:1000])
        gold = next((doc[k] for k in GOLD_KEYS if doc.get(k) not in (None, "")), None)
        out.append({"question": str(question)[:1000], "gold": gold, "response": responses.get(index, "")[:500]})
    return out


def judge(
    settings: Settings,
    scenario: Scenario,
    proposal: Proposal | None,
    outcome: dict | None,
    failure: tuple[str, str] | None,
    best_items: Path,
    *,
    llm: ChatLLM | None,
    best_label: str,
) -> Feedback:
    if failure is not None:
        kind, message = failure
        explanation = _explain(
            llm,
            scenario,
            proposal,
            f"The experiment failed at {kind}:\n{message[-3000:]}",
            default=f"The experiment failed at the {kind} step; the run goes on without it.",
        )
        return Feedback(
            decision=False,
            status="failed",
            error_type=kind,
            error=message[-4000:],
            explanation=explanation.explanation,
            next_steps=explanation.next_steps,
        )
    validation = outcome["validation"]
    try:
        comparison = compare_runs(settings, scenario.benchmark, best_items, Path(validation["items"]))
    except RdftError as error:  # an evaluation crash is this loop's feedback, not the run's end
        return Feedback(decision=False, status="failed", error_type="eval", error=str(error),
                        explanation=f"The comparison with {best_label} failed: {error}")  # fmt: skip
    better = (comparison["difference"] or 0) > 0 and comparison["p_not_better"] < settings.rdft_significance
    wrong = wrong_samples(Path(validation["dir"]), scenario.primary_metric)
    data = outcome["data"]
    leakage = data.get("leakage") or {}
    flags = (validation.get("diagnostics") or {}).get("flags", [])
    summary = (
        f"Validation {scenario.primary_metric}: {validation['value']} (95% CI {validation['ci95']}) against "
        f"{best_label} {comparison['base']}; paired bootstrap difference {comparison['difference']}, "
        f"p(not better) {comparison['p_not_better']}. Training loss {outcome['train'].get('first_loss')} -> "
        f"{outcome['train'].get('final_loss')} over {outcome['train'].get('steps')} steps; "
        f"{data['samples']} training samples."
    )
    if sum(leakage.values()):
        reasons = ", ".join(f"{reason} {n}" for reason, n in leakage.items() if n)
        summary += (
            f" The leakage guard dropped {sum(leakage.values())} of {data['written']} rows the data script wrote "
            f"({reasons}; {data.get('evaluation_items_hit', '?')} evaluation item(s) copied): the data must not "
            "contain evaluation items, and the score is on the cleaned data."
        )
    if flags:
        summary += f" Degenerate answers: {'; '.join(flags)} — the score does not show that the task was learned."
    wrong_text = "\n".join(
        f"- Q: {w['question'][:300]} | gold: {w['gold']} | model: {w['response'][:200]}" for w in wrong
    )
    verdict = "a significant gain: it becomes the best" if better else "no significant gain: rejected"
    if better and flags:
        verdict += ", flagged as degenerate"
    explanation = _explain(
        llm,
        scenario,
        proposal,
        f"{summary}\nWrong validation samples:\n{wrong_text}",
        default=f"{summary} Decision: {verdict}.",
    )
    return Feedback(
        decision=better,
        status="done",
        comparison=comparison,
        wrong_samples=wrong,
        explanation=explanation.explanation,
        next_steps=explanation.next_steps,
        flags=flags,
        leakage=leakage,
    )


FEEDBACK_SYSTEM = """You review one fine-tuning experiment. Explain the outcome in 3-5 sentences and say what to
try next. Describe error patterns; never name or target specific evaluation questions, and never
suggest building data aimed at them.

{scenario}"""


def _explain(llm: ChatLLM | None, scenario: Scenario, proposal: Proposal | None, facts: str, default: str):
    if llm is None:
        return Explanation(explanation=default, next_steps="")
    hypothesis = proposal.hypothesis if proposal else "(no proposal: the proposal step failed)"
    messages = [
        {"role": "system", "content": FEEDBACK_SYSTEM.format(scenario=scenario.text())},
        {"role": "user", "content": f"Hypothesis: {hypothesis}\n\n{facts}"},
    ]
    try:
        return llm.structured(messages, Explanation, purpose="feedback")
    except RdftError as error:  # the explanation is optional; the numbers decide
        return Explanation(explanation=f"{default} (no LLM explanation: {error})", next_steps="")
