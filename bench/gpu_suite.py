"""The GPU figures in one command: rdft's training and scoring against the stock HF stack.

    python bench/gpu_suite.py [--out bench/gpu_suite.json] [--results bench/RESULTS.md]
    python bench/gpu_suite.py --cpu-smoke --out /tmp/smoke.json --results /tmp/RESULTS.md

Runs with any interpreter that has torch, transformers, peft and accelerate: a bare GPU host
with no rdft env and no network. The suite registers that interpreter as rdft's `train` env
with `rdft env adopt` (rdft from this checkout; its checks that the spec's packages import, and
its notes on versions that differ from the lock, go into the report) and runs every case
through `rdft env run train`, as rdft's own runs go on such a host. `--wheels DIR` installs
carried wheels into a private folder, offline: rdft's small dependencies a bare host lacks
(pydantic-settings, python-dotenv) and extras such as liger-kernel; liger-kernel, bitsandbytes
and vLLM are used when they import. Random weights of real shapes, so no hub access is needed.
Each case runs in its own subprocess (a fresh CUDA context and memory peak), side by side in
one run:

- lora:    Qwen2.5-7B shape, LoRA r16 all-linear, seq 2048. Baseline: HF `Trainer` defaults
           (gradient checkpointing, padded micro-batch 4, bf16). rdft: the recipe's packing
           (rows of 2048, flex_attention on a GPU), the planner's micro-batch/checkpointing,
           Liger when installed, bf16 autocast for the adapters.
- skewed:  the same pair on a skewed length mix (log-normal, mean ≈ 600, max 4096): effective
           (non-pad) tokens/s, padded vs packed.
- skewed_sdpa: rdft's packed step with SDPA instead of flex_attention: which kernel the locked
           stack runs faster on packed rows, the choice behind `attention: auto` (on a CPU both
           sides are SDPA: the smoke only checks it runs).
- full:    Qwen2.5-0.5B shape, full fine-tune, the recipe's step.
- qlora:   the 7B shape in 4-bit when bitsandbytes imports.
- score:   Qwen2.5-1.5B shape, 64 prompts × 256 new tokens, greedy: lm-eval's hf default
           (batch 1), rdft's hf settings (bf16, the batch `rdft eval` plans from memory), and
           vLLM (random weights, `load_format="dummy"`) when it imports.

MFU is on the anchors' scale: useful FLOPs per token 4N (LoRA) or 6N (full), N = matmul
weights, plus causal attention; against the bf16 matmul ceiling measured here (8192³). Prints
and writes JSON (each case's output in `<out>-logs/<case>.log`), and appends a table to
RESULTS.md. `--cpu-smoke` runs every case on tiny shapes on the CPU (float32) so the suite
cannot rot; its figures mean nothing.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "recipes"))
sys.path.insert(0, str(REPO))

SHAPES = {
    "7b": dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
               num_attention_heads=28, num_key_value_heads=4),
    "1.5b": dict(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                 num_attention_heads=12, num_key_value_heads=2),
    "0.5b": dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                 num_attention_heads=14, num_key_value_heads=2),
    "tiny": dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2),
}  # fmt: skip
CASES = ("lora", "skewed", "skewed_sdpa", "full", "qlora", "score")


# --- one case, in its own process ---------------------------------------------------------------
def sizes(smoke: bool) -> dict:
    if smoke:
        return {"lora": "tiny", "full": "tiny", "score": "tiny", "seq": 64, "max_len": 128, "mean": 24,
                "steps": 2, "warmup": 1, "prompts": 4, "prompt_len": 16, "new_tokens": 8}  # fmt: skip
    return {"lora": "7b", "full": "0.5b", "score": "1.5b", "seq": 2048, "max_len": 4096, "mean": 600,
            "steps": 8, "warmup": 3, "prompts": 64, "prompt_len": 256, "new_tokens": 256}  # fmt: skip


def device_and_dtype():
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda"), torch.bfloat16
    return torch.device("cpu"), torch.float32


def synchronize() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def peak_gib() -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None


def lengths(mix: str, n: int, s: dict) -> list[int]:
    if mix == "uniform":
        return [s["seq"]] * n
    rng = random.Random(0)
    mu = math.log(s["mean"]) - 0.5  # log-normal, sigma 1: mean ≈ s["mean"]
    return [max(8, min(s["max_len"], int(rng.lognormvariate(mu, 1.0)))) for _ in range(n)]


def samples(mix: str, n: int, s: dict, vocab: int) -> list[dict]:
    import sft

    rng = random.Random(1)
    out = []
    for length in lengths(mix, n, s):
        ids = [rng.randrange(4, vocab - 4) for _ in range(length)]
        half = length // 2  # the second half plays the answer
        out.append({"input_ids": ids, "labels": [sft.IGNORE] * half + ids[half:]})
    return out


def build(shape: str, *, attention: str, checkpointing: bool, method: str, liger: bool = False):
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig, Qwen2Config

    device, dtype = device_and_dtype()
    config = Qwen2Config(**SHAPES[shape], tie_word_embeddings=False, max_position_embeddings=32768)
    if method == "qlora":  # 4-bit weights need a saved model to quantise on load
        folder = Path(tempfile.mkdtemp(prefix="suite-qlora-"))
        with torch.device("cuda"):
            AutoModelForCausalLM.from_config(config, dtype=dtype).save_pretrained(folder)
        quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype)
        model = AutoModelForCausalLM.from_pretrained(folder, quantization_config=quant, dtype=dtype,
                                                     attn_implementation=attention, device_map={"": 0})  # fmt: skip
    else:
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attention)
    if liger:
        from liger_kernel.transformers import _apply_liger_kernel_to_instance

        _apply_liger_kernel_to_instance(model=model)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    if method in ("lora", "qlora"):
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear",
                                                 task_type="CAUSAL_LM"))  # fmt: skip
    return model


def useful_flops(model, shape: str, method: str, seq: int) -> float:
    """Per token: 4N (LoRA: forward + input gradients) or 6N (full), plus causal attention."""
    n = sum(p.numel() for name, p in model.named_parameters() if p.dim() >= 2 and "embed_tokens" not in name)
    if method == "qlora":
        n = sum(p.numel() * (2 if p.dtype == __import__("torch").uint8 else 1)
                for name, p in model.named_parameters() if p.dim() >= 2 and "embed_tokens" not in name)  # fmt: skip
    cfg = SHAPES[shape]
    attention = 2 * cfg["num_hidden_layers"] * cfg["hidden_size"] * seq  # QKᵀ and AV, causal half, fwd
    factor = 6 if method == "full" else 4
    return factor * n + (3 if method == "full" else 2) * attention


def case_baseline(mix: str, s: dict) -> dict:
    """HF Trainer defaults: gradient checkpointing, padded micro-batch 4, bf16 (on a GPU)."""
    import sft
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    shape = s["lora"]
    model = build(shape, attention="sdpa", checkpointing=True, method="lora")
    rows = samples(mix, 4 * (s["warmup"] + s["steps"]), s, SHAPES[shape]["vocab_size"])
    times, counted = [], []

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            synchronize()
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            synchronize()
            times.append(time.perf_counter() - self.start)

    def collate(batch):
        padded = sft.collate_padded(batch, 0)
        counted.append((padded["input_ids"].numel(), padded.pop("num_tokens")))
        return padded

    cuda = torch.cuda.is_available()
    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="suite-trainer-"), per_device_train_batch_size=4,
        max_steps=s["warmup"] + s["steps"], gradient_checkpointing=True,
        gradient_checkpointing_kwargs={"use_reentrant": False}, bf16=cuda, use_cpu=not cuda,
        optim="adamw_torch_fused" if cuda else "adamw_torch", learning_rate=1e-4, report_to=[],
        save_strategy="no", logging_strategy="no", dataloader_num_workers=0, remove_unused_columns=False,
    )  # fmt: skip
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    Trainer(model=model, args=args, train_dataset=rows, data_collator=collate, callbacks=[Clock()]).train()
    timed = sum(times[s["warmup"] :])
    window = counted[s["warmup"] : s["warmup"] + s["steps"]]
    return {
        "tokens_per_s": sum(p for p, _ in window) / timed,
        "effective_tokens_per_s": sum(r for _, r in window) / timed,
        "peak_gib": peak_gib(),
        "flops_per_token": useful_flops(model, shape, "lora", s["seq"]),
        "setup": "HF Trainer, gradient checkpointing, padded micro-batch 4",
    }


def case_rdft(mix: str, s: dict, method: str = "lora", attention: str | None = None) -> dict:
    """The recipe's data path and step with the planner's choices (and the recipe's attention
    for packed rows, unless `attention` names another)."""
    import importlib.util

    import sft
    import torch

    from rdft.training.planner import plan, shape_from_config

    shape = s["full"] if method == "full" else s["lora"]
    device, dtype = device_and_dtype()
    cuda = device.type == "cuda"
    liger = cuda and importlib.util.find_spec("liger_kernel") is not None
    attention = attention or ("flex_attention" if cuda else "sdpa")
    folder = Path(tempfile.mkdtemp(prefix="suite-shape-"))
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen2", **SHAPES[shape]}))
    memory = torch.cuda.get_device_properties(0).total_memory / 2**30 if cuda else 8.0
    chosen = plan(shape_from_config(folder / "config.json"), method=method, dtype="bfloat16" if cuda else "float32",
                  lora_r=16, max_length=s["seq"], memory_gib=memory, attention=attention,
                  device=device.type, liger=liger)  # fmt: skip
    model = build(shape, attention=attention, checkpointing=chosen.gradient_checkpointing, method=method, liger=liger)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4, fused=cuda)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=cuda and method != "full")
    # Enough samples to fill the timed rows (a skewed row holds several samples).
    rows = samples(mix, 8 * chosen.micro_batch_size * (s["warmup"] + s["steps"]), s, SHAPES[shape]["vocab_size"])
    rows = [r for r in rows if len(r["input_ids"]) <= s["seq"]]  # the recipe drops longer samples
    batches = sft.pack(rows, s["seq"], chosen.micro_batch_size, 0)[: s["warmup"] + s["steps"]]
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    model.train()
    timed, real, padded = 0.0, 0, 0
    for index, batch in enumerate(batches):
        tokens = batch.pop("num_tokens")
        batch = {k: v.to(device) for k, v in batch.items()}
        synchronize()
        start = time.perf_counter()
        with autocast:
            loss = model(**batch, use_cache=False).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        synchronize()
        if index >= s["warmup"]:
            timed += time.perf_counter() - start
            real += tokens
            padded += batch["input_ids"].numel()
    return {
        "tokens_per_s": padded / timed,
        "effective_tokens_per_s": real / timed,
        "peak_gib": peak_gib(),
        "flops_per_token": useful_flops(model, shape, method, s["seq"]),
        "plan": {"micro_batch_size": chosen.micro_batch_size, "tokens_per_micro_batch": chosen.tokens_per_micro_batch,
                 "gradient_checkpointing": chosen.gradient_checkpointing, "estimate_gib": chosen.estimate_gib},
        "setup": f"{method}, packed rows of {s['seq']}, {attention}, liger {liger}",
    }  # fmt: skip


def case_score(backend: str, s: dict) -> dict:
    """Greedy generation of `prompts` × `new_tokens`: hf default, rdft's hf settings, or vLLM."""
    import torch

    shape = s["score"]
    device, dtype = device_and_dtype()
    rng = random.Random(2)
    vocab = SHAPES[shape]["vocab_size"]
    prompts = [[rng.randrange(4, vocab - 4) for _ in range(s["prompt_len"])] for _ in range(s["prompts"])]
    if backend == "vllm":
        from transformers import Qwen2Config
        from vllm import LLM, SamplingParams, TokensPrompt

        folder = Path(tempfile.mkdtemp(prefix="suite-vllm-"))
        Qwen2Config(**SHAPES[shape], tie_word_embeddings=False, max_position_embeddings=32768).save_pretrained(folder)
        llm = LLM(model=str(folder), load_format="dummy", skip_tokenizer_init=True, dtype="bfloat16",
                  max_model_len=s["prompt_len"] + s["new_tokens"])  # fmt: skip
        params = SamplingParams(max_tokens=s["new_tokens"], min_tokens=s["new_tokens"], temperature=0)
        llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts[:4]], params)  # warm-up
        start = time.perf_counter()
        outputs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params)
        wall = time.perf_counter() - start
        generated = sum(len(o.outputs[0].token_ids) for o in outputs)
        return {"tokens_per_s": generated / wall, "generated": generated, "setup": "vLLM, dummy weights"}
    from transformers import AutoModelForCausalLM, Qwen2Config

    config = Qwen2Config(**SHAPES[shape], tie_word_embeddings=False, max_position_embeddings=32768)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype).eval()
    batch = 1 if backend == "hf_default" else rdft_hf_batch(shape, s, device)
    options = {"max_new_tokens": s["new_tokens"], "min_new_tokens": s["new_tokens"], "do_sample": False,
               "pad_token_id": 0}  # fmt: skip

    def generate(chunk):
        ids = torch.tensor(chunk, device=device)
        with torch.no_grad():
            return model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **options)

    generate(prompts[:batch])  # warm-up (and compilation for the static cache)
    synchronize()
    start = time.perf_counter()
    generated = 0
    for i in range(0, len(prompts), batch):
        out = generate(prompts[i : i + batch])
        generated += (out.shape[1] - s["prompt_len"]) * out.shape[0]
    synchronize()
    wall = time.perf_counter() - start
    setup = f"batch {batch}, dynamic cache" + (" (rdft's planned batch)" if backend == "rdft_hf" else "")
    return {"tokens_per_s": generated / wall, "generated": generated, "setup": setup}


