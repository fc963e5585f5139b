"""Stage `direct_exp_gen`: one experiment — a hypothesis, a data recipe and a training recipe —
from the LLM, or from the offline planner when no LLM is configured."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from rdft.llm import ChatLLM
from rdft.loop.scenario import Scenario
from rdft.loop.trace import Node
from rdft.training.config import RL_METHODS


class Params(BaseModel):
    """The offline planner's machine-readable recipe (an LLM may fill it too)."""

    method: Literal["lora", "qlora", "full", "grpo", "dpo"] = "lora"
    learning_rate: float = Field(gt=0)
    epochs: int = Field(ge=1)
    max_samples: int = Field(ge=1)
    lora_r: int = Field(16, ge=1)
    max_length: int | None = Field(None, ge=64, description="data.max_length; None: rdft's default for the host")
    datasets: list[str] = Field([], description="The data mix (registry names); empty: the proposal's datasets")
    start_from: int | None = Field(None, description="grpo, dpo: the loop whose trained weights it starts from")
    num_generations: int = Field(4, ge=2, description="grpo, dpo: answers sampled per prompt")

    def key(self) -> tuple:
        return (
            self.method,
            self.start_from,
            round(self.learning_rate, 10),
            self.epochs,
            self.max_samples,
            self.lora_r if self.method != "full" else None,
            self.max_length,
            tuple(sorted(self.datasets)),
        )


class Proposal(BaseModel):
    hypothesis: str = Field(description="One testable sentence: what change should raise the score, and why")
    reason: str = Field(description="Why, from the scenario, the parent and the siblings' outcomes")
    data_recipe: str = Field(description="How to build the training data: sources, sampling, CoT, checks, filters")
    training_recipe: str = Field(description="Method (full/lora/qlora), learning rate, epochs, lengths, batch")
    datasets: list[str] = Field(description="Names of the scenario's datasets the data script reads")
    params: Params | None = None


SYSTEM = """You are an expert in fine-tuning LLMs. You run experiments to raise the base model's score on
the target benchmark. An experiment is supervised fine-tuning of the base model (a data script builds
answers, the model is trained full, LoRA or QLoRA), or learning from an earlier experiment's own
answers, from its weights (params.start_from that loop; the data script writes the benchmark's
prompts, and the benchmark's own scorer scores the model's sampled answers): GRPO (params.method
"grpo", rewarded as it samples) or DPO (params.method "dpo": one sampling, then pairs of a right
and a wrong answer to one prompt). Both pay when that experiment is right on some items and wrong
on others. Each is scored on a validation split.

Guidance:
- Data: sample by code (diversity, difficulty), one strong-model call per sample to write
  chain-of-thought when the data has none, check answers in code (math equivalence, RDKit, JSON
  fields), drop over-length samples, and never exceed the sample limit. Every sample ends with the
  answer in the benchmark's format.
- Never build data aimed at specific evaluation questions; describe patterns only.
- Training: pick the method the memory table allows; weigh epochs against data size; learn from
  the siblings' outcomes.

{scenario}"""


def task_text(node: Node, parent: Node | None) -> str:
    """What this loop is asked to do, by its kind (AIDE search drafts, improves and debugs)."""
    if node.kind == "debug" and parent is not None:
        tail = (parent.error or "")[-1500:]
        return (
            f"Debug loop {parent.loop}: it FAILED at {parent.error_type} with the error below. Propose the same "
            f"experiment with what broke fixed; keep what it tried.\nThe end of loop {parent.loop}'s error:\n{tail}"
        )
    if parent is not None:
        return (
            f"Improve on loop {parent.loop}, your parent: the best so far by validation mean "
            f"({parent.validation})"
            + (", confirmed significant" if parent.confirmed else ", not confirmed yet")
            + ". Change one thing its outcome and its siblings' point to."
        )
    if node.kind == "draft":
        return "Draft a new experiment from the base model alone, unlike the approaches tried so far."
    return "No loop has beaten the base model yet: propose an experiment from the base model."


