"""`rdft run`: the agent loop end to end on CPU with the tiny model and the demo benchmark —
offline, and against a local OpenAI-compatible server replaying an agent's replies (a broken
data script fixed in the second coding round, a kill -9 and a resume)."""

import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from conftest import REPO, clean_environ, log_dir_of, one_line_error, skip_without
from llm_server import LLMServer

SECRET = "sk-agent-secret-27182818"
LOOP_FILES = [
    "direct_exp_gen/proposal.json",
    "direct_exp_gen/proposal.md",
    "coding/result.json",
    "running/data.json",
    "running/train.json",
    "running/validation.json",
    "running/test.json",
    "running/validation/summary.json",
    "running/test/summary.json",
    "running/result.json",
    "feedback/feedback.json",
    "feedback/feedback.md",
    "workspace/process_data.py",
    "workspace/train.yaml",
    "workspace/launch.sh",
    "workspace/data.jsonl",
]


def check_run(log: Path, loops: int) -> dict:
    """The log layout, and decisions that follow the numbers."""
    for name in (
        "run.json",
        "settings.json",
        "scenario.json",
        "scenario.md",
        "trace.json",
        "summary.json",
        "report.md",
        "baseline/validation.json",
        "baseline/test.json",
        "baseline/evaluation_items.jsonl",
    ):
        assert (log / name).is_file(), name
    summary = json.loads((log / "summary.json").read_text())
    assert [row["loop"] for row in summary["loops"]] == list(range(loops))  # Loop_0, Loop_1, …
    confirmed = summary["baseline"]["validation"]
    for row in summary["loops"]:
        loop = log / f"Loop_{row['loop']}"
        for name in LOOP_FILES:
            assert (loop / name).is_file(), f"Loop_{row['loop']}/{name}"
        feedback = json.loads((loop / "feedback" / "feedback.json").read_text())
        method = (yaml.safe_load((loop / "workspace" / "train.yaml").read_text())["method"] or {}).get("type", "lora")
        assert row["method"] == method, row  # how it trained, from the loop's own train.yaml
        comparison = feedback["comparison"]
        assert comparison["base"] == confirmed  # compared with the confirmed best so far, on the same items
        significant = comparison["difference"] > 0 and comparison["p_not_better"] < 0.05
        assert feedback["decision"] == significant == (row["decision"] == "confirmed"), row
        if significant:
            confirmed = row["validation"]
        # The guard: no evaluation question (validation or test, all of them) reaches the training data,
        # and nothing of the evaluation is in the workspace the data script and the training ran in.
        items = (log / "baseline" / "evaluation_items.jsonl").read_text().splitlines()
        questions = {json.loads(line)["question"] for line in items}
        assert len(questions) == 60
        data = (loop / "workspace" / "data.jsonl").read_text()
        assert not any(q in data for q in questions)
        assert not list((loop / "workspace").rglob("docs.*.jsonl"))
        # The scored weights descend from the base model, and the record says so.
        train = json.loads((loop / "running" / "train.json").read_text())
        assert (
            train["provenance"]["base_model"] == json.loads((log / "scenario.json").read_text())["base_model"]["path"]
        )
        assert set(train["provenance"]["base_weights"]) == {"model.safetensors"}
    assert summary["best"] is not None and summary["best"]["validation"] > summary["baseline"]["validation"]
    scored = [row for row in summary["loops"] if row["validation"] is not None]
    assert summary["best"]["validation"] == max(row["validation"] for row in scored)  # the best by mean
    assert summary["confirmed"]["validation"] == confirmed
    # The demo's 30 validation items are scored with 4 sampled answers each (30 x 4 >= 100).
    assert summary["scoring"]["samples"] == 4 and summary["scoring"]["temperature"] == 0.6
    return summary


