"""The tree of experiments (`trace.json`): one node per loop, its parent, what it tried, how it
scored, whether it was confirmed. Two bests, both shown in the summary and the report:

- the best by mean: the highest validation mean above the base model's. The search builds on it
  (greedy extends it; AIDE-style search, RDFT_SEARCH=aide, also drafts from scratch and debugs
  failed nodes) — on a 15-item split a real gain is rarely significant, and waiting for
  significance would leave the search without a parent;
- the confirmed best: the last loop significantly better (paired bootstrap, p(not better) below
  RDFT_SIGNIFICANCE) than the confirmed best before it, or the base model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from rdft.files import write_atomic


class Node(BaseModel):
    loop: int
    parent: int | None  # the loop it starts from; None: from the base model alone
    kind: Literal["draft", "improve", "debug"]
    hypothesis: str = ""
    method: str | None = None  # how it trained: train.yaml's method.type (lora, full, qlora, grpo, dpo)
    status: Literal["running", "failed", "done"] = "running"
    error_type: str | None = None
    error: str | None = None
    validation: float | None = None
    validation_ci95: list[float] | None = None
    test: float | None = None
    confirmed: bool = False  # significantly better than the confirmed best before it
    flags: list[str] = []  # degenerate answers
    leakage: dict[str, int] = {}  # training rows the guard dropped, by reason
    # The forgetting check: benchmark → {score, base, delta, ci95} on its slice (delta: paired, vs the base model)
    regression: dict[str, dict] = {}
    forgetting: list[str] = []  # the slices it lost more than FT_REGRESSION_TOLERANCE points on
    seconds: dict[str, float] = {}


class Trace(BaseModel):
    baseline_validation: float | None = None
    baseline_validation_ci95: list[float] | None = None
    baseline_test: float | None = None
    baseline_flags: list[str] = []
    baseline_regression: dict[str, float | None] = {}  # the base model's score on each forgetting-check slice
    scoring: dict = {}  # how every split is scored: items, samples (k), temperature, top_p
    nodes: list[Node] = []

    def next_parent(self, search: str, offline: bool, index: int) -> dict:
        """{parent, kind} of a new loop: the search's choice, or, for the offline planner, the
        best scored experiment (its local search centres there)."""
        if offline:
            best = self.best_scored()
            return {"parent": best.loop, "kind": "improve"} if best else {"parent": None, "kind": "draft"}
        parent, kind = self.choose_parent(search, index)
        return {"parent": parent, "kind": kind}

    def node(self, loop: int) -> Node | None:
        return next((n for n in self.nodes if n.loop == loop), None)

    def best(self, before: int | None = None) -> Node | None:
        """The finished experiment with the highest validation mean, above the base model's
        (the earliest on ties): what the search builds on; `before`: among earlier loops only."""
        scored = [
            n
            for n in self.nodes
            if n.status == "done" and n.validation is not None and (before is None or n.loop < before)
        ]
        above = [n for n in scored if self.baseline_validation is None or n.validation > self.baseline_validation]
        return max(above, key=lambda n: (n.validation, -n.loop)) if above else None

    def confirmed_best(self, before: int | None = None) -> Node | None:
        """The last confirmed node: each was significantly better than the confirmed best before it;
        `before`: among earlier loops only (what a loop's feedback compares with, even when it is
        redone after later loops finished)."""
        confirmed = [n for n in self.nodes if n.confirmed and (before is None or n.loop < before)]
        return confirmed[-1] if confirmed else None

    def best_scored(self) -> Node | None:
        """The finished experiment with the highest validation score, above the base model's or
        not (the earliest on ties): what the offline planner's local search centres on."""
        scored = [n for n in self.nodes if n.status == "done" and n.validation is not None]
        return max(scored, key=lambda n: (n.validation, -n.loop)) if scored else None

    def children(self, parent: int | None) -> list[Node]:
        return [n for n in self.nodes if n.parent == parent and n.status != "running"]

    def choose_parent(self, search: str, loop: int) -> tuple[int | None, str]:
        """(parent loop or None, kind) for the next experiment."""
        best = self.best()
        if search == "aide":
            drafts = [n for n in self.nodes if n.kind == "draft"]
            if len(drafts) < 2:
                return None, "draft"
            debugged = {n.parent for n in self.nodes if n.kind == "debug"}
            broken = [n for n in self.nodes if n.status == "failed" and n.loop not in debugged]
            if broken and loop % 2 == 1:
                return broken[-1].loop, "debug"
        return (best.loop, "improve") if best else (None, "draft" if not self.nodes else "improve")

    def save(self, path: Path) -> None:
        write_atomic(path, self.model_dump_json(indent=1))

    @classmethod
    def load(cls, path: Path) -> Trace:
        return cls.model_validate(json.loads(path.read_text())) if path.exists() else cls()
