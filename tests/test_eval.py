"""`rdft eval` end to end on CPU: tiny models trained by `rdft train`, scored by lm-eval in the
eval env, summarised by the benchmark scorers."""

import json
from pathlib import Path

import pytest
import yaml
from conftest import QWEN25_7B, SHARED, clean_environ, one_line_error, skip_without

from rdft.errors import RdftError
from rdft.resources import evaluation_dir

SUFFIX = "\nPlease reason step by step, and put your final answer within \\boxed{}."
AIME_DOCS = [
    {"id": "x1", "problem": "Find the number of ordered pairs that satisfy the first condition.", "answer": "25"},
    {"id": "x2", "problem": "Compute the remainder when the second sum is divided by 1000.", "answer": "204"},
    {"id": "x3", "problem": "How many ways can the third arrangement be made?", "answer": "7"},
]
SUMMARY_KEYS = {"benchmark", "split", "n", "primary", "metrics", "unavailable", "model", "adapter",
                "lm_eval_version", "command"}  # fmt: skip


@pytest.fixture(scope="module")
def cli_env(shared_dirs):
    return dict(shared_dirs)


@pytest.fixture(scope="module")
def aime_models(tmp_path_factory, cli_env, train_env):
    """A full fine-tune and a LoRA adapter of the tiny model that memorised the three answers
    (zero-padded, so the integer comparison matters)."""
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("aime-models")
    (root / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in AIME_DOCS))
    chats = [
        {
            "messages": [
                {"role": "user", "content": d["problem"] + SUFFIX},
                {"role": "assistant", "content": f"The answer is \\boxed{{{int(d['answer']):03d}}}."},
            ]
        }
        for d in AIME_DOCS
    ]
    (root / "train.jsonl").write_text("".join(json.dumps(c) + "\n" for c in chats))
    out = {"docs": root / "docs.jsonl"}
    for method, lr, epochs in (("full", 3e-3, 80), ("lora", 1e-2, 120)):
        config = {
            "model": {"path": "tiny:llama", "dtype": "float32"},
            "data": {"path": str(root / "train.jsonl"), "max_length": 512},
            "method": {"type": method, "lora_r": 16, "lora_alpha": 32},
            "train": {"epochs": epochs, "micro_batch_size": 1, "learning_rate": lr, "warmup_ratio": 0.0,
                      "gradient_checkpointing": False, "seed": 0, "logging_steps": 20},
            "output": {"merge": False},
        }  # fmt: skip
        (root / f"{method}.yaml").write_text(yaml.safe_dump(config))
        rdft_bin = str(Path(sys.executable).parent / "rdft")
        proc = subprocess.run(
            [rdft_bin, "train", str(root / f"{method}.yaml"), "--workspace", str(root / method)],
            env={**__import__("os").environ, **cli_env},
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        out[method] = root / method / "output" / ("model" if method == "full" else "adapter")
    out["base"] = Path(cli_env["FT_FILE_PATH"]).resolve() / "models" / "tiny-llama"
    return out


def run_eval(rdft, env, *args):
    result = rdft("eval", *map(str, args), env=env, timeout=900)
    assert result.returncode == 0, result.output
    return result


def scoring(model, benchmark: str = "aime25", split: str = "all") -> list:
    return ["--model", model, "--benchmark", benchmark, "--split", split]


def test_full_fine_tune_scores_what_it_learned(rdft, cli_env, aime_models, tmp_path):
    output = tmp_path / "full"
    result = run_eval(
        rdft,
        cli_env,
        *scoring(aime_models["full"]),
        "--data",
        aime_models["docs"],
        "--max-gen-toks",
        24,
        "--output",
        output,
    )
    assert "aime25 all: accuracy = 1.0000" in result.stdout
    summary = json.loads((output / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(summary)
    assert summary["n"] == 3 and summary["primary"]["value"] == 1.0 and summary["adapter"] is None
    assert summary["command"][0] == "python" and Path(summary["command"][1]).name == "harness.py"
    assert "--apply_chat_template" in summary["command"]
    predictions = [json.loads(line) for line in (output / "predictions.jsonl").read_text().splitlines()]
    assert [p["response"] for p in predictions] == [
        "The answer is \\boxed{025}.",
        "The answer is \\boxed{204}.",
        "The answer is \\boxed{007}.",
    ]
    task = yaml.safe_load((output / "tasks" / "aime" / "rdft_aime25_all.yaml").read_text().replace("!function ", ""))
    assert task["dataset_kwargs"]["data_files"]["test"] == str(output / "docs.all.jsonl")  # absolute


def test_adapter_against_its_base(rdft, cli_env, aime_models, tmp_path):
    common = ["--benchmark", "aime25", "--split", "all", "--data", aime_models["docs"], "--max-gen-toks", 24]
    run_eval(rdft, cli_env, "--model", aime_models["base"], *common, "--output", tmp_path / "base")
    run_eval(
        rdft,
        cli_env,
        "--model",
        aime_models["base"],
        "--adapter",
        aime_models["lora"],
        *common,
        "--output",
        tmp_path / "lora",
    )
    base = json.loads((tmp_path / "base" / "summary.json").read_text())
    tuned = json.loads((tmp_path / "lora" / "summary.json").read_text())
    assert tuned["adapter"] == str(aime_models["lora"])
    # The adapter was trained to memorise the three answers: the base knows none, the adapter most.
    assert base["primary"]["value"] == 0.0 and tuned["primary"]["value"] >= 2 / 3


def test_samples_give_avg_at_k(rdft, cli_env, aime_models, tmp_path):
    output = tmp_path / "k2"
    run_eval(
        rdft,
        cli_env,
        *scoring(aime_models["full"]),
        "--limit",
        2,
        "--data",
        aime_models["docs"],
        "--max-gen-toks",
        24,
        "--samples",
        2,
        "--output",
        output,
    )
    summary = json.loads((output / "summary.json").read_text())
    assert summary["n"] == 2 and summary["samples"] == 2 and summary["metrics"]["samples_per_item"] == 2
    assert len((output / "predictions.jsonl").read_text().splitlines()) == 4


def _panorama_fixture(tmp_path: Path) -> Path:
    """Two PAR4PC items in the benchmark's schema, short enough for the tiny model."""
    option = {"patent_id": "US1", "title": "t", "abstract": "a", "claims": ["c"]}
    docs = [
        {
            "application_number": "1",
            "claim_number": 1,
            "context": {"title": "t", "abstract": "a", "claims": ["c"]},
            "options": {letter: option for letter in "ABCDEFGH"},
            "gold_answers": ["A"],
            "silver_answers": [],
            "negative_answers": list("BCDEFGH"),
        }
        for _ in range(2)
    ]
    path = tmp_path / "par4pc.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return path


def _chem_fixture(tmp_path: Path) -> Path:
    meta = {"molecule": "c1ccccc1", "added_group": "hydroxyl", "reference": "Oc1ccccc1"}
    rows = [
        {
            "id": f"e{i}",
            "query": 'Add a hydroxyl to c1ccccc1. Answer as JSON {"output": SMILES}.',
            "task": "mol_edit",
            "subtask": "add",
            "gt": None,
            "meta": json.dumps(meta),
        }
        for i in range(2)
    ]
    path = tmp_path / "mol_edit.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("family", ["panorama_par4pc", "chemcotbench_mol_edit"])
def test_patent_and_chemistry_tasks_run(rdft, cli_env, aime_models, tmp_path, family):
    data = _panorama_fixture(tmp_path) if family.startswith("panorama") else _chem_fixture(tmp_path)
    output = tmp_path / family
    run_eval(
        rdft,
        cli_env,
        *scoring(aime_models["base"], family),
        "--data",
        data,
        "--max-gen-toks",
        8,
        "--output",
        output,
    )
    summary = json.loads((output / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(summary) and summary["n"] == 2
    # A random tiny model writes no valid JSON: every item is unreadable, counted, and flagged — the
    # 0 is the scorer's reading of these responses, which the same scorer gives full marks when right.
    assert summary["primary"]["value"] == 0.0
    assert summary["diagnostics"]["unreadable_rate"] == 1.0
    responses = [json.loads(line)["response"] for line in (output / "predictions.jsonl").read_text().splitlines()]
    assert len(responses) == 2 and all(r.strip() for r in responses)
    right = '{"answer": ["A"]}' if family.startswith("panorama") else '{"output": "Oc1ccccc1"}'
    predictions = tmp_path / "right.jsonl"
    predictions.write_text("".join(json.dumps({"doc_id": i, "response": right}) + "\n" for i in range(2)))
    rescored = rdft(
        "score",
        "--benchmark",
        family,
        "--docs",
        str(output / "docs.all.jsonl"),
        "--predictions",
        str(predictions),
        env=cli_env,
    )
    assert rescored.returncode == 0, rescored.output
    assert json.loads(rescored.stdout)["primary"]["value"] == 1.0


def test_real_panorama_samples_through_lm_eval(rdft, cli_env, aime_models, tmp_path):
    folder = SHARED / "data" / "panorama-samples" / "pi4pc"
    if not folder.is_dir():
        skip_without(f"{folder} is absent (CI and the team's machines have it)")
    output = tmp_path / "pi4pc"
    run_eval(
        rdft,
        cli_env,
        *scoring(aime_models["base"], "panorama_pi4pc"),
        "--limit",
        2,
        "--data",
        folder,
        "--max-gen-toks",
        8,
        "--output",
        output,
    )
    summary = json.loads((output / "summary.json").read_text())
    assert summary["n"] == 2 and summary["metrics"]["n_unreadable"] == 2


def test_splits_are_disjoint_and_deterministic(eval_env, tmp_path):

    data = tmp_path / "thirty.jsonl"
    data.write_text("".join(json.dumps({"id": str(i), "problem": "p", "answer": str(i)}) + "\n" for i in range(30)))
    ids = {}
    for split in ("validation", "test", "validation"):
        out = tmp_path / f"{split}.jsonl"
        command = ["python", str(evaluation_dir() / "prepare.py"), "--benchmark", "aime24", "--split", split,
                   "--data", str(data), "--out", str(out)]  # fmt: skip
        assert eval_env.run(command, echo=False).ok
        rows = [json.loads(line)["id"] for line in out.read_text().splitlines()]
        assert ids.setdefault(split, rows) == rows  # the same items every time
    assert len(ids["validation"]) == len(ids["test"]) == 15
    assert not set(ids["validation"]) & set(ids["test"])


def test_bad_eval_inputs_are_one_line(rdft, cli_env, aime_models, tmp_path):
    common = ["--output", str(tmp_path / "o")]
    unknown = one_line_error(rdft("eval", "--model", str(aime_models["base"]), "--benchmark", "aime", *common))
    assert "unknown benchmark 'aime'" in unknown and "aime24" in unknown
    missing = one_line_error(rdft("eval", "--model", str(tmp_path / "nope"), "--benchmark", "aime25", *common))
    assert "does not exist" in missing
    adapter_only = one_line_error(rdft("eval", "--model", str(aime_models["lora"]), "--benchmark", "aime25", *common))
    assert "is a LoRA adapter; give its base with --model" in adapter_only
    not_adapter = one_line_error(
        rdft("eval", "--model", str(aime_models["base"]), "--adapter", str(tmp_path), "--benchmark", "aime25", *common)
    )
    assert "is not a PEFT adapter" in not_adapter
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"problem": "p", "answer": \n')
    args = ["--model", str(aime_models["base"]), "--benchmark", "aime25", "--data", str(broken), *common]
    assert "cannot read the aime25 items: not valid JSON (Expecting value, line 1); fix the file" in one_line_error(
        rdft("eval", *args, env=cli_env)
    )
    wrong = tmp_path / "wrong.jsonl"  # another benchmark's docs: refused before lm-eval starts
    wrong.write_text(json.dumps({"question": "Which one is a letter: 1-a?", "answer": "a"}) + "\n")
    args[args.index(str(broken))] = str(wrong)
    # An earlier scoring's results in the folder go first: the failed rerun leaves none of them.
    for name in ("summary.json", "scores.json", "predictions.jsonl", "items.jsonl", "lm_eval/a/samples_x.jsonl"):
        (tmp_path / "o" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "o" / name).write_text("{}")
    assert (
        "cannot read the aime25 items: item 1 has no 'problem' or 'Problem', which aime25 docs hold; give "
        "aime25's own docs" in one_line_error(rdft("eval", *args, env=cli_env))
    )
    assert sorted(p.name for p in (tmp_path / "o").rglob("*") if p.suffix in (".json", ".jsonl")) == []
    # lm-eval's own arguments, checked before any env is built (this host has no GPU).
    base = ["--model", str(aime_models["base"]), "--benchmark", "aime25", *common]
    for size in ("abc", "0", "-3", "auto:0"):
        bad = one_line_error(rdft("eval", *base, "--batch-size", size))
        assert f"--batch-size '{size}' is not one lm-eval takes: give a positive integer, auto or auto:N" in bad
    no_gpu = one_line_error(rdft("eval", *base, "--backend", "vllm"))
    assert "--backend vllm needs a CUDA GPU and this host has none; use --backend hf (or auto)" in no_gpu


def test_backend_model_args(tmp_path):
    """What rdft passes lm-eval per backend, from the model's shape and the cards' memory."""
    from rdft.evaluation.generation import hf_batch_size, longest_prompt_bound
    from rdft.evaluation.run import model_args

    def folder(name: str, config: dict) -> Path:
        path = tmp_path / name
        path.mkdir()
        (path / "config.json").write_text(json.dumps(config))
        return path

    qwen7b = {"model_type": "qwen2", "vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944,
              "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4,
              "max_position_embeddings": 32768}  # fmt: skip
    model = folder("qwen7b", qwen7b)
    big = folder(
        "big",
        {
            **qwen7b,
            "hidden_size": 8192,
            "intermediate_size": 29568,
            "num_hidden_layers": 80,
            "num_attention_heads": 64,
            "num_key_value_heads": 8,
        },
    )  # ~72B: 135 GiB in bf16
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 100}))

    def parsed(text: str) -> dict:
        return dict(part.split("=", 1) for part in text.split(","))

    # 14.2 GiB of weights fit one 80 GiB card: one replica per GPU; the prompt bound is short.
    vllm = parsed(model_args("vllm", str(model), adapter, [80.0] * 4, 1024, 3000))
    assert (vllm["tensor_parallel_size"], vllm["data_parallel_size"]) == ("1", "4")
    assert vllm["max_model_len"] == str(3000 + 1024) and vllm["max_lora_rank"] == "128"
    assert vllm["lora_local_path"] == str(adapter)
    assert parsed(model_args("vllm", str(model), None, [80.0], 32768, 9000))["max_model_len"] == "32768"
    # 135 GiB need 4 cards of 80 (each holds ≤ 40 GiB of weights): tensor parallel 4, two replicas on 8.
    sharded = parsed(model_args("vllm", str(big), None, [80.0] * 8, 1024, 3000))
    assert (sharded["tensor_parallel_size"], sharded["data_parallel_size"]) == ("4", "2")
    # On 6 cards the sizes that divide both the cards and the 64 heads are 1 and 2: 135.4 / 2 =
    # 67.7 GiB leaves 0.3 of 0.85·80 = 68 GiB for the KV cache and vLLM's workspace, so vLLM would
    # not start. Tensor parallel 4 (33.9 GiB a card) on four of them, the other two idle.
    six = parsed(model_args("vllm", str(big), None, [80.0] * 6, 1024, 3000))
    assert (six["tensor_parallel_size"], six["data_parallel_size"]) == ("4", "1")
    # 2 cards of 96 GiB: half a card is too little, but 67.7 GiB of weights + one 4024-token
    # sequence's KV cache on each rank (2·80 layers·4 of the 8 KV heads·128·2 bytes·4024 = 0.61 GiB)
    # + 2 GiB of workspace = 70.3 ≤ 0.85·96 = 81.6: tensor parallel 2, small batches.
    pair = parsed(model_args("vllm", str(big), None, [96.0] * 2, 1024, 3000))
    assert (pair["tensor_parallel_size"], pair["data_parallel_size"]) == ("2", "1")
    with pytest.raises(RdftError, match=r"do not fit 2 GPU\(s\) of 80 GiB .* divides its 64 heads \(1, 2\); use more"):
        model_args("vllm", str(big), None, [80.0] * 2, 1024, 3000)  # 70.3 > 68
    hf = parsed(model_args("hf", str(model), adapter, [80.0], 32768, 3000))
    assert hf["peft"] == str(adapter) and hf["dtype"] == "bfloat16" and int(hf["max_length"]) > 32768
    cpu = parsed(model_args("hf", str(model), None, [], 256, 3000))
    assert cpu == {"pretrained": str(model), "dtype": "float32"}
    # hf batch: (0.8·24 − 1.1·14.185) GiB left = 3.596; one sequence of 1000 + 1024 tokens holds
    # 2·28 layers·4 heads·128·2 bytes = 57,344 bytes per token = 0.1081 GiB; 3.596 / (1.25·0.1081) = 26.6.
    assert hf_batch_size(str(model), 24.0, 1024, 1000) == 26
    assert hf_batch_size(str(model), 80.0, 1024, 1000) == 64  # capped
    assert hf_batch_size(str(model), 16.0, 1024, 1000) == 1  # the weights leave nothing: one at a time
    assert hf_batch_size(str(tmp_path), 80.0, 1024, 1000) is None  # no config.json: lm-eval's auto
    # The prompt bound counts UTF-8 bytes: the docs keep CJK text unescaped, 3 bytes (and up to 3
    # byte-level BPE tokens) a character.
    docs = tmp_path / "docs.jsonl"
    docs.write_text(
        json.dumps({"problem": "数" * 200}, ensure_ascii=False) + "\n" + json.dumps({"problem": "x"}) + "\n"
    )
    assert longest_prompt_bound([docs]) == len('{"problem": ""}') + 3 * 200 + 1024


def test_generation_choice_per_host(tmp_path):
    """Which backend, env, adapter handling and batch `rdft eval` gives lm-eval, by host: the GPU
    branches too, which this CPU host cannot run end to end."""
    from rdft.evaluation.run import Generation, choose_generation, lm_eval_batch

    def asked(*_) -> bool:
        raise AssertionError("the eval env was probed for vLLM where the answer cannot matter")

    cpu = choose_generation("auto", gpus=0, score_env=False, eval_has_vllm=asked, adapter=True)
    assert cpu == Generation("hf", in_score_env=False, merge_adapter=False)  # PEFT's adapter as it is
    # A GPU host with the score env built: vLLM there, the adapter through vLLM's LoRA.
    built = choose_generation("auto", gpus=2, score_env=True, eval_has_vllm=asked, adapter=True)
    assert built == Generation("vllm", in_score_env=True, merge_adapter=False)
    # Without it, vLLM in the eval env if it imports there, else hf with the adapter merged.
    assert choose_generation("auto", gpus=1, score_env=False, eval_has_vllm=lambda: True, adapter=True) == Generation(
        "vllm", in_score_env=False, merge_adapter=False
    )
    fallback = choose_generation("auto", gpus=1, score_env=False, eval_has_vllm=lambda: False, adapter=True)
    # hf on a GPU: a static KV cache (compiled decode); never on a CPU, never for vLLM (its own cache).
    assert fallback == Generation("hf", in_score_env=False, merge_adapter=True, static_cache=True)
    assert not cpu.static_cache and not built.static_cache
    # --backend hf on a host with the score env: hf in the eval env, with its own torch and transformers.
    assert choose_generation("hf", gpus=1, score_env=True, eval_has_vllm=asked, adapter=False) == Generation(
        "hf", in_score_env=False, merge_adapter=False, static_cache=True
    )
    assert not choose_generation("hf", gpus=0, score_env=False, eval_has_vllm=asked, adapter=True).static_cache
    with pytest.raises(RdftError, match="vLLM is in neither the score env nor the eval env; `rdft env create score`"):
        choose_generation("vllm", gpus=1, score_env=False, eval_has_vllm=lambda: False, adapter=False)
    with pytest.raises(RdftError, match="--backend vllm needs a CUDA GPU and this host has none"):
        choose_generation("vllm", gpus=0, score_env=True, eval_has_vllm=asked, adapter=False)

    model = tmp_path / "qwen7b"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({**QWEN25_7B, "max_position_embeddings": 32768}))
    assert lm_eval_batch("vllm", "8", str(model), [80.0], 1024, 1000) == "auto"  # vLLM schedules its own
    assert lm_eval_batch("hf", "8", str(model), [80.0], 1024, 1000) == "8"  # what was asked
    assert lm_eval_batch("hf", None, str(model), [24.0, 80.0], 1024, 1000) == "26"  # the smallest card's plan
    assert lm_eval_batch("hf", None, str(model), [], 1024, 1000) == "4"  # CPU
    assert lm_eval_batch("hf", None, str(tmp_path), [80.0], 1024, 1000) == "auto"  # unknown shape


def test_sigterm_stops_the_scoring_it_started(rdft, cli_env, aime_models, tmp_path):
    """SIGTERM (what `rdft batch`, Slurm and service managers send) stops lm-eval and its children,
    as Ctrl-C does: nothing keeps generating after rdft eval ends (issue 27, item 15)."""
    import signal
    import subprocess
    import time

    output = tmp_path / "stopped"
    proc = subprocess.Popen(["rdft", "eval", *scoring(aime_models["full"]), "--data", str(aime_models["docs"]),
                             "--samples", "64", "--max-gen-toks", "512", "--output", str(output)],
                            cwd=rdft.workdir, env=clean_environ(**cli_env), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip

    def harness_running() -> bool:
        found = subprocess.run(["pgrep", "-f", f"harness.py.*{output}"], capture_output=True, text=True)
        return bool(found.stdout.strip())

    deadline = time.monotonic() + 300
    while not harness_running() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert harness_running(), proc.communicate()[0][-2000:] if proc.poll() is not None else "lm-eval never started"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "Traceback" not in out, out[-2000:]
    time.sleep(1)
    assert not harness_running()