def test_demo_runs_offline_as_the_readme_says(demo_run):
    result = demo_run
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "proposals by the offline planner" in result.stderr
    log = log_dir_of(result.stdout)
    assert re.search(rf"^report: {re.escape(str(log))}/report.html$", result.stdout, re.M)
    summary = check_run(log, loops=2)
    # The untrained tiny model never answers in \boxed{}: 0, and flagged as such.
    assert summary["baseline"]["validation"] == 0.0 and summary["baseline"]["test"] == 0.0
    assert summary["baseline"]["flags"] == ["100% of answers unreadable"]
    # The demo learns: the best loop is right on at least 80% of both splits (answering with one
    # letter for every item scores 8/30 = 0.267 at best on validation, 0.133 on test), and is no
    # degenerate model.
    best = summary["best"]
    assert best["validation"] >= 0.8 and best["test"] >= 0.8 and best["flags"] == []
    # The run ends by saying its result: the confirmed best, its scores and where its weights are.
    confirmed = summary["confirmed"]
    said = re.search(rf"^result: loop {confirmed['loop']} is the confirmed best: validation [\d.]+ \(base 0.0\), "
                     rf"hidden test [\d.]+$\nweights: (.+)$", result.stdout, re.M)  # fmt: skip
    assert said and Path(said.group(1)).is_dir() and Path(said.group(1)).parents[2].name == f"Loop_{confirmed['loop']}"
    first = json.loads((log / "Loop_0" / "direct_exp_gen" / "proposal.json").read_text())
    second = json.loads((log / "Loop_1" / "direct_exp_gen" / "proposal.json").read_text())
    assert first["params"] != second["params"]  # the planner searched
    assert "loop 0 scored" in second["reason"]  # and says from which numbers
    data = json.loads((log / "Loop_0" / "running" / "data.json").read_text())
    assert data["samples"] + data["dropped_leakage"] + data["dropped_over_limit"] == data["written"]
    assert data["leakage"] == {"exact": 0, "identifier": 0, "molecule": 0, "ngram": 0}


def test_rl_demo_grpo_beats_its_sft_parent(rdft, shared_dirs, data_env, eval_env, train_env):
    """`rdft run --demo --rl` (the README's, issue 28): loop 0 the default SFT, loop 1 GRPO from
    its weights with demo_letter's scorer as the reward, on prompt rows. GRPO is at least 0.1 above
    its parent on validation and on the hidden test, confirmed by the paired bootstrap, its reward
    rose as it trained, its answers are not one answer repeated, and the merge is what scored."""
    result = rdft("run", "--demo", "--rl", env=shared_dirs, timeout=900)
    assert result.returncode == 0, result.output[-3000:]
    log = log_dir_of(result.stdout)
    assert json.loads((log / "run.json").read_text())["rl"] is True
    sft, grpo = json.loads((log / "summary.json").read_text())["loops"]
    weights = re.search(r"^weights: (.+)$", result.stdout, re.M)  # what scored: the merge, not the bare adapter
    assert weights and weights.group(1) == str(log / "Loop_1" / "workspace" / "output" / "merged")
    assert (sft["method"], grpo["method"], grpo["parent"]) == ("full", "grpo", 0)
    assert grpo["validation"] >= sft["validation"] + 0.1 and grpo["test"] >= sft["test"] + 0.1, (sft, grpo)
    assert grpo["decision"] == "confirmed"
    # GRPO started from loop 0's trained weights, rewarded by demo_letter's scorer, on prompt rows.
    config = yaml.safe_load((log / "Loop_1" / "workspace" / "train.yaml").read_text())
    parent = json.loads((log / "Loop_0" / "running" / "train.json").read_text())
    assert config["model"]["path"] == parent["model_dir"] and config["rl"]["benchmark"] == "demo_letter"
    rows = [json.loads(line) for line in (log / "Loop_1" / "workspace" / "data.jsonl").read_text().splitlines()]
    assert rows and all(set(row) == {"prompt", "doc"} and row["prompt"].endswith("\\boxed{}.") for row in rows)
    train = json.loads((log / "Loop_1" / "running" / "train.json").read_text())
    assert train["method"] == "grpo" and Path(train["merged_dir"]).is_dir()
    metrics = [json.loads(line) for line in (log / "Loop_1" / "workspace" / "output" / "metrics.jsonl").open()]
    assert len(metrics) == config["train"]["epochs"] * len(rows)  # a step per prompt, each epoch
    assert all("reward_mean" in m and "same_reward_share" in m for m in metrics)
    quarter = len(metrics) // 4
    first, last = (sum(m["reward_mean"] for m in part) / quarter for part in (metrics[:quarter], metrics[-quarter:]))
    assert last > first, (first, last)
    scored = json.loads((log / "Loop_1" / "running" / "validation" / "summary.json").read_text())
    assert scored["model"] == train["merged_dir"] and scored["adapter"] is None  # the merge is what scored
    predictions = log / "Loop_1" / "running" / "validation" / "predictions.jsonl"
    answers = [json.loads(line)["response"] for line in predictions.read_text().splitlines()]
    assert Counter(answers).most_common(1)[0][1] < len(answers) / 2, Counter(answers).most_common(3)
    assert "Reward (GRPO)" in (log / "report.html").read_text()


