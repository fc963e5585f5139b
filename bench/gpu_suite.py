"""The GPU figures in one command: rdft's training and scoring against the stock HF stack.

    python bench/gpu_suite.py --download-wheels .whl            # where there is a network
    python bench/gpu_suite.py --wheels .whl [--out F.json] [--results RESULTS.md] [--budget 480]
    python bench/gpu_suite.py --cpu-smoke --out /tmp/smoke.json --results /tmp/RESULTS.md
    python bench/gpu_suite.py --table-from F.json --results bench/RESULTS.md  # a cut-off run's table

Runs with any interpreter that has torch, transformers, peft and accelerate: a bare GPU host
with no rdft env and no network. The suite registers that interpreter as rdft's `train` env
with `rdft env adopt` (rdft from this checkout; its checks that the spec's packages import, and
its notes on versions that differ from the lock, go into the report) and runs every arm
through `rdft env run train`, as rdft's own runs go on such a host. `--wheels DIR` installs
carried wheels into a private folder, offline, ahead of the host's packages: what rdft's CLI
needs beyond torch's and transformers' own requirements (the pydantic family, which the lent
H200 image lacks, and click) and the train env's CUDA kernels (liger-kernel, bitsandbytes; one
that does not import there is removed again, since PEFT would import it in every LoRA arm).
`--download-wheels DIR` fetches exactly that set, at the locks' versions, for the GPU host's
Python (`--python-version`, default 3.12).
Random weights of real shapes, so no hub access is needed.

Each arm runs in its own subprocess (a fresh CUDA context and memory peak: no model of an
earlier arm is still allocated when the planner's choice runs), in this order, the issue's
targets first:

- lora:    Qwen2.5-7B shape, LoRA r16 all-linear, seq 2048. baseline: HF `Trainer` as usually
           set up (the anchors' "usual default": gradient checkpointing, padded micro-batch 4,
           bf16, fused AdamW). rdft: the recipe's packing
           (rows of 2048, flex_attention on a GPU), the planner's micro-batch/checkpointing,
           Liger when installed, bf16 autocast for the adapters, clipping as the recipe does.
- skewed:  the same pair on a skewed length mix (log-normal, mean ≈ 600, max 4096): effective
           (non-pad) tokens/s, padded batches against packed rows of 4096 (every sample kept).
- score:   Qwen2.5-1.5B shape, 64 prompts × 256 new tokens, greedy. baseline: lm-eval's hf
           default (batch 1), timed on the first 8 prompts — batch 1 decodes one prompt at a
           time and every prompt and answer has the same length, so its rate on 8 is its rate
           on 64, in an eighth of the time (64 at batch 1 take ~7 minutes on an H200). rdft:
           rdft's hf settings (bf16, the batch `rdft eval` plans from memory, dynamic cache).
           vllm: random weights (`load_format="dummy"`) when vLLM imports. Equal prompt lengths
           and answers forced to 256 tokens, as the issue sets it: no padding and no early stops,
           so the batched ratios are upper bounds for lm-eval's real batches.
- full:    Qwen2.5-0.5B shape, full fine-tune, the recipe's step.
- skewed_sdpa: rdft's packed step with SDPA instead of flex_attention: which kernel the locked
           stack runs faster on packed rows, the choice behind `attention: auto` (on a CPU both
           sides are SDPA: the smoke only checks it runs).
- qlora:   the 7B shape in 4-bit (bitsandbytes), when it imports on a CUDA host.
- compile: the lora arm with `train.compile` (each decoder layer compiled): whether regional
           compilation pays, the measurement behind its default (off).

If the planner's micro-batch runs out of memory, the arm says so (a planner error worth
knowing) and runs again at half of it. `--budget` (seconds, default 480: the issue's 8 minutes)
bounds the whole run: an arm starts only with time left and gets at most that time; the rest
are marked skipped, and `--cases` reruns a subset. The JSON report is rewritten after every arm,
so a run cut off from outside still leaves every finished figure (`--table-from` makes its
table).

MFU is on the anchors' scale: useful FLOPs per token 4N (LoRA) or 6N (full), N = matmul
weights, plus causal attention at the arm's own sample lengths; against the bf16 matmul
ceiling measured here (8192³). Prints and writes JSON (each arm's output in
`<logs>/<case>-<arm>.log`, the tail of a failed one in the JSON), and appends a table to
RESULTS.md. `--cpu-smoke` runs every arm a CPU can (all but QLoRA and vLLM) on tiny shapes
(float32) so its CPU path cannot rot; its figures mean nothing. What only a GPU reaches
(flex_attention's backward, Liger, bitsandbytes, vLLM, the OOM rerun, the memory-planned hf
batch) is first run by the first GPU run.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import math
import os
import platform
import random
import shutil
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
# Each case's arms, in the order they run; the cases never measured on a GPU first (the H200 run
# of 2026-12-04 measured lora, skewed, skewed_sdpa, full and score), then the targets.
ARMS = {
    "loop": ("rdft",),
    "qlora": ("rdft",),
    "compile": ("rdft",),
    "lora": ("baseline", "rdft"),
    "skewed": ("baseline", "rdft"),
    "score": ("baseline", "rdft", "vllm"),
    "full": ("rdft",),
    "skewed_sdpa": ("rdft",),
}
CASES = tuple(ARMS)
# What rdft's CLI (`rdft env adopt` / `rdft env run`) imports beyond the standard library,
# filelock (torch's) and pyyaml (transformers'): a bare GPU host may lack it (the lent H200 image
# has click but no pydantic). Carried wheels go ahead of the host's packages, so typing-extensions
# comes at the version pydantic needs.
CLI_WHEELS = ("pydantic", "pydantic-core", "pydantic-settings", "python-dotenv", "annotated-types",
              "typing-inspection", "typing-extensions", "click")  # fmt: skip
KERNEL_WHEELS = ("liger-kernel", "bitsandbytes")  # the train env's cuda-only packages (envs/train.yml)
# What the `loop` case's eval env needs beyond the lent H200 image (lm-eval and its requirements
# the image lacks; ../.library/device/KINDS.md lists the image): 12.7 MiB for Python 3.12. Three
# of them are published as source only, pure Python: built into wheels here (`pip wheel`).
LOOP_WHEELS = ("lm-eval", "datasets", "evaluate", "dill", "multiprocess", "more-itertools", "pytablewriter",
               "chardet", "dataproperty", "mbstrdecoder", "pathvalidate", "tabledata", "tcolorpy", "typepy",
               "nltk", "pytz")  # fmt: skip
LOOP_SOURCE_ONLY = ("sqlitedict", "word2number", "rouge-score")
# Packages of the data and eval env specs the demo loop never imports (LLM calls, chemistry and
# math scorers, lm-eval's sklearn metrics): an adopted interpreter may lack them.
LOOP_ALLOW_MISSING = {"data": ("datasets", "litellm", "rdkit", "sympy", "networkx", "tiktoken", "rouge-score"),
                      "eval": ("litellm", "rdkit", "scikit-learn", "matplotlib")}  # fmt: skip
# The loop's model on a GPU: tiny_model.py's Qwen2 at hidden 512, 24 layers (57M parameters, over
# the offline planner's 50M for a full fine-tune): LoRA, so the merged adapter is what is scored.
LOOP_GPU_MODEL = ("--arch", "qwen2", "--hidden", "512", "--layers", "24")
# Seconds an arm needs at the least on an H200 (process start, model build, compilation, a few
# steps; bench/RESULTS.md): one is not started with less left, which would only end in a timeout.
MIN_ARM_S = {"loop": 150.0, "qlora": 120.0, "compile": 120.0, "lora": 60.0, "skewed": 60.0, "skewed_sdpa": 60.0,
             "full": 45.0, "score": 45.0}  # fmt: skip
LOOP_TIMEOUT_S = 300.0  # the loop case's own limit (base scoring, one loop, its scoring)
MIN_ARM_SMOKE_S = 20.0
QWEN2 = ["Qwen2ForCausalLM"]
SCRATCH = "GPU_SUITE_SCRATCH"  # the run's temporary folder, shared with the arms, removed at the end


def scratch(prefix: str) -> Path:
    """A new temporary folder inside the run's (the arms inherit it through the environment)."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir=os.environ.get(SCRATCH)))