def rdft_hf_batch(shape: str, s: dict, device) -> int:
    """The batch `rdft eval` gives lm-eval's hf backend (rdft/evaluation/generation.py): from the
    card's memory on a GPU, 4 on a CPU."""
    import torch

    if device.type != "cuda":
        return 4
    from rdft.evaluation.generation import hf_batch_size

    folder = Path(tempfile.mkdtemp(prefix="suite-score-"))
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen2", **SHAPES[shape]}))
    memory = torch.cuda.get_device_properties(0).total_memory / 2**30
    return hf_batch_size(str(folder), memory, s["new_tokens"], s["prompt_len"]) or 1


def matmul_ceiling() -> float:
    """Measured dense matmul FLOP/s: bf16 8192³ on a GPU, fp32 1024³ on a CPU."""
    import torch

    device, dtype = device_and_dtype()
    n = 8192 if device.type == "cuda" else 1024
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    synchronize()
    start, reps = time.perf_counter(), 20
    for _ in range(reps):
        a @ b
    synchronize()
    return 2 * n**3 * reps / (time.perf_counter() - start)


def run_case(name: str, smoke: bool) -> dict:
    s = sizes(smoke)
    if name == "lora":
        return {"baseline": case_baseline("uniform", s), "rdft": case_rdft("uniform", s)}
    if name == "skewed":
        return {"baseline": case_baseline("skewed", s), "rdft": case_rdft("skewed", s)}
    if name == "skewed_sdpa":
        return {"rdft": case_rdft("skewed", s, attention="sdpa")}
    if name == "full":
        return {"rdft": case_rdft("uniform", s, method="full")}
    if name == "qlora":
        import importlib.util

        import torch

        if not torch.cuda.is_available() or importlib.util.find_spec("bitsandbytes") is None:
            return {"skipped": "bitsandbytes and a CUDA GPU are needed"}
        return {"rdft": case_rdft("uniform", s, method="qlora")}
    if name == "score":
        import importlib.util

        out = {"baseline": case_score("hf_default", s), "rdft": case_score("rdft_hf", s)}
        import torch

        if torch.cuda.is_available() and importlib.util.find_spec("vllm") is not None:
            out["vllm"] = case_score("vllm", s)
        return out
    if name == "ceiling":
        return {"flops": matmul_ceiling()}
    raise SystemExit(f"unknown case {name}")


