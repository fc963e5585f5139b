"""`rdft eval`: score a checkpoint (base, adapter or merged) on one benchmark split with
lm-evaluation-harness inside the eval env (evaluation/harness.py: `lm_eval run` on rdft's own
task YAMLs only), then summarise with the same scorers as `rdft score`.

Everything lands in the output folder: `docs.<split>.jsonl` (the split's items), `tasks/` (the
generated task YAML, pointing at those docs with an absolute path), `lm_eval/` (lm-eval's own
results and samples), `predictions.jsonl`, `lm_eval.log` and `summary.json`, which records the
exact command so a baseline is scored the same way.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from rdft import hardware
from rdft.envs import Env, EnvManager
from rdft.errors import RdftError
from rdft.evaluation import generation
from rdft.evaluation.benchmarks import Benchmark, get_benchmark
from rdft.evaluation.items import write_docs
from rdft.evaluation.score import scorer_options
from rdft.files import write_atomic
from rdft.resources import evaluation_dir
from rdft.settings import Settings
from rdft.training.models import HUB_ID


class Function(str):
    """A `!function module.attr` reference of an lm-eval task YAML."""


class _Loader(yaml.SafeLoader):
    pass


class _Dumper(yaml.SafeDumper):
    pass


_Loader.add_constructor("!function", lambda loader, node: Function(loader.construct_scalar(node)))
_Dumper.add_representer(Function, lambda dumper, value: dumper.represent_scalar("!function", str(value)))


def check_model(model: str, adapter: Path | None) -> tuple[str, Path | None]:
    """A local model folder or a Hub id, and an adapter folder; one-line errors otherwise."""
    path = Path(model).expanduser()
    if path.exists():
        if (path / "adapter_config.json").is_file() and not (path / "config.json").is_file():
            raise RdftError(f"{path} is a LoRA adapter; give its base with --model and the adapter with --adapter")
        if not (path / "config.json").is_file():
            raise RdftError(f"{path} holds no config.json; give a model folder (base or merged) or a Hub id")
        model = str(path.resolve())
    elif not HUB_ID.match(model) or model.startswith((".", "/", "~")):
        raise RdftError(f"model path {model} does not exist; give a model folder or a Hub id like Qwen/Qwen2.5-7B")
    if adapter is not None:
        adapter = adapter.expanduser()
        if not (adapter / "adapter_config.json").is_file():
            raise RdftError(f"{adapter} is not a PEFT adapter (no adapter_config.json); fix --adapter")
        adapter = adapter.resolve()
    return model, adapter


def task_yaml(
    entry: Benchmark,
    task: str,
    docs: Path,
    samples: int,
    max_gen_toks: int | None,
    sampling: tuple[float, float] = generation.SAMPLING,
) -> str:
    """The benchmark's task YAML, re-pointed at the split's local docs."""
    config = yaml.load(entry.task_template.read_text(), Loader=_Loader)  # keeps !function tags
    config.update(task=task, dataset_path="json", test_split="test")
    config["dataset_kwargs"] = {"data_files": {"test": str(docs)}}
    config.pop("process_docs", None)  # prepare.py already narrowed the rows
    kwargs = dict(config.get("generation_kwargs") or {})
    if max_gen_toks:
        kwargs["max_gen_toks"] = max_gen_toks
    if samples > 1:
        kwargs.update(do_sample=True, temperature=sampling[0], top_p=sampling[1])
        config["repeats"] = samples
        config["filter_list"] = [{"name": f"all_{samples}", "filter": [{"function": "take_first_k", "k": samples}]}]
    config["generation_kwargs"] = kwargs
    return yaml.dump(config, Dumper=_Dumper, sort_keys=False)


def write_task(tasks: Path, entry: Benchmark, task: str, text: str) -> None:
    """The task YAML beside a copy of its scorer code: lm-eval resolves `!function utils.fn`
    next to the YAML (absolute module paths break on folders with dots, like `.tox`), and the
    output folder keeps the exact scorer it was scored with."""
    shipped = evaluation_dir() / "tasks"
    family = tasks / entry.family
    family.mkdir(parents=True, exist_ok=True)
    for shared in ("answers.py", "sandbox.py"):  # what every family may import beside its own folder
        shutil.copy2(shipped / shared, tasks / shared)
    for module in (shipped / entry.family).iterdir():  # its code and the data it reads (FinanceIQ's shots)
        if module.is_file() and module.suffix != ".yaml":
            shutil.copy2(module, family / module.name)
    if entry.custom:  # the generic scorer reads the benchmark's spec beside it
        write_atomic(family / "spec.json", json.dumps(entry.custom, indent=1))
    (family / f"{task}.yaml").write_text(text)


BATCH_SIZE = re.compile(r"(auto(:[1-9]\d*)?|[1-9]\d*)")


def _has_vllm(env: Env) -> bool:
    return env.run(["python", "-c", "import vllm"], echo=False).ok


@dataclass(frozen=True)
class Generation:
    """How lm-eval generates: its backend, in which env, and whether an adapter is merged first."""

    backend: str  # "hf" or "vllm"
    in_score_env: bool  # the score env (vLLM with its own torch); else the eval env
    merge_adapter: bool  # hf on a GPU: PEFT's unmerged LoRA layers cost a matmul pair per linear per token
    static_cache: bool = False  # hf on a GPU: a static KV cache, decode compiled (generation.py says why)


def choose_generation(
    backend: str, *, gpus: int, score_env: bool, eval_has_vllm: Callable[[], bool], adapter: bool
) -> Generation:
    """`auto`: vLLM on a GPU host when the score env is built (or the eval env has vLLM), else hf;
    an explicit backend is kept, and refused where it cannot run."""
    if backend == "vllm" and not gpus:
        raise RdftError("--backend vllm needs a CUDA GPU and this host has none; use --backend hf (or auto)")
    in_score_env = score_env and backend in ("auto", "vllm")
    if backend == "auto":
        backend = "vllm" if gpus and (in_score_env or eval_has_vllm()) else "hf"
    elif backend == "vllm" and not in_score_env and not eval_has_vllm():
        raise RdftError("--backend vllm: vLLM is in neither the score env nor the eval env; `rdft env create score`")
    hf_on_gpu = backend == "hf" and bool(gpus)
    return Generation(backend, in_score_env and backend == "vllm", hf_on_gpu and adapter, static_cache=hf_on_gpu)


def lm_eval_batch(
    backend: str, asked: str | None, model: str, gpu_memory: list[float], max_new: int, prompt_tokens: int
) -> str:
    """lm-eval's --batch_size: vLLM schedules its own batches; else what was asked, the batch
    planned from the smallest card's memory, lm-eval's auto for an unknown shape, 4 on a CPU."""
    if backend == "vllm":
        return "auto"
    if asked is not None:
        return asked
    if not gpu_memory:
        return "4"
    planned = generation.hf_batch_size(model, min(gpu_memory), max_new, prompt_tokens)
    return str(planned) if planned else "auto"


def model_args(
    backend: str, model: str, adapter: Path | None, gpu_memory: list[float], max_gen_toks: int, prompt_tokens: int
) -> str:
    """lm-eval's --model_args (rdft/evaluation/generation.py says how each is chosen)."""
    if backend == "vllm":
        return ",".join(generation.vllm_args(model, adapter, gpu_memory, max_gen_toks, prompt_tokens))
    args = [f"pretrained={model}", f"dtype={'bfloat16' if gpu_memory else 'float32'}"]
    if adapter is not None:
        args.append(f"peft={adapter}")
    context = generation.context_length(model)
    if context and max_gen_toks >= context:  # hf asserts max_length > max_gen_toks
        args.append(f"max_length={max_gen_toks + 4096}")
    return ",".join(args)


