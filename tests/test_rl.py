"""GRPO and DPO (`method.type: grpo|dpo`, recipes/rl.py on TRL's GRPOTrainer and DPOTrainer) on
the tiny model on CPU.

- The reward is the benchmark's own scorer, loaded from evaluation/tasks in the train env:
  checked against hand-scored answers of three families (chemistry through RDKit).
- From the demo's trained model the sampled answers disagree, so there is a learning signal; the
  adapter's weights move off their zero start, and the metrics carry the reward, its spread,
  the KL and the share of prompts without signal.
- From a parent's adapter (merged before training) the result is saved merged, and loads.
- A run stopped after a checkpoint resumes from it and ends where an unbroken run would.
- DPO pairs the model's own answers (a right one chosen, a wrong one rejected, checked here by
  hand), counts them in data_stats.json, resumes on the same pairs, and its adapter changes the
  model's answers; with no pair to train on it says so in one line.
- A GRPO or DPO config that cannot run is one line before any env starts.
- GRPO sampled by vLLM (rl.generation vllm), against tests/vllm_standin.py (vLLM's protocol on
  transformers and peft: vLLM's wheels are CUDA builds): every answer comes from the server, which
  loads the adapter after each step (checked against the checkpoints), gets the merged start
  weights from a parent's adapter, takes the last of several GPUs, and a server that does not
  start, or stops answering, is one line; a server the user runs serves two ddp processes, the
  main one alone loading each step's adapter.
"""

import json
import re
import subprocess
import urllib.request
from pathlib import Path

import pytest
import yaml
from conftest import REPO, clean_environ, one_line_error

PROMPTS = REPO / "recipes" / "configs" / "data" / "tiny_grpo.jsonl"


