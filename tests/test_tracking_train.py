"""`train.report_to`: a training reports to experiment trackers, each through its own library.

A tiny SFT run and a tiny GRPO run report to TensorBoard and MLflow (both in the train lock); what
they wrote is read back in the train env by TensorBoard's own event reader and MLflow's own client
and compared with the recipe's metrics.jsonl and result.json. A tracker whose library the train
env lacks (wandb, trackio) is one line naming the install. Planted credentials reach the training
process that reports to their tracker, and no file it writes."""

import json
import os
from pathlib import Path

import pytest
import yaml
from conftest import one_line_error, small_scenario

from rdft.resources import recipes_dir

CONFIGS = recipes_dir() / "configs"
PLANTED = {
    "MLFLOW_TRACKING_PASSWORD": "mlflow-planted-password-0123456789",
    "WANDB_API_KEY": "wandb-planted-key-0123456789abcdef",
    "OPENAI_API_KEY": "sk-planted-openai-0123456789abcdef",
}
# Each Python process the command starts records whether each planted variable is in its own
# environment (never the value): the training must have the credential of its tracker.
SITECUSTOMIZE = f"""\
import json, os, sys
has = sorted(name for name in {sorted(PLANTED)!r} if name in os.environ)
with open(os.environ["RDFT_TEST_ENV_RECORD"], "a") as handle:
    handle.write(json.dumps({{"argv": sys.orig_argv, "has": has}}) + "\\n")
"""
# Tracker name of a step's number (the HF Trainer's) -> its metrics.jsonl field.
SFT_STEP = {"loss": "loss", "learning_rate": "lr", "grad_norm": "grad_norm", "tokens_per_s": "tokens_per_s",
            "peak_memory_gib": "peak_memory_gib"}  # fmt: skip
GRPO_STEP = {"loss": "loss", "reward": "reward_mean", "completions/mean_length": "completion_length",
             "tokens_per_s": "tokens_per_s", "peak_memory_gib": "peak_memory_gib"}  # fmt: skip

# Runs in the train env: what TensorBoard's reader and MLflow's client read back.
READ_BACK = """\
import json, sys, tempfile
from pathlib import Path
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata
from tensorboard.util import tensor_util
import mlflow.artifacts
from mlflow.tracking import MlflowClient

events, uri, out_path = sys.argv[1], sys.argv[2], sys.argv[3]
accumulator = EventAccumulator(events, size_guidance={"scalars": 0, "tensors": 0})
accumulator.Reload()
tags = accumulator.Tags()
content = accumulator.PluginTagToContent("hparams")
start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
experiment = metadata.parse_experiment_plugin_data(content[metadata.EXPERIMENT_TAG])
texts = {t: tensor_util.make_ndarray(accumulator.Tensors(t)[0].tensor_proto).item().decode() for t in tags["tensors"]}
tensorboard = {
    "scalars": {t: [[e.step, e.value] for e in accumulator.Scalars(t)] for t in tags["scalars"]},
    "hparams": {k: getattr(v, v.WhichOneof("kind")) for k, v in start.hparams.items()},
    "hparam_metrics": [m.name.tag for m in experiment.metric_infos],
    "texts": texts,
}
client = MlflowClient(tracking_uri=uri)
runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
out = []
for run in runs:
    run_id = run.info.run_id
    folder = tempfile.mkdtemp()
    files = {}
    for artifact in client.list_artifacts(run_id):
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=artifact.path, dst_path=folder, tracking_uri=uri
        )
        files[artifact.path] = Path(local).read_text()
    out.append({
        "experiment": client.get_experiment(run.info.experiment_id).name,
        "name": run.info.run_name,
        "status": run.info.status,
        "tags": run.data.tags,
        "params": run.data.params,
        "metrics": run.data.metrics,
        "history": {k: [[m.step, m.value] for m in client.get_metric_history(run_id, k)] for k in run.data.metrics},
        "artifacts": files,
        "artifact_uri": run.info.artifact_uri,
    })
Path(out_path).write_text(json.dumps({"tensorboard": tensorboard, "mlflow": out}))
"""


