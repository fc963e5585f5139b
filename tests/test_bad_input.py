"""Bad input, checked where it enters: one line that names the fix, a non-zero exit, no traceback,
and nothing changed on disk — one case per way a user gets it wrong, through the real CLI."""

import json
import os
from pathlib import Path

import pytest
import yaml
from conftest import REPO


def snapshot(*roots: Path) -> dict[str, tuple[int, int]]:
    """Every file under `roots`: (size, mtime) by path."""
    out = {}
    for root in roots:
        if root.exists():
            for path in root.rglob("*"):
                if path.is_file():
                    stat = path.stat()
                    out[str(path)] = (stat.st_size, stat.st_mtime_ns)
    return out


def write_config(folder: Path, **sections) -> Path:
    config = yaml.safe_load((REPO / "recipes" / "configs" / "tiny_cpu_lora.yaml").read_text())
    config["data"]["path"] = str(REPO / "recipes" / "configs" / "data" / "tiny_chat.jsonl")
    for name, values in sections.items():
        config[name].update(values)
    path = folder / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def score_aime25(tmp: Path) -> list[str]:
    return [
        "score",
        "--benchmark",
        "aime25",
        "--docs",
        str(tmp / "docs.jsonl"),
        "--predictions",
        str(tmp / "pred.jsonl"),
    ]