# --- the suite ----------------------------------------------------------------------------------
def carried_wheels(folder: Path) -> Path:
    """Install the wheels of `folder` (small pure-Python ones a bare GPU host lacks, e.g.
    liger-kernel) into a private folder the cases import from, without touching the host's
    Python and without a network."""
    target = Path(tempfile.mkdtemp(prefix="suite-wheels-"))
    wheels = sorted(folder.glob("*.whl"))
    if not wheels:
        raise SystemExit(f"gpu_suite: --wheels {folder} holds no .whl files")
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--target", str(target),
               *map(str, wheels)]  # fmt: skip
    if subprocess.run(command).returncode != 0:
        raise SystemExit(f"gpu_suite: installing the wheels of {folder} failed (see above)")
    return target


def suite_environment(site: Path | None, smoke: bool) -> dict[str, str]:
    """The environment of `rdft env adopt` / `rdft env run` and the cases: rdft from this checkout
    (and the carried wheels) importable, a private envs folder, the variant of this host."""
    import torch

    root = Path(tempfile.mkdtemp(prefix="suite-rdft-"))
    paths = [str(site) if site else "", str(REPO), os.environ.get("PYTHONPATH", "")]
    variant = "cuda" if torch.cuda.is_available() and not smoke else "cpu"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, paths)), "RDFT_ENVS_DIR": str(root / "envs"),
           "FT_FILE_PATH": str(root / "ft"), "RDFT_TORCH_VARIANT": variant}  # fmt: skip
    if smoke:
        env["CUDA_VISIBLE_DEVICES"] = ""  # the smoke is CPU-only, even on a GPU host
    return env


