"""A benchmark's evaluation items: `rdft benchmarks prepare`, and the split files that scoring
and the leakage guard read.

    FT_FILE_PATH/benchmarks/<name>/items.jsonl   every item, in the benchmark's own order and schema
    FT_FILE_PATH/benchmarks/<name>/.rdft-benchmark.json   where they came from, how many, when

Items come from the benchmark's Hugging Face repo (or the copy rdft ships, for the demo), or from
a local copy the user gives (`--source`: JSONL, JSON, parquet, or a folder of JSON files), which
is how a host without Hub access scores. Once prepared, `rdft eval` and `rdft run` read them
from here instead of the Hub. Prepared copies are staged and renamed into place, so an
interrupted prepare never leaves a half copy.
"""

from __future__ import annotations

import datetime
import json
import shutil
import tempfile
from pathlib import Path

from filelock import FileLock
from pydantic import BaseModel

from rdft.envs import EnvManager
from rdft.errors import RdftError
from rdft.evaluation.benchmarks import get_benchmark
from rdft.files import publish
from rdft.resources import evaluation_dir
from rdft.settings import Settings

ITEMS = "items.jsonl"
MANIFEST = ".rdft-benchmark.json"


class PreparedItems(BaseModel):
    benchmark: str
    source: str  # "hub", "bundled" or the local path they were read from
    n: int
    prepared: datetime.datetime


def benchmarks_dir(settings: Settings) -> Path:
    return settings.ft_file_path.expanduser().resolve() / "benchmarks"


def prepared_items(settings: Settings, benchmark: str) -> Path | None:
    """The prepared items of `benchmark`, or None when it was never prepared."""
    folder = benchmarks_dir(settings) / benchmark
    return folder / ITEMS if (folder / MANIFEST).is_file() and (folder / ITEMS).is_file() else None


def _source_of(benchmark: str, source: Path | None) -> str:
    if source is not None:
        return str(source)
    return "bundled" if get_benchmark(benchmark).data else "hub"


def write_docs(
    settings: Settings,
    benchmark: str,
    splits: list[str],
    out: Path | list[Path],
    *,
    data: Path | None = None,
    limit: int | None = None,
    timeout: float | None = None,
) -> int:
    """The items of `splits` (validation, test, all) as JSONL at `out` — one file, or one per
    split (a list) — read from `data`, else the prepared copy, else the Hub (or the bundled
    copy); checked against the benchmark's schema. Returns how many items were written."""
    outs = out if isinstance(out, list) else [out]
    out = outs[0]
    if data is None:
        data = prepared_items(settings, benchmark)
    env = EnvManager(settings).ensure("eval")
    extra = {"HF_TOKEN": settings.hf_token.get_secret_value()} if settings.hf_token else {}
    if settings.hf_endpoint:
        extra["HF_ENDPOINT"] = settings.hf_endpoint
    extra["HF_DATASETS_CACHE"] = str(out.parent / ".hf_datasets")
    command = ["python", str(evaluation_dir() / "prepare.py"), "--benchmark", benchmark, "--split", *splits,
               "--out", *map(str, outs)]  # fmt: skip
    if data is not None:
        command += ["--data", str(data.resolve())]
    if limit:
        command += ["--limit", str(limit)]
    for path in outs:
        path.parent.mkdir(parents=True, exist_ok=True)
    result = env.run(command, extra_env=extra, echo=False, timeout=timeout)
    if result.timed_out:
        raise RdftError(f"reading the {benchmark} items timed out after {timeout:g} s")
    if not result.ok:
        lines = [line for line in result.tail.strip().splitlines() if line.strip()] or ["no output"]
        if lines[-1].startswith("prepare: "):  # the script's own one-line reason
            raise RdftError(f"cannot read the {benchmark} items: {lines[-1].removeprefix('prepare: ')}")
        raise RdftError(
            f"cannot get the {benchmark} items from {data or 'the Hub'} ({lines[-1][:200]}); check the network and "
            f"HF_TOKEN, or give a local copy: `rdft benchmarks prepare {benchmark} --source PATH`"
        )
    n = 0
    for path in outs:  # the files prepare.py wrote, not what it printed
        with open(path, encoding="utf-8") as handle:
            n += sum(1 for line in handle if line.strip())
    return n


def prepare_items(settings: Settings, benchmark: str, *, source: Path | None = None, force: bool = False) -> Path:
    """Prepare every item of `benchmark` under FT_FILE_PATH/benchmarks/<name>; returns items.jsonl."""
    get_benchmark(benchmark)
    if source is not None:
        source = source.expanduser()
        if not source.exists():
            raise RdftError(f"--source {source} does not exist; give a file or folder of {benchmark}'s items")
        source = source.resolve()
    final = benchmarks_dir(settings) / benchmark
    if not force and prepared_items(settings, benchmark) is not None:
        return final / ITEMS
    (final.parent / ".locks").mkdir(parents=True, exist_ok=True)
    # One prepare of a benchmark at a time: two swapping their copies into place at once made
    # the second's rename fail (the first had just put a new folder there).
    with FileLock(final.parent / ".locks" / f"{benchmark}.lock"):
        if not force and prepared_items(settings, benchmark) is not None:  # another process finished it meanwhile
            return final / ITEMS
        staging = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".staging-{benchmark}-"))
        try:
            n = write_docs(settings, benchmark, ["all"], staging / ITEMS, data=source)
            shutil.rmtree(staging / ".hf_datasets", ignore_errors=True)
            manifest = PreparedItems(
                benchmark=benchmark,
                source=_source_of(benchmark, source),
                n=n,
                prepared=datetime.datetime.now(datetime.UTC),
            )
            (staging / MANIFEST).write_text(manifest.model_dump_json(indent=1))
            publish(staging, final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return final / ITEMS


def read_manifest(settings: Settings, benchmark: str) -> PreparedItems | None:
    try:
        return PreparedItems.model_validate_json((benchmarks_dir(settings) / benchmark / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


# Renders one doc with the family's own doc_to_text in the eval env (the host imports no family code).
_RENDER = """import importlib.util, json, sys
sys.path.insert(0, sys.argv[1])
spec = importlib.util.spec_from_file_location("rdft_family", sys.argv[2])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
with open(sys.argv[3], encoding="utf-8") as handle:
    prompt = module.doc_to_text(json.loads(handle.readline()))
with open(sys.argv[4], "w", encoding="utf-8") as handle:
    json.dump(prompt, handle)
"""


def first_prompt(settings: Settings, benchmark: str) -> str:
    """The first validation item's prompt, exactly as lm-eval renders it (`rdft benchmarks show`)."""
    from rdft.evaluation.custom import spec_path

    entry = get_benchmark(benchmark)
    tasks = evaluation_dir() / "tasks"
    with tempfile.TemporaryDirectory(prefix="rdft-show-") as tmp:
        docs = Path(tmp) / "docs.jsonl"
        write_docs(settings, benchmark, ["validation"], docs, limit=1)
        spec, out = spec_path(benchmark), Path(tmp) / "prompt.json"
        result = (
            EnvManager(settings)
            .ensure("eval")
            .run(
                ["python", "-c", _RENDER, str(tasks), str(tasks / entry.family / "utils.py"), str(docs), str(out)],
                extra_env={"RDFT_BENCHMARK_SPEC": str(spec)} if spec else None,
                echo=False,
            )
        )
        if not result.ok or not out.is_file():
            lines = [line for line in result.tail.strip().splitlines() if line.strip()] or ["no output"]
            raise RdftError(f"cannot render a {benchmark} prompt: {lines[-1][:300]}")
        return json.loads(out.read_text(encoding="utf-8"))