def test_a_finished_sft_run_resumed_with_rl_adds_one_grpo_loop(demo_run, shared_dirs, tmp_path):
    """`rdft run --resume LOG --loop-n 3 --rl` on a copy of the demo's two SFT loops: one more
    loop, GRPO from the confirmed best SFT's weights (its validation score leaves room to learn)
    with the demo benchmark's scorer as the reward; the first two loops' records are untouched
    (issue 28). It stops after that loop's coding (--step-n 2: proposal, coding, the GRPO debug
    run proven): a GRPO loop trained, scored and compared is the `--demo --rl` test's."""
    import shutil

    log = tmp_path / "extended"
    shutil.copytree(log_dir_of(demo_run.stdout), log)
    before = {p: p.read_bytes() for p in log.glob("Loop_[01]/**/*.json")}
    confirmed = [
        row for row in json.loads((log / "summary.json").read_text())["loops"] if row["decision"] == "confirmed"
    ]
    expected = max(confirmed, key=lambda row: (row["validation"], -row["loop"]))
    assert 0.1 <= expected["validation"] <= 0.9  # the demo's best leaves room: GRPO_SCORE_RANGE
    extended = run_cli(shared_dirs, tmp_path, "run", "--resume", str(log), "--loop-n", "3", "--rl", "--step-n", "2")
    assert extended.returncode == 3, extended.stdout + extended.stderr[-3000:]  # 3: stopped, resumable
    assert "ran 2 step(s) (--step-n)" in extended.stdout
    assert {p: p.read_bytes() for p in log.glob("Loop_[01]/**/*.json")} == before  # loops 0 and 1 untouched
    assert sorted(p.name for p in log.glob("Loop_*")) == ["Loop_0", "Loop_1", "Loop_2"]
    proposal = json.loads((log / "Loop_2" / "direct_exp_gen" / "proposal.json").read_text())["params"]
    assert (proposal["method"], proposal["start_from"]) == ("grpo", expected["loop"])
    # GRPO from that loop's trained weights, rewarded by demo_letter's scorer, on prompt rows; its
    # debug run trained.
    config = yaml.safe_load((log / "Loop_2" / "workspace" / "train.yaml").read_text())
    parent = json.loads((log / f"Loop_{expected['loop']}" / "running" / "train.json").read_text())
    assert config["model"]["path"] == parent["model_dir"] and config["rl"]["benchmark"] == "demo_letter"
    rows = [json.loads(line) for line in (log / "Loop_2" / "workspace" / ".debug" / "data.jsonl").open()]
    assert rows and all(set(row) == {"prompt", "doc"} and row["prompt"].endswith("\\boxed{}.") for row in rows)
    coding = json.loads((log / "Loop_2" / "coding" / "result.json").read_text())
    assert coding["ok"] and [r["ok"] for r in coding["rounds"]] == [True]
    assert json.loads((log / "run.json").read_text())["loop_n"] == 3
    fewer = run_cli(shared_dirs, tmp_path, "run", "--resume", str(log), "--loop-n", "2")
    assert fewer.returncode == 2 and "the run already started 3 loop(s); give --loop-n 3 or more" in fewer.stderr


BROKEN = "raise SystemExit('KeyError: no column named problem')\n"
EVAL_ITEMS = [
    json.loads(line) for line in (REPO / "evaluation" / "data" / "demo_letter.jsonl").read_text().splitlines()
]
COPIED = [item["question"] for item in EVAL_ITEMS[:5]]  # what the agent's script copies into its full run
FIXED = """import json, os
from pathlib import Path
from rdft_data import debug_sample, write_chat_jsonl

rows = [json.loads(line) for line in (Path(os.environ["RDFT_DATASETS_DIR"]) / "demo-letter" / "letter.jsonl").open()]
rows = rows[:600] + [{"question": q, "answer": "a"} for q in COPIED]  # copied evaluation items, at the end
suffix = "\\nPut the letter in \\\\boxed{}."
samples = [{"messages": [{"role": "user", "content": r["question"] + suffix},
                         {"role": "assistant", "content": "\\\\boxed{" + r["answer"] + "}"}]} for r in rows]
write_chat_jsonl(debug_sample(samples), "data.jsonl")
print("SUMMARY", len(samples))
""".replace("COPIED", json.dumps(COPIED))
PADDED = 'rows = [dict(r, question=("filler " * 300) + r["question"]) if i % 2 else r for i, r in enumerate(rows)]'
# Every other row 300 words longer than data.max_length allows: training drops half the rows.
LONG = FIXED.replace("samples = [", PADDED + "\nsamples = [")
TRAIN_YAML = (
    "model: {dtype: float32}\ndata: {max_length: 256, packing: true}\nmethod: {type: full}\n"
    "train: {epochs: EPOCHS, learning_rate: 0.003, warmup_ratio: 0.0, micro_batch_size: 4, "
    "gradient_checkpointing: false}\n"
)