# --- one arm, in its own process ----------------------------------------------------------------
def sizes(smoke: bool) -> dict:
    if smoke:
        return {
            "lora": "tiny",
            "full": "tiny",
            "score": "tiny",
            "seq": 64,
            "max_len": 128,
            "mean": 24,
            "steps": 2,
            "skewed_baseline_steps": 2,
            "warmup": 1,
            "prompts": 4,
            "baseline_prompts": 2,
            "prompt_len": 16,
            "new_tokens": 8,
        }
    return {
        "lora": "7b",
        "full": "0.5b",
        "score": "1.5b",
        "seq": 2048,
        "max_len": 4096,
        "mean": 600,
        "steps": 6,
        "skewed_baseline_steps": 12,
        "warmup": 3,
        "prompts": 64,
        "baseline_prompts": 8,
        "prompt_len": 256,
        "new_tokens": 256,
    }


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


def qwen2_config(shape: str):
    """The transformers config of every model the suite builds (vLLM picks the model class from
    `architectures`, which a saved config names only when it is given)."""
    from transformers import Qwen2Config

    return Qwen2Config(**SHAPES[shape], tie_word_embeddings=False, max_position_embeddings=32768, architectures=QWEN2)


def shape_folder(shape: str) -> Path:
    """A folder holding the shape's config.json, as a model folder does: what rdft's planner,
    its hf batch and vLLM read."""
    folder = scratch(f"suite-{shape}-")
    qwen2_config(shape).save_pretrained(folder)
    return folder


def ram_disk(shape: str) -> str | None:
    """/dev/shm when it has room for the shape's bf16 weights and a margin (containers often cap
    it at 64 MB), else None: the default temporary folder."""
    from rdft.training.models import shape_from_config

    weights = 2 * shape_from_config(shape_folder(shape) / "config.json").params
    try:
        return "/dev/shm" if shutil.disk_usage("/dev/shm").free > 1.2 * weights else None
    except OSError:
        return None


def build(
    shape: str, *, attention: str, checkpointing: bool, method: str, liger: bool = False, compile_layers: bool = False
):
    """The model as the recipe's load_model makes it (random weights of the shape); the
    second value says what could not be applied (Liger that fails on this stack)."""
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    device, dtype = device_and_dtype()
    config = qwen2_config(shape)
    if method == "qlora":  # 4-bit weights are quantised on load, from a saved model
        # Named after the run's scratch folder: the suite removes it at its end even if this arm is killed.
        run = Path(os.environ.get(SCRATCH, "suite")).name
        folder = Path(tempfile.mkdtemp(prefix=f"suite-qlora-{run}-", dir=ram_disk(shape) or os.environ.get(SCRATCH)))
        try:
            with torch.device("cuda"):
                AutoModelForCausalLM.from_config(config, dtype=dtype).save_pretrained(folder)
            torch.cuda.empty_cache()
            quant = BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=dtype,
            )
            model = AutoModelForCausalLM.from_pretrained(
                folder, quantization_config=quant, dtype=dtype, attn_implementation=attention, device_map={"": 0}
            )
        finally:  # 15 GB of weights never outlive the arm
            shutil.rmtree(folder, ignore_errors=True)
    else:
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attention)
    problems = []
    if liger:
        try:
            from liger_kernel.transformers import _apply_liger_kernel_to_instance

            _apply_liger_kernel_to_instance(model=model)
        except Exception as error:  # the figure without Liger still counts; the report says why
            problems.append(f"liger failed: {type(error).__name__}: {str(error)[:200]}")
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if compile_layers:  # as the recipe's train.compile: each decoder layer, one compilation for all
        for module in model.modules():
            if type(module).__name__.endswith("DecoderLayer"):
                module.compile()
    model.config.use_cache = False
    if method in ("lora", "qlora"):
        from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

        if method == "qlora":
            # Its own checkpointing call would switch to the reentrant kind; keep the others' kind.
            model = prepare_model_for_kbit_training(
                model, use_gradient_checkpointing=checkpointing, gradient_checkpointing_kwargs={"use_reentrant": False}
            )
        model = get_peft_model(
            model,
            LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM"),
        )
    return model, problems


def useful_flops(model, shape: str, method: str, rows: list[dict]) -> float:
    """Per token: 4N (LoRA: forward + input gradients) or 6N (full), plus causal attention at
    the samples' own lengths: a sample of n tokens costs 2·layers·hidden·n² forward FLOPs in QKᵀ
    and AV, over its n tokens, and its backward twice that whatever is trained (attention has no
    weights: dQ, dK, dV and dP are four products), so 3× in all. The anchors count so: 30.8% MFU
    at 8,218 tokens/s is (4·7,070,619,136 + 3·2·28·3584·2048) · 8,218 / 788 TFLOP/s."""
    import torch

    n = sum(
        p.numel() * (2 if p.dtype == torch.uint8 else 1)  # 4-bit: two weights per byte
        for name, p in model.named_parameters()
        if p.dim() >= 2 and "embed_tokens" not in name
    )
    cfg = SHAPES[shape]
    sizes_ = [len(r["input_ids"]) for r in rows]
    attention = 2 * cfg["num_hidden_layers"] * cfg["hidden_size"] * sum(x * x for x in sizes_) / sum(sizes_)
    factor = 6 if method == "full" else 4
    return factor * n + 3 * attention