MERGE = """
import sys, torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer
base = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.bfloat16)
PeftModel.from_pretrained(base, sys.argv[2]).merge_and_unload().save_pretrained(sys.argv[3])
AutoTokenizer.from_pretrained(sys.argv[2] if __import__("os").path.exists(sys.argv[2] + "/tokenizer_config.json")
                              else sys.argv[1]).save_pretrained(sys.argv[3])
"""


def merged_copy(env: Env, model: str, adapter: Path, folder: Path, timeout: float | None) -> Path:
    """The base with the adapter merged in, for the hf backend on a GPU (deleted after scoring)."""
    result = env.run(["python", "-c", MERGE, model, str(adapter), str(folder)], echo=False, timeout=timeout)
    if not result.ok:
        raise RdftError(f"merging {adapter} into {model} for scoring failed: {result.tail.strip().splitlines()[-1:]}")
    return folder


def evaluate(settings: Settings, *, output: Path, split: str = "validation", **options) -> dict:
    """Score one split into `output` (see the module docstring); returns its summary. `options`
    are evaluate_splits' (model, benchmark, adapter, limit, samples, backend, …)."""
    return evaluate_splits(settings, outputs={split: output}, **options)[split]


def evaluate_splits(
    settings: Settings,
    *,
    model: str,
    benchmark: str,
    outputs: dict[str, Path],
    adapter: Path | None = None,
    limit: int | None = None,
    samples: int = 1,
    backend: str = "auto",
    data: Path | None = None,
    max_gen_toks: int | None = None,
    batch_size: str | None = None,
    verbose: bool = False,
    timeout: float | None = None,
    sampling: tuple[float, float] | None = None,
    regression: dict[str, Path] | None = None,
    regression_items: int = 100,
) -> dict[str, dict]:
    """Score several splits with ONE lm-eval run (one model load: the validation and test
    splits of a loop cost one start-up, not two); each split gets its own output folder with
    its docs, predictions, per-item scores and summary. The task YAMLs, lm-eval's own files and
    its log are in the first split's folder. `timeout` bounds the whole scoring (a run's budget).
    A folder scored before loses its earlier results first, so a failed rerun never leaves them
    looking like its own.

    `regression` (benchmark → output folder): the forgetting check's slices, scored in the same
    lm-eval run — a fixed seeded slice of `regression_items` items of each benchmark, one greedy
    answer per item (a slice is compared with the base model's on the same items, so sampling
    noise would only widen the interval), under the same generation cap. Their summaries come
    back under `regression_split(benchmark)`."""
    stop_at = None if timeout is None else time.monotonic() + timeout

    def left() -> float | None:
        return None if stop_at is None else max(1.0, stop_at - time.monotonic())

    entry = get_benchmark(benchmark)
    model, adapter = check_model(model, adapter)
    if data is not None and not data.exists():
        raise RdftError(f"data {data} does not exist; give a local file or folder of the benchmark's docs")
    if samples < 1:
        raise RdftError("--samples must be at least 1")
    if batch_size is not None and not BATCH_SIZE.fullmatch(str(batch_size)):
        raise RdftError(
            f"--batch-size {batch_size!r} is not one lm-eval takes: give a positive integer, auto or auto:N"
        )
    gpu_memory = [gpu.memory_gib for gpu in hardware.gpus()]
    gpus = len(gpu_memory)
    manager = EnvManager(settings)
    # On a GPU host the `score` env (vLLM with its own torch) generates when it has been built;
    # the scorers below always run in the eval env. Chosen before any env is built.
    score_env = manager.current("score") if gpus else None
    # Asked only on a GPU host without the score env (it may build the eval env, needed anyway).
    chosen = choose_generation(
        backend,
        gpus=gpus,
        score_env=score_env is not None,
        eval_has_vllm=lambda: _has_vllm(manager.ensure("eval")),
        adapter=adapter is not None,
    )
    outputs = {split: path.expanduser().resolve() for split, path in outputs.items()}
    regression = {name: path.expanduser().resolve() for name, path in (regression or {}).items()}
    for name in regression:
        get_benchmark(name)
    for output in [*outputs.values(), *regression.values()]:  # an earlier scoring's results: stale from here on
        for name in ("summary.json", "scores.json", "predictions.jsonl", "items.jsonl"):
            (output / name).unlink(missing_ok=True)
    first = next(iter(outputs.values()))
    shutil.rmtree(first / "lm_eval", ignore_errors=True)  # its samples of an earlier model would be read back
    sampling = sampling or generation.model_sampling(model)
    env = manager.ensure("eval")
    extra = {"HF_TOKEN": settings.hf_token.get_secret_value()} if settings.hf_token else {}
    extra["HF_DATASETS_CACHE"] = str(first / ".hf_datasets")  # the json builder's cache stays here

    docs = {split: output / f"docs.{split}.jsonl" for split, output in outputs.items()}
    write_docs(
        settings,
        benchmark,
        list(outputs),
        list(docs.values()),
        data=data.resolve() if data else None,
        limit=limit,
        timeout=left(),
    )
    tasks = {}
    for split in outputs:  # every task YAML in one folder: lm-eval takes one include path
        tasks[split] = f"rdft_{benchmark}_{split}"
        write_task(
            first / "tasks",
            entry,
            tasks[split],
            task_yaml(entry, tasks[split], docs[split], samples, max_gen_toks, sampling),
        )
    # The forgetting check's slices: scored by the same lm-eval run, each with its own task YAML.
    scored_splits = {split: (benchmark, output, docs[split]) for split, output in outputs.items()}
    for name, output in regression.items():
        output.mkdir(parents=True, exist_ok=True)
        split, slice_docs = regression_split(name), output / "docs.slice.jsonl"
        write_docs(settings, name, ["slice"], slice_docs, limit=regression_items, timeout=left())
        tasks[split] = f"rdft_{name}_regression"
        write_task(first / "tasks", get_benchmark(name), tasks[split],
                   task_yaml(get_benchmark(name), tasks[split], slice_docs, 1, max_gen_toks, sampling))  # fmt: skip
        scored_splits[split] = (name, output, slice_docs)

    backend, generator = chosen.backend, score_env if chosen.in_score_env else env
    max_new = max_gen_toks or max(entry_max_gen_toks(get_benchmark(b)) for b, _, _ in scored_splits.values())
    prompt_tokens = generation.longest_prompt_bound([path for _, _, path in scored_splits.values()])
    scored_model, merged = model, None
    if chosen.merge_adapter:
        merged = merged_copy(env, model, adapter, first / ".merged", left())
        scored_model = str(merged)
    batch_size = lm_eval_batch(backend, batch_size, scored_model, gpu_memory, max_new, prompt_tokens)
    results = first / "lm_eval"
    command = [
        "python", str(evaluation_dir() / "harness.py"), "--model", backend,
        "--model_args", model_args(backend, scored_model, None if merged else adapter, gpu_memory, max_new,
                                   prompt_tokens),
        "--tasks", ",".join(tasks.values()),
        "--include_path", str(first / "tasks"),
        "--apply_chat_template", "--log_samples", "--output_path", str(results),
        "--batch_size", batch_size, "--device", "cuda" if gpus else "cpu",
        "--seed", "0",
    ]  # fmt: skip
    if chosen.static_cache:
        command += ["--gen_kwargs", generation.STATIC_CACHE]
    if Path(model).exists():  # the docs are a local file: with a local model nothing needs the Hub
        extra.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    try:
        result = generator.run(
            command, extra_env=extra, cwd=first, log_path=first / "lm_eval.log", echo=verbose, timeout=left()
        )
    finally:
        if merged is not None:
            shutil.rmtree(merged, ignore_errors=True)
    if result.timed_out:
        raise RdftError(f"scoring timed out after {timeout:g} s; see {first / 'lm_eval.log'}")
    if not result.ok:
        why = "out of GPU memory" if result.oom else f"exit {result.returncode}"
        raise RdftError(f"lm-eval failed ({why}); see {first / 'lm_eval.log'}")
    for name in dict.fromkeys(b for b, _, _ in scored_splits.values()):  # one scoring process per benchmark
        judge_args, judge_env = scorer_options(settings, name)
        scoring = ["python", str(evaluation_dir() / "score.py"), "--benchmark", name, *judge_args]
        for split, (owner, output, split_docs) in scored_splits.items():
            if owner != name:
                continue
            write_predictions(results, tasks[split], output / "predictions.jsonl")
            scoring += ["--docs", str(split_docs), "--predictions", str(output / "predictions.jsonl"),
                        "--items", str(output / "items.jsonl"), "--output", str(output / "scores.json")]  # fmt: skip
        scored = env.run(scoring, extra_env=judge_env, echo=False, timeout=left())
        if not scored.ok:
            raise RdftError(f"scoring {name} failed: {scored.tail.strip().splitlines()[-1:]}")
    summaries = {}
    for split, (name, output, _) in scored_splits.items():
        summary = json.loads((output / "scores.json").read_text())
        regressed = name != benchmark
        summary.update(
            benchmark=name,
            split="slice" if regressed else split,
            model=model,
            adapter=str(adapter) if adapter else None,
            backend=backend,
            samples=1 if regressed else samples,
            temperature=sampling[0] if samples > 1 and not regressed else None,
            top_p=sampling[1] if samples > 1 and not regressed else None,
            lm_eval_version=installed_version(generator, "lm_eval"),
            generated_in=generator.name,
            command=command,
            lm_eval_output=str(results),
            predictions=str(output / "predictions.jsonl"),
            items=str(output / "items.jsonl"),
            max_gen_toks=max_gen_toks or entry_max_gen_toks(get_benchmark(name)),
            # Scores under a smaller generation budget than the benchmark's are not its standard numbers.
            standard=max_gen_toks is None or max_gen_toks >= entry_max_gen_toks(get_benchmark(name)),
        )
        write_atomic(output / "summary.json", json.dumps(summary, indent=2) + "\n")
        summaries[split] = summary
    return summaries


