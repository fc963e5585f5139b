"""`rdft logs sync up|down`: copy a run's log folder to and from a remote with fsspec.

Remotes: `file://`, `s3://` (s3fs; AWS_* variables, AWS_ENDPOINT_URL for S3-compatible stores),
`gs://` (gcsfs), `az://container/prefix` (adlfs; RDFT_AZURE_ACCOUNT plus a SAS token from
RDFT_AZURE_SAS_TOKEN or the file RDFT_AZURE_SAS_FILE). A run `log/<ts>` lives at `<remote>/<ts>`.

Incremental: a file is sent when the remote lacks it, has another size, or holds other content
than what this machine last sent (`.rdft-sync.json` keeps the sha256 per remote). The record is
written after each file, so an interrupted sync resumes where it stopped. Model weights stay
local unless asked for. Before anything is sent, every file is checked for the secrets rdft
knows (OPENAI_API_KEY, HF_TOKEN): a file holding one stops the sync.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rdft.errors import RdftError
from rdft.files import write_atomic
from rdft.settings import Settings

STATE = ".rdft-sync.json"
WEIGHTS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.gguf")
ALWAYS_LOCAL = (STATE, ".processes/*", ".session.*", "*/.debug/*", "probe/*")
BACKENDS = {"s3": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs", "abfss": "adlfs"}
SCHEMES = ("file", *BACKENDS)


@dataclass
class SyncStats:
    sent: int = 0
    skipped: int = 0
    bytes: int = 0


def open_remote(url: str, settings: Settings):
    """(filesystem, root path) for `url`."""
    import fsspec

    protocol = url.split("://", 1)[0] if "://" in url else "file"
    if protocol not in SCHEMES:
        raise RdftError(f"--remote {url}: {protocol}:// is not supported; use file://, s3://, gs:// or az://")
    options = {}
    if protocol in ("az", "abfs", "abfss"):
        sas = settings.rdft_azure_sas_token.get_secret_value() if settings.rdft_azure_sas_token else None
        if sas is None and settings.rdft_azure_sas_file is not None:
            try:
                sas = settings.rdft_azure_sas_file.expanduser().read_text().strip()
            except OSError:
                raise RdftError(f"cannot read RDFT_AZURE_SAS_FILE {settings.rdft_azure_sas_file}") from None
        if not settings.rdft_azure_account or not sas:
            raise RdftError(
                "az:// needs RDFT_AZURE_ACCOUNT and a SAS token (RDFT_AZURE_SAS_TOKEN or RDFT_AZURE_SAS_FILE)"
            )
        options = {"account_name": settings.rdft_azure_account, "sas_token": sas}
    try:
        return fsspec.core.url_to_fs(url, **options)
    except ImportError:
        package = BACKENDS.get(protocol, protocol)
        raise RdftError(f"{protocol}:// needs {package}: pip install {package}") from None
    except ValueError as error:
        raise RdftError(f"--remote {url}: {error}") from None


def _excluded(relative: str, include_weights: bool) -> bool:
    patterns = ALWAYS_LOCAL + (() if include_weights else WEIGHTS)
    return any(fnmatch.fnmatch(relative, p) or fnmatch.fnmatch(Path(relative).name, p) for p in patterns)


def local_files(log_dir: Path, include_weights: bool) -> dict[str, Path]:
    files = {}
    for path in sorted(log_dir.rglob("*")):
        relative = path.relative_to(log_dir).as_posix()
        if path.is_file() and not path.is_symlink() and not _excluded(relative, include_weights):
            files[relative] = path
    return files


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _load_state(log_dir: Path, url: str) -> dict[str, str]:
    try:
        return json.loads((log_dir / STATE).read_text()).get(url, {})
    except (OSError, ValueError):
        return {}


def _save_state(log_dir: Path, url: str, sent: dict[str, str]) -> None:
    path = log_dir / STATE
    try:
        everything = json.loads(path.read_text())
    except (OSError, ValueError):
        everything = {}
    everything[url] = sent
    write_atomic(path, json.dumps(everything))


def _remote_sizes(fs, root: str) -> dict[str, int]:
    if not fs.exists(root):
        return {}
    found = fs.find(root, detail=True)
    prefix = root.rstrip("/") + "/"
    return {name[len(prefix) :]: info.get("size") for name, info in found.items() if name.startswith(prefix)}


def check_secrets(files: dict[str, Path], secrets: list[str]) -> None:
    needles = [s.encode() for s in secrets if len(s) >= 8]
    for relative, path in files.items():
        content = path.read_bytes()
        if any(needle in content for needle in needles):
            raise RdftError(f"{relative} holds a secret (an API key or token); nothing was uploaded — remove it first")


def sync_up(log_dir: Path, url: str, settings: Settings, *, include_weights: bool = False) -> SyncStats:
    log_dir = log_dir.resolve()
    if not log_dir.is_dir():
        raise RdftError(f"{log_dir} is not a folder; give a run's log folder")
    if not (log_dir / "run.json").is_file():  # a home folder or a dataset would be uploaded whole
        raise RdftError(f"{log_dir} is not an rdft run folder (no run.json); give the folder `rdft run` printed")
    fs, root = open_remote(url, settings)
    target = f"{root.rstrip('/')}/{log_dir.name}"
    files = local_files(log_dir, include_weights)
    check_secrets(files, list(settings.secrets().values()))
    remote = _remote_sizes(fs, target)
    sent = _load_state(log_dir, url)
    stats = SyncStats()
    for relative, path in files.items():
        digest, size = _sha256(path), path.stat().st_size
        if remote.get(relative) == size and sent.get(relative) == digest:
            stats.skipped += 1
            continue
        destination = f"{target}/{relative}"
        fs.makedirs(destination.rsplit("/", 1)[0], exist_ok=True)
        fs.put_file(str(path), destination)
        sent[relative] = digest
        _save_state(log_dir, url, sent)
        stats.sent += 1
        stats.bytes += size
    return stats


def sync_down(log_dir: Path, url: str, settings: Settings, *, force: bool = False) -> SyncStats:
    """Fetch `<remote>/<log_dir name>` into `log_dir`: files that are missing or differ in size.
    A local file that differs from the remote (another size, or changed since it was last
    fetched) is not overwritten without `force`: nothing is fetched and the error names it."""
    log_dir = log_dir.resolve()
    fs, root = open_remote(url, settings)
    source = f"{root.rstrip('/')}/{log_dir.name}"
    remote = _remote_sizes(fs, source)
    if not remote:
        raise RdftError(f"{url} holds no run named {log_dir.name}; check --remote and the folder name")
    fetched = _load_state(log_dir, f"down:{url}")
    conflicts = []
    for relative, size in sorted(remote.items()):
        local = log_dir / relative
        if local.is_file() and relative != STATE:
            changed_here = relative in fetched and _sha256(local) != fetched[relative]
            if local.stat().st_size != size or changed_here:
                conflicts.append(relative)
    if conflicts and not force:
        more = f" and {len(conflicts) - 1} more" if len(conflicts) > 1 else ""
        raise RdftError(
            f"{log_dir / conflicts[0]}{more} differ(s) from the remote; nothing was fetched — rerun with --force "
            "to replace the local copies"
        )
    stats = SyncStats()
    for relative, size in sorted(remote.items()):
        local = log_dir / relative
        if local.is_file() and relative not in conflicts:
            stats.skipped += 1
            continue
        local.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=local.parent, prefix=f".{local.name}.")
        os.close(fd)
        try:
            fs.get_file(f"{source}/{relative}", tmp)
            os.replace(tmp, local)
        finally:
            Path(tmp).unlink(missing_ok=True)
        fetched[relative] = _sha256(local)
        _save_state(log_dir, f"down:{url}", fetched)
        stats.sent += 1
        stats.bytes += size or 0
    return stats


def sync_after_loop(settings: Settings, log_dir: Path, console) -> None:
    """A run's log to RDFT_REMOTE after a loop; a failed sync only warns (the run goes on)."""
    try:
        stats = sync_up(log_dir, settings.rdft_remote, settings)
        console.print(f"rdft: synced the log to {settings.rdft_remote} ({stats.sent} file(s) sent)")
    except (RdftError, OSError) as error:
        console.print(f"rdft: log sync to {settings.rdft_remote} failed ({error}); the run goes on")
