"""Stage `running`: full data processing, the leakage guard, full training, and scoring on the
validation split (what the agent sees) and the hidden test split (for the report only).

Each step writes its record under the stage folder when it finishes (`data.json`, `train.json`,
`validation.json`, `test.json`), so a resumed run starts at the first unfinished step. Scoring
writes into the stage folder (`validation/`, `test/`), never into the workspace the data script
and the training run in; before anything is scored, the weights are checked to descend from the
run's base model (rdft/loop/provenance.py)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from rdft.datasets.guard import run_guard
from rdft.envs import EnvManager
from rdft.errors import RdftError
from rdft.evaluation.benchmarks import get_benchmark, table_row
from rdft.evaluation.items import prepared_items
from rdft.evaluation.run import REGRESSION, evaluate_splits, regression_split
from rdft.files import write_atomic
from rdft.loop.coding import GUARD_TIMEOUT
from rdft.loop.provenance import NotDescendant, check_descendant
from rdft.loop.records import step, steps
from rdft.loop.scenario import Scenario
from rdft.loop.workspace import StepFailed, managed_config, read_samples, run_data_script, write_config
from rdft.resources import evaluation_dir
from rdft.settings import Settings
from rdft.training.run import TrainingFailed, train


def scored(
    settings: Settings,
    scenario: Scenario,
    outputs: dict[str, Path],
    *,
    model: str,
    adapter: Path | None,
    console: Console,
    timeout: float | None = None,
) -> dict[str, dict]:
    """The records of scoring `outputs`' splits (split → folder), in one lm-eval run, as the
    scenario's scoring plan says (limit, generation budget, samples per item). A split named
    regression_<B> is the forgetting check's slice of benchmark B (evaluation.run says how)."""
    plan = scenario.scoring
    folders = outputs
    regression = {s.removeprefix(REGRESSION): path for s, path in outputs.items() if s.startswith(REGRESSION)}
    outputs = {split: path for split, path in outputs.items() if not split.startswith(REGRESSION)}
    try:
        with console.status(f"scoring the {' and '.join(outputs)} split(s) with lm-eval ({scenario.benchmark})"):
            summaries = evaluate_splits(
                settings,
                model=model,
                adapter=adapter,
                benchmark=scenario.benchmark,
                outputs=outputs,
                limit=plan.limit,
                max_gen_toks=plan.max_gen_toks,
                samples=plan.samples,
                sampling=plan.sampling(),
                timeout=timeout,
                regression=regression,
                regression_items=scenario.regression_items,
            )
    except RdftError as error:
        raise StepFailed("eval", str(error)) from None
    return {
        split: {
            "value": summary["primary"]["value"],
            "ci95": summary["primary"]["ci95"],
            "n": summary["n"],
            "dir": str(folders[split]),
            "benchmark": summary["benchmark"],
            "items": summary["items"],
            "metrics": summary["metrics"],
            "diagnostics": summary.get("diagnostics", {}),
            "max_gen_toks": summary.get("max_gen_toks"),
            "standard": summary.get("standard", True),
            "samples": summary.get("samples", 1),
            "temperature": summary.get("temperature"),
            "top_p": summary.get("top_p"),
        }
        for split, summary in summaries.items()
    }


def scoring_context(settings: Settings, scenario: Scenario) -> dict:
    """What else decides a score besides the model, the items and the scorer code: the eval env's
    lock (lm-eval and the libraries it runs on), the backend scoring would choose on this host,
    and, where the benchmark's table row takes them, the LLM judge and the chemistry oracles."""
    manager = EnvManager(settings)
    lock = manager.spec("eval").pip_lock_path(manager.variant())
    context = {
        "eval_lock": hashlib.sha256(lock.read_bytes()).hexdigest() if lock.is_file() else None,
        # hf on a CPU; on GPUs vLLM where the score env is built, else the eval env's choice
        # (whether it holds vLLM is in its lock)
        "backend": "hf" if not scenario.hardware.get("gpus") else "score-env" if manager.ready("score") else "eval-env",
    }
    entry = get_benchmark(scenario.benchmark)
    if entry.judge:
        context["judge"] = settings.ft_judge_model
    if entry.oracle and settings.rdft_chem_oracle_dir:
        folder = settings.rdft_chem_oracle_dir.expanduser()
        files = sorted(folder.iterdir()) if folder.is_dir() else []
        context["oracles"] = [(p.name, hashlib.sha256(p.read_bytes()).hexdigest()) for p in files if p.is_file()]
    return context


