"""Experiment memory: every finished or failed loop as a record the next prompts render.

A record holds what a person would look at before proposing the next experiment: the
hypothesis, what changed against its parent (train.yaml keys, data script lines), the data
counts (written, dropped as too long, as leakage, by the script's own checks), the training loss
curve, the stage durations, the validation score with its interval and the per-item changes
against the parent, the feedback's explanation and next steps, the pattern of the wrong answers,
degenerate-answer flags, and the end of any error (where the useful line is). Records are read
from the log folder, so a resumed run remembers what the killed one did.

`render_tree` shows the proposer the tree with each node's role — the parent it builds on (best
by validation mean, or the failed node it debugs), the parent's children, the other failed nodes
— within a character budget: the nearest loops in full, older ones in one line each.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path

import yaml
from pydantic import BaseModel

from rdft.loop.layout import RunLayout, read_json
from rdft.loop.trace import Node, Trace

ERROR_TAIL = 1500  # characters: a traceback's last lines say what went wrong
EXPLANATION_CHARS = 1200
PER_ITEM_KEYS = ("accuracy", "f1", "gold_hit", "correct", "score", "success")
HISTORY_CHARS = 12000  # about 3k tokens of history in a proposal prompt


class LoopRecord(BaseModel):
    loop: int
    parent: int | None
    kind: str
    status: str
    hypothesis: str = ""
    changes: list[str] = []
    data: dict = {}
    training: dict = {}
    seconds: dict[str, float] = {}
    validation: float | None = None
    validation_ci95: list[float] | None = None
    test_hidden: bool = True  # the hidden test score is never shown to the agent
    items_vs_parent: dict[str, int] = {}
    explanation: str = ""
    next_steps: str = ""
    wrong_pattern: str = ""
    flags: list[str] = []
    error_stage: str | None = None
    error_tail: str | None = None
    decision: str = ""

    def render(self, role: str) -> str:
        head = f"Loop {self.loop} ({role}; {self.kind} from {_from(self.parent)}): {self.hypothesis or '(no proposal)'}"
        lines = [head, f"  outcome: {self.decision or self.status}"]
        if self.changes:
            lines.append("  changed against its parent: " + "; ".join(self.changes))
        if self.data:
            lines.append("  data: " + ", ".join(f"{k} {v}" for k, v in self.data.items()))
        if self.training:
            lines.append("  training: " + ", ".join(f"{k} {v}" for k, v in self.training.items()))
        if self.validation is not None:
            ci = (
                f" (95% CI {self.validation_ci95[0]:.3f}–{self.validation_ci95[1]:.3f})" if self.validation_ci95 else ""
            )
            lines.append(f"  validation: {self.validation:.4f}{ci}")
        if self.items_vs_parent:
            lines.append(
                "  per item against its parent: " + ", ".join(f"{k} {v}" for k, v in self.items_vs_parent.items())
            )
        if self.flags:
            lines.append("  degenerate answers: " + "; ".join(self.flags))
        if self.wrong_pattern:
            lines.append(f"  wrong answers: {self.wrong_pattern}")
        if self.seconds:
            lines.append("  seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in self.seconds.items()))
        if self.explanation:
            lines.append(f"  explanation: {self.explanation[:EXPLANATION_CHARS]}")
        if self.next_steps:
            lines.append(f"  next steps it suggested: {self.next_steps}")
        if self.error_tail:
            lines.append(f"  failed at {self.error_stage}; the end of the error:\n" + _indent(self.error_tail))
        return "\n".join(lines)

    def one_line(self, role: str) -> str:
        score = f"{self.validation:.4f}" if self.validation is not None else (self.error_stage or self.status)
        return f"Loop {self.loop} ({role}, from {_from(self.parent)}): {self.hypothesis[:160]} -> {score}"


def _from(parent: int | None) -> str:
    return "the base model" if parent is None else f"loop {parent}"


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def _flat(config: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for key, value in (config or {}).items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def file_changes(parent: Path | None, child: Path) -> list[str]:
    """What changed in the experiment's files against its parent, briefly."""
    out = []
    old_config = _yaml(parent / "train.yaml") if parent else {}
    new_config = _yaml(child / "train.yaml")
    old, new = _flat(old_config), _flat(new_config)
    keys = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k) and not k.endswith(("path", ".dir"))]
    if keys:
        out.append("train.yaml " + ", ".join(f"{k} {old.get(k, '-')} -> {new.get(k, '-')}" for k in keys[:12]))
    for name in ("process_data.py", "data_recipe.json"):
        before = (parent / name).read_text().splitlines() if parent and (parent / name).is_file() else []
        after = (child / name).read_text().splitlines() if (child / name).is_file() else []
        diff = list(difflib.unified_diff(before, after, lineterm="", n=0))
        added = sum(1 for line in diff if line.startswith("+") and not line.startswith("+++"))
        removed = sum(1 for line in diff if line.startswith("-") and not line.startswith("---"))
        if added or removed:
            out.append(f"{name} +{added}/-{removed} lines")
    return out