def run_train(shared_dirs, config: Path, workspace: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["rdft", "train", str(config), "--workspace", str(workspace)],
        env=clean_environ(**shared_dirs),
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_the_reward_is_the_benchmarks_own_scorer(train_env, tmp_path):
    from rdft.evaluation.benchmarks import table_row
    from rdft.resources import evaluation_dir

    chem = next(
        json.loads(line)
        for line in (REPO / "tests" / "fixtures" / "benchmarks" / "chemcotbench.jsonl").read_text().splitlines()
        if json.loads(line)["subtask"] == "add"
    )  # Clc1ccccc1 plus a hydroxyl
    cases = {
        "demo_letter": (
            {"question": "Which one is a letter: 6-6-j?", "answer": "j"},
            ["\\boxed{j}", "j", "\\boxed{k}", [{"role": "assistant", "content": "It is \\boxed{j}."}]],
            [1.0, 0.0, 0.0, 1.0],  # unreadable (no box) is 0, as in evaluation
        ),
        "aime24": ({"problem": "p", "answer": "25"}, ["\\boxed{025}", "\\boxed{26}", "25"], [1.0, 0.0, 0.0]),
        "chemcotbench_mol_edit": (
            chem,
            ['{"output": "Oc1ccc(Cl)cc1"}', '{"output": "Clc1ccccc1"}', "no JSON here"],
            [1.0, 0.0, 0.0],  # one more hydroxyl (RDKit counts it), none, unreadable
        ),
    }
    check = (
        "import json, sys\nsys.path.insert(0, sys.argv[1])\nimport rl\n"
        "for spec, doc, answers in json.load(open(sys.argv[2])):\n"
        "    reward = rl.benchmark_reward(spec)\n"
        "    print(json.dumps(reward([None] * len(answers), answers, [json.dumps(doc)] * len(answers))))\n"
    )
    specs = [
        [{"benchmark": name, "family": table_row(name)["family"], "tasks_dir": str(evaluation_dir() / "tasks"),
          "entry": {**table_row(name), "name": name}}, doc, answers]
        for name, (doc, answers, _) in cases.items()
    ]  # fmt: skip
    (tmp_path / "cases.json").write_text(json.dumps(specs))
    result = train_env.run(
        ["python", "-c", check, str(REPO / "recipes"), str(tmp_path / "cases.json")], echo=False, cwd=tmp_path
    )
    assert result.ok, result.tail
    got = [json.loads(line) for line in result.tail.strip().splitlines()[-len(cases) :]]
    assert got == [expected for _, _, expected in cases.values()]


def rl_config(folder: Path, method: str = "grpo", **sections) -> Path:
    """The shipped tiny_cpu_<method>.yaml with its prompts' absolute path and `sections` applied."""
    config = yaml.safe_load((REPO / "recipes" / "configs" / f"tiny_cpu_{method}.yaml").read_text())
    config["data"]["path"] = str(PROMPTS)
    config["rl"].update(max_completion_length=12)
    for name, values in sections.items():
        config.setdefault(name, {}).update(values)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{method}.yaml").write_text(yaml.safe_dump(config))
    return folder / f"{method}.yaml"


def demo_model(demo_run) -> Path:
    """The demo's last loop's fully fine-tuned tiny model: right on most demo items, not all —
    a group of sampled answers that disagree is GRPO's signal (an untrained model scores 0)."""
    from conftest import log_dir_of

    assert demo_run.returncode == 0, demo_run.stderr[-2000:]
    model = log_dir_of(demo_run.stdout) / "Loop_1" / "workspace" / "output" / "model"
    assert (model / "config.json").is_file()
    return model


def standin_command(train_env) -> list[str]:
    """`vllm serve` for this CPU host: tests/vllm_standin.py, vLLM's protocol on transformers and peft."""
    return [str(train_env.python), str(REPO / "tests" / "vllm_standin.py"), "serve"]


def test_grpo_learns_from_the_scorers_reward_and_resumes(shared_dirs, demo_run, train_env, tmp_path):
    """Stopped after its checkpoint at step 4 (a kill leaves no result.json), then resumed to step
    8: the second session starts from the checkpoint, and the run as a whole learned."""
    start = {"path": str(demo_model(demo_run))}
    run = tmp_path / "run"
    first = run_train(shared_dirs, rl_config(run, model=start, train={"max_steps": 4, "save_steps": 4}), run)
    assert first.returncode == 0, first.stderr[-3000:]
    output = run / "output"
    (output / "result.json").unlink()
    resumed = run_train(shared_dirs, rl_config(run, model=start, train={"max_steps": 8, "save_steps": 4}), run)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    result = json.loads((output / "result.json").read_text())
    assert (result["method"], result["weights"], result["steps"]) == ("grpo", "lora", 8)
    assert result["resumed_from"].endswith("checkpoints/checkpoint-4")
    metrics = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == list(range(1, 9))  # both sessions' lines, none twice
    assert all(m["total_steps"] == 8 for m in metrics[4:])
    for m in metrics:
        assert 0.0 <= m["reward_mean"] <= 1.0 and m["reward_std"] >= 0 and 0.0 <= m["same_reward_share"] <= 1.0
        assert m["kl"] is not None and m["completion_length"] > 0
    # The demo's model is right most of the time, not always: some groups disagree (the signal).
    assert any(m["same_reward_share"] < 1.0 for m in metrics), metrics
    assert 0 < sum(m["reward_mean"] for m in metrics) / len(metrics) < 1, metrics
    # The adapter moved off its start (PEFT starts every lora_B at zero): parameters changed.
    moved = (
        "import sys; from safetensors.torch import load_file\n"
        "weights = load_file(sys.argv[1])\n"
        "print(sum(int(t.abs().sum() > 0) for n, t in weights.items() if 'lora_B' in n), "
        "sum(1 for n in weights if 'lora_B' in n))"
    )
    counted = train_env.run(["python", "-c", moved, str(output / "adapter" / "adapter_model.safetensors")], echo=False)
    assert counted.ok, counted.tail
    changed, total = map(int, counted.tail.strip().splitlines()[-1].split())
    assert total > 0 and changed == total, (changed, total)
    assert "rdft: done:" in resumed.stderr
    # The report plots the reward beside the loss for a GRPO loop; an SFT loop has no reward curve.
    from conftest import log_dir_of

    from rdft.loop.report import reward_plot

    assert reward_plot(output / "metrics.jsonl").startswith("data:image/png;base64,")
    assert reward_plot(log_dir_of(demo_run.stdout) / "Loop_1" / "workspace" / "output" / "metrics.jsonl") is None


def test_grpo_from_a_parents_adapter_saves_the_merged_result(shared_dirs, train_env, tmp_path):
    """model.adapter (a parent experiment's LoRA) is merged into the base before training; the new
    adapter is relative to that merge, so the result is saved merged too, and it loads."""
    chats = [{"messages": [{"role": "user", "content": json.loads(line)["prompt"]},
                           {"role": "assistant", "content": "\\boxed{" + json.loads(line)["doc"]["answer"] + "}"}]}
             for line in PROMPTS.read_text().splitlines()]  # fmt: skip
    (tmp_path / "sft.jsonl").write_text("".join(json.dumps(chat) + "\n" for chat in chats))
    sft = {"model": {"path": "tiny:llama", "dtype": "float32"}, "data": {"path": "sft.jsonl", "max_length": 64},
           "method": {"type": "lora"}, "train": {"max_steps": 2, "micro_batch_size": 4, "learning_rate": 3e-3,
           "gradient_checkpointing": False}}  # fmt: skip
    (tmp_path / "sft.yaml").write_text(yaml.safe_dump(sft))
    assert run_train(shared_dirs, tmp_path / "sft.yaml", tmp_path / "sft").returncode == 0
    adapter = tmp_path / "sft" / "output" / "adapter"
    # Sampled by vLLM's protocol (the CPU stand-in): the server is given the merge to start from.
    vllm = {"generation": "vllm", "vllm_command": standin_command(train_env)}
    config = rl_config(tmp_path / "grpo", model={"adapter": str(adapter)}, train={"max_steps": 2}, rl=vllm)
    trained = run_train(shared_dirs, config, tmp_path / "grpo")
    assert trained.returncode == 0, trained.stderr[-3000:]
    output = tmp_path / "grpo" / "output"
    started = next(line for line in (output / "vllm.log").read_text().splitlines() if line.startswith("{"))
    served = json.loads(started)["argv"][1]
    assert served == str(output / "start-weights") and not Path(served).exists()  # saved for the server, then gone
    result = json.loads((output / "result.json").read_text())
    merged = Path(result["merged_dir"])
    loads = (
        "import sys; from transformers import AutoModelForCausalLM; AutoModelForCausalLM.from_pretrained(sys.argv[1])"
    )
    assert train_env.run(["python", "-c", loads, str(merged)], echo=False).ok
    assert "rdft: merged model in" in trained.stderr


def test_grpo_samples_from_a_vllm_server_that_gets_each_steps_adapter(shared_dirs, demo_run, train_env, tmp_path):
    """rl.generation vllm: the recipe starts the server (rl.vllm_command; on a GPU host the score
    env's vllm serve), samples every answer from it, and after each optimizer step has it load the
    adapter as trained so far, under a new name, dropping the one before. The adapter the server
    sampled from at step k is the trainer's weights after k steps (its checkpoint), and the server
    is stopped and its adapter files gone at the end."""
    run = tmp_path / "run"
    config = rl_config(
        run,
        model={"path": str(demo_model(demo_run))},
        # 4 prompts a step: some group of 4 answers disagrees (the demo's model is right most of the time)
        train={"max_steps": 4, "micro_batch_size": 4, "save_steps": 1, "save_total_limit": 4},
        rl={"generation": "vllm", "vllm_command": standin_command(train_env)},
    )
    trained = run_train(shared_dirs, config, run)
    assert trained.returncode == 0, trained.stderr[-3000:]
    output = run / "output"
    result = json.loads((output / "result.json").read_text())
    assert (result["steps"], result["data"]["generation"]) == (4, "vllm")
    log = [json.loads(line) for line in (output / "vllm.log").read_text().splitlines() if line.startswith("{")]
    start, requests = log[0], log[1:]
    argv = start["argv"]
    assert start["runtime_lora"] and "--enable-lora" in argv
    assert argv[argv.index("--max-lora-rank") + 1] == "16" and argv[argv.index("--served-model-name") + 1] == "start"
    assert all(r["status"] == 200 for r in requests), requests
    # Adapter names of this run's own: a prefix of its output folder, then the step.
    prefix = requests[0]["name"].rsplit("-step-", 1)[0]
    assert re.fullmatch(r"rdft-[0-9a-f]{8}", prefix)
    sampled = [(r["event"].rsplit("/", 1)[-1], (r.get("name") or r["model"]).removeprefix(prefix + "-"), r.get("n"))
               for r in requests]  # fmt: skip
    expected = [("load_lora_adapter", "step-0", None)] + [("completions", "step-0", 4)] * 4
    for k in (1, 2, 3):  # one request a prompt, for its group of 4 answers
        expected += [("load_lora_adapter", f"step-{k}", None), ("unload_lora_adapter", f"step-{k - 1}", None)]
        expected += [("completions", f"step-{k}", 4)] * 4
    assert sampled == expected
    asked = {(r["max_tokens"], r["temperature"], r["logprobs"], r["return_tokens_as_token_ids"])
             for r in requests if r["event"] == "/v1/completions"}  # fmt: skip
    assert asked == {(12, 1.0, 0, True)}
    loaded = {
        r["name"].removeprefix(prefix + "-"): r["sha256"] for r in requests if r["event"].endswith("/load_lora_adapter")
    }
    facts = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); from vllm_standin import tensors_sha256\n"
        "from transformers import AutoTokenizer\n"
        "tokenizer = AutoTokenizer.from_pretrained(sys.argv[2])\n"
        "rows = [json.loads(line) for line in open(sys.argv[3])]\n"
        "print(max(len(tokenizer.apply_chat_template([{'role': 'user', 'content': r['prompt']}],"
        " add_generation_prompt=True, return_dict=True)['input_ids']) for r in rows))\n"
        "for path in sys.argv[4:]: print(tensors_sha256(path))"
    )
    checkpoints = [output / "checkpoints" / f"checkpoint-{k}" / "adapter_model.safetensors" for k in (1, 2, 3)]
    model = demo_model(demo_run)
    found = train_env.run(
        ["python", "-c", facts, str(REPO / "tests"), str(model), str(PROMPTS), *map(str, checkpoints)], echo=False
    )
    assert found.ok, found.tail
    longest, *hashes = found.tail.split()[-4:]
    # the longest prompt as rendered plus an answer's 12 tokens: no KV cache for lengths never sampled
    assert argv[argv.index("--max-model-len") + 1] == str(int(longest) + 12)
    # What the server loaded before sampling step k's answers is the trainer's weights after k steps.
    assert hashes == [loaded["step-1"], loaded["step-2"], loaded["step-3"]]
    assert len(set(loaded.values())) > 1  # the adapter moved off its zero start: later answers came from new weights
    metrics = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3, 4] and all(m["completion_length"] > 0 for m in metrics)
    assert not (output / "vllm-adapters").exists()
    url = yaml.safe_load((run / "train.resolved.yaml").read_text())["rl"]["vllm_server_url"]
    with pytest.raises(OSError):  # stopped with the training
        urllib.request.urlopen(f"{url}/health", timeout=5)


