"""`rdft datasets prepare NAME…`: fetch only the named datasets, make them safe to train on.

    FT_FILE_PATH/datasets/
        .hub/<org>--<repo>/        huggingface_hub's local_dir for the repo (shared by the names
                                   of one repo; finished files are kept, so a rerun resumes)
        <name>/                    the prepared copy: the entry's folder without the removed
                                   files, normalised, with .rdft-dataset.json written last
        .locks/<name>.lock         one process prepares a name at a time

The prepared copy is staged beside its final place and published by a rename, so an
interrupted prepare never leaves a half dataset under <name>/.
"""

from __future__ import annotations

import csv
import datetime
import errno
import fnmatch
import io
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock
from pydantic import BaseModel

from rdft.datasets.registry import DatasetEntry
from rdft.errors import RdftError
from rdft.files import publish, write_atomic
from rdft.settings import Settings

MANIFEST = ".rdft-dataset.json"
GIB = 1024**3


class PreparedDataset(BaseModel):
    """What `.rdft-dataset.json` records about a prepared copy."""

    name: str
    repo: str
    folder: str | None
    source: str  # "hub" or the local path it was copied from
    revision: str | None  # the Hub commit, when from the Hub
    files: list[str]
    removed: list[str]
    normalised: list[str]
    prepared: datetime.datetime


def datasets_dir(settings: Settings) -> Path:
    return settings.ft_file_path.expanduser().resolve() / "datasets"