def _yaml(path: Path) -> dict:
    try:
        value = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return value if isinstance(value, dict) else {}


def loss_curve(metrics: Path, points: int = 5) -> str:
    """The training loss at a few evenly spaced steps: enough to see it fall, flatten or blow up."""
    losses = []
    try:
        for line in metrics.read_text().splitlines():
            row = json.loads(line)
            if "loss" in row and "step" in row:
                losses.append((row["step"], row["loss"]))
    except (OSError, ValueError):
        return ""
    if not losses:
        return ""
    picks = sorted({round(i * (len(losses) - 1) / (points - 1)) for i in range(points)})
    return " -> ".join(f"{losses[i][1]:.3g}@{losses[i][0]}" for i in picks)


def per_item_changes(parent_items: Path | None, items: Path | None) -> dict[str, int]:
    """How many validation items got better, worse or stayed against the parent (same docs)."""
    if parent_items is None or items is None or not parent_items.is_file() or not items.is_file():
        return {}
    before = [json.loads(line) for line in parent_items.read_text().splitlines() if line.strip()]
    after = [json.loads(line) for line in items.read_text().splitlines() if line.strip()]
    if len(before) != len(after):
        return {}

    def value(item: dict) -> float | None:
        return next((float(item[k]) for k in PER_ITEM_KEYS if isinstance(item.get(k), (int, float))), None)

    better = worse = same = 0
    for old, new in zip(before, after, strict=True):
        a, b = value(old), value(new)
        if a is None or b is None:
            continue
        better += b > a
        worse += b < a
        same += b == a
    return {"better": better, "worse": worse, "same": same}


def wrong_pattern(feedback: dict) -> str:
    """One sentence on the wrong validation answers the feedback kept: unreadable ones, and the
    most common wrong answer."""
    wrong = feedback.get("wrong_samples") or []
    if not wrong:
        return ""
    unreadable = sum(1 for w in wrong if not (w.get("response") or "").strip())
    answers: dict[str, int] = {}
    for w in wrong:
        tail = (w.get("response") or "").strip()[-40:]
        answers[tail] = answers.get(tail, 0) + 1
    common, count = max(answers.items(), key=lambda kv: kv[1])
    parts = [f"{len(wrong)} shown"]
    if unreadable:
        parts.append(f"{unreadable} empty")
    if count > 1:
        parts.append(f"{count} end the same way ({common!r})")
    return ", ".join(parts)