def test_two_ddp_processes_sample_from_a_running_vllm_server(shared_dirs, demo_run, train_env, tmp_path):
    """rl.vllm_server_url alone: a server the user runs (here started by the test, as on another
    node). Under ddp the main process alone saves and loads each step's adapter, both processes
    wait for it and sample their own prompts from it; at the end the adapter left loaded is
    unloaded and the server keeps running."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    model = demo_model(demo_run)
    log = tmp_path / "server.log"
    argv = [*standin_command(train_env), str(model), "--port", str(port), "--enable-lora", "--max-loras", "4"]
    with open(log, "w") as out:
        server = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                  env={**clean_environ(), "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"})  # fmt: skip
    try:
        run = tmp_path / "run"
        config = rl_config(
            run,
            model={"path": str(model)},
            train={"max_steps": 2, "micro_batch_size": 2},
            distributed={"strategy": "ddp", "num_processes": 2},
            rl={"generation": "vllm", "vllm_server_url": f"http://127.0.0.1:{port}"},
        )
        trained = run_train(shared_dirs, config, run)
        assert trained.returncode == 0, trained.stderr[-3000:]
        assert server.poll() is None  # the user's server: still running
        result = json.loads((run / "output" / "result.json").read_text())
        assert (result["processes"], result["steps"], result["data"]["generation"]) == (2, 2, "vllm")
        requests = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")][1:]
        prefix = requests[0]["name"].rsplit("-step-", 1)[0]
        sampled = [(r["event"].rsplit("/", 1)[-1], (r.get("name") or r["model"]).removeprefix(prefix + "-"))
                   for r in requests]  # fmt: skip
        # 2 prompts a process, a request each: 4 a step, once the step's adapter is loaded
        assert sampled == [("load_lora_adapter", "step-0")] + [("completions", "step-0")] * 4 + [
            ("load_lora_adapter", "step-1"), ("unload_lora_adapter", "step-0")] + [("completions", "step-1")] * 4 + [
            ("unload_lora_adapter", "step-1")]  # fmt: skip
        assert all(r["status"] == 200 for r in requests) and not (run / "output" / "vllm-adapters").exists()
    finally:
        server.kill()
        server.wait()


def test_the_started_vllm_server_takes_the_last_of_several_gpus_or_shares_the_only_one(rdft, tmp_path):
    """Planned with --assume-gpus (a dry run): with two GPUs the server gets GPU 1 alone and
    training GPU 0; with one, both use it (the server its rl.vllm_memory share). Left to auto
    without a built score env, GRPO samples with transformers and says why."""
    config = rl_config(tmp_path, rl={"vllm_command": ["vllm", "serve"]})
    for gpus, server, training in (("2x80GiB", 1, "0"), ("1x80GiB", 0, "0")):
        planned = rdft("train", str(config), "--dry-run", "--assume-gpus", gpus, "--workspace", str(tmp_path / gpus))
        assert planned.returncode == 0, planned.stderr[-2000:]
        rl = yaml.safe_load((tmp_path / gpus / "train.resolved.yaml").read_text())["rl"]
        assert (rl["generation"], rl["vllm_gpu"], rl["vllm_command"]) == ("vllm", server, ["vllm", "serve"])
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", rl["vllm_server_url"])
        assert f"export CUDA_VISIBLE_DEVICES={training}\n" in (tmp_path / gpus / "launch.sh").read_text()
        assert f"GRPO samples its answers with vLLM on GPU {server}" in planned.stderr
    auto = rl_config(tmp_path / "auto")
    planned = rdft("train", str(auto), "--dry-run", "--assume-gpus", "1x80GiB", "--workspace", str(tmp_path / "w"))
    assert planned.returncode == 0, planned.stderr[-2000:]
    assert yaml.safe_load((tmp_path / "w" / "train.resolved.yaml").read_text())["rl"]["generation"] == "transformers"
    assert "GRPO samples its answers with transformers: the score env, which holds vLLM, is not built" in planned.stderr


@pytest.mark.parametrize("dies", ["at start", "mid-run"])
def test_a_vllm_server_that_does_not_start_or_stops_answering_is_one_line(dies, shared_dirs, train_env, tmp_path):
    run = tmp_path / "run"
    if dies == "at start":
        command, extra = (
            [str(train_env.python), "-c", "import sys; print('No CUDA GPUs are available'); sys.exit(3)"],
            {},
        )
        says = "rl: vLLM's server exited (3) before it answered: No CUDA GPUs are available; see "
    else:  # answers the first adapter load, then exits at the first request for answers
        command, extra = standin_command(train_env), {"STANDIN_DIE_AFTER_REQUESTS": "1"}
        says = "/v1/completions ("
    config = rl_config(run, train={"max_steps": 1}, rl={"generation": "vllm", "vllm_command": command})
    trained = subprocess.run(
        ["rdft", "train", str(config), "--workspace", str(run)],
        env=clean_environ(**shared_dirs, **extra),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert trained.returncode != 0 and "Traceback" not in trained.stderr, trained.stderr[-3000:]
    assert says in trained.stderr, trained.stderr[-3000:]
    if dies == "mid-run":
        assert "rl: vLLM's server did not answer http://127.0.0.1:" in trained.stderr
        assert "see output/vllm.log if rdft started it" in trained.stderr
    assert not (run / "output" / "result.json").exists()


def last_box(text: str) -> str | None:
    """demo_letter's reading of an answer, by hand: the last \boxed{} content, stripped, lower-case."""
    found = re.findall(r"\\boxed\{([^{}]*)\}", text)
    return found[-1].strip().lower() if found else None