def read_back(train_env, events: Path, store: Path, out: Path) -> dict:
    result = train_env.run(["python", "-c", READ_BACK, str(events), f"sqlite:///{store}", str(out)], echo=False)
    assert result.ok, result.tail
    return json.loads(out.read_text())


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_config(path: Path, shipped: str, data: str, **sections) -> Path:
    """A shipped tiny config with some sections changed, its data path made absolute."""
    config = yaml.safe_load((CONFIGS / shipped).read_text())
    config["data"]["path"] = str(CONFIGS / "data" / data)
    for section, values in sections.items():
        config.setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def train_with_secrets(rdft, shared_dirs, train_env, tmp_path):
    """`rdft train` with the planted credentials in its environment and a record of which of them
    each Python process it starts holds."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    record = tmp_path / "environments.jsonl"
    pythonpath = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)

    def call(*args):
        env = {**shared_dirs, **PLANTED, "PYTHONPATH": pythonpath, "RDFT_TEST_ENV_RECORD": str(record)}
        return rdft("train", *map(str, args), env=env)

    call.environments = lambda: jsonl(record)
    return call


def assert_no_secret_in(folder: Path, *texts: str) -> None:
    """No planted value in any file under `folder` (the workspace, the MLflow store and its
    artifacts, the event files, the log) nor in the command's output."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert len(files) > 10, files
    for path in files:
        data = path.read_bytes()
        for name, value in PLANTED.items():
            assert value.encode() not in data, f"{name} in {path}"
    for text in texts:
        for name, value in PLANTED.items():
            assert value not in text, name


def test_sft_reports_to_tensorboard_and_mlflow_and_no_secret_reaches_them(train_with_secrets, train_env, tmp_path):
    workspace = tmp_path / "ws"
    config = write_config(
        tmp_path / "sft.yaml",
        "tiny_cpu_lora.yaml",
        "tiny_chat.jsonl",
        train={"max_steps": 6, "report_to": ["tensorboard", "mlflow"]},
        output={"merge": False},
    )
    done = train_with_secrets(config, "--workspace", workspace)
    assert done.returncode == 0, done.output[-3000:]
    output = workspace / "output"
    metrics, result = jsonl(output / "metrics.jsonl"), json.loads((output / "result.json").read_text())
    assert [m["step"] for m in metrics] == list(range(1, 7))
    store = output / "mlruns" / "mlflow.db"  # MLFLOW_TRACKING_URI unset: the store in the output folder
    back = read_back(train_env, output / "tensorboard", store, tmp_path / "read-back.json")

    # TensorBoard: each logged step's numbers, under the HF Trainer's names, equal metrics.jsonl's.
    scalars = back["tensorboard"]["scalars"]
    for tag, key in SFT_STEP.items():
        assert [s for s, _ in scalars[f"train/{tag}"]] == [m["step"] for m in metrics], tag
        assert [v for _, v in scalars[f"train/{tag}"]] == pytest.approx([m[key] for m in metrics], rel=1e-6), tag
    assert all(m["grad_norm"] > 0 for m in metrics)  # the norm before clipping, at every optimizer step
    assert scalars["final/final_loss"] == [[6, pytest.approx(result["final_loss"], rel=1e-6)]]
    assert scalars["final/first_loss"] == [[6, pytest.approx(result["first_loss"], rel=1e-6)]]
    # The resolved config: as text, and as hyperparameters beside the final scores (HParams).
    resolved = yaml.safe_load((workspace / "train.resolved.yaml").read_text())
    text = back["tensorboard"]["texts"]["rdft/config/text_summary"]
    assert yaml.safe_load(text.removeprefix("```yaml\n").removesuffix("```")) == resolved
    hparams = back["tensorboard"]["hparams"]
    assert hparams["train.learning_rate"] == pytest.approx(3e-3) and hparams["method.type"] == "lora"
    assert hparams["train.report_to"] == '["tensorboard", "mlflow"]'
    assert "final/final_loss" in back["tensorboard"]["hparam_metrics"]

    # MLflow: one run, named after the workspace and the method, in the experiment the loop uses.
    (run,) = back["mlflow"]
    assert (run["experiment"], run["name"], run["status"]) == ("rdft", "ws/lora", "FINISHED")
    assert run["tags"]["rdft.role"] == "training" and run["tags"]["rdft.workspace"] == str(workspace)
    assert run["artifact_uri"].startswith((output / "mlruns" / "artifacts").as_uri())  # beside the store
    assert run["params"]["train.learning_rate"] == "0.003" and run["params"]["method.type"] == "lora"
    for tag, key in SFT_STEP.items():
        assert run["history"][tag] == [[m["step"], pytest.approx(m[key], rel=1e-9)] for m in metrics], tag
    assert run["metrics"]["final_loss"] == pytest.approx(result["final_loss"])
    assert run["metrics"]["first_loss"] == pytest.approx(result["first_loss"])
    assert run["metrics"]["train_tokens_per_s"] == pytest.approx(result["tokens_per_s"])
    assert run["artifacts"] == {
        "train.resolved.yaml": (workspace / "train.resolved.yaml").read_text(),
        "metrics.jsonl": (output / "metrics.jsonl").read_text(),
        "result.json": (output / "result.json").read_text(),
    }

    # Credentials: the training process got MLflow's (its library reads it), not the others'
    # (wandb is not asked for, OpenAI's is rdft's own); no planted value reached any file.
    training = [e for e in train_with_secrets.environments() if any(a.endswith("sft.py") for a in e["argv"])]
    assert training and all(e["has"] == ["MLFLOW_TRACKING_PASSWORD"] for e in training), training
    assert_no_secret_in(tmp_path / "ws", done.stdout, done.stderr)