def adopt_this_python(env: dict[str, str]) -> list[str]:
    """`rdft env adopt train --python <this interpreter>`: its notes, or exit with its one line.
    DeepSpeed may be missing: the suite's cases run on one GPU without it."""
    command = [sys.executable, "-m", "rdft", "env", "adopt", "train", "--python", sys.executable,
               "--allow-missing", "deepspeed"]  # fmt: skip
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode != 0:
        last = ((proc.stderr or proc.stdout).strip().splitlines() or ["no output"])[-1]
        hint = ""
        if "No module named" in proc.stderr:  # rdft's own dependencies are not on this host
            hint = ("; carry them: `pip download --no-deps -d DIR pydantic-settings python-dotenv` where there "
                    "is a network, then --wheels DIR")  # fmt: skip
        raise SystemExit(f"gpu_suite: `rdft env adopt train` failed: {last}{hint}")
    return [line.removeprefix("rdft: note: ") for line in proc.stderr.splitlines() if line.startswith("rdft: note: ")]


RESULT = "gpu_suite result: "  # the line that carries a case's figures, among its other output


def in_subprocess(name: str, smoke: bool, timeout: float, env: dict[str, str], logs: Path) -> dict:
    """One case in its own process, through `rdft env run train`: its output in logs/<case>.log
    (written by rdft's runner), its timeout killing the case's whole process group (exit 124)."""
    log = logs / f"{name}.log"
    command = [sys.executable, "-m", "rdft", "env", "run", "train", "--timeout", f"{timeout:g}", "--log", str(log),
               "--", sys.executable, __file__, "--case", name] + (["--cpu-smoke"] if smoke else [])  # fmt: skip
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)  # fmt: skip
    try:
        output, _ = proc.communicate(timeout=timeout + 120)
    except subprocess.TimeoutExpired:  # rdft itself hung: stop it (it stops the case it started)
        os.killpg(proc.pid, 15)
        proc.communicate()
        return {"error": f"timed out after {timeout:g} s (and rdft env run did not stop it); see {log}"}
    if proc.returncode == 124:
        return {"error": f"timed out after {timeout:g} s; see {log}"}
    lines = [line.removeprefix(RESULT) for line in output.splitlines() if line.startswith(RESULT)]
    if proc.returncode != 0 or not lines:
        tail = output.strip().splitlines()[-1:] or ["no output"]
        return {"error": f"exit {proc.returncode}: {tail[0][:300]}; see {log}"}
    return {**json.loads(lines[-1]), "wall_s": round(time.perf_counter() - started, 1), "log": str(log)}