def agent(body: dict) -> str:
    """Scripted agent replies, by what is asked."""
    system = body["messages"][0]["content"]
    asked = body["messages"][-2]["content"] if len(body["messages"]) > 1 else ""
    if "You review one fine-tuning experiment" in system:
        reply = {"explanation": "Format learned; the letters partly.", "next_steps": "More epochs."}
    elif "You check training data" in system:
        reply = {"passed": True, "reasons": "answers boxed as the scorer reads them"}
    elif "Propose the next experiment" in asked:
        epochs = 4 if "Improve on loop" in asked else 3
        reply = {
            "hypothesis": f"A full fine-tune for {epochs} epochs on letter chats teaches the task",
            "reason": "the base model never answers in the format",
            "data_recipe": "600 letter chats",
            "training_recipe": f"full, lr 3e-3, {epochs} epochs",
            "datasets": ["demo-letter"],
            "params": {"method": "full", "learning_rate": 0.003, "epochs": epochs, "max_samples": 600},
        }
    else:  # coding: a broken script, then a train.yaml that names another model, then the fix
        epochs = "4" if "full, lr 3e-3, 4 epochs" in asked else "3"
        train_yaml = TRAIN_YAML.replace("EPOCHS", epochs)
        if epochs == "4":  # loop 1: rows too long for data.max_length first, the gate refuses them
            script = FIXED if "longer than data.max_length" in asked else LONG
            reply = {"process_data_py": script, "train_yaml": train_yaml}
        elif "Fixes that resolved this same error before" in asked:  # a second run: the fix remembered
            reply = {"process_data_py": FIXED, "train_yaml": train_yaml}
        elif "The last round failed" not in asked:
            reply = {"process_data_py": BROKEN, "train_yaml": train_yaml}
        elif "no column named problem" in asked:
            swapped = train_yaml.replace("model: {dtype: float32}", "model: {dtype: float32, path: /models/tuned}")
            reply = {"process_data_py": FIXED, "train_yaml": swapped}
        else:
            reply = {"process_data_py": FIXED, "train_yaml": train_yaml}
    return "Here it is.\n```json\n" + json.dumps(reply) + "\n```"


