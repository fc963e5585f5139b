"""Stage `direct_exp_gen`: one experiment — a hypothesis, a data recipe and a training recipe —
from the LLM, or from the offline planner when no LLM is configured."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from rdft.llm import ChatLLM
from rdft.loop.scenario import Scenario
from rdft.loop.trace import Node, Trace


class Params(BaseModel):
    """The offline planner's machine-readable recipe (an LLM may fill it too)."""

    method: Literal["lora", "qlora", "full"] = "lora"
    learning_rate: float = Field(gt=0)
    epochs: int = Field(ge=1)
    max_samples: int = Field(ge=1)
    lora_r: int = Field(16, ge=1)

    def key(self) -> tuple:
        return (self.method, round(self.learning_rate, 10), self.epochs, self.max_samples, self.lora_r)


class Proposal(BaseModel):
    hypothesis: str = Field(description="One testable sentence: what change should raise the score, and why")
    reason: str = Field(description="Why, from the scenario, the parent and the siblings' outcomes")
    data_recipe: str = Field(description="How to build the training data: sources, sampling, CoT, checks, filters")
    training_recipe: str = Field(description="Method (full/lora/qlora), learning rate, epochs, lengths, batch")
    datasets: list[str] = Field(description="Names of the scenario's datasets the data script reads")
    params: Params | None = None


SYSTEM = """You are an expert in fine-tuning LLMs. You run experiments to raise the base model's score on
the target benchmark. Each experiment is single-stage supervised fine-tuning: a data script builds
the training set, then the model is trained and scored on a validation split.

Guidance:
- Data: sample by code (diversity, difficulty), one strong-model call per sample to write
  chain-of-thought when the data has none, check answers in code (math equivalence, RDKit, JSON
  fields), drop over-length samples, and never exceed the sample limit. Every sample ends with the
  answer in the benchmark's format.
- Never build data aimed at specific evaluation questions; describe patterns only.
- Training: pick the method the memory table allows; weigh epochs against data size; learn from
  the siblings' outcomes.

{scenario}"""


def history(trace: Trace, parent: Node | None) -> str:
    lines = [f"Base model validation score: {trace.baseline_validation}"]
    if parent is not None:
        lines.append(f"Parent (loop {parent.loop}, the best so far, score {parent.validation}): {parent.hypothesis}")
    for sibling in trace.children(parent.loop if parent else None):
        outcome = (
            f"failed ({sibling.error_type}: {(sibling.error or '')[:200]})"
            if sibling.status == "failed"
            else f"score {sibling.validation}, {'accepted' if sibling.accepted else 'rejected'}"
        )
        lines.append(f"- tried (loop {sibling.loop}): {sibling.hypothesis} -> {outcome}")
    return "\n".join(lines)


def propose_with_llm(
    llm: ChatLLM, scenario: Scenario, trace: Trace, parent: Node | None, parent_files: dict[str, str]
) -> Proposal:
    files = "\n\n".join(f"--- {name} ---\n{text}" for name, text in parent_files.items())
    messages = [
        {"role": "system", "content": SYSTEM.format(scenario=scenario.text())},
        {
            "role": "user",
            "content": (
                f"{history(trace, parent)}\n\nThe parent's files:\n{files or '(none: start from scratch)'}\n\n"
                "Propose the next experiment."
            ),
        },
    ]
    return llm.structured(messages, Proposal, purpose="proposal")


# --- the offline planner ---------------------------------------------------------------------
def default_params(scenario: Scenario) -> Params:
    small = (scenario.base_model.parameters or 0) < 50_000_000  # the tiny test models learn fast
    limit = scenario.upper_data_size_limit
    return Params(learning_rate=3e-3 if small else 1e-4, epochs=2 if small else 1, max_samples=min(512, limit))


def neighbours(params: Params, limit: int) -> list[Params]:
    """One change at a time, in the order that most often pays: more epochs, more data, a larger
    then a smaller learning rate, a larger LoRA rank."""
    options = [
        {"epochs": params.epochs + 1},
        {"max_samples": min(limit, params.max_samples * 2)},
        {"learning_rate": params.learning_rate * 3},
        {"learning_rate": params.learning_rate / 3},
        {"lora_r": params.lora_r * 2},
    ]
    return [params.model_copy(update=change) for change in options]


def propose_offline(
    scenario: Scenario, trace: Trace, parent: Node | None, parent_params: Params | None, tried: list[Params]
) -> Proposal:
    """A small local search over the recipe: the default first, then the untried neighbour of the
    parent's recipe that comes first in `neighbours`."""
    seen = {p.key() for p in tried}
    start = parent_params or default_params(scenario)
    candidates = [start] if start.key() not in seen else []
    candidates += [p for p in neighbours(start, scenario.upper_data_size_limit) if p.key() not in seen]
    if not candidates:  # the neighbourhood is exhausted: widen from the default
        candidates = [
            p for p in neighbours(default_params(scenario), scenario.upper_data_size_limit * 4) if p.key() not in seen
        ] or [start.model_copy(update={"epochs": start.epochs + len(tried)})]
    chosen = candidates[0]
    change = "the default recipe" if parent_params is None and not tried else _describe_change(start, chosen)
    datasets = [d.name for d in scenario.datasets]
    return Proposal(
        hypothesis=f"SFT with {change} raises {scenario.primary_metric} on {scenario.benchmark}",
        reason="offline planner: local search over method, learning rate, epochs and data size around the best "
        "recipe so far" + (f" (loop {parent.loop}, score {parent.validation})" if parent else ""),
        data_recipe=f"{chosen.max_samples} samples from {', '.join(datasets)}, shuffled with a fixed seed, in the "
        "benchmark's prompt format, answers from the data (no LLM), over-length samples dropped",
        training_recipe=f"{chosen.method} (r={chosen.lora_r}), learning rate {chosen.learning_rate:g}, "
        f"{chosen.epochs} epoch(s)",
        datasets=datasets,
        params=chosen,
    )


def _describe_change(before: Params, after: Params) -> str:
    a, b = before.model_dump(), after.model_dump()
    return (
        ", ".join(
            f"{field} {a[field]:g} -> {b[field]:g}"
            if isinstance(a[field], float)
            else f"{field} {a[field]} -> {b[field]}"
            for field in a
            if a[field] != b[field]
        )
        or "the parent's recipe"
    )