REGRESSION = "regression_"  # the forgetting check's slice of benchmark B is the split regression_B


def regression_split(benchmark: str) -> str:
    return REGRESSION + benchmark


def installed_version(env: Env, distribution: str) -> str | None:
    """A package's version in an env, from its metadata folder (no interpreter to start)."""
    for info in env.prefix.glob(f"lib/python*/site-packages/{distribution}-*.dist-info"):
        return info.name.removeprefix(f"{distribution}-").removesuffix(".dist-info")
    return None


def entry_max_gen_toks(entry: Benchmark) -> int:
    text = entry.task_template.read_text()
    config = yaml.load(text, Loader=_Loader)
    return int(config["generation_kwargs"]["max_gen_toks"])


def write_predictions(results: Path, task: str, out: Path) -> None:
    """lm-eval's samples file as `{"doc_id", "response"}` rows (k rows for k samples)."""
    files = sorted(results.rglob(f"samples_{task}_*.jsonl"))
    if not files:
        raise RdftError(f"lm-eval wrote no samples for {task} under {results}")
    rows = []
    for line in files[-1].read_text().splitlines():
        sample = json.loads(line)
        responses = sample["filtered_resps"][0] if sample.get("filtered_resps") else sample["resps"][0]
        for response in responses if isinstance(responses, list) else [responses]:
            rows.append({"doc_id": sample["doc_id"], "response": response})
    write_atomic(out, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