def ratios(report: dict, ceiling: float | None) -> dict:
    out = {}
    for name in ("lora", "skewed"):
        case = report.get(name, {})
        if "baseline" in case and "rdft" in case:
            base, ours = case["baseline"], case["rdft"]
            out[f"{name}_tokens_per_s"] = ours["tokens_per_s"] / base["tokens_per_s"]
            out[f"{name}_effective_tokens_per_s"] = ours["effective_tokens_per_s"] / base["effective_tokens_per_s"]
            if base.get("peak_gib") and ours.get("peak_gib"):
                out[f"{name}_peak_memory"] = ours["peak_gib"] / base["peak_gib"]
    sdpa = report.get("skewed_sdpa", {}).get("rdft")
    if sdpa and "rdft" in report.get("skewed", {}):
        # > 1: flex_attention is the faster kernel for packed rows on this stack (attention: auto's choice)
        out["skewed_flex_vs_sdpa"] = report["skewed"]["rdft"]["effective_tokens_per_s"] / sdpa["effective_tokens_per_s"]
    score = report.get("score", {})
    if "baseline" in score and "rdft" in score:
        out["score_rdft_hf"] = score["rdft"]["tokens_per_s"] / score["baseline"]["tokens_per_s"]
        if "vllm" in score:
            out["score_vllm"] = score["vllm"]["tokens_per_s"] / score["baseline"]["tokens_per_s"]
    if ceiling:
        for name in ("lora", "skewed", "full", "qlora"):
            for side in ("baseline", "rdft"):
                result = report.get(name, {}).get(side)
                if result and "flops_per_token" in result:
                    result["mfu"] = result["effective_tokens_per_s"] * result["flops_per_token"] / ceiling
    return out


