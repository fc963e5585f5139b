"""Mirror an rdft run's records into an experiment tracker: MLflow or TensorBoard.

    python recipes/track_run.py --log-dir RUN --tracker mlflow|tensorboard

Reads only the run folder's own files (summary.json, run.json, each loop's feedback.json), so it
can be rerun at any time and says the same thing: rdft calls it after the base model is scored and
after every loop. Runs inside the `train` env (MLflow's client and TensorBoard are in its lock);
imports nothing from rdft.

MLflow: one parent run per rdft run (tag `rdft.run_dir`), one child per finished loop (tag
`rdft.loop`) carrying the hypothesis (the run's description), the method, the validation and test
scores with the validation interval, the decision, the stage durations, the leakage counts, the
degenerate flags and the forgetting check; the parent's `validation`/`test` history has one point
per loop (step = loop), so the UI compares loops on one chart. A loop whose record changed since
it was logged (a redone loop after a resume) replaces its child. The URI is MLflow's own
MLFLOW_TRACKING_URI, else a SQLite store at RUN/mlruns/mlflow.db (MLflow 3 keeps the plain file
store in maintenance mode). Credentials (MLFLOW_TRACKING_TOKEN, …) are read by MLflow itself.

TensorBoard: event files under RUN/tensorboard/ (rewritten whole each time): the base model's and
each loop's scores at step = loop.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
from pathlib import Path


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def loop_metrics(row: dict) -> dict[str, float]:
    """The numbers of one loop's summary row, as flat metric names."""
    out = {}
    for key in ("validation", "test"):
        if isinstance(row.get(key), (int, float)):
            out[key] = float(row[key])
    ci = row.get("validation_ci95")
    if ci:
        out["validation_ci95_low"], out["validation_ci95_high"] = float(ci[0]), float(ci[1])
    for stage, seconds in (row.get("seconds") or {}).items():
        out[f"seconds_{stage}"] = float(seconds)
    for reason, count in (row.get("leakage") or {}).items():
        out[f"leakage_dropped_{reason}"] = float(count)
    for name, record in (row.get("regression") or {}).items():
        for key in ("score", "delta"):
            if isinstance(record.get(key), (int, float)):
                out[f"regression_{name}_{key}"] = float(record[key])
    return out


def finished(summary: dict) -> list[dict]:
    return [row for row in summary.get("loops", []) if row.get("decision") != "running"]