def case_baseline(mix: str, s: dict) -> dict:
    """HF Trainer defaults: gradient checkpointing, padded micro-batch 4, bf16 (on a GPU)."""
    import sft
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    shape = s["lora"]
    # Padding waste varies much between batches of 4 skewed samples: time more of them.
    steps = s["skewed_baseline_steps"] if mix == "skewed" else s["steps"]
    model, _ = build(shape, attention="sdpa", checkpointing=True, method="lora")
    rows = samples(mix, 4 * (s["warmup"] + steps), s, SHAPES[shape]["vocab_size"])
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
        output_dir=str(scratch("suite-trainer-")),
        per_device_train_batch_size=4,
        max_steps=s["warmup"] + steps,
        gradient_checkpointing=True,
        gradient_checkpointing_kwargs={"use_reentrant": False},
        bf16=cuda,
        use_cpu=not cuda,
        optim="adamw_torch_fused" if cuda else "adamw_torch",
        learning_rate=1e-4,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        dataloader_num_workers=0,
        remove_unused_columns=False,
    )
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    Trainer(model=model, args=args, train_dataset=rows, data_collator=collate, callbacks=[Clock()]).train()
    timed = sum(times[s["warmup"] :])
    window = counted[s["warmup"] : s["warmup"] + steps]
    return {
        "tokens_per_s": sum(p for p, _ in window) / timed,
        "effective_tokens_per_s": sum(r for _, r in window) / timed,
        "peak_gib": peak_gib(),
        "flops_per_token": useful_flops(model, shape, "lora", rows),
        "setup": "HF Trainer, gradient checkpointing, padded micro-batch 4",
    }


def case_rdft(
    mix: str, s: dict, method: str = "lora", attention: str | None = None, compile_layers: bool = False
) -> dict:
    """The recipe's data path and step with the planner's choices (and the recipe's attention
    for packed rows, unless `attention` names another). Skewed lengths pack into rows of their
    longest sample, so every sample the baseline trains on is trained on here too."""
    import importlib.util

    import sft
    import torch

    from rdft.training.models import shape_from_config
    from rdft.training.planner import plan

    shape = s["full"] if method == "full" else s["lora"]
    row_length = s["max_len"] if mix == "skewed" else s["seq"]
    device, dtype = device_and_dtype()
    cuda = device.type == "cuda"
    liger = cuda and importlib.util.find_spec("liger_kernel") is not None
    attention = attention or ("flex_attention" if cuda else "sdpa")
    memory = torch.cuda.get_device_properties(0).total_memory / 2**30 if cuda else 8.0
    model_shape = shape_from_config(shape_folder(shape) / "config.json")
    chosen = plan(
        model_shape,
        method=method,
        dtype="bfloat16" if cuda else "float32",
        lora_r=16,
        max_length=row_length,
        memory_gib=memory,
        attention=attention,
        device=device.type,
        liger=liger,
    )
    model, problems = build(
        shape,
        attention=attention,
        checkpointing=chosen.gradient_checkpointing,
        method=method,
        liger=liger,
        compile_layers=compile_layers,
    )
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4, fused=cuda)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=cuda and method != "full")
    # Enough samples to fill the timed rows (a skewed row holds several samples).
    rows = samples(mix, 8 * chosen.micro_batch_size * (s["warmup"] + s["steps"]), s, SHAPES[shape]["vocab_size"])

    def timed_steps(micro_batch: int) -> tuple[float, int, int, list[dict]]:
        batches = sft.pack(rows, row_length, micro_batch, 0)[: s["warmup"] + s["steps"]]
        timed, real, padded, used = 0.0, 0, 0, 0
        for index, batch in enumerate(batches):
            tokens = batch.pop("num_tokens")
            batch = {k: v.to(device) for k, v in batch.items()}
            synchronize()
            start = time.perf_counter()
            with autocast:
                loss = model(**batch, use_cache=False).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)  # the recipe's train.max_grad_norm default
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            synchronize()
            used += tokens
            if index >= s["warmup"]:
                timed += time.perf_counter() - start
                real += tokens
                padded += batch["input_ids"].numel()
        # The samples these rows hold, for the attention FLOPs (packing keeps their order).
        trained, total = [], 0
        for row in rows:
            if total >= used:
                break
            trained.append(row)
            total += len(row["input_ids"])
        return timed, real, padded, trained

    model.train()
    micro_batch, oom = chosen.micro_batch_size, None
    while True:
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        try:
            timed, real, padded, trained = timed_steps(micro_batch)
            break
        except torch.OutOfMemoryError:
            if micro_batch == 1:
                raise
            # The planner's estimate was too low: say so, and measure what does fit.
            oom = oom or {
                "micro_batch_size": micro_batch,
                "estimate_gib": chosen.estimate_gib,
                "peak_gib_before_oom": peak_gib(),
            }
        # Out of the except block: the failed step's tensors died with its traceback.
        optimizer.zero_grad(set_to_none=True)
        gc.collect()
        torch.cuda.empty_cache()
        micro_batch //= 2
    result = {
        "tokens_per_s": padded / timed,
        "effective_tokens_per_s": real / timed,
        "peak_gib": peak_gib(),
        "flops_per_token": useful_flops(model, shape, method, trained),
        "plan": {"micro_batch_size": chosen.micro_batch_size, "tokens_per_micro_batch": chosen.tokens_per_micro_batch,
                 "gradient_checkpointing": chosen.gradient_checkpointing, "estimate_gib": chosen.estimate_gib},
        "setup": f"{method}, packed rows of {row_length}, micro-batch {micro_batch}, {attention}, liger {liger}"
                 + (", compiled layers" if compile_layers else "") + "".join(f"; {p}" for p in problems),
    }  # fmt: skip
    if (
        compile_layers
    ):  # graphs torch.compile really compiled (0: it fell back to eager; on a GPU flex_attention adds its own)
        result["compiled_graphs"] = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    if oom:
        result["oom_at_plan"] = oom
        result["setup"] += f"; the planned micro-batch {oom['micro_batch_size']} ran out of memory"
    return result