def read_manifest(path: Path) -> PreparedDataset | None:
    try:
        return PreparedDataset.model_validate_json((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


# --- post-download steps (named in registry.yaml) ------------------------------------------------
FENCE = re.compile(r"^\s*```[\w-]*\s*\n?|\n?\s*```\s*$")


def normalise_rcr(root: Path) -> list[str]:
    """In chemcotbench-cot/rxn/rcr.json, move `gt` into `meta` and rename `cot_result` to
    `struct_cot` with its markdown fence stripped, so rcr rows have the other subtasks' fields."""
    path = root / "chemcotbench-cot" / "rxn" / "rcr.json"
    if not path.exists():
        return []
    rows = json.loads(path.read_text(encoding="utf-8"))
    for row in rows:
        if "gt" in row:
            meta = row.get("meta") or {}
            if isinstance(meta, str):
                meta = json.loads(meta) if meta.strip() else {}
            meta["gt"] = row.pop("gt")
            row["meta"] = meta
        if "cot_result" in row:
            value = row.pop("cot_result")
            row["struct_cot"] = FENCE.sub("", value).strip() if isinstance(value, str) else value
    write_atomic(path, json.dumps(rows, ensure_ascii=False, indent=1))  # a new file: the Hub folder's link stays
    return [str(path.relative_to(root))]


def financeiq_train_split(root: Path) -> list[str]:
    """RD-Agent's FinanceIQ split (rdagent/scenarios/finetune/datasets/financeiq/split.py): the
    benchmark scores the last min(ceil(n/2), 100) rows of each test file, so training keeps the
    rows before them, each with a `subject` column (its file's name), which the benchmark's
    prompt names."""
    changed = []
    for path in sorted(root.rglob("*.csv")):
        with open(path, encoding="utf-8", newline="") as handle:
            rows = list(csv.reader(handle))
        if not rows:
            continue
        header, body = rows[0], rows[1:]
        body = body[: len(body) - min(math.ceil(len(body) * 0.5), 100)]
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow([*header, "subject"])
        writer.writerows([*row, path.stem] for row in body)
        write_atomic(path, text.getvalue())  # a new file: the Hub folder's link stays
        changed.append(str(path.relative_to(root)))
    return changed


POST_DOWNLOAD: dict[str, Callable[[Path], list[str]]] = {
    "normalise_rcr": normalise_rcr,
    "financeiq_train_split": financeiq_train_split,
}


# --- sources ------------------------------------------------------------------------------------
def _selected(relative: str, entry: DatasetEntry) -> bool:
    return not any(fnmatch.fnmatch(relative, pattern) for pattern in entry.remove)


def _hub_error(entry: DatasetEntry, settings: Settings, error: Exception) -> RdftError:
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    url = f"https://huggingface.co/datasets/{entry.repo}"
    local = f"or copy the repo here and run `rdft datasets prepare {entry.name} --source PATH`"
    if isinstance(error, GatedRepoError):
        if settings.hf_token is None:
            return RdftError(f"{entry.repo} is gated: accept its terms at {url} and set HF_TOKEN (.env or environment)")
        return RdftError(f"{entry.repo} is gated and HF_TOKEN has no access yet: accept its terms at {url}")
    if isinstance(error, RepositoryNotFoundError):
        return RdftError(f"{entry.repo} is not on the Hub or is private; check HF_TOKEN and HF_ENDPOINT, {local}")
    return RdftError(f"cannot reach the Hub and {entry.name} is not cached; connect to the network, {local}")


def _check_space(needed: int, folder: Path, what: str) -> None:
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise RdftError(
            f"not enough disk space for {what}: needs {needed / GIB:.1f} GiB, {free / GIB:.1f} GiB free under "
            f"{folder}; free some space or set FT_FILE_PATH to a larger disk"
        )


def download(entry: DatasetEntry, settings: Settings, root: Path) -> tuple[Path, str | None]:
    """The repo's selected files under root/.hub/…, from the Hub or, offline, from what an earlier
    run left there. Returns (the local_dir, the commit)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import DryRunError, HfHubHTTPError, LocalEntryNotFoundError

    local_dir = root / ".hub" / entry.repo.replace("/", "--")
    local_dir.mkdir(parents=True, exist_ok=True)
    options = {
        "repo_id": entry.repo,
        "repo_type": "dataset",
        "local_dir": local_dir,
        "allow_patterns": [f"{entry.folder}/**"] if entry.folder else None,
        "ignore_patterns": list(entry.remove) or None,  # evaluation files are never even downloaded
        "token": settings.hf_token.get_secret_value() if settings.hf_token else None,
        "endpoint": settings.hf_endpoint,
    }
    commit = None
    try:
        plan = snapshot_download(**options, dry_run=True)
        commit = plan[0].commit_hash if plan else None
        _check_space(sum(item.file_size or 0 for item in plan if item.will_download), root, entry.name)
    except DryRunError:
        pass  # offline: the real call below falls back to what is on disk
    except (HfHubHTTPError, LocalEntryNotFoundError) as error:
        raise _hub_error(entry, settings, error) from None
    try:
        snapshot_download(**options)
    except OSError as error:
        if error.errno == errno.ENOSPC:
            raise RdftError(
                f"disk full under {root} while downloading {entry.name}; free some space or set FT_FILE_PATH "
                "to a larger disk, then rerun (finished files are kept)"
            ) from None
        if isinstance(error, (HfHubHTTPError, LocalEntryNotFoundError)):
            raise _hub_error(entry, settings, error) from None
        raise
    except (HfHubHTTPError, LocalEntryNotFoundError) as error:
        raise _hub_error(entry, settings, error) from None
    return local_dir, commit


def _walk(folder: Path, prefix: str = "") -> dict[str, Path]:
    """relative path → file, hidden files and folders (.cache, .git) left out."""
    files = {}
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for filename in filenames:
            if not filename.startswith("."):
                path = Path(dirpath) / filename
                files[prefix + path.relative_to(folder).as_posix()] = path
    return files


def local_files(entry: DatasetEntry, source: Path) -> dict[str, Path]:
    """A local copy of the repo, of the entry's folder, or one data file, as repo-relative paths."""
    source = source.expanduser().resolve()
    if not source.exists():
        raise RdftError(f"--source {source} does not exist; give a local copy of {entry.repo}")
    prefix = f"{entry.folder}/" if entry.folder else ""
    if source.is_file():
        return {prefix + source.name: source}
    if entry.folder and not (source / entry.folder).is_dir():
        return _walk(source, prefix)  # the folder itself
    return _walk(source)


def _stage(entry: DatasetEntry, files: dict[str, Path], staging: Path, *, link: bool) -> list[str]:
    """Hard-link (files of rdft's own download folder) or copy (a user's --source: editing it must
    not change the prepared copy) the entry's files into `staging`; returns the removed ones."""
    removed = []
    for relative, path in sorted(files.items()):
        if entry.folder and not relative.startswith(entry.folder + "/"):
            continue
        if not _selected(relative, entry):
            removed.append(relative)
            continue
        target = staging / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if link:
            try:
                os.link(path, target)
                continue
            except OSError:
                pass
        shutil.copy2(path, target)
    return removed


DATA_SUFFIXES = (".json", ".jsonl", ".parquet", ".csv")


def _first_fields(path: Path, settings: Settings) -> set[str] | None:
    """The field names of a data file's rows (its first row; a parquet file's schema, read in
    the data env, which has pyarrow); None when the file holds no rows."""
    if path.suffix == ".parquet":
        from rdft.datasets.toolkit import data_env_variables
        from rdft.envs import EnvManager

        env = EnvManager(settings).ensure("data")
        code = "import sys, pyarrow.parquet as pq; print('\\t'.join(pq.read_schema(sys.argv[1]).names))"
        result = env.run(["python", "-c", code, str(path)], extra_env=data_env_variables(settings.envs_dir), echo=False)
        if not result.ok:
            raise RdftError(f"{path.name} is not a readable parquet file; give the dataset's own files")
        return set(result.tail.strip().splitlines()[-1].split("\t"))
    try:
        with open(path, encoding="utf-8") as handle:
            if path.suffix == ".jsonl":
                line = next((line for line in handle if line.strip()), None)
                row = json.loads(line) if line else None
            elif path.suffix == ".csv":
                import csv

                return set(next(csv.reader(handle), []))
            else:
                value = json.load(handle)
                row = value[0] if isinstance(value, list) and value else value if isinstance(value, dict) else None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RdftError(f"{path.name} is not UTF-8 JSON ({error}); give the dataset's own files") from None
    return set(row) if isinstance(row, dict) else None


def _selection(entry: DatasetEntry, files: dict[str, Path]) -> dict[str, Path]:
    """The files `prepare` would keep: the entry's folder, minus what it removes."""
    return {
        relative: path
        for relative, path in files.items()
        if (not entry.folder or relative.startswith(entry.folder + "/")) and _selected(relative, entry)
    }


def check_fields(entry: DatasetEntry, files: dict[str, Path], settings: Settings) -> None:
    """A local copy must be the dataset, in its schema: every data file's rows have the fields
    the registry names (alternatives separated by |)."""
    data = {relative: path for relative, path in sorted(files.items()) if path.suffix in DATA_SUFFIXES}
    if not data:
        raise RdftError(f"--source holds no data files ({', '.join(DATA_SUFFIXES)}) for {entry.name}")
    for relative, path in data.items():
        fields = _first_fields(path, settings)
        if fields is None:
            raise RdftError(f"{relative} holds no rows; give a copy of {entry.source}")
        for options in entry.fields:
            if not fields & set(options.split("|")):
                shown = " or ".join(repr(name) for name in options.split("|"))
                raise RdftError(
                    f"{relative} has no {shown} field, which {entry.name} rows have; give a copy of {entry.source}"
                )


def prepare(
    entry: DatasetEntry, settings: Settings, *, source: Path | None = None, force: bool = False
) -> tuple[Path, bool]:
    """Prepare `entry` under FT_FILE_PATH/datasets/<name>; (its path, whether work was done)."""
    root = datasets_dir(settings)
    final = entry.local_path(root)
    if not force and read_manifest(final) is not None:
        if source is not None:
            raise RdftError(
                f"{entry.name} is already prepared at {final}; add --force to prepare it again from {source}"
            )
        return final, False
    if source is not None and entry.fields:  # a user's copy is checked before anything is written
        check_fields(entry, _selection(entry, local_files(entry, source)), settings)
    (root / ".locks").mkdir(parents=True, exist_ok=True)
    with FileLock(root / ".locks" / f"{entry.name}.lock"):
        if not force and read_manifest(final) is not None:  # another process finished it meanwhile
            return final, False
        commit = None
        source = source or entry.bundled_path
        if source is not None:
            files = local_files(entry, source)
        else:
            hub_dir, commit = download(entry, settings, root)
            files = _walk(hub_dir)
        staging = Path(tempfile.mkdtemp(dir=root, prefix=f".staging-{entry.name}-"))
        try:
            removed = _stage(entry, files, staging, link=source is None)
            files = sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file())
            if not files:
                raise RdftError(f"{entry.name}: no files found for {entry.source}; check the repo layout or --source")
            normalised = POST_DOWNLOAD[entry.post_download](staging) if entry.post_download else []
            manifest = PreparedDataset(
                name=entry.name,
                repo=entry.repo,
                folder=entry.folder,
                source=str(source.expanduser().resolve()) if source else "hub",
                revision=commit,
                files=files,
                removed=removed,
                normalised=normalised,
                prepared=datetime.datetime.now(datetime.UTC),
            )
            (staging / MANIFEST).write_text(manifest.model_dump_json(indent=1))
            publish(staging, final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return final, True
