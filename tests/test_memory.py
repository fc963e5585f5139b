"""Experiment memory (what the proposer reads of earlier loops) and the knowledge store (what the
coder reads of earlier runs), from log folders and store files as the loop writes them."""

import json
from pathlib import Path

from conftest import small_scenario

from rdft.knowledge import fixes_for, remember_fix, signature
from rdft.loop.memory import render_tree
from rdft.loop.proposal import proposal_messages
from rdft.loop.trace import Node, Trace
from rdft.settings import Settings

TRACEBACK = "\n".join(
    ["Traceback (most recent call last):"]
    + [f'  File "/work/Loop_1/workspace/process_data.py", line {n}, in step_{n}\n    step_{n + 1}()' for n in range(80)]
    + ["KeyError: 'solutionz' (no such column in /data/deepscaler/train.jsonl, 40315 rows)"]
)


def write(path: Path, value) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(value if isinstance(value, str) else json.dumps(value))
    return path


def items(path: Path, values: list[int]) -> str:
    write(path, "".join(json.dumps({"accuracy": v}) + "\n" for v in values))
    return str(path)


def run_log(root: Path) -> Trace:
    """A log with the base model, a finished loop 0 and a loop 1 that failed in coding."""
    base = items(root / "baseline" / "v" / "items.jsonl", [0, 1, 0, 0, 1])
    write(root / "baseline" / "validation.json", {"items": base})
    loop0 = root / "Loop_0"
    data = {"written": 605, "samples": 600, "dropped_leakage": 5, "dropped_over_limit": 0,
            "script_stats": {"dropped": {"no answer": 7}}}  # fmt: skip
    write(loop0 / "running" / "data.json", data)
    write(
        loop0 / "running" / "train.json",
        {"first_loss": 6.4, "final_loss": 0.08, "steps": 40, "tokens_per_s": 900, "data": {"dropped_too_long": 3}},
    )
    write(loop0 / "running" / "validation.json", {"items": items(loop0 / "v" / "items.jsonl", [1, 0, 1, 1, 1])})
    losses = "".join(json.dumps({"step": s, "loss": 6.4 / s}) + "\n" for s in range(1, 41))
    write(loop0 / "workspace" / "output" / "metrics.jsonl", losses)
    write(loop0 / "workspace" / "train.yaml", "train: {epochs: 3, learning_rate: 0.003}\n")
    write(
        loop0 / "feedback" / "feedback.json",
        {
            "explanation": "The format is learned; items with a letter first are missed.",
            "next_steps": "Balance the letter positions in the data.",
            "wrong_samples": [
                {"question": "q", "gold": "a", "response": "\\boxed{b}"},
                {"question": "q2", "gold": "c", "response": "\\boxed{b}"},
            ],
        },
    )
    write(root / "Loop_1" / "coding" / "failure.json", {"stage": "coding", "type": "coder", "error": TRACEBACK})
    return Trace(
        baseline_validation=0.4,
        nodes=[
            Node(
                loop=0,
                parent=None,
                kind="draft",
                hypothesis="Three epochs on letter chats",
                status="done",
                validation=0.8,
                validation_ci95=[0.6, 1.0],
                confirmed=True,
                seconds={"running": 31.0},
            ),
            Node(
                loop=1,
                parent=0,
                kind="improve",
                hypothesis="Balanced letter positions",
                status="failed",
                error_type="coder",
                error=TRACEBACK[-2000:],
            ),
        ],
    )