TARGETS = {"lora_tokens_per_s": 1.8, "skewed_effective_tokens_per_s": 3.0, "score_rdft_hf": 5.0, "score_vllm": 20.0}


def table(report: dict) -> str:
    where = "CPU smoke: figures mean nothing" if report["smoke"] else report["device"]
    rows = [f"\n## GPU suite, {report['date']} ({where})", "", f"`{report['command']}` — {report['versions']}", "",
            f"Interpreter: {report['env']}" + "".join(f"; {note}" for note in report["adopt_notes"]), "",
            "| case | side | tokens/s | effective tokens/s | peak GiB | MFU | setup |",
            "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name in CASES:
        case = report.get(name, {})
        if "error" in case or "skipped" in case:
            rows.append(f"| {name} | — | — | — | — | — | {case.get('error') or case.get('skipped')} |")
            continue
        for side in ("baseline", "rdft", "vllm"):
            r = case.get(side)
            if not r:
                continue
            mfu = f"{r['mfu']:.1%}" if r.get("mfu") is not None else "—"
            peak = f"{r['peak_gib']:.1f}" if r.get("peak_gib") is not None else "—"
            effective = f"{r['effective_tokens_per_s']:,.0f}" if "effective_tokens_per_s" in r else "—"
            rows.append(f"| {name} | {side} | {r['tokens_per_s']:,.0f} | {effective} | {peak} | {mfu} | {r['setup']} |")
    rows += ["", "| ratio | measured | target |", "|---|---|---|"]
    for key, value in report["ratios"].items():
        rows.append(f"| {key} | {value:.2f}× | {f'≥ {TARGETS[key]}×' if key in TARGETS else '—'} |")
    return "\n".join(rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="Tiny shapes on the CPU: checks the suite runs.")
    parser.add_argument("--case", choices=[*CASES, "ceiling"], help=argparse.SUPPRESS)  # one case, in a child
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "gpu_suite.json")
    parser.add_argument("--results", type=Path, default=REPO / "bench" / "RESULTS.md")
    parser.add_argument("--case-timeout", type=float, default=150.0, help="Seconds per case (default 150).")
    parser.add_argument("--wheels", type=Path, help="A folder of wheels to use (installed privately, offline).")
    args = parser.parse_args()
    if args.case:
        print(RESULT + json.dumps(run_case(args.case, args.cpu_smoke)), flush=True)
        return
    import torch

    if not args.cpu_smoke and not torch.cuda.is_available():
        raise SystemExit("gpu_suite: no CUDA GPU here; run it on a GPU host, or --cpu-smoke to check it runs")
    import transformers

    versions = f"torch {torch.__version__}, transformers {transformers.__version__}, python {platform.python_version()}"
    report = {
        "date": datetime.date.today().isoformat(),
        "smoke": args.cpu_smoke,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "versions": versions,
        "command": "python bench/gpu_suite.py" + (" --cpu-smoke" if args.cpu_smoke else ""),
    }
    site = carried_wheels(args.wheels) if args.wheels else None
    if site is not None:
        report["wheels"] = sorted(p.name for p in args.wheels.glob("*.whl"))
    env = suite_environment(site, args.cpu_smoke)
    report["adopt_notes"] = adopt_this_python(env)
    report["env"] = f"{sys.executable}, adopted as rdft's train env ({env['RDFT_TORCH_VARIANT']})"
    logs = args.out.parent / f"{args.out.stem}-logs"
    logs.mkdir(parents=True, exist_ok=True)
    ceiling = in_subprocess("ceiling", args.cpu_smoke, args.case_timeout, env, logs).get("flops")
    report["matmul_ceiling_tflops"] = ceiling / 1e12 if ceiling else None
    for name in CASES:
        report[name] = in_subprocess(name, args.cpu_smoke, args.case_timeout, env, logs)
        print(f"gpu_suite: {name}: {json.dumps(report[name])[:400]}", file=sys.stderr, flush=True)
    report["ratios"] = ratios(report, ceiling)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, args.out)
    with open(args.results, "a", encoding="utf-8") as handle:
        handle.write(table(report))
    print(json.dumps(report["ratios"]))
    failed = [name for name in CASES if "error" in report[name]]
    if failed:
        raise SystemExit(f"gpu_suite: case(s) {', '.join(failed)} failed; see {args.out}")


if __name__ == "__main__":
    main()