def case_score(backend: str, s: dict) -> dict:
    """Greedy generation of exactly `new_tokens` per prompt: lm-eval's hf default (batch 1, on
    the first `baseline_prompts`: its rate is the same on all), rdft's hf settings, or vLLM."""
    import torch

    shape = s["score"]
    device, dtype = device_and_dtype()
    rng = random.Random(2)
    vocab = SHAPES[shape]["vocab_size"]
    prompts = [[rng.randrange(4, vocab - 4) for _ in range(s["prompt_len"])] for _ in range(s["prompts"])]
    if backend == "vllm":
        from vllm import LLM, SamplingParams, TokensPrompt

        llm = LLM(
            model=str(shape_folder(shape)),
            load_format="dummy",
            skip_tokenizer_init=True,
            dtype="bfloat16",
            max_model_len=s["prompt_len"] + s["new_tokens"],
        )
        params = SamplingParams(max_tokens=s["new_tokens"], min_tokens=s["new_tokens"], temperature=0)
        llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts[:4]], params)  # warm-up
        start = time.perf_counter()
        outputs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params)
        wall = time.perf_counter() - start
        generated = sum(len(o.outputs[0].token_ids) for o in outputs)
        return {
            "tokens_per_s": generated / wall,
            "generated": generated,
            "prompts": len(prompts),
            "setup": "vLLM, dummy weights",
        }
    from transformers import AutoModelForCausalLM

    with torch.device(device):
        model = AutoModelForCausalLM.from_config(qwen2_config(shape), dtype=dtype).eval()
    static = False
    if backend == "baseline":
        batch, prompts = 1, prompts[: s["baseline_prompts"]]
    else:
        from rdft.evaluation.run import choose_generation

        batch = rdft_hf_batch(shape, s, device)
        # rdft eval's own choice for hf on this host (a static KV cache on a GPU, never on a CPU)
        static = choose_generation(
            "hf", gpus=int(device.type == "cuda"), score_env=False, eval_has_vllm=lambda: False, adapter=False
        ).static_cache
    options = {"max_new_tokens": s["new_tokens"], "min_new_tokens": s["new_tokens"], "do_sample": False,
               "pad_token_id": 0, **({"cache_implementation": "static"} if static else {})}  # fmt: skip

    def generate(chunk):
        ids = torch.tensor(chunk, device=device)
        with torch.no_grad():
            return model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **options)

    synchronize()
    start = time.perf_counter()
    generate(prompts[:batch])  # warm-up (with a static cache: the decode step compiled for this shape)
    synchronize()
    first_call_s = time.perf_counter() - start
    start = time.perf_counter()
    generated = 0
    for i in range(0, len(prompts), batch):
        out = generate(prompts[i : i + batch])
        generated += (out.shape[1] - s["prompt_len"]) * out.shape[0]
    synchronize()
    wall = time.perf_counter() - start
    result = {"tokens_per_s": generated / wall, "generated": generated, "prompts": len(prompts),
              "first_call_s": round(first_call_s, 2)}  # fmt: skip
    if static:
        # lm-eval's batches differ in prompt length: the cost of one new shape, next to the gain.
        other = [p[: s["prompt_len"] // 2] for p in prompts[:batch]]
        synchronize()
        start = time.perf_counter()
        generate(other)
        synchronize()
        result["new_shape_first_call_s"] = round(time.perf_counter() - start, 2)
    cache = "static cache" if static else "dynamic cache"
    setup = f"batch {batch}, {cache}" + (" (rdft's planned batch and cache)" if backend == "rdft" else "")
    if backend == "baseline":
        setup += f", timed on {len(prompts)} prompts"
    if static:
        setup += f"; a new prompt length's first call {result['new_shape_first_call_s']:g} s"
    return {**result, "setup": setup}


def rdft_hf_batch(shape: str, s: dict, device) -> int:
    """The batch `rdft eval` gives lm-eval's hf backend (rdft/evaluation/generation.py): from the
    card's memory on a GPU, 4 on a CPU."""
    import torch

    if device.type != "cuda":
        return 4
    from rdft.evaluation.generation import hf_batch_size

    memory = torch.cuda.get_device_properties(0).total_memory / 2**30
    return hf_batch_size(str(shape_folder(shape)), memory, s["new_tokens"], s["prompt_len"]) or 1


def matmul_ceiling() -> dict:
    """Measured dense matmul FLOP/s by the anchors' method (../gpu-anchors.md): bf16 8192³ on a
    GPU (fp32 1024³ on a CPU), three warm-up products, then the mean rate of ten, timed as one
    window. The suite's earlier best-of-three 1 s windows read 673–676 TFLOP/s on the H200
    where this method reads 769–798, which put its MFU about 17% above the anchors' scale. The
    card's name comes from here too, so the suite's own process never holds a CUDA context."""
    import torch

    device, dtype = device_and_dtype()
    n = 8192 if device.type == "cuda" else 1024
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    synchronize()
    start = time.perf_counter()
    for _ in range(10):
        a @ b
    synchronize()
    flops = 2 * n**3 * 10 / (time.perf_counter() - start)
    return {
        "flops": flops,
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "method": f"{n}³ {str(dtype).removeprefix('torch.')}, mean of 10 after 3 warm-ups",
    }


def run_arm(case: str, arm: str, smoke: bool) -> dict:
    s = sizes(smoke)
    if case == "ceiling":
        return matmul_ceiling()
    if case == "score":
        return case_score(arm, s)
    if arm == "baseline":
        return case_baseline("uniform" if case == "lora" else "skewed", s)
    if case in ("lora", "skewed"):
        return case_rdft("uniform" if case == "lora" else "skewed", s)
    if case == "skewed_sdpa":
        return case_rdft("skewed", s, attention="sdpa")
    if case == "compile":
        return case_rdft("uniform", s, compile_layers=True)
    return case_rdft("uniform", s, method=case)  # full, qlora


# --- the suite ----------------------------------------------------------------------------------
def unavailable(case: str, arm: str, smoke: bool, broken: dict[str, str]) -> str | None:
    """Why an arm cannot run on this host, decided here without starting it (the carried wheels
    are on this process's path too)."""
    import importlib.util

    import torch

    cuda = torch.cuda.is_available() and not smoke
    if case == "qlora" and "bitsandbytes" in broken:
        return f"bitsandbytes does not import here ({broken['bitsandbytes']}); left out"
    if case == "qlora" and not (cuda and importlib.util.find_spec("bitsandbytes")):
        return "bitsandbytes and a CUDA GPU are needed"
    if arm == "vllm" and not (cuda and importlib.util.find_spec("vllm")):
        return "vLLM and a CUDA GPU are needed"
    return None


def drop_broken_kernels(site: Path, env: dict[str, str]) -> dict[str, str]:
    """Import each carried CUDA kernel package in a child; remove the ones that fail from the
    private folder. PEFT imports bitsandbytes in every LoRA arm once it can find it, so one
    built for another CUDA would break them all, not only QLoRA. Returns name → the error."""
    broken = {}
    for module in ("bitsandbytes", "liger_kernel"):
        if not (site / module).is_dir():
            continue
        proc = subprocess.run(
            [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, env=env, timeout=300
        )
        if proc.returncode != 0:
            broken[module] = ((proc.stderr.strip().splitlines() or ["no output"])[-1])[:200]
            shutil.rmtree(site / module, ignore_errors=True)
            for info in site.glob(f"{module}-*.dist-info"):
                shutil.rmtree(info, ignore_errors=True)
    return broken


def locked_versions() -> dict[str, str]:
    """name → version in the eval and train envs' cuda locks (the train env's where both have it)."""
    versions = {}
    lines = [
        line for lock in ("eval.cuda.txt", "train.cuda.txt") for line in (REPO / "envs" / lock).read_text().splitlines()
    ]
    for line in lines:
        if "==" in line and not line.startswith((" ", "#")):
            name, version = line.split(" ")[0].split("==")
            versions[name.lower()] = version
    return versions


def download_wheels(folder: Path, python_version: str) -> None:
    """pip download (--no-deps, binary only) of the wheels a bare GPU host needs, for its
    Python on x86-64 manylinux: the CLI's at the versions installed here (rdft's own host) or in
    the lock, in one call that must succeed; each CUDA kernel at the lock's version, in a call of
    its own: one that cannot be had is reported and left out (the suite runs without it)."""
    import importlib.metadata

    locked = locked_versions()

    def pinned(name: str) -> str:
        try:
            version = importlib.metadata.version(name) if name in CLI_WHEELS else None
        except importlib.metadata.PackageNotFoundError:
            version = None
        version = version or locked.get(name)
        return f"{name}=={version}" if version else name

    def fetch(requirements: list[str]) -> subprocess.CompletedProcess:
        platforms = [f"manylinux_2_{n}_x86_64" for n in (17, 24, 27, 28, 31, 34)] + ["manylinux2014_x86_64"]
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                   "--python-version", python_version, "--implementation", "cp", "--dest", str(folder),
                   *[part for p in platforms for part in ("--platform", p)], *requirements]  # fmt: skip
        return subprocess.run(command, capture_output=True, text=True)

    folder.mkdir(parents=True, exist_ok=True)
    cli = [pinned(name) for name in CLI_WHEELS]
    proc = fetch(cli)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"gpu_suite: rdft's CLI wheels could not be downloaded ({last}); check pip's network or index")
    print(f"gpu_suite: downloaded {' '.join(cli)}", file=sys.stderr)
    for requirement in map(pinned, KERNEL_WHEELS):
        proc = fetch([requirement])
        if proc.returncode == 0:
            print(f"gpu_suite: downloaded {requirement}", file=sys.stderr)
        else:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            print(
                f"gpu_suite: {requirement} could not be downloaded ({last}); the suite runs without it", file=sys.stderr
            )
    # The loop case's eval env (lm-eval): all or nothing; without it the loop case says why.
    loop = [pinned(name) for name in LOOP_WHEELS]
    proc = fetch(loop)
    if proc.returncode == 0:
        built = [pinned(name) for name in LOOP_SOURCE_ONLY]  # pure Python, published as source only
        command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(folder), *built]
        proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode == 0:
        print(
            f"gpu_suite: downloaded lm-eval and what it needs for the loop case ({len(loop) + 3} wheels)",
            file=sys.stderr,
        )
    else:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        print(
            f"gpu_suite: lm-eval's wheels could not be downloaded ({last}); the loop case needs --eval-python",
            file=sys.stderr,
        )
    total = sum(p.stat().st_size for p in folder.glob("*.whl")) / 2**20
    print(f"gpu_suite: {folder} holds {len(list(folder.glob('*.whl')))} wheels, {total:.1f} MiB", file=sys.stderr)