def setup_case(name: str, tmp: Path) -> tuple[list[str], dict[str, str], str, int | None]:
    """(CLI arguments, environment, what the one line must say, the exit code if not just ≠ 0)."""
    if name == "score non-UTF-8 docs":
        (tmp / "docs.jsonl").write_bytes(b'{"problem": "caf\xe9", "answer": "1"}\n')
        (tmp / "pred.jsonl").write_text('{"doc_id": 0, "response": "x"}\n')
        return (
            score_aime25(tmp),
            {},
            "is not UTF-8 text (byte 16); save it as UTF-8 JSON",
            None,
        )
    if name == "score empty predictions":
        (tmp / "docs.jsonl").write_text('{"problem": "p", "answer": "1"}\n')
        (tmp / "pred.jsonl").write_text("\n")
        return (
            score_aime25(tmp),
            {},
            "pred.jsonl is empty; give a file with one JSON row",
            None,
        )
    if name == "score docs of another benchmark":
        (tmp / "docs.jsonl").write_text('{"question": "Which one is a letter: 1-a?"}\n')
        (tmp / "pred.jsonl").write_text('{"doc_id": 0, "response": "x"}\n')
        return (
            score_aime25(tmp),
            {},
            "doc 1 has no 'answer' or 'Answer', which aime25 docs hold",
            None,
        )
    if name == "sync to an unsupported remote":
        (tmp / "run").mkdir()
        (tmp / "run" / "run.json").write_text("{}")
        return (
            ["logs", "sync", "up", str(tmp / "run"), "--remote", "ftp://example.org/runs"],
            {},
            "ftp:// is not supported; use file://, s3://, gs:// or az://",
            None,
        )
    if name == "FT_FILE_PATH is a file":
        (tmp / "a-file").write_text("x")
        return ["env", "list"], {"FT_FILE_PATH": str(tmp / "a-file")}, "is a file, not a folder; point", None
    if name == "batch with FT_FILE_PATH a file":  # checked before any task starts
        (tmp / "a-file").write_text("x")
        (tmp / "tasks.json").write_text(json.dumps({"tasks": [{"model": "tiny:llama", "benchmark": "demo_letter"}]}))
        return (
            ["batch", str(tmp / "tasks.json"), "--dry-run"],
            {"FT_FILE_PATH": str(tmp / "a-file")},
            "is a file, not a folder; point",
            None,
        )
    if name == "FT_FILE_PATH without a parent":
        return (
            ["env", "list"],
            {"FT_FILE_PATH": str(tmp / "nonexistent" / "zzz")},
            "does not exist and neither does its parent",
            None,
        )
    if name == "train a missing model":
        config = write_config(tmp, model={"path": str(tmp / "no-model")})
        return ["train", str(config)], {}, "model.path", None
    if name == "dry run with missing data":
        config = write_config(tmp, data={"path": str(tmp / "no-data.jsonl")})
        return ["train", str(config), "--dry-run"], {}, "no-data.jsonl does not exist; give a chat or alpaca", None
    if name == "dry run with rows of another format":
        (tmp / "text.jsonl").write_text('{"messages": [{"role": "user", "content": "hi"}]}\n{"text": "hello"}\n')
        config = write_config(tmp, data={"path": str(tmp / "text.jsonl")})
        return (
            ["train", str(config), "--dry-run"],
            {},
            "text.jsonl:2 has neither messages nor string instruction "
            "and output (its keys: text); give chat rows (messages) or alpaca rows",
            None,
        )
    if name == "dry run with CSV data":
        (tmp / "rows.csv").write_text("instruction,output\nSay hi,hi\n")
        config = write_config(tmp, data={"path": str(tmp / "rows.csv")})
        return (
            ["train", str(config), "--dry-run"],
            {},
            "rows.csv:1 is not valid JSON (Expecting value); data.path takes JSONL, one sample a line",
            None,
        )
    if name == "dry run with non-UTF-8 data":
        (tmp / "latin1.jsonl").write_bytes(b'{"instruction": "caf\xe9", "output": "x"}\n')
        config = write_config(tmp, data={"path": str(tmp / "latin1.jsonl")})
        return (
            ["train", str(config), "--dry-run"],
            {},
            "latin1.jsonl:1 is not UTF-8 text (byte 20); save it as UTF-8",
            None,
        )
    if name == "dry run with micro-batch 0":
        config = write_config(tmp, train={"micro_batch_size": 0})
        return (
            ["train", str(config), "--dry-run"],
            {},
            "train.micro_batch_size: Input should be greater than or equal to 1, or Input should be 'auto' (got 0)",
            None,
        )
    if name == "prepare another dataset's file":
        (tmp / "other.jsonl").write_text('{"question": "q", "answer": "a"}\n')
        return (
            ["datasets", "prepare", "deepscaler", "--source", str(tmp / "other.jsonl")],
            {},
            "has no 'problem' field, which deepscaler rows have",
            None,
        )
    if name == "batch with a misspelt key":
        (tmp / "tasks.json").write_text(
            json.dumps({"tasks": [{"model": "tiny:llama", "benchmark": "demo_letter", "lop_n": 2}]})
        )
        return ["batch", str(tmp / "tasks.json")], {}, "unknown key 'lop_n'; did you mean 'loop_n'?", None
    if name == "batch with a GPU twice":
        (tmp / "tasks.json").write_text(json.dumps({"tasks": [{"model": "m/x", "benchmark": "aime25", "gpus": "0,0"}]}))
        return ["batch", str(tmp / "tasks.json")], {}, 'task 1: GPU 0 is listed twice in gpus "0,0"', None
    if name == "unparsable .env line":
        (tmp / ".env").write_text("OPENAI_API_BASE=http://127.0.0.1:1\nthis line has no equals sign\n")
        return ["env", "list"], {}, ".env line 2 is not KEY=VALUE", None
    if name == "resume changing the benchmark":
        (tmp / "run").mkdir()
        (tmp / "run" / "run.json").write_text(json.dumps({"base_model": "tiny:llama", "benchmark": "demo_letter"}))
        return (
            ["run", "--resume", str(tmp / "run"), "--benchmark", "aime25"],
            {},
            "--benchmark cannot change when resuming",
            None,
        )
    if name == "an option's bad choice":  # click's usage errors, in rdft's one line
        says = (
            "rdft: error: Invalid value for '--split': 'nope' is not one of 'validation', 'test', 'all'; see "
            "`rdft eval --help`"
        )
        return (
            ["eval", "--model", "m", "--benchmark", "aime25", "--output", str(tmp / "o"), "--split", "nope"],
            {},
            says,
            2,
        )
    if name == "RDFT_ENVS_DIR is a file":  # an OSError anywhere is the path in one line, never a traceback
        (tmp / "a-file").write_text("x")
        return ["env", "create", "data"], {"RDFT_ENVS_DIR": str(tmp / "a-file")}, f"{tmp / 'a-file'}: File exists", None
    if name == "report into a file's folder":
        (tmp / "run").mkdir()
        (tmp / "run" / "run.json").write_text(json.dumps({"base_model": "tiny:llama", "benchmark": "demo_letter"}))
        (tmp / "a-file").write_text("x")
        args = ["report", str(tmp / "run"), "--output", str(tmp / "a-file" / "report.html")]
        return args, {}, f"{tmp / 'a-file'}: File exists; free space or fix that path", None
    if name == "report of a foreign run.json":  # a record of another shape: refused, not a KeyError
        (tmp / "run").mkdir()
        (tmp / "run" / "run.json").write_text(json.dumps({"model": "x"}))
        return ["report", str(tmp / "run")], {}, "run.json is not an rdft run's record", None
    if name == "demo with another benchmark":
        return ["run", "--demo", "--benchmark", "aime25"], {}, "--demo runs the tiny model on demo_letter", None
    raise AssertionError(name)