def test_llm_loops_fix_code_survive_kill_and_resume(rdft, shared_dirs, data_env, eval_env, train_env, tmp_path):
    with LLMServer(agent) as server:
        env = {
            **shared_dirs,
            "OPENAI_API_KEY": SECRET,
            "OPENAI_API_BASE": server.base_url,
            "RDFT_REMOTE": (tmp_path / "remote").as_uri(),
            "CHAT_MODEL": "agent-model",
            "RETRY_WAIT_SECONDS": "0.1",
            "RDFT_KNOWLEDGE_DIR": str(tmp_path / "knowledge"),  # this test's own experience store
        }
        log = tmp_path / "log-run"
        environ = clean_environ(**{**env, "LOG_TRACE_PATH": str(log)})
        started = time.monotonic()
        proc = subprocess.Popen(
            ["rdft", "run", "--demo"],
            cwd=rdft.workdir,
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        marker = log / "Loop_1" / "running" / "data.json"
        deadline = time.monotonic() + 600
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert marker.exists(), proc.communicate()[0][-3000:] if proc.poll() is not None else "timed out"
        # A second session on the same folder is refused while the first one owns it (it would
        # kill the first one's steps as leftovers and record a failed experiment).
        second = rdft("run", "--resume", str(log), env=env, timeout=120)
        assert f"is in use by another rdft run (process {proc.pid})" in one_line_error(second)
        assert proc.poll() is None  # the refused session stopped nothing
        trainer = wait_for_trainer(log / "Loop_1" / "workspace")  # the training the kill will orphan
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        killed_after = time.monotonic() - started
        assert process_alive(trainer)
        before = {p: p.read_bytes() for p in (log / "Loop_0").rglob("*.json")}
        assert not (log / "Loop_1" / "feedback" / "feedback.json").exists()

        resuming = time.monotonic()
        resumed = rdft("run", "--resume", str(log), env=env, timeout=900)
        resumed_for = time.monotonic() - resuming
    assert resumed.returncode == 0, resumed.output[-3000:]
    # The killed session's time is counted too (from its last files), not only the resumed one's.
    assert json.loads((log / "run.json").read_text())["spent_s"] >= killed_after + resumed_for - 15
    assert "proposals by the LLM agent-model" in resumed.stderr
    # The resumed run stopped the training the killed one left running, then redid it.
    assert "stopped 1 process group(s) left running by the interrupted run" in resumed.stderr
    assert not process_alive(trainer)
    check_run(log, loops=2)
    assert {p: p.read_bytes() for p in (log / "Loop_0").rglob("*.json")} == before  # earlier loop intact

    # The coder's first data script was broken, its next train.yaml named another model (refused
    # in one line), and the third round passed.
    rounds = [json.loads((log / "Loop_0" / "coding" / f"round_{i}" / "evaluation.json").read_text()) for i in (1, 2, 3)]
    assert [(r["ok"], r["stage"]) for r in rounds] == [(False, "data"), (False, "config"), (True, None)]
    assert "no column named problem" in rounds[0]["error"]
    assert rounds[1]["error"] == (
        "[config] train.yaml sets model.path to /models/tuned, but this run fine-tunes its base model tiny:llama "
        "only; remove model.path (rdft sets it)"
    )
    # The script copied five evaluation items into its full run (not its debug run): the guard
    # dropped exactly those, the feedback says so, and the model trained on the rest.
    data = json.loads((log / "Loop_0" / "running" / "data.json").read_text())
    assert (data["written"], data["samples"], data["leakage"]["exact"], data["dropped_leakage"]) == (605, 600, 5, 5)
    assert data["evaluation_items_hit"] == 5
    trained = (log / "Loop_0" / "workspace" / "data.jsonl").read_text()
    assert trained.count("\n") == 600 and not any(q in trained for q in COPIED)
    feedback = json.loads((log / "Loop_0" / "feedback" / "feedback.json").read_text())
    assert feedback["leakage"]["exact"] == 5
    assert (
        "The leakage guard dropped 5 of 605 rows the data script wrote (exact 5; 5 evaluation item(s)"
        in (log / "Loop_0" / "feedback" / "chat.jsonl").read_text()
    )
    assert "You review one fine-tuning experiment" in (log / "Loop_0" / "feedback" / "chat.jsonl").read_text()
    # Loop 1's proposal read loop 0's record: the explanation, next steps, data counts, loss curve,
    # validation with its interval, and the role of each loop.
    asked = [user_text(r) for r in server.requests]
    proposal = next(text for text in asked if "# This loop (1, improve)" in text)
    for part in (
        "Format learned; the letters partly.",
        "next steps it suggested: More epochs.",
        "written 605",
        "trained on 600",
        "dropped as leakage 5",
        "training: loss ",
        "validation: ",
        "(95% CI ",
        "Loop 0 (your parent: the best so far by validation mean",
        "Improve on loop 0",
    ):
        assert part in proposal, part
    # The coder's contract holds every train.yaml key and every public toolkit function's
    # signature, introspected here from the schema and from the toolkit the data env imports.
    coding = next(r["body"]["messages"][0]["content"] for r in server.requests if is_coding(r))
    schema = rdft("train", "--schema").stdout
    for key in schema_keys():
        assert f"{key}:" in coding and f"{key}:" in schema, key
    entries = {}  # the toolkit reference's entries, by name: "- name(…)" or "- class Name" and its lines
    for block in coding.split("\n- ")[1:]:
        entries[block.removeprefix("class ").split("(")[0].split(" ")[0]] = block.split("\n\n")[0]
    for name, parameters in toolkit_signatures():
        assert name in entries, name
        assert all(
            f"{p}:" in entries[name] or f"{p}=" in entries[name] or f"*{p}" in entries[name] for p in parameters
        ), (name, parameters, entries[name])
    # The debug runs' measurements reach the coder: none before the first one, then the last
    # one's figures and the full run projected from them (loop 1's rounds come after loop 0's).
    codings = [r["body"]["messages"][0]["content"] for r in server.requests if is_coding(r)]
    assert "Throughput on this host: not measured yet" in codings[0]
    assert "Measured on this host by the last debug run" in codings[-1] and "Projected for " in codings[-1]
    assert "def doc_to_text(doc: dict) -> str:" in coding and "Put the letter in" in coding  # the scoring prompt
    # Loop 1's first data had half its rows over data.max_length: the gate refused it and the
    # reason reached the next round, which passed.
    rounds = [json.loads(p.read_text()) for p in sorted((log / "Loop_1" / "coding").glob("round_*/evaluation.json"))]
    assert [(r["ok"], r["stage"]) for r in rounds] == [(False, "quality"), (True, None)]
    assert "rows are longer than data.max_length (256 tokens" in rounds[0]["error"]
    assert any("Fix the files" in text and "rows are longer than data.max_length" in text for text in asked)
    assert rounds[1]["quality"]["judge"]["passed"] is True  # the LLM judge read the passing rows
    # `rdft prompt` shows what a stage sent (and what the next call would send).
    shown = rdft("prompt", str(log), "--stage", "proposal", "--loop", "1", "--json", env=env)
    assert shown.returncode == 0, shown.output
    sent = json.loads(shown.stdout)
    assert sent["state"] == "sent" and "Format learned; the letters partly." in sent["messages"][1]["content"]
    upcoming = rdft("prompt", str(log), "--stage", "proposal", env=env)
    assert "# proposal of loop 2: the messages it would send" in upcoming.stdout
    assert "Loop 1 (your parent" in upcoming.stdout or "Loop 1 (a " in upcoming.stdout

    # A second run meets the first run's data error: its coder is shown the fix the first run
    # found, and the recipes that beat the base model.
    listed = rdft("knowledge", "list", env=env).stdout
    assert "data: KeyError: no column named problem" in listed  # the error's signature, by its last line
    assert "recipe  demo          demo_letter +" in listed
    with LLMServer(agent) as again:
        second = rdft("run", "--demo", "--step-n", "4", env={**env, "OPENAI_API_BASE": again.base_url}, timeout=600)
    assert second.returncode == 3, second.output[-3000:]
    prompts = [user_text(r) for r in again.requests if is_coding(r)]
    assert "Fixes that resolved this same error before" not in prompts[0]  # round 1 has no error yet
    assert "Recipes that beat the base model in earlier runs on this benchmark family" in prompts[0]
    assert "Fixes that resolved this same error before" in prompts[1] and "no column named problem" in prompts[1]
    assert "+from rdft_data import debug_sample, write_chat_jsonl" in prompts[1]  # the diff that fixed it
    cleared = rdft("knowledge", "clear", "--yes", env=env)
    assert cleared.returncode == 0 and "removed" in cleared.stdout
    assert "is empty" in rdft("knowledge", "list", env=env).stdout

    # The key reached the server and nothing else.
    assert all(r["auth"] == f"Bearer {SECRET}" for r in server.requests)
    assert any(r["body"].get("stream") for r in server.requests)
    for path in log.rglob("*"):
        if path.is_file() and path.stat().st_size < 50_000_000:
            assert SECRET.encode() not in path.read_bytes(), path
    assert SECRET not in resumed.output
    # RDFT_REMOTE: the log was synced after every loop, the last one included.
    synced = tmp_path / "remote" / log.name
    assert (synced / "Loop_0" / "feedback" / "feedback.json").is_file()
    assert (synced / "Loop_1" / "feedback" / "feedback.json").read_bytes() == (
        log / "Loop_1" / "feedback" / "feedback.json"
    ).read_bytes()
    assert not list(synced.rglob("*.safetensors"))
    for path in synced.rglob("*"):
        assert not path.is_file() or SECRET.encode() not in path.read_bytes(), path


def user_text(request: dict) -> str:
    return "\n".join(m["content"] for m in request["body"]["messages"] if m["role"] == "user")


def is_coding(request: dict) -> bool:
    return request["body"]["messages"][0]["content"].startswith("You write the files of one fine-tuning experiment")


def schema_keys() -> list[str]:
    """Every key of the training config, walked from the pydantic models here."""
    from pydantic import BaseModel

    from rdft.training.config import TrainConfig

    def walk(model, prefix):
        for name, field in model.model_fields.items():
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                yield from walk(field.annotation, f"{prefix}{name}.")
            else:
                yield f"{prefix}{name}"

    return list(walk(TrainConfig, ""))


def toolkit_signatures() -> list[tuple[str, list[str]]]:
    """(name, its parameter names) of every public name of the toolkit data scripts import."""
    import importlib
    import inspect
    import sys
    import tempfile

    from rdft.datasets.toolkit import toolkit_path

    sys.path.insert(0, str(toolkit_path(Path(tempfile.mkdtemp()))))
    try:
        toolkit = importlib.import_module("rdft_data")
        out = []
        for name in toolkit.__all__:
            value = getattr(toolkit, name)
            if inspect.isclass(value) and "__init__" not in vars(value):  # an exception: its base's arguments
                out.append((name, []))
                continue
            target = value.__init__ if inspect.isclass(value) else value
            parameters = [p for p in inspect.signature(target).parameters if p != "self" and not p.startswith("_")]
            out.append((name, parameters))
        return out
    finally:
        sys.path.pop(0)


def wait_for_trainer(workspace: Path, timeout: float = 300) -> int:
    """The pid of the training launched in `workspace` (accelerate's process), once it runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in Path("/proc").iterdir():
            try:
                cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
                cwd = os.readlink(proc / "cwd")
            except OSError:
                continue
            if "sft.py" in cmdline and cwd == str(workspace):
                return int(proc.name)
        time.sleep(0.2)
    raise AssertionError(f"no training started in {workspace}")


def process_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_bad_input_stops_with_one_line(rdft, tmp_path):
    assert "unknown benchmark 'aime26'" in one_line_error(
        rdft("run", "--base-model", "tiny:llama", "--benchmark", "aime26")
    )
    missing = one_line_error(rdft("run", "--base-model", str(tmp_path / "no-model"), "--benchmark", "aime24"))
    assert "has no config.json" in missing
    assert "not a duration" in one_line_error(rdft("run", "--demo", "--timeout", "abc"))
    assert "no benchmark" in one_line_error(rdft("run", "--base-model", "tiny:llama"))
    assert "not an rdft run folder" in one_line_error(rdft("run", "--resume", str(tmp_path / "nowhere")))
    broken = tmp_path / "broken-run"
    broken.mkdir()
    (broken / "run.json").write_text("{not json")
    assert "cannot read the run" in one_line_error(rdft("run", "--resume", str(broken)))
    assert not list(rdft.workdir.glob("log/*"))  # nothing started


def test_report_opens_in_headless_chromium(demo_run, rdft, tmp_path):
    """The HTML report of the finished two-loop run, rendered by Debian's chromium."""
    chromium = shutil.which("chromium")
    if chromium is None:
        skip_without("Debian's chromium is not installed (.ci/run installs it: apt-get install chromium)")
    log = log_dir_of(demo_run.stdout)
    page = tmp_path / "report.html"
    made = rdft("report", str(log), "--output", str(page))
    assert made.returncode == 0 and made.stdout.strip() == str(page), made.output
    flags = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chrome'}",
    ]
    dom = subprocess.run([*flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    rows = re.findall(r"<tr[ >]", dom.split('id="summary"')[1].split("</table>")[0])
    assert len(rows) == 3  # header + two loops
    from rdft.loop.report import score_figure  # the plot shows the hidden test score beside validation

    figure = score_figure(json.loads((log / "summary.json").read_text()))
    labels = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert labels == ["validation", "hidden test", "base model (test)", "base model", "confirmed best"]
    assert re.search(r'<img id="score-plot"[^>]+src="data:image/png;base64,', dom)
    artifacts = Path(os.environ.get("RDFT_TEST_ARTIFACTS", tmp_path))
    artifacts.mkdir(parents=True, exist_ok=True)
    shot = artifacts / "report.png"
    subprocess.run(
        [*flags, f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri()], capture_output=True, timeout=120
    )
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[0] >= 1000 and pixels.std() > 0.01  # drawn, not blank
    print(f"screenshot: {shot}")


def run_cli(shared_dirs, workdir: Path, *args: str, log: Path | None = None) -> subprocess.CompletedProcess:
    env = clean_environ(**shared_dirs, **({"LOG_TRACE_PATH": str(log)} if log else {}))
    return subprocess.run(["rdft", *args], cwd=workdir, env=env, capture_output=True, text=True, timeout=900)


def no_failed_experiment(log: Path) -> None:
    assert not list(log.rglob("failure.json")), list(log.rglob("failure.json"))
    nodes = json.loads((log / "trace.json").read_text())["nodes"] if (log / "trace.json").exists() else []
    assert all(node["status"] != "failed" for node in nodes), nodes


def test_budget_pauses_and_resumes_with_new_limits(shared_dirs, data_env, eval_env, train_env, tmp_path):
    """--timeout ends a run without a failed experiment (exit 3, the resume command); a resume
    with a new --timeout finishes what was started (--loop-n extending a finished run: the GRPO
    test below). Deterministic on any host: a 5-second budget ends before loop 0's feedback,
    which needs a training run (its interpreter alone starts slower than that)."""
    work = tmp_path / "work"
    work.mkdir()
    shared_dirs = {**shared_dirs, "FT_UPPER_DATA_SIZE_LIMIT": "256"}  # the flow is tested, not the learning
    short = run_cli(shared_dirs, work, "run", "--demo", "--loop-n", "1", "--timeout", "5s", log=tmp_path / "short")
    assert short.returncode == 3, short.stdout + short.stderr[-2000:]
    assert f"resume with `rdft run --resume {tmp_path / 'short'} --timeout DURATION`" in short.stdout
    no_failed_experiment(tmp_path / "short")
    assert not (tmp_path / "short" / "Loop_0" / "feedback").exists()
    recorded = json.loads((tmp_path / "short" / "run.json").read_text())
    # the budget (a step is not started with a second or less left: Budget.out_of_budget), and the
    # time to stop the cut step
    assert 5 - 1 <= recorded["spent_s"] < 5 + 30
    spent = run_cli(shared_dirs, work, "run", "--resume", str(tmp_path / "short"))  # the budget is still spent
    assert spent.returncode == 3 and "the --timeout budget (5 s) is spent" in spent.stdout
    resumed = run_cli(shared_dirs, work, "run", "--resume", str(tmp_path / "short"), "--timeout", "30m")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr[-3000:]
    nodes = json.loads((tmp_path / "short" / "trace.json").read_text())["nodes"]
    assert [(n["loop"], n["status"]) for n in nodes] == [(0, "done")]
    assert nodes[0]["validation"] is not None and nodes[0]["test"] is not None
    no_failed_experiment(tmp_path / "short")


def test_a_stop_before_loop_0_leaves_the_summary_and_the_report(rdft, shared_dirs, data_env, eval_env, train_env):
    """Paused after its first step (--step-n 1: the evaluation items), a run has written its
    summary.json and its report already, which say that nothing is scored yet (issue 27, item 12)."""
    stopped = rdft("run", "--demo", "--step-n", "1", env=shared_dirs)
    assert stopped.returncode == 3, stopped.output  # stopped, resumable
    log = log_dir_of(stopped.stdout)
    summary = json.loads((log / "summary.json").read_text())
    assert summary["baseline"]["validation"] is None and summary["loops"] == [] and summary["confirmed"] is None
    assert (log / "report.html").is_file() and "Base model: validation None" in (log / "report.md").read_text()


def test_a_resume_redoes_a_cut_record_and_keeps_it_aside(demo_run, rdft, shared_dirs, tmp_path):
    """A record cut in half (a full disk, a bad copy) is neither trusted nor a traceback: the
    resume keeps its stage's folder aside as <stage>.damaged and does that stage (and any after
    it) again, comparing with the same confirmed best as the first time (issue 27, item 13)."""
    import shutil

    log = tmp_path / "copy"
    shutil.copytree(log_dir_of(demo_run.stdout), log)
    feedback = log / "Loop_1" / "feedback" / "feedback.json"
    whole = feedback.read_text()
    feedback.write_text(whole[: len(whole) // 2])
    resumed = rdft("run", "--resume", str(log), env=shared_dirs, timeout=600)
    assert resumed.returncode == 0 and "Traceback" not in resumed.output, resumed.output[-3000:]
    assert (log / "Loop_1" / "feedback.damaged" / "feedback.json").read_text() == whole[: len(whole) // 2]
    redone = json.loads(feedback.read_text())
    assert (redone["decision"], redone["comparison"]) == (
        json.loads(whole)["decision"],
        json.loads(whole)["comparison"],
    )


def test_the_budget_caps_the_running_stages_leakage_guard(demo_run, shared_settings, tmp_path):
    """The running stage's guard takes its timeout from the run's budget as every other step does
    (issue 27 item 8): with a millisecond left when the guard starts (no interpreter starts that
    fast), the guard is stopped there."""
    from rich.console import Console

    from rdft.loop.coding import GUARD_TIMEOUT
    from rdft.loop.running import run_experiment
    from rdft.loop.scenario import Scenario
    from rdft.loop.workspace import StepFailed

    log = log_dir_of(demo_run.stdout)
    asked: list[float] = []

    def deadline(cap: float) -> float:  # the data script gets its own limit; then 1 ms is left
        asked.append(cap)
        return cap if len(asked) == 1 else 0.001

    workspace = tmp_path / "workspace"
    shutil.copytree(log / "Loop_0" / "workspace", workspace, ignore=shutil.ignore_patterns(".debug", "output"))
    (tmp_path / "stage").mkdir()
    with pytest.raises(StepFailed, match=r"the leakage guard timed out after 0\.001 s"):
        run_experiment(
            shared_settings,
            Scenario.model_validate_json((log / "scenario.json").read_text()),
            workspace,
            tmp_path / "stage",
            log / "baseline" / "evaluation_items.jsonl",
            deadline=deadline,
            console=Console(quiet=True),
        )
    assert asked == [shared_settings.ft_data_processing_timeout, GUARD_TIMEOUT]