def carried_wheels(folder: Path) -> Path:
    """Install the wheels of `folder` into a private folder the cases import from (ahead of the
    host's packages), without touching the host's Python and without a network."""
    target = scratch("suite-wheels-")
    wheels = sorted(folder.glob("*.whl"))
    if not wheels:
        raise SystemExit(f"gpu_suite: --wheels {folder} holds no .whl files; make them with --download-wheels {folder}")
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-compile",
               "--target", str(target), *map(str, wheels)]  # fmt: skip
    if subprocess.run(command).returncode != 0:
        raise SystemExit(f"gpu_suite: installing the wheels of {folder} failed (see above)")
    return target


def suite_environment(site: Path | None, smoke: bool) -> dict[str, str]:
    """The environment of `rdft env adopt` / `rdft env run` and the cases: rdft from this checkout
    (and the carried wheels) importable, a private envs folder, the variant of this host."""
    import torch

    root = scratch("suite-rdft-")
    paths = [str(site) if site else "", str(REPO), os.environ.get("PYTHONPATH", "")]
    variant = "cuda" if torch.cuda.is_available() and not smoke else "cpu"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, paths)), "RDFT_ENVS_DIR": str(root / "envs"),
           "FT_FILE_PATH": str(root / "ft"), "RDFT_TORCH_VARIANT": variant}  # fmt: skip
    if smoke:
        env["CUDA_VISIBLE_DEVICES"] = ""  # the smoke is CPU-only, even on a GPU host
    return env


def adopt(env: dict[str, str], name: str, python: str, allow_missing: tuple[str, ...] = ()) -> list[str]:
    """`rdft env adopt NAME --python PYTHON`: its notes, or RuntimeError with its one line."""
    command = [sys.executable, "-m", "rdft", "env", "adopt", name, "--python", python,
               *[part for package in allow_missing for part in ("--allow-missing", package)]]  # fmt: skip
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode != 0:
        last = ((proc.stderr or proc.stdout).strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"`rdft env adopt {name}` failed: {last.removeprefix('rdft: error: ')}")
    return [line.removeprefix("rdft: note: ") for line in proc.stderr.splitlines() if line.startswith("rdft: note: ")]


def adopt_this_python(env: dict[str, str]) -> list[str]:
    """`rdft env adopt train --python <this interpreter>`: its notes, or exit with its one line.
    DeepSpeed may be missing (the suite's cases run on one GPU without it), and so may TRL, RDKit
    and rouge-score (GRPO's and its rewards'; no case of the suite trains GRPO) and the trackers'
    libraries (train.report_to; no case reports to one)."""
    optional = ("deepspeed", "trl", "rdkit", "rouge-score", "tensorboard", "mlflow-skinny", "sqlalchemy", "alembic")
    try:
        return adopt(env, "train", sys.executable, optional)
    except RuntimeError as error:
        hint = ""
        if "No module named" in str(error):  # rdft's own dependencies are not on this host
            hint = (
                "; carry them: `python bench/gpu_suite.py --download-wheels DIR` where there is a network, "
                "then --wheels DIR here"
            )
        raise SystemExit(f"gpu_suite: {error}{hint}") from None