CASES = [
    "score non-UTF-8 docs", "score empty predictions", "score docs of another benchmark",
    "sync to an unsupported remote", "FT_FILE_PATH is a file", "batch with FT_FILE_PATH a file",
    "FT_FILE_PATH without a parent",
    "train a missing model", "dry run with missing data", "dry run with rows of another format",
    "dry run with CSV data", "dry run with non-UTF-8 data", "dry run with micro-batch 0",
    "prepare another dataset's file",
    "batch with a misspelt key", "batch with a GPU twice", "unparsable .env line", "resume changing the benchmark",
    "demo with another benchmark", "an option's bad choice", "RDFT_ENVS_DIR is a file", "report into a file's folder",
    "report of a foreign run.json",
]  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_and_changes_nothing(case, rdft, shared_dirs, eval_env, tmp_path):
    args, env, says, code = setup_case(case, rdft.workdir)
    environ = {**shared_dirs, **env} if case.startswith(("score", "train", "dry run")) else env
    watched = [rdft.workdir, Path(environ.get("FT_FILE_PATH", tmp_path / "ft"))]
    if case.startswith(("score", "train", "dry run")):
        # The shared FT_FILE_PATH (models, prepared items, baselines) is watched too; the envs live
        # in RDFT_ENVS_DIR and may be used, never changed by a refusal.
        watched = [rdft.workdir, Path(shared_dirs["FT_FILE_PATH"])]
    before = snapshot(*watched)
    result = rdft(*args, env=environ)
    output = (result.stdout + result.stderr).strip().splitlines()
    assert result.returncode != 0 if code is None else result.returncode == code, result.output
    assert "Traceback" not in result.output, result.output
    assert len(output) <= 3, result.output
    assert any(says in line for line in output), result.output
    assert snapshot(*watched) == before


def test_sync_down_keeps_local_edits_unless_forced(rdft, tmp_path):
    log = tmp_path / "runs" / "2026-12-01_00-00-00"
    log.mkdir(parents=True)
    (log / "run.json").write_text('{"benchmark": "demo_letter"}')
    (log / "summary.json").write_text('{"loops": []}')
    remote = (tmp_path / "remote").as_uri()
    assert rdft("logs", "sync", "up", str(log), "--remote", remote).returncode == 0
    copy = tmp_path / "elsewhere" / log.name
    assert rdft("logs", "sync", "down", str(copy), "--remote", remote).returncode == 0
    (copy / "summary.json").write_text('{"loops": [], "my": "notes"}')  # a local edit
    before = snapshot(copy)
    refused = rdft("logs", "sync", "down", str(copy), "--remote", remote)
    assert (
        refused.returncode != 0
        and "summary.json differ(s) from the remote; nothing was fetched — rerun with --force" in refused.stderr
    )
    assert snapshot(copy) == before
    forced = rdft("logs", "sync", "down", str(copy), "--remote", remote, "--force")
    assert forced.returncode == 0, forced.output
    assert (copy / "summary.json").read_text() == '{"loops": []}'


def test_a_bare_command_shows_its_help(rdft):
    for bare in ([], ["env"]):
        shown = rdft(*bare)
        assert "Usage: rdft" in shown.output and "rdft: error" not in shown.output, shown.output


def test_ft_file_path_is_created_when_its_parent_exists(rdft, tmp_path):
    target = tmp_path / "new-ft"
    for asking in (["train", "--help"], ["doctor"]):  # help, and the report on it, create nothing
        assert rdft(*asking, env={"FT_FILE_PATH": str(target)}).returncode == 0 and not target.exists()
    result = rdft("env", "list", env={"FT_FILE_PATH": str(target)})
    assert result.returncode == 0 and target.is_dir()
    assert result.stderr.count(f"rdft: created FT_FILE_PATH {target}") == 1
    again = rdft("env", "list", env={"FT_FILE_PATH": str(target)})
    assert "created FT_FILE_PATH" not in again.stderr
    assert os.access(target, os.W_OK)


def test_dry_run_takes_what_the_recipe_reads(rdft, tmp_path):
    """The row check accepts every form sft.py trains on: alpaca's data.json list (as the loop and
    write_alpaca_json write it, indented or not), chat rows with a system turn and tool calls."""
    alpaca = [{"instruction": "Say hi", "input": "", "output": "hi", "system": "Be brief."}]
    chat = {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "2+2?"},
                         {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "add"}}]},
                         {"role": "tool", "content": "4"}, {"role": "assistant", "content": "4"}]}  # fmt: skip
    files = {"data.json": json.dumps(alpaca), "indented.json": json.dumps(alpaca, indent=1),
             "chat.jsonl": json.dumps(chat) + "\n"}  # fmt: skip
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        config = write_config(tmp_path, data={"path": str(tmp_path / name)})
        result = rdft("train", str(config), "--dry-run", "--workspace", str(tmp_path / f"ws-{name}"))
        assert result.returncode == 0, (name, result.output)
    (tmp_path / "object.json").write_text(json.dumps(alpaca[0]))
    config = write_config(tmp_path, data={"path": str(tmp_path / "object.json")})
    refused = rdft("train", str(config), "--dry-run")
    assert "object.json holds a JSON dict; a .json data file is a list of samples" in refused.stderr
