"""Selection on small benchmarks: k samples per item where the split is small, the search built
on the best loop by mean, and "confirmed" only for a significant gain (paired bootstrap over the
items' means), on a 15-item AIME split whose p-values have closed forms."""

import json
from pathlib import Path

import pytest
from conftest import small_scenario

from rdft.evaluation.generation import model_sampling, samples_for
from rdft.evaluation.run import task_yaml
from rdft.loop.feedback import assess
from rdft.loop.records import RunArgs
from rdft.loop.report import summary
from rdft.loop.scenario import Scenario, scoring_plan
from rdft.loop.trace import Node, Trace

K = 7  # samples per item on a 15-item split: 15 x 7 = 105 >= 100


def test_samples_per_item_follow_the_split_size(tmp_path):
    assert [samples_for(n) for n in (15, 30, 8, 99, 100, 400, 1)] == [7, 4, 13, 2, 1, 1, 16]
    model = tmp_path / "model"
    model.mkdir()
    assert model_sampling(model) == (0.6, 0.95)  # no generation config: the usual settings
    (model / "generation_config.json").write_text(json.dumps({"do_sample": True, "temperature": 0.7, "top_p": 0.8}))
    assert model_sampling(model) == (0.7, 0.8)

    aime = scoring_plan("aime24", model, limit=None, max_gen_toks=None, samples=None)
    assert (aime.items, aime.samples, aime.temperature, aime.top_p) == (15, K, 0.7, 0.8)
    large = scoring_plan("panorama_par4pc", model, limit=None, max_gen_toks=None, samples=None)
    assert (large.items, large.samples, large.temperature) == (100, 1, None)  # greedy stays for large splits
    limited = scoring_plan("panorama_par4pc", model, limit=8, max_gen_toks=64, samples=None)
    assert (limited.items, limited.samples) == (8, 13)
    assert scoring_plan("aime24", model, limit=None, max_gen_toks=None, samples=1).samples == 1  # --samples

    from rdft.evaluation.benchmarks import get_benchmark

    text = task_yaml(get_benchmark("aime24"), "t", tmp_path / "docs.jsonl", K, None, (0.7, 0.8))
    assert "repeats: 7" in text and "temperature: 0.7" in text and "top_p: 0.8" in text and "do_sample: true" in text


def scenario(tmp_path: Path) -> Scenario:
    return small_scenario(tmp_path)


def items(path: Path, correct: list[int]) -> Path:
    """15 AIME items, each scored over K samples: `correct[i]` of them right (avg@K per item)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"accuracy": c / K, "pass_at_k": int(c > 0), "unreadable": 0, "samples": K} for c in correct]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def outcome(path: Path) -> dict:
    return {"validation": {"items": str(path), "dir": str(path.parent), "diagnostics": {}}, "data": {}, "train": {}}


def test_better_by_mean_is_the_parent_and_only_significant_is_confirmed(shared_settings, eval_env, tmp_path):
    case = scenario(tmp_path)
    base = items(tmp_path / "base" / "items.jsonl", [0] * 13 + [3, 3])
    # Loop 0: one item of 15 better (0 -> 5 of 7), none worse. By mean it beats the base model,
    # but a resample shows no gain whenever it leaves that item out: p = (14/15)^15 = 0.355.
    loop0 = items(tmp_path / "loop0" / "items.jsonl", [5] + [0] * 12 + [3, 3])
    first = assess(shared_settings, case, outcome(loop0), None, base)
    assert first.comparison["difference"] == pytest.approx(5 / K / 15)
    assert first.comparison["p_not_better"] == pytest.approx((14 / 15) ** 15, abs=0.03)
    assert first.decision is False
    trace = Trace(baseline_validation=first.comparison["base"], scoring={"items": 15, "samples": K})
    trace.nodes.append(
        Node(
            loop=0,
            parent=None,
            kind="draft",
            status="done",
            validation=first.comparison["candidate"],
            confirmed=first.decision,
        )
    )
    # The search builds on it all the same; nothing is confirmed yet.
    assert trace.choose_parent("greedy", 1) == (0, "improve")
    assert trace.best().loop == 0 and trace.confirmed_best() is None

    # Loop 1 (from loop 0): four items better than the base model (the confirmed best), none worse:
    # p = (11/15)^15 = 0.0095, confirmed.
    loop1 = items(tmp_path / "loop1" / "items.jsonl", [5, 4, 6, 2] + [0] * 9 + [3, 3])
    second = assess(shared_settings, case, outcome(loop1), None, base)
    assert second.comparison["p_not_better"] == pytest.approx((11 / 15) ** 15, abs=0.01)
    assert second.decision is True
    trace.nodes.append(
        Node(
            loop=1,
            parent=0,
            kind="improve",
            status="done",
            validation=second.comparison["candidate"],
            confirmed=second.decision,
        )
    )
    assert trace.best().loop == 1 and trace.confirmed_best().loop == 1
    assert trace.choose_parent("greedy", 2) == (1, "improve")

    # Loop 2: worse by mean than loop 1; loop 1 stays the parent and the confirmed best.
    trace.nodes.append(Node(loop=2, parent=1, kind="improve", status="done", validation=0.01))
    shown = summary(trace, RunArgs(base_model="m", benchmark="aime24"))
    assert shown["best"]["loop"] == 1 and shown["confirmed"]["loop"] == 1
    assert [row["decision"] for row in shown["loops"]] == ["done", "confirmed", "done"]
    assert shown["scoring"]["samples"] == K  # the scored k is part of every summary


def test_a_limited_or_capped_run_is_marked_non_standard():
    """--eval-limit and --max-gen-toks runs are not the benchmark's numbers: marked in summary.json
    (and from there the report and report.md), with why (issue 27: a 3-item run ranked as any)."""
    from rdft.loop.report import non_standard

    full = summary(Trace(), RunArgs(base_model="m", benchmark="aime25"))["scoring"]
    limited = summary(Trace(), RunArgs(base_model="m", benchmark="aime25", eval_limit=3))["scoring"]
    both = summary(Trace(), RunArgs(base_model="m", benchmark="aime25", eval_limit=3, max_gen_toks=64))["scoring"]
    assert full["standard"] is True and limited["standard"] is False and both["standard"] is False
    assert non_standard(limited) == "only the first 3 items of each split (--eval-limit)"
    assert non_standard(both) == (
        "generation capped at 64 tokens (--max-gen-toks) and only the first 3 items of each split (--eval-limit)"
    )