def record_of(log_dir: Path, node: Node) -> LoopRecord:
    layout = RunLayout(log_dir)
    parent_ws, workspace = layout.workspace(node.parent), layout.workspace(node.loop)
    data = read_json(layout.running(node.loop, "data")) or {}
    train = read_json(layout.running(node.loop, "train")) or {}
    feedback = read_json(layout.feedback(node.loop)) or {}
    validation = read_json(layout.running(node.loop, "validation"))
    parent_validation = read_json(
        layout.running(node.parent, "validation") if node.parent is not None else layout.baseline / "validation.json"
    )
    counts = {}
    if data:
        counts = {
            "written": data.get("written"),
            "trained on": data.get("samples"),
            "dropped as leakage": data.get("dropped_leakage"),
            "over the size limit": data.get("dropped_over_limit"),
        }
        too_long = (train.get("data") or {}).get("dropped_too_long")
        if too_long is not None:
            counts["dropped as longer than data.max_length"] = too_long
        script = (data.get("script_stats") or {}).get("dropped") or {}
        if script:
            counts["rejected by the script's checks"] = sum(script.values())
    training = {}
    if train:
        curve = loss_curve(workspace / "output" / "metrics.jsonl")
        training = {"loss": curve or f"{train.get('first_loss')} -> {train.get('final_loss')}",
                    "steps": train.get("steps"), "tokens/s": train.get("tokens_per_s")}  # fmt: skip
    found = layout.failure(node.loop)
    failure = found.model_dump() if found else None
    if failure is None and node.status == "failed" and node.error:
        failure = {"type": node.error_type, "error": node.error}
    return LoopRecord(
        loop=node.loop,
        parent=node.parent,
        kind=node.kind,
        status=node.status,
        hypothesis=node.hypothesis,
        changes=file_changes(parent_ws, workspace) if parent_ws and workspace.is_dir() else [],
        data={k: v for k, v in counts.items() if v is not None},
        training={k: v for k, v in training.items() if v is not None},
        seconds=node.seconds,
        validation=node.validation,
        validation_ci95=node.validation_ci95,
        items_vs_parent=per_item_changes(
            Path(parent_validation["items"]) if parent_validation else None,
            Path(validation["items"]) if validation else None,
        ),
        explanation=feedback.get("explanation", ""),
        next_steps=feedback.get("next_steps", ""),
        wrong_pattern=wrong_pattern(feedback),
        flags=node.flags,
        error_stage=failure.get("type") if failure else None,
        error_tail=(failure.get("error") or "")[-ERROR_TAIL:] if failure else None,
        decision=_decision(node),
    )


def _decision(node: Node) -> str:
    if node.status == "failed":
        return f"failed ({node.error_type})"
    if node.status != "done":
        return "running"
    return "confirmed (significantly better than the confirmed best)" if node.confirmed else "done, not confirmed"


def render_tree(log_dir: Path, trace: Trace, node: Node, budget: int = HISTORY_CHARS) -> str:
    """The history the proposer reads for `node`, each loop with its role, within `budget`
    characters: the parent, its children, the other failed nodes, then the rest in one line."""
    finished = [n for n in trace.nodes if n.loop < node.loop and n.status != "running"]
    lines = [
        f"Base model: validation {trace.baseline_validation}"
        + (f" (degenerate: {'; '.join(trace.baseline_flags)})" if trace.baseline_flags else "")
    ]
    if not finished:
        return "\n".join([*lines, "No experiment has run yet."])
    parent = trace.node(node.parent) if node.parent is not None else None
    roles: dict[int, str] = {}
    if parent is not None:
        roles[parent.loop] = (
            "the FAILED node you debug: fix what broke, keep what it tried"
            if node.kind == "debug"
            else "your parent: the best so far by validation mean" + (", confirmed" if parent.confirmed else "")
        )
    for child in trace.children(node.parent):
        if child.loop < node.loop:
            roles.setdefault(child.loop, f"a sibling: also built on {_from(node.parent)}")
    for failed in (n for n in finished if n.status == "failed"):
        roles.setdefault(failed.loop, "a failed node")
    rank = {parent.loop: 0} if parent is not None else {}  # the parent first, then the nearest loops

    def order(n: Node) -> tuple:
        return (rank.get(n.loop, 1 if n.loop in roles else 2), -n.loop)

    used = sum(len(line) for line in lines)
    for other in sorted(finished, key=order):
        role = roles.get(other.loop, "an earlier loop")
        record = record_of(log_dir, other)
        full = record.render(role)
        text = full if used + len(full) <= budget else record.one_line(role)
        lines.append(text)
        used += len(text)
    return "\n".join(lines)