def baseline_key(settings: Settings, scenario: Scenario, split: str) -> str:
    """Same model files, benchmark items, split, scoring plan (limit, generation budget,
    samples), scorer code and scoring context (the eval env's lock, the backend, the judge, the
    oracles): the same scores. A forgetting-check slice: its own benchmark's items and size."""
    model = Path(scenario.base_model.path)
    files = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in model.iterdir() if p.is_file())
    benchmark = split.removeprefix(REGRESSION) if split.startswith(REGRESSION) else scenario.benchmark
    if benchmark != scenario.benchmark:
        split = f"{split}:{scenario.regression_items}"
    items = prepared_items(settings, benchmark)
    items = hashlib.sha256(items.read_bytes()).hexdigest() if items else "hub"
    scorers = sorted(
        (p.relative_to(evaluation_dir()).as_posix(), hashlib.sha256(p.read_bytes()).hexdigest())
        for p in evaluation_dir().rglob("*")
        if p.is_file() and p.suffix in (".py", ".yaml", ".jsonl")
    )
    context = scoring_context(settings, scenario)
    blob = json.dumps(
        [str(model), files, scenario.benchmark, split, scenario.scoring.model_dump(), scorers, items, context]
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def baseline_scores(
    settings: Settings,
    scenario: Scenario,
    outputs: dict[str, Path],
    *,
    console: Console,
    timeout: float | None = None,
) -> dict[str, dict]:
    """The base model's scores on `outputs`' splits, cached under FT_FILE_PATH/baselines (RD-Agent
    caches them too): every run of the same model and benchmark starts from the same,
    once-computed numbers. The splits the cache lacks are scored together."""
    root = settings.ft_file_path.expanduser().resolve() / "baselines"
    caches = {split: root / baseline_key(settings, scenario, split) for split in outputs}
    records = {}
    missing = {split: out for split, out in outputs.items() if not (caches[split] / "record.json").is_file()}
    if missing:
        fresh = scored(
            settings, scenario, missing, model=scenario.base_model.path, adapter=None, console=console, timeout=timeout
        )
        for split, record in fresh.items():
            _cache(record, outputs[split], caches[split])
        records.update(fresh)
    for split in outputs.keys() - missing.keys():
        console.print(f"rdft: the base model's {split} score comes from the cache ({caches[split]})")
        output = outputs[split]
        shutil.rmtree(output, ignore_errors=True)
        shutil.copytree(caches[split] / "out", output)
        record = json.loads((caches[split] / "record.json").read_text())
        records[split] = {**record, "dir": str(output), "items": str(output / record["items"]),
                          "cached": str(caches[split])}  # fmt: skip
    return records


def _cache(record: dict, output: Path, cache: Path) -> None:
    """A copy of a scored split, published by a rename (a concurrent run may win the race)."""
    cache.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=cache.parent, prefix=".staging-"))
    shutil.copytree(output, staging / "out", ignore=shutil.ignore_patterns(".hf_datasets"))
    relative = {k: str(Path(v).relative_to(output)) if k in ("dir", "items") else v for k, v in record.items()}
    (staging / "record.json").write_text(json.dumps(relative))
    try:
        os.rename(staging, cache)
    except OSError:  # another run cached it first
        shutil.rmtree(staging, ignore_errors=True)


SCORING_TIMEOUT = 7 * 24 * 3600.0  # scoring has no limit of its own; the run's --timeout caps it