def case_loop(env: dict[str, str], smoke: bool, timeout: float, logs: Path, pythons: dict[str, str]) -> dict:
    """The agent loop itself, on this host's GPU: `rdft run` of one loop on demo_letter through
    the adopted interpreters (train: this one; data and eval: --data-python / --eval-python, else
    this one with the carried lm-eval wheels). The base model is scored, the offline planner's
    loop trains with the planner's GPU choices, is scored (hf, the adapter merged), and the
    feedback decides. Each stage's seconds, the scores and the training's choices are read from
    the run's own records. On a CPU (the smoke) the tiny Qwen2 is rdft's own `tiny:qwen2`."""
    started = time.perf_counter()
    log = logs / "loop-rdft.log"
    try:
        notes = [
            f"{name}: {note}"
            for name in ("data", "eval")
            for note in adopt(env, name, pythons.get(name, sys.executable), LOOP_ALLOW_MISSING[name])
        ]
    except RuntimeError as error:
        return {
            "error": f"{error}; give --{'eval' if 'eval' in str(error) else 'data'}-python, or carry lm-eval's "
            "wheels (--download-wheels)",
            "log": str(log),
            "log_tail": "",
        }
    model = "tiny:qwen2"
    if not smoke:  # above the planner's full fine-tune size: LoRA, and the merged adapter scored
        folder = scratch("suite-loop-model-") / "qwen2"
        build = [sys.executable, "-m", "rdft", "env", "run", "train", "--", sys.executable,
                 str(REPO / "recipes" / "tiny_model.py"), *LOOP_GPU_MODEL, "--out", str(folder)]  # fmt: skip
        built = subprocess.run(build, capture_output=True, text=True, env=env, timeout=timeout)
        if built.returncode != 0:
            return {
                "error": f"building the loop's model failed: {(built.stderr.strip().splitlines() or ['?'])[-1]}",
                "log": str(log),
                "log_tail": built.stderr[-3000:],
            }
        model = str(folder)
    command = [sys.executable, "-m", "rdft", "run", "--base-model", model, "--benchmark", "demo_letter",
               "--dataset", "demo-letter", "--loop-n", "1", "--no-sync"]  # fmt: skip
    if smoke:  # the smoke checks the plumbing: 8 items, one greedy answer each, 256 rows (a CPU is slow)
        command += ["--eval-limit", "8", "--samples", "1", "--max-gen-toks", "16"]
        env = {**env, "FT_UPPER_DATA_SIZE_LIMIT": "256"}
    # The run's folder sits with the suite's logs, not in whatever folder the suite was started from.
    env = {**env, "LOG_TRACE_PATH": tempfile.mkdtemp(prefix="loop-run-", dir=logs)}
    left = max(1.0, timeout - (time.perf_counter() - started))
    with open(log, "w", encoding="utf-8") as handle:
        proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=handle, text=True, env=env, start_new_session=True
        )
        try:
            output, _ = proc.communicate(timeout=left)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 15)  # rdft run stops its stage's children on SIGTERM
            try:
                output, _ = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                output, _ = proc.communicate()
            return {"error": f"timed out after {left:.0f} s", "log": str(log), "log_tail": log_tail(log)}
    handle_output = output.strip().splitlines()
    found = [line.removeprefix("log: ") for line in handle_output if line.startswith("log: ")]
    if proc.returncode != 0 or not found:
        return {"error": f"rdft run exit {proc.returncode}", "log": str(log), "log_tail": log_tail(log)}
    figures = {**loop_figures(Path(found[-1])), "notes": notes, "log": str(log)}
    left = timeout - (time.perf_counter() - started)
    figures["qlora"] = qlora_loop(env, Path(found[-1]), model, logs, left) if not smoke else {"skipped": "CPU"}
    figures["wall_s"] = round(time.perf_counter() - started, 1)
    return figures


def qlora_loop(env: dict[str, str], run: Path, model: str, logs: Path, timeout: float) -> dict:
    """The loop's QLoRA path where bitsandbytes imports: the loop's own training data trained
    with method qlora through `rdft train`, and the adapter scored on the validation split with
    `rdft eval` (the offline planner proposes no QLoRA for a model this small). A failure is a
    row with its log tail, never a silent skip."""
    check = subprocess.run([sys.executable, "-c", "import bitsandbytes"], capture_output=True, text=True, env=env)
    if check.returncode != 0:
        return {"skipped": f"bitsandbytes does not import ({(check.stderr.strip().splitlines() or ['?'])[-1][:160]})"}
    if timeout < 60:
        return {"skipped": f"{timeout:.0f} s left of the loop's time; rerun with --cases loop"}
    import yaml

    started = time.perf_counter()
    workspace = run / "Loop_0" / "workspace"
    config = yaml.safe_load((workspace / "train.yaml").read_text())
    config["data"]["path"] = str(workspace / config["data"]["path"])  # relative to the loop's workspace
    config["method"] = {"type": "qlora", "lora_r": 16, "lora_alpha": 32}
    config["output"] = {"dir": "qlora-output", "merge": False}
    path = run / "qlora.yaml"
    path.write_text(yaml.safe_dump(config))
    log = logs / "loop-qlora.log"
    train = [sys.executable, "-m", "rdft", "train", str(path), "--workspace", str(run / "qlora"), "--verbose"]
    with open(log, "w", encoding="utf-8") as handle:
        trained = subprocess.run(train, stdout=handle, stderr=subprocess.STDOUT, env=env, timeout=timeout)
    result = run / "qlora" / "result.json"
    if trained.returncode != 0 or not result.is_file():
        return {"error": f"rdft train (qlora) exit {trained.returncode}", "log": str(log), "log_tail": log_tail(log)}
    recipe = json.loads(result.read_text())
    left = max(30.0, timeout - (time.perf_counter() - started))
    score = [sys.executable, "-m", "rdft", "eval", "--model", model, "--adapter", recipe["adapter_dir"],
             "--benchmark", "demo_letter", "--output", str(run / "qlora" / "scored")]  # fmt: skip
    with open(log, "a", encoding="utf-8") as handle:
        scored = subprocess.run(score, stdout=handle, stderr=subprocess.STDOUT, env=env, timeout=left)
    summary = run / "qlora" / "scored" / "summary.json"
    if scored.returncode != 0 or not summary.is_file():
        return {
            "error": f"rdft eval (qlora adapter) exit {scored.returncode}",
            "log": str(log),
            "log_tail": log_tail(log),
        }
    return {
        "validation": json.loads(summary.read_text())["primary"]["value"],
        "steps": recipe.get("steps"),
        "tokens_per_s": recipe.get("tokens_per_s"),
        "peak_memory_gib": recipe.get("peak_memory_gib"),
        "seconds": round(time.perf_counter() - started, 1),
        "log": str(log),
    }


def loop_figures(run: Path) -> dict:
    """What the run's records say: scores, each stage's seconds, the training's choices."""
    summary = json.loads((run / "summary.json").read_text())
    trace = json.loads((run / "trace.json").read_text())
    baseline = run / "baseline"
    node = trace["nodes"][0]
    result = {
        "baseline": {"validation": summary["baseline"]["validation"], "test": summary["baseline"]["test"],
                     # scored in one lm-eval run: from the items' record to the test split's
                     "seconds": round((baseline / "test.json").stat().st_mtime
                                      - (baseline / "items.json").stat().st_mtime, 1)},
        "loop": {key: node.get(key) for key in ("status", "validation", "test", "confirmed", "error")},
        "seconds": node["seconds"],
    }  # fmt: skip
    trained = run / "Loop_0" / "workspace" / "result.json"
    if trained.is_file():
        recipe = json.loads(trained.read_text())
        keys = ("attention", "liger", "tokens_per_s", "peak_memory_gib", "steps", "first_loss", "final_loss", "plan",
                "data")  # fmt: skip
        result["training"] = {key: recipe.get(key) for key in keys}
        result["training"]["merged_for_scoring"] = bool(recipe.get("adapter_dir"))  # hf on a GPU merges an adapter
    return result


RESULT = "gpu_suite result: "  # the line that carries an arm's figures, among its other output