def test_the_proposer_reads_every_record_of_earlier_loops(tmp_path):
    trace = run_log(tmp_path)
    history = render_tree(tmp_path, trace, Node(loop=2, parent=0, kind="improve"))
    assert "Loop 0 (your parent: the best so far by validation mean, confirmed" in history
    assert "The format is learned; items with a letter first are missed." in history  # explanation
    assert "Balance the letter positions in the data." in history  # next steps
    for count in (
        "written 605",
        "trained on 600",
        "dropped as leakage 5",
        "dropped as longer than data.max_length 3",
        "rejected by the script's checks 7",
    ):
        assert count in history, count
    assert "loss 6.4@1 -> " in history and "-> 0.16@40" in history  # the loss curve, first to last step
    assert "validation: 0.8000 (95% CI 0.600–1.000)" in history
    assert "per item against its parent: better 3, worse 1, same 1" in history  # against the base model
    assert "2 end the same way ('\\\\boxed{b}')" in history
    assert "seconds: running 31" in history
    # The failed loop: the end of its error, where the useful line is, not its first lines.
    assert "Loop 1 (a sibling" in history and "failed at coder" in history
    assert "KeyError: 'solutionz'" in history and "Traceback (most recent call last)" not in history
    # A later loop's history holds only the loops before it.
    assert "Loop 1" not in render_tree(tmp_path, trace, Node(loop=1, parent=0, kind="improve"))
    # Over the budget the parent stays whole and the other loops shrink to one line each.
    short = render_tree(tmp_path, trace, Node(loop=2, parent=0, kind="improve"), budget=1200)
    assert len(short) < len(history) and "validation: 0.8000" in short
    assert "Loop 1 (a sibling: also built on loop 0, from loop 0): Balanced letter positions -> coder" in short


def test_an_aide_debug_node_names_the_failure_it_debugs(tmp_path):
    trace = run_log(tmp_path)
    node = Node(loop=2, parent=1, kind="debug")
    case = small_scenario("/m", "demo_letter", "demo")
    messages = proposal_messages(case, render_tree(tmp_path, trace, node), node, trace.node(1), {})
    user = messages[1]["content"]
    assert "Loop 1 (the FAILED node you debug: fix what broke" in user
    assert "Debug loop 1: it FAILED at coder" in user and "KeyError: 'solutionz'" in user
    assert "your parent: the best so far" not in user


def test_fixes_are_found_again_by_their_error_signature(tmp_path):
    settings = Settings(_env_file=None, ft_file_path=tmp_path / "ft", rdft_knowledge_dir=tmp_path / "knowledge")
    other = TRACEBACK.replace("/work/Loop_1", "/elsewhere/Loop_7").replace("40315", "12")
    assert signature("data", TRACEBACK) == signature("data", other)  # paths and numbers masked
    assert signature("data", TRACEBACK) == "data: KeyError: 'solutionz' (no such column in <path>, <n> rows)"
    assert signature("data", TRACEBACK) != signature("debug_train", TRACEBACK)
    remember_fix(
        settings,
        family="aime",
        stage="data",
        error=TRACEBACK,
        fix="-row['solutionz']\n+row['solution']",
        source="run-1",
    )
    found = fixes_for(settings, "data", other)
    assert [f["fix"] for f in found] == ["-row['solutionz']\n+row['solution']"]
    assert fixes_for(settings, "data", "ValueError: something else") == []
    with open(tmp_path / "knowledge" / "fixes.jsonl", "a") as handle:
        handle.write('{"cut by a crash')  # a torn last line is skipped, never trusted
    assert len(fixes_for(settings, "data", other)) == 1


def test_the_knowledge_store_skips_cut_and_foreign_records(tmp_path):
    """A line cut by a crash (inside a UTF-8 character too), random bytes, or a record of another
    shape is skipped, never a traceback in `rdft knowledge` or `rdft prompt` (issue 27, item 13)."""
    from rdft.knowledge import recipes_for

    settings = Settings(_env_file=None, ft_file_path=tmp_path / "ft", rdft_knowledge_dir=tmp_path / "knowledge")
    store = tmp_path / "knowledge"
    store.mkdir()
    good = {"family": "demo", "gain": 0.5, "hypothesis": "more epochs", "train_yaml": "", "process_data_py": ""}
    lines = [json.dumps(good).encode(), json.dumps({**good, "gain": "big"}).encode(), b"[1, 2]",
             json.dumps({**good, "hypothesis": "caf\u00e9"}, ensure_ascii=False).encode()[:-3]]  # fmt: skip
    (store / "recipes.jsonl").write_bytes(b"\n".join(lines))
    (store / "fixes.jsonl").write_bytes(bytes(range(256)))
    assert [r["hypothesis"] for r in recipes_for(settings, "demo")] == ["more epochs"]
    assert fixes_for(settings, "data", "KeyError: 'x'") == []