def run_experiment(
    settings: Settings,
    scenario: Scenario,
    workspace: Path,
    stage_dir: Path,
    guard_docs: Path,
    *,
    deadline: Callable[[float], float],
    console: Console,
    start: dict | None = None,
) -> dict:
    """deadline(t) caps a step's timeout `t` by the run's remaining budget; `start`: the earlier
    loop's training record a GRPO experiment starts from."""

    def data() -> dict:
        console.print("rdft: running the data script in full")
        produced = run_data_script(
            settings,
            workspace,
            family=scenario.benchmark_family,
            benchmark=scenario.benchmark,
            debug=False,
            timeout=deadline(settings.ft_data_processing_timeout),
            log_path=stage_dir / "data.log",
            usage_path=stage_dir / "api_usage.json",
        )
        guarded = stage_dir / f"guarded{produced.suffix}"
        try:
            report = run_guard(
                settings,
                scenario.benchmark,
                [guard_docs],
                [produced],
                output=guarded,
                log_path=stage_dir / "leakage.log",
                timeout=deadline(GUARD_TIMEOUT),  # the run's budget caps the guard as every other step
            )
        except RdftError as error:
            raise StepFailed("data", str(error)) from None
        kept = read_samples(guarded)
        guarded.unlink()
        over = max(0, len(kept) - scenario.upper_data_size_limit)
        kept = kept[: scenario.upper_data_size_limit]
        if not kept:
            raise StepFailed("data", f"no samples left after the leakage guard ({report['dropped']})")
        target = workspace / produced.name  # data.jsonl (chat) or data.json (alpaca: the recipe reads JSON lists)
        lines = (
            json.dumps(kept, ensure_ascii=False)
            if target.suffix == ".json"
            else "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in kept)
        )
        write_atomic(target, lines)
        leaked = sum(report["dropped"].values())
        reasons = ", ".join(f"{k} {v}" for k, v in report["dropped"].items() if v) or "none"
        console.print(
            f"rdft: {len(kept)} samples ({leaked} dropped by the leakage guard: {reasons}; {over} over the limit)"
        )
        record = {
            "file": target.name,
            "written": report["rows"],
            "samples": len(kept),
            "dropped_leakage": leaked,
            "leakage": report["dropped"],
            "evaluation_items_hit": report["evaluation_items_hit"],
            "dropped_over_limit": over,
        }
        stats = workspace / "data_stats.json"  # what the offline recipe (or a script) says it dropped
        if stats.is_file():
            try:
                record["script_stats"] = json.loads(stats.read_text())
            except ValueError:
                pass
        return record

    def training() -> dict:
        config = managed_config(
            (workspace / "train.yaml").read_text(), scenario, data_record["file"], start, workspace=workspace
        )
        path = write_config(workspace, config)
        console.print("rdft: training")
        try:
            result = train(
                settings,
                path,
                workspace=workspace,
                console=console,
                timeout=deadline(settings.ft_full_timeout),
                benchmark_entry=table_row,
            )
        except TrainingFailed as failure:
            kind = "oom" if failure.oom else "timeout" if failure.timed_out else "train"
            raise StepFailed(kind, str(failure)) from None
        except RdftError as error:
            raise StepFailed("train", str(error)) from None
        keep = ("adapter_dir", "model_dir", "merged_dir", "first_loss", "final_loss", "steps", "tokens_per_s",
                "peak_memory_gib", "runtime_s", "data", "log", "method", "first_reward", "final_reward")  # fmt: skip
        record = {k: result.get(k) for k in keep}
        record["provenance"] = provenance(record)
        return record

    def provenance(record: dict) -> dict:
        # Merged weights (GRPO's: its adapter is relative to an earlier loop's weights) are what scores.
        merged = Path(record["merged_dir"]) if record.get("merged_dir") else None
        adapter = Path(record["adapter_dir"]) if record.get("adapter_dir") and not merged else None
        model = merged or (Path(record["model_dir"]) if record.get("model_dir") and not adapter else None)
        try:
            return check_descendant(
                Path(scenario.base_model.path), scenario.base_model.weights, adapter=adapter, model=model
            )
        except NotDescendant as error:
            raise StepFailed("provenance", str(error)) from None

    data_record = step(stage_dir, "data", data)
    train_record = step(stage_dir, "train", training)
    merged = train_record.get("merged_dir")
    adapter = Path(train_record["adapter_dir"]) if train_record.get("adapter_dir") and not merged else None
    model = merged or (scenario.base_model.path if adapter else train_record["model_dir"])

    def score(splits: list[str]) -> dict[str, dict]:
        provenance(train_record)  # the weights may have been touched since training: check again
        outputs = {split: stage_dir / split for split in splits}
        return scored(
            settings,
            scenario,
            outputs,
            model=model,
            adapter=adapter,
            console=console,
            timeout=deadline(SCORING_TIMEOUT),
        )

    names = ["validation", "test", *map(regression_split, scenario.regression)]
    records = steps(stage_dir, names, score)  # one lm-eval run for all
    return {"data": data_record, "train": train_record, **records}