def log_tail(log: Path, lines: int = 25) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def in_subprocess(case: str, arm: str, smoke: bool, timeout: float, env: dict[str, str], logs: Path) -> dict:
    """One arm in its own process, through `rdft env run train`: its output in
    logs/<case>-<arm>.log (written by rdft's runner), its timeout killing the arm's whole
    process group (exit 124); a failed arm's log tail goes into its result."""
    log = logs / f"{case}-{arm}.log"
    log.unlink(missing_ok=True)  # rdft's runner appends: a rerun's tail must be its own
    command = [sys.executable, "-m", "rdft", "env", "run", "train", "--timeout", f"{timeout:g}", "--log", str(log),
               "--", sys.executable, __file__, "--case", case, "--arm", arm]  # fmt: skip
    command += ["--cpu-smoke"] if smoke else []
    started = time.perf_counter()
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True
    )
    try:
        output, _ = proc.communicate(timeout=timeout + 60)
    except subprocess.TimeoutExpired:  # rdft itself hung: stop it (it stops the arm it started)
        os.killpg(proc.pid, 15)
        proc.communicate()
        return {
            "error": f"timed out after {timeout:g} s (and rdft env run did not stop it)",
            "log": str(log),
            "log_tail": log_tail(log),
        }
    if proc.returncode == 124:
        return {"error": f"timed out after {timeout:g} s", "log": str(log), "log_tail": log_tail(log)}
    lines = [line.removeprefix(RESULT) for line in output.splitlines() if line.startswith(RESULT)]
    if proc.returncode != 0 or not lines:
        tail = output.strip().splitlines()[-1:] or ["no output"]
        return {"error": f"exit {proc.returncode}: {tail[0][:300]}", "log": str(log), "log_tail": log_tail(log)}
    return {**json.loads(lines[-1]), "wall_s": round(time.perf_counter() - started, 1), "log": str(log)}


def ratios(report: dict) -> dict:
    """Every ratio of two measured arms (the MFU of each training arm is set on the way)."""
    out = {}
    for name in ("lora", "skewed"):
        base, ours = report.get(name, {}).get("baseline", {}), report.get(name, {}).get("rdft", {})
        if "tokens_per_s" in base and "tokens_per_s" in ours:
            out[f"{name}_tokens_per_s"] = ours["tokens_per_s"] / base["tokens_per_s"]
            out[f"{name}_effective_tokens_per_s"] = ours["effective_tokens_per_s"] / base["effective_tokens_per_s"]
            if base.get("peak_gib") and ours.get("peak_gib"):
                out[f"{name}_peak_memory"] = ours["peak_gib"] / base["peak_gib"]
    flex = report.get("skewed", {}).get("rdft", {})
    sdpa = report.get("skewed_sdpa", {}).get("rdft", {})
    if "tokens_per_s" in flex and "tokens_per_s" in sdpa:
        # > 1: flex_attention is the faster kernel for packed rows on this stack (attention: auto's choice)
        out["skewed_flex_vs_sdpa"] = flex["effective_tokens_per_s"] / sdpa["effective_tokens_per_s"]
    eager, compiled = report.get("lora", {}).get("rdft", {}), report.get("compile", {}).get("rdft", {})
    if "tokens_per_s" in eager and "tokens_per_s" in compiled:
        out["lora_compile_vs_eager"] = compiled["tokens_per_s"] / eager["tokens_per_s"]
    score = report.get("score", {})
    for arm in ("rdft", "vllm"):
        if "tokens_per_s" in score.get("baseline", {}) and "tokens_per_s" in score.get(arm, {}):
            out[f"score_{arm}" if arm == "vllm" else "score_rdft_hf"] = (
                score[arm]["tokens_per_s"] / score["baseline"]["tokens_per_s"]
            )
    ceiling = (report.get("matmul_ceiling_tflops") or 0) * 1e12
    for name in ("lora", "skewed", "full", "skewed_sdpa", "qlora", "compile"):
        for result in report.get(name, {}).values():
            if ceiling and isinstance(result, dict) and "flops_per_token" in result:
                result["mfu"] = result["effective_tokens_per_s"] * result["flops_per_token"] / ceiling
    return out


TARGETS = {"lora_tokens_per_s": 1.8, "skewed_effective_tokens_per_s": 3.0, "score_rdft_hf": 5.0, "score_vllm": 20.0}


def table(report: dict) -> str:
    where = "CPU smoke: figures mean nothing" if report["smoke"] else report["device"]
    rows = [f"\n## GPU suite, {report['date']} ({where})", "", f"`{report['command']}` — {report['versions']}", "",
            f"Interpreter: {report['env']}" + "".join(f"; {note}" for note in report["adopt_notes"]), "",
            "| case | arm | tokens/s | effective tokens/s | peak GiB | MFU | setup |",
            "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name in CASES:
        for arm, r in report.get(name, {}).items():
            if "error" in r or "skipped" in r:
                why = r.get("error") or r.get("skipped")
                rows.append(f"| {name} | {arm} | — | — | — | — | {why} |")
                continue
            if name == "loop":
                rows.append(loop_row(r))
                continue
            mfu = f"{r['mfu']:.1%}" if r.get("mfu") is not None else "—"
            peak = f"{r['peak_gib']:.1f}" if r.get("peak_gib") is not None else "—"
            effective = f"{r['effective_tokens_per_s']:,.0f}" if "effective_tokens_per_s" in r else "—"
            rows.append(f"| {name} | {arm} | {r['tokens_per_s']:,.0f} | {effective} | {peak} | {mfu} | {r['setup']} |")
    rows += ["", "| ratio | measured | target |", "|---|---|---|"]
    for key, value in report["ratios"].items():
        rows.append(f"| {key} | {value:.2f}× | {f'≥ {TARGETS[key]}×' if key in TARGETS else '—'} |")
    return "\n".join(rows) + "\n"


def loop_row(r: dict) -> str:
    """The loop case's table row: training's tokens/s and peak, then what the run decided."""
    training = r.get("training") or {}
    speed = f"{training['tokens_per_s']:,.0f}" if training.get("tokens_per_s") else "—"
    peak = f"{training['peak_memory_gib']:.1f}" if training.get("peak_memory_gib") else "—"
    chosen = (training.get("attention") or {}).get("chosen", "?")
    stages = ", ".join(f"{stage} {seconds:g} s" for stage, seconds in r["seconds"].items())
    loop = r["loop"]
    setup = (
        f"base {r['baseline']['validation']} / {r['baseline']['test']} (scored in {r['baseline']['seconds']:g} s) "
        f"→ loop 0 {loop['status']}: validation {loop['validation']}, test {loop['test']}, "
        f"confirmed {loop['confirmed']}; {stages}; {chosen}, Liger {training.get('liger')}"
    )
    return f"| loop | rdft | {speed} | — | {peak} | — | {setup} |"


def write_json(path: Path, report: dict) -> None:
    from rdft.files import write_atomic  # standard library only: fine on a bare host

    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(report, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="Tiny shapes on the CPU: checks the suite runs.")
    parser.add_argument("--case", choices=[*CASES, "ceiling"], help=argparse.SUPPRESS)  # one arm, in a child
    parser.add_argument("--arm", help=argparse.SUPPRESS)
    parser.add_argument("--cases", help=f"Comma-separated subset of {','.join(CASES)} (default: all).")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "gpu_suite.json")
    parser.add_argument("--results", type=Path, default=REPO / "bench" / "RESULTS.md")
    parser.add_argument("--logs", type=Path, help="Folder of the arms' logs (default: <out>-logs beside --out).")
    parser.add_argument("--budget", type=float, default=480.0, help="Seconds for the whole run (default 480).")
    parser.add_argument("--case-timeout", type=float, default=180.0, help="Seconds per arm at most (default 180).")
    parser.add_argument("--wheels", type=Path, help="A folder of wheels to use (installed privately, offline).")
    parser.add_argument("--download-wheels", type=Path, metavar="DIR", help="Fetch the wheels a bare GPU host needs.")
    parser.add_argument("--python-version", default="3.12", help="The GPU host's Python, for --download-wheels.")
    parser.add_argument("--table-from", type=Path, metavar="JSON", help="Append the table of a saved report.")
    parser.add_argument("--data-python", type=Path, help="The loop case's data env interpreter (default: this one).")
    parser.add_argument("--eval-python", type=Path, help="The loop case's eval env interpreter (default: this one).")
    args = parser.parse_args()
    if args.case:
        print(RESULT + json.dumps(run_arm(args.case, args.arm, args.cpu_smoke)), flush=True)
        return
    if args.download_wheels:
        if args.download_wheels.exists() and not args.download_wheels.is_dir():
            raise SystemExit(f"gpu_suite: --download-wheels {args.download_wheels} is a file; give a folder")
        download_wheels(args.download_wheels, args.python_version)
        return
    if args.table_from:
        append_table(args.table_from, args.results)
        return
    cases = [name.strip() for name in args.cases.split(",") if name.strip()] if args.cases is not None else list(CASES)
    unknown = sorted(set(cases) - set(CASES))
    if unknown or not cases:
        raise SystemExit(
            f"gpu_suite: unknown case(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(CASES)}"
        )
    if args.budget <= 0 or args.case_timeout <= 0:
        raise SystemExit("gpu_suite: --budget and --case-timeout are seconds above 0 (defaults 480 and 180)")
    if args.wheels and not args.wheels.is_dir():
        raise SystemExit(f"gpu_suite: --wheels {args.wheels} is not a folder; make it with --download-wheels DIR")
    try:
        import torch  # noqa: F401
    except ImportError:
        raise SystemExit(
            "gpu_suite: this Python has no torch; run the suite with the interpreter that has torch, "
            "transformers, peft and accelerate"
        ) from None
    os.environ[SCRATCH] = tempfile.mkdtemp(prefix="gpu-suite-")
    try:
        run_suite(args, cases)
    finally:
        scratch_root = Path(os.environ.pop(SCRATCH))
        shutil.rmtree(scratch_root, ignore_errors=True)
        for weights in Path("/dev/shm").glob(f"suite-qlora-{scratch_root.name}-*"):  # a killed QLoRA arm's
            shutil.rmtree(weights, ignore_errors=True)