def proposal_messages(
    scenario: Scenario, history: str, node: Node, parent: Node | None, parent_files: dict[str, str]
) -> list[dict]:
    """The proposal call's messages: the scenario, the history tree with each loop's role, the
    task for this loop's kind, and the parent's files."""
    files = "\n\n".join(f"--- {name} ---\n{text}" for name, text in parent_files.items())
    return [
        {"role": "system", "content": SYSTEM.format(scenario=scenario.text())},
        {
            "role": "user",
            "content": (
                f"# History\n{history}\n\n# This loop ({node.loop}, {node.kind})\n{task_text(node, parent)}\n\n"
                f"The parent's files:\n{files or '(none: start from scratch)'}\n\nPropose the next experiment."
            ),
        },
    ]


def propose_with_llm(llm: ChatLLM, messages: list[dict]) -> Proposal:
    return llm.structured(messages, Proposal, purpose="proposal")


# --- the offline planner ---------------------------------------------------------------------
SMALL_MODEL = 50_000_000  # parameters: tiny test models learn fast and take a full fine-tune
FULL_FINE_TUNE = 3_000_000_000  # below this a full fine-tune is among the options


def default_params(scenario: Scenario) -> Params:
    small = (scenario.base_model.parameters or 0) < SMALL_MODEL
    limit = scenario.upper_data_size_limit
    return Params(
        method="full" if small else "lora",
        learning_rate=3e-3 if small else 1e-4,
        epochs=3 if small else 1,
        max_samples=min(1024 if small else 512, limit),
        max_length=default_max_length(scenario),
        datasets=[d.name for d in scenario.datasets],
    )