def to_mlflow(log_dir: Path, summary: dict, run: dict) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        (log_dir / "mlruns").mkdir(exist_ok=True)
        uri = f"sqlite:///{log_dir / 'mlruns' / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME") or "rdft"
    client = MlflowClient()
    found = client.get_experiment_by_name(experiment)
    # Artifacts beside the store (else MLflow puts them under the working directory of whichever
    # process created the experiment first).
    artifacts = (log_dir / "mlruns" / "artifacts").as_uri()
    experiment_id = found.experiment_id if found else client.create_experiment(experiment, artifact_location=artifacts)
    run_dir = str(log_dir)
    parents = client.search_runs([experiment_id], f"tags.`rdft.run_dir` = '{run_dir}' and tags.`rdft.role` = 'run'")
    if parents:
        parent_id = parents[0].info.run_id
    else:
        parent = client.create_run(
            experiment_id,
            run_name=f"{log_dir.name} {run['base_model']} on {run['benchmark']}",
            tags={"rdft.run_dir": run_dir, "rdft.role": "run"},
        )
        parent_id = parent.info.run_id
        for key in ("base_model", "benchmark", "loop_n", "eval_limit", "max_gen_toks", "samples", "regression"):
            value = run.get(key)
            client.log_param(parent_id, key, json.dumps(value) if isinstance(value, list) else str(value))
        client.set_tag(parent_id, "mlflow.note.content", run.get("target") or f"rdft run {run_dir}")
    base = summary.get("baseline") or {}
    for key in ("validation", "test"):
        if isinstance(base.get(key), (int, float)):
            client.log_metric(parent_id, f"base_{key}", float(base[key]))
    for name, value in (base.get("regression") or {}).items():
        if isinstance(value, (int, float)):
            client.log_metric(parent_id, f"base_regression_{name}", float(value))

    children = client.search_runs(
        [experiment_id], f"tags.`rdft.run_dir` = '{run_dir}' and tags.`rdft.role` = 'loop'", max_results=10000
    )
    logged = {child.data.tags.get("rdft.loop"): child for child in children}
    for row in finished(summary):
        digest = hashlib.sha256(json.dumps(row, sort_keys=True, default=str).encode()).hexdigest()[:16]
        earlier = logged.get(str(row["loop"]))
        if earlier is not None and earlier.data.tags.get("rdft.record") == digest:
            continue  # logged as it is
        if earlier is not None:  # a redone loop: its earlier child goes
            client.delete_run(earlier.info.run_id)
        feedback = read_json(log_dir / f"Loop_{row['loop']}" / "feedback" / "feedback.json") or {}
        child = client.create_run(
            experiment_id,
            run_name=f"loop {row['loop']} ({row.get('method') or 'no training'})",
            tags={
                "mlflow.parentRunId": parent_id,
                "rdft.run_dir": run_dir,
                "rdft.role": "loop",
                "rdft.loop": str(row["loop"]),
                "rdft.record": digest,
                "mlflow.note.content": row.get("hypothesis") or "",
                "decision": row["decision"],
                "flags": "; ".join(row.get("flags") or []) or "none",
                "error_type": row.get("error_type") or "none",
            },
        )
        child_id = child.info.run_id
        client.log_param(child_id, "method", str(row.get("method")))
        client.log_param(child_id, "parent_loop", str(row.get("parent")))
        client.log_param(child_id, "kind", str(row.get("kind")))
        for key, value in loop_metrics(row).items():
            client.log_metric(child_id, key, value)
        if feedback.get("explanation"):
            client.log_text(child_id, feedback["explanation"], "feedback.txt")
        client.set_terminated(child_id, "FAILED" if row["decision"] == "failed" else "FINISHED")
        for key in ("validation", "test"):  # the parent's history: one point per loop
            if isinstance(row.get(key), (int, float)):
                client.log_metric(parent_id, key, float(row[key]), step=int(row["loop"]))
    if len(finished(summary)) >= int(run.get("loop_n") or 0):
        client.set_terminated(parent_id, "FINISHED")


def to_tensorboard(log_dir: Path, summary: dict) -> None:
    from torch.utils.tensorboard import SummaryWriter

    final = log_dir / "tensorboard"
    staging = log_dir / ".tensorboard.staging"
    shutil.rmtree(staging, ignore_errors=True)
    writer = SummaryWriter(log_dir=str(staging))
    base = summary.get("baseline") or {}
    for row in finished(summary):
        for key, value in loop_metrics(row).items():
            writer.add_scalar(f"loop/{key}", value, global_step=int(row["loop"]))
        for key in ("validation", "test"):
            if isinstance(base.get(key), (int, float)):
                writer.add_scalar(f"base/{key}", float(base[key]), global_step=int(row["loop"]))
    writer.close()
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log-dir", type=Path, required=True)
    parser.add_argument("--tracker", choices=["mlflow", "tensorboard"], required=True)
    args = parser.parse_args()
    log_dir = args.log_dir.resolve()
    summary = read_json(log_dir / "summary.json")
    run = read_json(log_dir / "run.json")
    if summary is None or run is None:
        raise SystemExit(f"track_run: {log_dir} holds no readable summary.json and run.json; give an rdft run folder")
    if args.tracker == "mlflow":
        to_mlflow(log_dir, summary, run)
    else:
        to_tensorboard(log_dir, summary)


if __name__ == "__main__":
    main()
