"""What each stage's LLM call sends: the proposal's messages, which the run renders from its log,
and for `rdft prompt LOG --stage S [--loop N]` the messages logged when a call was made, else
rendered from the log as the run would render them (so an offline run shows them too)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from rdft.errors import RdftError
from rdft.llm import structured_messages
from rdft.loop.coding import CODE_FILES, CodeFiles, coder_messages
from rdft.loop.feedback import Explanation, Feedback, assess, facts, feedback_messages, reference
from rdft.loop.memory import render_tree
from rdft.loop.proposal import Proposal
from rdft.loop.proposal import proposal_messages as render_proposal
from rdft.loop.scenario import Scenario
from rdft.loop.trace import Node

if TYPE_CHECKING:
    from rdft.loop.run import Run


def proposal_messages(run: Run, scenario: Scenario, node: Node) -> list[dict]:
    """The proposal call's messages for `node`: the history of the loops before it."""
    parent = run.trace.node(node.parent) if node.parent is not None else None
    parent_workspace = run.layout.workspace(node.parent)
    files = {}
    if parent_workspace is not None:
        files = {
            n: (parent_workspace / n).read_text()
            for n in ("process_data.py", "train.yaml")
            if (parent_workspace / n).is_file()
        }
    history = render_tree(run.log_dir, run.trace, node)
    return render_proposal(scenario, history, node, parent, files)


def messages(run: Run, stage: str, loop: int | None) -> tuple[list[dict], str]:
    """(the messages, "sent" or "would send") of `stage`'s LLM call in `loop` (default: the
    next loop): the ones logged when the call was made, else rendered as the run would."""
    index = len(run.trace.nodes) if loop is None else loop
    directory = {"proposal": "direct_exp_gen", "coding": "coding", "feedback": "feedback"}[stage]
    chat = run.layout.stage(index, directory) / "chat.jsonl"
    if chat.is_file():
        sent = [json.loads(line) for line in chat.read_text().splitlines() if line.strip()]
        sent = [record for record in sent if record.get("messages")]
        if sent:
            return sent[-1]["messages"], "sent"
    scenario_path = run.layout.scenario_json
    if not scenario_path.is_file():
        raise RdftError(f"{run.log_dir} has no scenario yet (the run stopped before it); resume it first")
    scenario = Scenario.model_validate_json(scenario_path.read_text())
    node = run.trace.node(index)
    if node is None:
        if index > len(run.trace.nodes):
            count = len(run.trace.nodes)
            raise RdftError(f"the run has {count} loop(s); give --loop {count} (the next) or less")
        node = Node(loop=index, **run.trace.next_parent(run.settings.rdft_search, run.llm is None, index))
    if stage == "proposal":
        return structured_messages(proposal_messages(run, scenario, node), Proposal), "would send"
    proposal_path = run.layout.proposal(index)
    if not proposal_path.is_file():
        raise RdftError(f"loop {index} has no proposal yet; see its proposal with --stage proposal")
    proposal = Proposal.model_validate_json(proposal_path.read_text())
    if stage == "coding":
        parent_workspace = run.layout.workspace(node.parent)
        current = {}
        if parent_workspace is not None:
            current = {n: (parent_workspace / n).read_text() for n in CODE_FILES if (parent_workspace / n).is_file()}
        messages = coder_messages(
            run.settings,
            scenario,
            proposal,
            current,
            None,
            measured=run.layout.measured(),
            with_judge=True,
            budget_left=run.budget.remaining(),
        )
        return structured_messages(messages, CodeFiles), "would send"
    failure = run.layout.failed(index)
    result_path = run.layout.running(index, "result")
    outcome = json.loads(result_path.read_text()) if result_path.is_file() else None
    if failure is None and outcome is None:
        raise RdftError(f"loop {index} has neither a result nor a failure yet; resume the run first")
    feedback_path = run.layout.feedback(index)
    items, label, by_mean = reference(run.layout, run.trace, index)
    if feedback_path.is_file():  # the numbers it was given, as recorded
        result = Feedback.model_validate_json(feedback_path.read_text())
    else:
        result = assess(run.settings, scenario, outcome, failure, items)
    text = facts(scenario, result, outcome, label, by_mean)
    return structured_messages(feedback_messages(scenario, proposal, text), Explanation), "would send"