def test_grpo_reports_its_rl_metrics_to_the_store_it_is_given(rdft, shared_dirs, train_env, tmp_path):
    """The agent loop's naming and store (managed_config sets both): the run folder's store."""
    run_folder = tmp_path / "2026-12-06_00-00-00-000000"
    store = run_folder / "mlruns" / "mlflow.db"
    workspace = run_folder / "Loop_1" / "workspace"
    config = write_config(
        tmp_path / "grpo.yaml",
        "tiny_cpu_grpo.yaml",
        "tiny_grpo.jsonl",
        train={"max_steps": 2, "report_to": ["mlflow", "tensorboard"], "run_name": f"{run_folder.name}/Loop_1/grpo",
               "mlflow_store": str(store)},
    )  # fmt: skip
    done = rdft("train", str(config), "--workspace", str(workspace), env=shared_dirs)
    assert done.returncode == 0, done.output[-3000:]
    output = workspace / "output"
    metrics, result = jsonl(output / "metrics.jsonl"), json.loads((output / "result.json").read_text())
    assert not (output / "mlruns").exists()
    back = read_back(train_env, output / "tensorboard", store, tmp_path / "read-back.json")

    # The trainer's own RL metrics and rdft's tokens/s and peak memory, per logged step.
    scalars = back["tensorboard"]["scalars"]
    for tag, key in GRPO_STEP.items():
        assert scalars[f"train/{tag}"] == [[m["step"], pytest.approx(m[key], rel=1e-6)] for m in metrics], tag
    assert {"train/kl", "train/grad_norm", "train/learning_rate", "train/frac_reward_zero_std"} <= set(scalars)
    assert back["tensorboard"]["hparams"]["method.type"] == "grpo"
    assert scalars["final/final_reward"] == [[2, pytest.approx(result["final_reward"])]]

    (run,) = back["mlflow"]
    assert run["name"] == f"{run_folder.name}/Loop_1/grpo" and run["tags"]["rdft.method"] == "grpo"
    assert run["artifact_uri"].startswith((store.parent / "artifacts").as_uri())
    assert run["history"]["reward"] == [[m["step"], pytest.approx(m["reward_mean"], rel=1e-6)] for m in metrics]
    assert run["history"]["tokens_per_s"] == [[m["step"], pytest.approx(m["tokens_per_s"])] for m in metrics]
    assert "kl" in run["history"] and run["metrics"]["final_reward"] == pytest.approx(result["final_reward"])
    # The trainer's arguments (its own integration logs them) and the resolved config.
    assert run["params"]["learning_rate"] == run["params"]["rl.learning_rate"] == "0.001"
    assert set(run["artifacts"]) == {"train.resolved.yaml", "metrics.jsonl", "result.json"}
    assert json.loads(run["artifacts"]["result.json"]) == result