def default_max_length(scenario: Scenario) -> int:
    """The longest row the data holds (the profiles' p99 per field, summed, or, longer, the rows the
    benchmark's prompt and answer make of them, measured), plus the chat template, rounded up to
    64, within the model's context (and 1024 for a real model on a CPU, where long rows cost
    hours; a small test model takes up to 4096, as on a GPU)."""
    longest = max((max(d.p99_tokens or 0, d.row_tokens or 0) for d in scenario.datasets), default=0)
    wanted = -(-(longest + 64) // 64) * 64 if longest else 2048
    small = (scenario.base_model.parameters or 0) < SMALL_MODEL
    cap = min(scenario.base_model.context_length or 4096, 4096 if scenario.hardware.get("gpus") or small else 1024)
    return max(128, min(wanted, cap))


def neighbours(params: Params, scenario: Scenario) -> list[tuple[str, Params]]:
    """(what changes, the recipe) one change at a time, in the order that most often pays."""
    limit = scenario.upper_data_size_limit
    serving = [d.name for d in scenario.datasets]
    options: list[tuple[str, dict]] = [
        ("more epochs", {"epochs": params.epochs + 1}),
        ("more data", {"max_samples": min(limit, params.max_samples * 2)}),
        ("a larger learning rate", {"learning_rate": params.learning_rate * 3}),
        ("a smaller learning rate", {"learning_rate": params.learning_rate / 3}),
        ("fewer epochs", {"epochs": max(1, params.epochs - 1)}),
        ("less data", {"max_samples": max(1, params.max_samples // 2)}),
    ]
    if params.method != "full":
        options.append(("a larger LoRA rank", {"lora_r": params.lora_r * 2}))
    if (scenario.base_model.parameters or 0) < FULL_FINE_TUNE:
        options.append(
            (
                "a full fine-tune" if params.method != "full" else "LoRA",
                {
                    "method": "lora" if params.method == "full" else "full",
                    "learning_rate": params.learning_rate / 10
                    if params.method != "full"
                    else params.learning_rate * 10,
                },
            )
        )
    if params.max_length:
        options.append(
            (
                "longer rows",
                {"max_length": min(params.max_length * 2, scenario.base_model.context_length or params.max_length * 2)},
            )
        )
    for name in serving:
        mix = sorted(set(params.datasets or serving) ^ {name})
        if mix:
            verb = "without" if name in (params.datasets or serving) else "adding"
            options.append((f"the mix {verb} {name}", {"datasets": mix}))
    return [(label, params.model_copy(update=change)) for label, change in options]


def _change(before: Params, after: Params) -> dict:
    a, b = before.model_dump(), after.model_dump()
    return {k: (a[k], b[k]) for k in a if a[k] != b[k]}


def _same_direction(first: dict, second: dict) -> bool:
    """Two changes move the same fields the same way (e.g. both raise the learning rate)."""
    if set(first) != set(second):
        return False
    for field_name, (a0, a1) in first.items():
        b0, b1 = second[field_name]
        if isinstance(a0, (int, float)) and isinstance(a1, (int, float)):
            if (a1 > a0) != (b1 > b0):
                return False
        elif a1 != b1:
            return False
    return True


# GRPO learns from a prompt whose sampled answers disagree. With k = 8 answers right with
# probability p each, a group holds both kinds with probability 1 - p^8 - (1-p)^8: more than half
# the prompts for p in [0.1, 0.9]; far below, nearly every group is all wrong, far above, all
# right. rdft's scorers are rules (the aime25 judge is only a second metric), so every
# benchmark's reward is exact; what decides is the SFT experiment's validation score.
GRPO_SCORE_RANGE = (0.1, 0.9)


def grpo_params(scenario: Scenario, start: Node, recipe: Params) -> Params:
    """GRPO from loop `start`'s trained weights: its data mix, prompts instead of answers, a LoRA
    on top (merged for scoring), 8 answers a prompt (TRL's default group), a small learning rate
    for a real model; a tiny one's is larger and it goes over its 256 prompts 4 times (measured
    on the demo, from its first SFT at 0.433 on validation: 256 prompts once at 1e-3 gave 0.508,
    4 times at 2e-3 0.617, and 0.600 on the hidden test against 0.375)."""
    small = (scenario.base_model.parameters or 0) < SMALL_MODEL
    return recipe.model_copy(
        update={
            "method": "grpo",
            "start_from": start.loop,
            "learning_rate": 2e-3 if small else 1e-5,
            "epochs": 4 if small else 1,
            "max_samples": min(256 if small else 512, recipe.max_samples),  # a step per prompt, each epoch
            "num_generations": 8,
        }
    )


def grpo_start(finished: list[tuple[Node, Params]], tried: list[Params]) -> Node | None:
    """The SFT experiment GRPO would start from: the confirmed best (else the best scored) SFT
    loop, when its validation score lies in GRPO_SCORE_RANGE and no GRPO started from it yet."""
    sft = [(node, p) for node, p in finished if node.validation is not None and p.method not in RL_METHODS]
    if not sft:
        return None
    confirmed = [pair for pair in sft if pair[0].confirmed]
    node, _ = max(confirmed or sft, key=lambda pair: (pair[0].validation, -pair[0].loop))
    low, high = GRPO_SCORE_RANGE
    if not low <= node.validation <= high:
        return None
    if any(p.method == "grpo" and p.start_from == node.loop for p in tried):
        return None
    return node


def propose_offline(
    scenario: Scenario, finished: list[tuple[Node, Params]], tried: list[Params], *, rl: bool = False
) -> Proposal:
    """A local search over the recipe that reads every finished experiment's score: start from
    the best finished experiment (by validation score, accepted or not), repeat a change that
    paid off on the way there first, skip changes that did worse from it, never run a recipe
    twice. `finished`: (node, its recipe) of experiments that were scored; `tried`: every recipe
    proposed so far. With `rl` (`rdft run --rl`) GRPO follows the first SFT from its weights as
    soon as an SFT experiment's score leaves room to learn
    (GRPO_SCORE_RANGE); without, GRPO is proposed when the SFT search stalls: the last two SFT
    experiments did not beat the best."""
    seen = {p.key() for p in tried}
    scored = [(node, params) for node, params in finished if node.validation is not None]
    sft_scored = [(node, params) for node, params in scored if params.method not in RL_METHODS]
    best_sft = max(sft_scored, key=lambda pair: (pair[0].validation, -pair[0].loop), default=None)
    stalled = len(sft_scored) >= 3 and all(
        node.validation <= best_sft[0].validation and node.loop != best_sft[0].loop
        for node, _ in sorted(sft_scored, key=lambda pair: pair[0].loop)[-2:]
    )
    start_node = grpo_start(finished, tried) if (rl or stalled) else None
    if start_node is not None:
        recipe = next(params for node, params in finished if node.loop == start_node.loop)
        params = grpo_params(scenario, start_node, recipe)
        reason = (
            f"offline planner: loop {start_node.loop}'s SFT scored {start_node.validation:.4g}, inside "
            f"{GRPO_SCORE_RANGE}: sampled answers will disagree often enough to give GRPO a signal, and the "
            "benchmark's scorer is an exact reward" + ("" if rl else "; the last two SFT experiments did not beat it")
        )
        return _proposal(scenario, params, f"GRPO from loop {start_node.loop}'s weights", reason, start_node)
    if not scored:
        start = default_params(scenario)
        if start.key() not in seen:
            return _proposal(
                scenario,
                start,
                "the default recipe for this model and host",
                "offline planner: no experiment has been scored yet",
                None,
            )
        best_node, best = None, start
    else:  # the SFT search goes on from the best SFT experiment (a GRPO loop is no SFT recipe)
        best_node, best = best_sft if best_sft is not None else max(scored, key=lambda pair: pair[0].validation)
    by_loop = {node.loop: (node, params) for node, params in sft_scored}
    paid, hurt = [], []  # changes that led to a better or a worse child
    for node, params in sft_scored:
        parent = by_loop.get(node.parent) if node.parent is not None else None
        if parent is not None:
            change = _change(parent[1], params)
            (paid if node.validation > parent[0].validation else hurt).append((change, node, parent[0]))
    candidates = [(label, p) for label, p in neighbours(best, scenario) if p.key() not in seen]
    candidates.sort(key=lambda c: -any(_same_direction(_change(best, c[1]), ch) for ch, _, _ in paid))
    if not candidates:  # the neighbourhood is exhausted: one more epoch on a new data size
        widened = best.model_copy(update={"epochs": best.epochs + 1, "max_samples": best.max_samples + len(tried)})
        candidates = [("more epochs on more data (the neighbourhood was exhausted)", widened)]
    label, chosen = candidates[0]
    evidence = []
    if best_node is not None:
        evidence.append(f"loop {best_node.loop} scored {best_node.validation:.4g}, the best of {len(scored)} scored")
    for change, node, parent in paid:
        if _same_direction(_change(best, chosen), change):
            evidence.append(
                f"the same change paid before: loop {node.loop} scored {node.validation:.4g} against "
                f"{parent.validation:.4g} for loop {parent.loop}"
            )
    for change, node, parent in hurt:
        evidence.append(
            f"loop {node.loop} ({', '.join(change)} changed) did worse: {node.validation:.4g} against "
            f"{parent.validation:.4g}"
        )
    why = "offline planner: " + ("; ".join(evidence) or "no scored experiment yet")
    return _proposal(scenario, chosen, f"{label} ({_describe_change(best, chosen)})", why, best_node)


def _proposal(scenario: Scenario, params: Params, change: str, why: str, parent: Node | None) -> Proposal:
    datasets = params.datasets or [d.name for d in scenario.datasets]
    if params.method == "grpo":
        return Proposal(
            hypothesis=f"{change} raises {scenario.primary_metric} on {scenario.benchmark}: the benchmark's own scorer "
            "rewards the model's sampled answers, where SFT only imitates given ones",
            reason=why,
            data_recipe=f"{params.max_samples} prompts from {', '.join(datasets)} (the benchmark's own prompt of "
            "rows whose gold the scorer accepts), with their rows for the reward",
            training_recipe=f"GRPO, a LoRA on loop {params.start_from}'s weights (merged for scoring), "
            f"{params.num_generations} answers per prompt, learning rate {params.learning_rate:g}, "
            f"{params.epochs} epoch(s)",
            datasets=datasets,
            params=params,
        )
    base = f"loop {parent.loop}'s recipe" if parent is not None else "the base model"
    return Proposal(
        hypothesis=f"SFT from {base} with {change} raises {scenario.primary_metric} on {scenario.benchmark}",
        reason=why,
        data_recipe=f"{params.max_samples} rows from {', '.join(datasets)}, shuffled with a fixed seed, with the "
        "benchmark's own prompt and the answer as its scorer reads it (each row scored before it is kept), rows "
        f"over {params.max_length or 'the default'} tokens dropped",
        training_recipe=f"{params.method}"
        + (f" (r={params.lora_r})" if params.method != "full" else "")
        + f", learning rate {params.learning_rate:g}, {params.epochs} epoch(s), max_length {params.max_length}",
        datasets=datasets,
        params=params,
    )


def _describe_change(before: Params, after: Params) -> str:
    parts = []
    for field_name, (a, b) in _change(before, after).items():
        show = (
            (lambda v: f"{v:g}")
            if isinstance(a, float)
            else (lambda v: ", ".join(v) if isinstance(v, list) else str(v))
        )
        parts.append(f"{field_name} {show(a)} -> {show(b)}")
    return "; ".join(parts) or "the same recipe"