def test_dpo_pairs_the_models_own_answers_resumes_on_them_and_changes_its_answers(
    shared_dirs, demo_run, train_env, tmp_path
):
    """From the demo's trained model (right on most prompts, not all): 4 answers to each of the
    32 prompts, scored by demo_letter's scorer, a pair where a prompt's answers disagree. Stopped
    after its checkpoint at step 8 and resumed to step 16 on the same pairs. The adapter learned
    what DPO optimises (the pairs' log-probability margin of chosen over rejected rose) and
    changed the model's greedy answers."""
    start = {"path": str(demo_model(demo_run))}
    run = tmp_path / "run"
    first = run_train(shared_dirs, rl_config(run, "dpo", model=start, train={"max_steps": 8, "save_steps": 8}), run)
    assert first.returncode == 0, first.stderr[-3000:]
    output = run / "output"
    pairs = [json.loads(line) for line in (output / "pairs.jsonl").read_text().splitlines()]
    counts = json.loads((output / "pairs.json").read_text())["counts"]
    assert (counts["prompts"], counts["answers"]) == (32, 128) and counts["pairs"] == len(pairs) > 0
    assert counts["prompts_with_a_pair"] + counts["prompts_all_scored_alike"] == 32
    assert 0 < counts["mean_score"] < 1
    assert json.loads((run / "data_stats.json").read_text())["dpo_pairs"] == counts
    docs = {json.loads(line)["prompt"]: json.loads(line)["doc"] for line in PROMPTS.read_text().splitlines()}
    for pair in pairs:  # chosen: a right answer, rejected: a wrong one, read by hand
        ((turn,), (chosen,), (rejected,)) = pair["prompt"], pair["chosen"], pair["rejected"]
        gold = docs[turn["content"]]["answer"]
        assert last_box(chosen["content"]) == gold != last_box(rejected["content"]), pair
        assert (pair["chosen_score"], pair["rejected_score"]) == (1.0, 0.0)

    (output / "result.json").unlink()
    sampled = (output / "pairs.jsonl").stat().st_ino  # pairs written again would be a new file
    resumed = run_train(shared_dirs, rl_config(run, "dpo", model=start, train={"max_steps": 16, "save_steps": 8}), run)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    result = json.loads((output / "result.json").read_text())
    assert (result["method"], result["weights"], result["steps"]) == ("dpo", "lora", 16)
    assert result["resumed_from"].endswith("checkpoints/checkpoint-8") and result["data"]["pairs"] == counts
    assert (output / "pairs.jsonl").stat().st_ino == sampled  # the same pairs, not a new sample
    metrics = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == list(range(1, 17))
    assert all(m["chosen_margin"] is not None and 0 <= m["chosen_preferred_share"] <= 1 for m in metrics)

    # With the adapter and without: greedy answers to the 32 prompts, and the pairs' mean margin
    # log p(chosen) − log p(rejected) (the answer's tokens after the chat template's prompt).
    compare = (
        "import json, sys, torch\n"
        "from peft import PeftModel\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        "tok = AutoTokenizer.from_pretrained(sys.argv[1]); tok.padding_side = 'left'\n"
        "model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(sys.argv[1]), sys.argv[2]).eval()\n"
        "rows = [json.loads(line) for line in open(sys.argv[3])]\n"
        "pairs = [json.loads(line) for line in open(sys.argv[4])]\n"
        "def prompt(messages):\n"
        "    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)\n"
        "enc = tok([prompt([{'role': 'user', 'content': r['prompt']}]) for r in rows], return_tensors='pt',\n"
        "          padding=True, add_special_tokens=False)\n"
        "def logp(messages, answer):\n"
        "    start = len(tok(prompt(messages), add_special_tokens=False)['input_ids'])\n"
        "    ids = tok(prompt(messages) + answer, add_special_tokens=False)['input_ids']\n"
        "    with torch.no_grad():\n"
        "        lp = torch.log_softmax(model(torch.tensor([ids])).logits[0], -1)\n"
        "    return sum(lp[i - 1, ids[i]].item() for i in range(start, len(ids)))\n"
        "def measure():\n"
        "    with torch.no_grad():\n"
        "        out = model.generate(**enc, do_sample=False, max_new_tokens=16, pad_token_id=tok.pad_token_id)\n"
        "    greedy = tok.batch_decode(out[:, enc['input_ids'].shape[1]:], skip_special_tokens=True)\n"
        "    margins = [logp(p['prompt'], p['chosen'][0]['content']) - logp(p['prompt'], p['rejected'][0]['content'])\n"
        "               for p in pairs]\n"
        "    return {'greedy': greedy, 'margin': sum(margins) / len(margins)}\n"
        "tuned = measure()\n"
        "with model.disable_adapter():\n"
        "    base = measure()\n"
        "print(json.dumps({'base': base, 'tuned': tuned}))\n"
    )
    ran = train_env.run(
        ["python", "-c", compare, start["path"], str(output / "adapter"), str(PROMPTS), str(output / "pairs.jsonl")],
        echo=False,
        cwd=tmp_path,
    )
    assert ran.ok, ran.tail
    measured = json.loads(ran.tail.strip().splitlines()[-1])
    base, tuned = measured["base"], measured["tuned"]
    assert tuned["margin"] > base["margin"] + 0.2, (base["margin"], tuned["margin"])
    changed = sum(b != t for b, t in zip(base["greedy"], tuned["greedy"], strict=True))
    assert changed > 0, measured


