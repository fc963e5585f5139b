"""`rdft score`: score saved responses with the benchmark scorers, inside the eval env."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from rdft.envs import EnvManager
from rdft.errors import RdftError
from rdft.evaluation.benchmarks import get_benchmark
from rdft.files import write_atomic
from rdft.resources import evaluation_dir
from rdft.settings import Settings


def scorer_options(settings: Settings, benchmark: str) -> tuple[list[str], dict[str, str]]:
    """Arguments and environment for the scorers: the chemistry oracles' folder for a benchmark
    whose table row has `oracle: true`, and the LLM-judge cascade for one with `judge: true` when
    FT_JUDGE_MODEL is set. The API key reaches only the scoring
    process; the runner redacts it from every log."""
    entry = get_benchmark(benchmark)
    if settings.rdft_chem_oracle_dir and entry.oracle:
        folder = settings.rdft_chem_oracle_dir.expanduser()
        if not folder.is_dir():
            raise RdftError(f"RDFT_CHEM_ORACLE_DIR {folder} is not a folder; point it at the oracle pickles")
        return [], {"RDFT_CHEM_ORACLE_DIR": str(folder.resolve())}
    if not entry.judge or not settings.ft_judge_model:
        return [], {}
    environ = {"LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    if settings.openai_api_key:
        environ["OPENAI_API_KEY"] = settings.openai_api_key.get_secret_value()
    if settings.openai_api_base:
        environ["OPENAI_API_BASE"] = settings.openai_api_base
    return ["--judge-model", settings.ft_judge_model, "--judge-retry", str(settings.ft_judge_retry)], environ


def compare_runs(settings: Settings, benchmark: str, base_items: Path, candidate_items: Path) -> dict:
    """Paired bootstrap of two runs' per-item scores on the same split (evaluation/compare.py)."""
    env = EnvManager(settings).ensure("eval")
    with tempfile.TemporaryDirectory(prefix="rdft-compare-") as tmp:
        out = Path(tmp) / "comparison.json"
        command = ["python", str(evaluation_dir() / "compare.py"), "--benchmark", benchmark,
                   "--base", str(base_items), "--candidate", str(candidate_items), "--output", str(out)]  # fmt: skip
        result = env.run(command, echo=False, cwd=evaluation_dir())
        if not result.ok or not out.is_file():
            raise RdftError(f"comparing runs failed: {result.tail.strip().splitlines()[-1:]}")
        return json.loads(out.read_text())


def _readable(path: Path, what: str) -> Path:
    """A file (or a folder of JSON docs) that exists, can be read, holds something, and is UTF-8:
    each said in one line here, not as the scorer's traceback."""
    if not path.exists():
        raise RdftError(f"{what} {path} does not exist; give the path of the file")
    files = [path] if path.is_file() else sorted(path.glob("*.json"))
    if path.is_dir() and not files:
        raise RdftError(f"{what} folder {path} holds no .json files; give a JSONL file or a folder of JSON docs")
    for file in files:
        try:
            with open(file, "rb") as handle:
                head = handle.read(1 << 16)
        except OSError as error:
            raise RdftError(f"cannot read {what} {file} ({error.strerror}); fix its permissions") from None
        if not head.strip():
            raise RdftError(f"{what} {file} is empty; give a file with one JSON row per line")
        try:
            head.decode("utf-8")
        except UnicodeDecodeError as error:
            if error.start < len(head) - 4:  # not just a character cut at the end of the sample
                raise RdftError(
                    f"{what} {file} is not UTF-8 text (byte {error.start}); save it as UTF-8 JSON"
                ) from None
    return path.resolve()


def _predictions(path: Path) -> Path:
    """The predictions file, every row checked here: the scorer would say a cut line's place in
    that row ("line 1 column 12") or a number's TypeError without the row; this names the file's line."""
    path = _readable(path, "predictions")
    if not path.is_file():
        raise RdftError(f"predictions {path} is a folder; give a JSONL file of {{doc_id or id, response}} rows")
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                row = json.loads(line.decode("utf-8").strip())
            except UnicodeDecodeError:
                raise RdftError(f"predictions {where} is not UTF-8 text; save the file as UTF-8") from None
            except ValueError as error:
                reason = getattr(error, "msg", "not JSON")
                raise RdftError(f"predictions {where} is not valid JSON ({reason}); fix or remove that line") from None
            if not isinstance(row, dict):
                raise RdftError(f"predictions {where} is not a JSON object; give {{doc_id or id, response}} rows")
            if not isinstance(row.get("response"), str):
                got = f"a response of type {type(row['response']).__name__}" if "response" in row else "no response"
                raise RdftError(f"predictions {where} has {got}; give each answer as text in response")
            doc_id = row.get("doc_id")
            if "doc_id" in row and not (type(doc_id) in (int, str) and str(doc_id).isdigit()):  # bool is no index
                raise RdftError(f"predictions {where}: doc_id {doc_id!r} is not a doc's index; give 0, 1, ...")
    return path


def score(
    settings: Settings,
    benchmark: str,
    *,
    docs: Path | None = None,
    predictions: Path | None = None,
    log: Path | None = None,
    output: Path | None = None,
) -> dict:
    entry = get_benchmark(benchmark)
    if log is not None:
        if entry.family != "chemcotbench":
            raise RdftError("--log reads ChemCoTBench authors' logs; use --docs and --predictions for other benchmarks")
        if docs or predictions:
            raise RdftError("give either --log or --docs with --predictions, not both")
        args = ["--log", str(_readable(log, "log"))]
    else:
        if docs is None or predictions is None:
            raise RdftError("give --docs and --predictions (or --log for ChemCoTBench authors' logs)")
        args = ["--docs", str(_readable(docs, "docs")), "--predictions", str(_predictions(predictions))]
    env = EnvManager(settings).ensure("eval")
    judge_args, judge_env = scorer_options(settings, benchmark)
    with tempfile.TemporaryDirectory(prefix="rdft-score-") as tmp:
        out = Path(tmp) / "summary.json"
        command = ["python", str(evaluation_dir() / "score.py"), "--benchmark", benchmark, *args, *judge_args,
                   "--output", str(out)]  # fmt: skip
        result = env.run(command, extra_env=judge_env, echo=False)
        if not result.ok or not out.is_file():
            last = [line for line in result.tail.strip().splitlines() if line.strip()][-1:] or ["no output"]
            raise RdftError(f"scoring failed: {last[0]}")
        summary = json.loads(out.read_text())
    if output is not None:
        write_atomic(output, json.dumps(summary, indent=2) + "\n")
    return summary
