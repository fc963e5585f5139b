"""Stage `running`: full data processing, the leakage guard, full training, and scoring on the
validation split (what the agent sees) and the hidden test split (for the report only).

Each step writes its record under the stage folder when it finishes (`data.json`, `train.json`,
`validation.json`, `test.json`), so a resumed run starts at the first unfinished step."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from rdft.datasets.leakage import drop_evaluation_questions
from rdft.errors import RdftError
from rdft.evaluation.run import evaluate
from rdft.files import write_atomic
from rdft.loop.coding import StepFailed, managed_config, read_samples, run_data_script, write_config
from rdft.loop.scenario import Scenario
from rdft.resources import evaluation_dir
from rdft.settings import Settings
from rdft.training.run import TrainingFailed, train


def write_json(path: Path, value: dict) -> None:
    write_atomic(path, json.dumps(value, indent=1, default=str))


def step(stage_dir: Path, name: str, work: Callable[[], dict]) -> dict:
    """`work()`'s record, computed once: a finished step is read back on resume."""
    marker = stage_dir / f"{name}.json"
    if marker.exists():
        return json.loads(marker.read_text())
    record = work()
    write_json(marker, record)
    return record


def evaluation_docs(baseline_dir: Path) -> list[dict]:
    """Every evaluation item of the benchmark's splits, as the baseline scoring wrote them."""
    docs = []
    for path in sorted(baseline_dir.glob("*/docs.*.jsonl")):
        docs += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return docs


def scored(
    settings: Settings,
    scenario: Scenario,
    output: Path,
    split: str,
    *,
    model: str,
    adapter: Path | None,
    limit: int | None,
    console: Console,
) -> dict:
    try:
        with console.status(f"scoring the {split} split with lm-eval ({scenario.benchmark})"):
            summary = evaluate(
                settings,
                model=model,
                adapter=adapter,
                benchmark=scenario.benchmark,
                output=output,
                split=split,
                limit=limit,
            )
    except RdftError as error:
        raise StepFailed("eval", str(error)) from None
    primary = summary["primary"]
    return {
        "value": primary["value"],
        "ci95": primary["ci95"],
        "n": summary["n"],
        "dir": str(output),
        "items": summary["items"],
        "metrics": summary["metrics"],
    }


def baseline_key(scenario: Scenario, split: str, limit: int | None) -> str:
    """Same model files, benchmark, split, limit and scorer code: the same scores."""
    model = Path(scenario.base_model.path)
    files = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in model.iterdir() if p.is_file())
    scorers = sorted(
        (p.relative_to(evaluation_dir()).as_posix(), hashlib.sha256(p.read_bytes()).hexdigest())
        for p in evaluation_dir().rglob("*")
        if p.is_file() and p.suffix in (".py", ".yaml", ".jsonl")
    )
    blob = json.dumps([str(model), files, scenario.benchmark, split, limit, scorers])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def baseline_score(
    settings: Settings, scenario: Scenario, output: Path, split: str, *, limit: int | None, console: Console
) -> dict:
    """The base model's score on `split`, cached under FT_FILE_PATH/baselines (RD-Agent caches it
    too): every run of the same model and benchmark starts from the same, once-computed numbers."""
    cache = settings.ft_file_path.expanduser().resolve() / "baselines" / baseline_key(scenario, split, limit)
    if not (cache / "record.json").is_file():
        record = scored(settings, scenario, output, split, model=scenario.base_model.path, adapter=None,
                        limit=limit, console=console)  # fmt: skip
        cache.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=cache.parent, prefix=".staging-"))
        shutil.copytree(output, staging / "out", ignore=shutil.ignore_patterns(".hf_datasets"))
        relative = {k: str(Path(record[k]).relative_to(output)) if k in ("dir", "items") else v
                    for k, v in record.items()}  # fmt: skip
        (staging / "record.json").write_text(json.dumps(relative))
        try:
            os.rename(staging, cache)
        except OSError:  # another run cached it first
            shutil.rmtree(staging, ignore_errors=True)
        return record
    console.print(f"rdft: the base model's {split} score comes from the cache ({cache})")
    shutil.rmtree(output, ignore_errors=True)
    shutil.copytree(cache / "out", output)
    record = json.loads((cache / "record.json").read_text())
    return {**record, "dir": str(output), "items": str(output / record["items"]), "cached": str(cache)}


def run_experiment(
    settings: Settings,
    scenario: Scenario,
    workspace: Path,
    stage_dir: Path,
    baseline_dir: Path,
    *,
    deadline: Callable[[float], float],
    eval_limit: int | None,
    console: Console,
) -> dict:
    """deadline(t) caps a step's timeout `t` by the run's remaining budget."""

    def data() -> dict:
        console.print("rdft: running the data script in full")
        produced = run_data_script(
            settings,
            workspace,
            debug=False,
            timeout=deadline(settings.ft_data_processing_timeout),
            log_path=stage_dir / "data.log",
        )
        samples = read_samples(produced)
        kept, leaked = drop_evaluation_questions(samples, evaluation_docs(baseline_dir))
        over = max(0, len(kept) - scenario.upper_data_size_limit)
        kept = kept[: scenario.upper_data_size_limit]
        if not kept:
            raise StepFailed("data", "no samples left after the leakage guard")
        target = workspace / "data.jsonl"
        if produced.name == "data.json":  # alpaca: the recipe reads JSON lists as well
            target = workspace / "data.json"
        lines = (
            json.dumps(kept, ensure_ascii=False)
            if target.suffix == ".json"
            else "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in kept)
        )
        write_atomic(target, lines)
        console.print(f"rdft: {len(kept)} samples ({leaked} dropped by the leakage guard, {over} over the limit)")
        return {
            "file": target.name,
            "samples": len(kept),
            "dropped_leakage": leaked,
            "dropped_over_limit": over,
            "written": len(samples),
        }

    def training() -> dict:
        config = managed_config((workspace / "train.yaml").read_text(), scenario, data_record["file"])
        path = write_config(workspace, config)
        console.print("rdft: training")
        try:
            result = train(
                settings, path, workspace=workspace, console=console, timeout=deadline(settings.ft_full_timeout)
            )
        except TrainingFailed as failure:
            kind = "oom" if failure.oom else "timeout" if failure.timed_out else "train"
            raise StepFailed(kind, str(failure)) from None
        except RdftError as error:
            raise StepFailed("train", str(error)) from None
        keep = (
            "adapter_dir",
            "model_dir",
            "merged_dir",
            "first_loss",
            "final_loss",
            "steps",
            "tokens_per_s",
            "peak_memory_gib",
            "log",
        )
        return {k: result.get(k) for k in keep}

    data_record = step(stage_dir, "data", data)
    train_record = step(stage_dir, "train", training)
    adapter = Path(train_record["adapter_dir"]) if train_record.get("adapter_dir") else None
    model = scenario.base_model.path if adapter else train_record["model_dir"]
    benchmark_dir = workspace / "benchmark"
    validation = step(
        stage_dir,
        "validation",
        lambda: scored(
            settings,
            scenario,
            benchmark_dir / "validation",
            "validation",
            model=model,
            adapter=adapter,
            limit=eval_limit,
            console=console,
        ),
    )
    test = step(
        stage_dir,
        "test",
        lambda: scored(
            settings,
            scenario,
            benchmark_dir / "test",
            "test",
            model=model,
            adapter=adapter,
            limit=eval_limit,
            console=console,
        ),
    )
    return {"data": data_record, "train": train_record, "validation": validation, "test": test}