def test_dpo_without_a_pair_says_so_in_one_line(shared_dirs, train_env, tmp_path):
    """The untrained tiny model never boxes a letter: all 128 answers score 0, no prompt has a
    pair, and the run stops with what it found and what to change, writing no result."""
    run = tmp_path / "run"
    trained = run_train(shared_dirs, rl_config(run, "dpo", train={"max_steps": 2}), run)
    assert trained.returncode != 0 and "Traceback" not in trained.stderr, trained.stderr[-3000:]
    assert "dpo: no pairs: the 32 prompts' 128 answers all scored alike within each prompt" in trained.stderr
    assert "raise rl.num_generations or rl.temperature" in trained.stderr
    assert not (run / "output" / "result.json").exists()


@pytest.mark.parametrize(
    "change, says",
    [
        ({"rl": {"benchmark": None}}, "rl.reward benchmark needs rl.benchmark"),
        ({"rl": {"benchmark": "aime2025"}}, "unknown benchmark 'aime2025'"),
        ({"rl": {"reward": "no_reward.py"}}, "defines no reward(prompts, completions, **columns) function"),
        ({"method": {"type": "lora"}, "data": {"format": "prompt"}}, "data.format prompt (rows without answers)"),
        ({"model": {"adapter": "no-such-adapter"}}, "is not a PEFT adapter (no adapter_config.json)"),
        ({"data": {"path": "chat.jsonl"}}, "chat.jsonl:1 has no prompt"),
        ({"distributed": {"strategy": "zero3"}}, "method.type grpo runs as one process or ddp here"),
        ({"method": {"type": "dpo"}, "distributed": {"strategy": "zero2"}}, "method.type dpo runs as one process"),
        ({"method": {"type": "dpo"}, "rl": {"reward": "no_reward.py"}}, "defines no reward(prompts, completions"),
        ({"method": {"type": "dpo"}, "data": {"format": "chat"}}, "method.type dpo trains on prompt rows"),
        ({"method": {"type": "dpo"}, "rl": {"beta": 0}}, "rl.beta 0 makes DPO's loss a constant"),
        ({"rl": {"weights": "full"}, "model": {"adapter": "adapter"}}, "rl.weights full with model.adapter: merge"),
        ({"rl": {"generation": "vllm"}}, "rl.generation vllm: this host has no GPU (or give rl.vllm_command"),
        ({"rl": {"generation": "vllm", "weights": "full"}}, "with rl.weights full use rl.generation transformers"),
        ({"method": {"type": "dpo"}, "rl": {"generation": "vllm"}}, "DPO samples once, from the starting model"),
        ({"rl": {"generation": "transformers", "vllm_server_url": "http://h:8000"}}, "are for rl.generation vllm"),
        ({"rl": {"vllm_server_url": "http://h:8000"}, "model": {"adapter": "adapter"}}, "merge the adapter into"),
    ],
)
def test_a_grpo_or_dpo_config_that_cannot_run_is_one_line(change, says, rdft, tmp_path):
    config = yaml.safe_load((REPO / "recipes" / "configs" / "tiny_cpu_grpo.yaml").read_text())
    config["data"]["path"] = str(PROMPTS)
    for section, values in change.items():
        config.setdefault(section, {}).update(values)
    (tmp_path / "no_reward.py").write_text("def score(prompts, completions):\n    return [0.0]\n")
    (tmp_path / "chat.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    (tmp_path / "grpo.yaml").write_text(yaml.safe_dump(config))
    assert says in one_line_error(rdft("train", str(tmp_path / "grpo.yaml"), "--dry-run"))


def test_the_schema_lists_both_methods_and_every_rl_key(rdft):
    from rdft.training.config import RLSection

    schema = rdft("train", "--schema").stdout
    assert "method.type: full|lora|qlora|grpo|dpo, default lora" in schema
    for key in RLSection.model_fields:
        assert f"\n  rl.{key}: " in schema, key


@pytest.mark.parametrize(
    "method, source, says",
    [
        ("grpo", "import no_such_module\n\n\ndef reward(prompts, completions, **columns):\n    return [0.0]\n",
         "rl: rl.reward (reward.py) does not load: ModuleNotFoundError: No module named 'no_such_module'; fix it"),
        ("dpo", "def reward(prompts, completions, **columns):\n    return [None for _ in completions]\n",
         "rl: rl.reward (reward.py) returned [None, None] for 2 answers; reward(prompts, completions, **columns) "
         "must return one finite number per completion"),
    ],
)  # fmt: skip
def test_a_reward_that_does_not_load_or_returns_no_number_stops_before_training(
    method, source, says, shared_dirs, train_env, tmp_path
):
    """Valid Python that defines reward() passes the config check; what it does shows only when it
    runs: the recipe calls it once on the first prompt before any training, and stops in one line."""
    (tmp_path / "reward.py").write_text(source)
    config = rl_config(tmp_path / "run", method, rl={"reward": str(tmp_path / "reward.py")})
    trained = run_train(shared_dirs, config, tmp_path / "run")
    assert trained.returncode != 0 and "Traceback" not in trained.stderr, trained.stderr[-3000:]
    assert says in trained.stderr, trained.stderr[-3000:]
    output = tmp_path / "run" / "output"
    assert not (output / "checkpoints").exists() and not (output / "metrics.jsonl").exists()