def append_table(path: Path, results: Path) -> None:
    """The table of a saved report (a cut-off run's), appended to `results`."""
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise SystemExit(
            f"gpu_suite: --table-from {path} cannot be read ({error}); give the suite's JSON report"
        ) from None
    if not isinstance(report, dict) or not {"date", "smoke", "versions", "command"} <= set(report):
        raise SystemExit(f"gpu_suite: --table-from {path} is not a report of this suite (no date, smoke, versions)")
    report.setdefault("env", "unknown")
    report.setdefault("adopt_notes", [])
    report.setdefault("device", "unknown")
    report["ratios"] = ratios(report)
    with open(results, "a", encoding="utf-8") as handle:
        handle.write(table(report))


def run_suite(args: argparse.Namespace, cases: list[str]) -> None:
    started = time.perf_counter()
    import torch

    if not args.cpu_smoke and not torch.cuda.is_available():
        raise SystemExit("gpu_suite: no CUDA GPU here; run it on a GPU host, or --cpu-smoke to check it runs")
    import transformers

    versions = f"torch {torch.__version__}, transformers {transformers.__version__}, python {platform.python_version()}"
    command = "python bench/gpu_suite.py" + (" --cpu-smoke" if args.cpu_smoke else "")
    command += (f" --cases {args.cases}" if args.cases else "") + (f" --budget {args.budget:g}")
    report = {"date": datetime.date.today().isoformat(), "smoke": args.cpu_smoke, "versions": versions,
              "command": command}  # fmt: skip
    site = carried_wheels(args.wheels) if args.wheels else None
    if site is not None:
        report["wheels"] = sorted(p.name for p in args.wheels.glob("*.whl"))
    env = suite_environment(site, args.cpu_smoke)
    broken = drop_broken_kernels(site, env) if site is not None else {}
    if site is not None:
        sys.path.insert(0, str(site))
    if broken:
        report["kernels_left_out"] = broken
    report["adopt_notes"] = adopt_this_python(env)
    report["env"] = f"{sys.executable}, adopted as rdft's train env ({env['RDFT_TORCH_VARIANT']})"
    logs = args.logs or args.out.parent / f"{args.out.stem}-logs"
    logs.mkdir(parents=True, exist_ok=True)
    measured = in_subprocess("ceiling", "matmul", args.cpu_smoke, args.case_timeout, env, logs)
    report["device"] = measured.get("device", "unknown (the ceiling arm failed)")
    report["matmul_ceiling_tflops"] = measured["flops"] / 1e12 if "flops" in measured else None
    for name in cases:
        report[name] = {}
        for arm in ARMS[name]:
            left = args.budget - (time.perf_counter() - started)
            why = unavailable(name, arm, args.cpu_smoke, broken)
            if why is None and left < (MIN_ARM_SMOKE_S if args.cpu_smoke else MIN_ARM_S[name]):
                why = f"the suite's --budget of {args.budget:g} s was spent; rerun with --cases {name}"
            if why:
                report[name][arm] = {"skipped": why}
            elif name == "loop":  # rdft run itself: it starts its own env processes
                pythons = {
                    key: str(path) for key, path in (("data", args.data_python), ("eval", args.eval_python)) if path
                }
                timeout = min(LOOP_TIMEOUT_S if not args.cpu_smoke else 3 * LOOP_TIMEOUT_S, left)
                report[name][arm] = case_loop(env, args.cpu_smoke, timeout, logs, pythons)
            else:
                timeout = min(args.case_timeout, left)
                report[name][arm] = in_subprocess(name, arm, args.cpu_smoke, timeout, env, logs)
            brief = {k: v for k, v in report[name][arm].items() if k != "log_tail"}
            print(f"gpu_suite: {name}/{arm}: {json.dumps(brief)[:400]}", file=sys.stderr, flush=True)
            report["ratios"] = ratios(report)
            report["wall_s"] = round(time.perf_counter() - started, 1)
            write_json(args.out, report)  # every finished figure survives a run cut off from outside
    with open(args.results, "a", encoding="utf-8") as handle:
        handle.write(table(report))
    print(json.dumps(report["ratios"]))
    failed = [f"{name}/{arm}" for name in cases for arm, r in report[name].items() if "error" in r]
    if failed:
        raise SystemExit(f"gpu_suite: {', '.join(failed)} failed; see {args.out}")


if __name__ == "__main__":
    main()