@pytest.mark.parametrize("tracker", ["wandb", "trackio"])
def test_a_tracker_whose_library_is_missing_is_one_line_naming_the_install(tracker, rdft, shared_dirs, train_env,
                                                                             tmp_path):  # fmt: skip
    config = write_config(tmp_path / "t.yaml", "tiny_cpu_lora.yaml", "tiny_chat.jsonl",
                          train={"report_to": ["tensorboard", tracker]})  # fmt: skip
    failed = rdft("train", str(config), "--workspace", str(tmp_path / "ws"), env=shared_dirs)
    line = one_line_error(failed)
    assert f"train.report_to: {tracker} is not installed in the train env" in line, line
    assert f"add `{tracker}` to the pip list of its train.yml" in line and "rdft env lock train" in line, line
    assert f"or drop {tracker} from train.report_to" in line, line
    assert not (tmp_path / "ws" / "train.log").exists()  # nothing started


@pytest.mark.parametrize(
    "report_to, says",
    [
        (["none", "mlflow"], "train.report_to: none reports to no tracker; give it alone, or only tracker names"),
        (["comet"], "train.report_to.0: Input should be 'none', 'tensorboard', 'mlflow', 'wandb' or 'trackio'"),
    ],
)
def test_a_bad_report_to_is_one_line(report_to, says, rdft, tmp_path):
    config = write_config(tmp_path / "t.yaml", "tiny_cpu_lora.yaml", "tiny_chat.jsonl", train={"report_to": report_to})
    assert says in one_line_error(rdft("train", str(config), "--dry-run"))


def test_the_schema_and_the_loop_name_the_run_and_its_store(rdft, tmp_path):
    from rdft.loop.workspace import managed_config
    from rdft.training.config import TrainConfig

    schema = rdft("train", "--schema").stdout
    assert "\n  train.report_to: list[none|tensorboard|mlflow|wandb|trackio], default ['none']" in schema
    assert "\n  train.run_name: " in schema and "\n  train.mlflow_store: " in schema
    # One tracker as a string is a list of one; by default nothing is reported.
    assert TrainConfig.model_validate({"model": {"path": "m"}, "data": {"path": "d"},
                                       "train": {"report_to": "mlflow"}}).train.report_to == ["mlflow"]  # fmt: skip
    assert TrainConfig.model_validate({"model": {"path": "m"}, "data": {"path": "d"}}).train.report_to == ["none"]

    run = tmp_path / "log" / "2026-12-06_00-00-00-000000"
    scenario = small_scenario(tmp_path / "base")
    text = yaml.safe_dump({"method": {"type": "dpo"}, "train": {"report_to": ["tensorboard"], "run_name": "mine"}})
    config = managed_config(text, scenario, "data.jsonl", workspace=run / "Loop_3" / "workspace", track="mlflow")
    assert config["train"]["run_name"] == "2026-12-06_00-00-00-000000/Loop_3/dpo"
    assert config["train"]["mlflow_store"] == str(run / "mlruns" / "mlflow.db")  # the loop-level tracking's
    assert config["train"]["report_to"] == ["tensorboard", "mlflow"]  # the coder's trackers, and the run's
    plain = managed_config("train: {report_to: none}", scenario, "data.jsonl", workspace=run / "Loop_0" / "workspace")
    assert plain["train"]["run_name"].endswith("/Loop_0/lora") and plain["train"]["report_to"] == "none"
    assert "train" not in managed_config("{}", scenario, "data.jsonl")  # outside a loop: nothing set
