"""The conda part of an env: solve with py-rattler, write conda-lock's format, install, activate.

`conda-lock lock` needs a conda binary, so locks are solved with py-rattler and written with
conda-lock's own models (readable by `conda-lock install`). Installs use `conda-lock install`
when a conda, mamba or micromamba binary exists, else py-rattler, which needs none.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from rdft.envs import rattler_worker
from rdft.envs.spec import EnvSpec
from rdft.errors import EnvBuildError, RdftError

CONDA_BINARIES = ("conda", "mamba", "micromamba")


def find_conda_binary() -> str | None:
    """The first conda engine binary on PATH (conda, mamba, micromamba), or None."""
    for name in CONDA_BINARIES:
        found = shutil.which(name)
        if found:
            return found
    return None


def current_platform() -> str:
    import rattler

    return str(rattler.Platform.current())


def _split_depends(depends: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for dep in depends:
        name, _, constraint = dep.strip().partition(" ")
        out[name] = constraint.strip()
    return out


def solve_lock(spec: EnvSpec, platforms: list[str], cache_dir: Path) -> None:
    """Solve the conda part of `spec` for `platforms` and write `spec.conda_lock_path`."""
    from conda_lock.lockfile import write_conda_lock_file
    from conda_lock.lockfile.v1.models import HashModel, LockMeta, TimeMeta
    from conda_lock.lockfile.v2prelim.models import LockedDependency, Lockfile
    from conda_lock.models.channel import Channel

    if not spec.channels:
        raise RdftError(f"{spec.path}: the conda part needs at least one channel under `channels:`")
    packages = []
    for platform in platforms:
        request = {"channels": spec.channels, "specs": spec.conda, "platform": platform,
                   "cache_dir": str(cache_dir / "repodata")}  # fmt: skip
        result = rattler_worker.call("solve", request)  # in a child: see rdft/envs/rattler_worker.py
        if "error" in result:
            raise _solve_error(spec, platform, result["error"])
        for record in result["records"]:
            packages.append(
                LockedDependency(
                    name=record["name"],
                    version=record["version"],
                    manager="conda",
                    platform=platform,
                    dependencies=_split_depends(record["depends"]),
                    url=record["url"],
                    hash=HashModel(md5=record["md5"], sha256=record["sha256"]),
                    build=record["build"],
                    categories={spec.category},
                )
            )
    digest = spec.conda_hash()
    lockfile = Lockfile(
        package=packages,
        metadata=LockMeta(
            content_hash={platform: digest for platform in platforms},
            channels=[Channel.from_string(c) for c in spec.channels],
            platforms=platforms,
            sources=[spec.path.name],
            time_metadata=TimeMeta.create(),
            custom_metadata={"generator": "rdft env lock (py-rattler solve)"},
        ),
    )
    tmp = spec.conda_lock_path.with_suffix(".yml.tmp")
    write_conda_lock_file(lockfile, tmp, metadata_choices=None)
    os.replace(tmp, spec.conda_lock_path)


def _solve_error(spec: EnvSpec, platform: str, error: str) -> RdftError:
    text = error.strip()
    lowered = text.lower()
    if any(word in lowered for word in ("dns", "connect", "network", "timed out", "request")):
        return RdftError(
            f"cannot reach channel(s) {', '.join(spec.channels)} to solve env {spec.name!r}: "
            f"{text.splitlines()[0]}; run `rdft env lock {spec.name}` where they are reachable "
            "and ship the lock, or use FT_Coder_CoSTEER_env_type=venv"
        )
    first = " ".join(line.strip() for line in text.splitlines()[:3])
    return RdftError(
        f"env {spec.name!r} cannot be solved for {platform}: {first}; fix the conda dependencies in {spec.path}"
    )


def lock_info(spec: EnvSpec) -> tuple[dict[str, str], list[str]]:
    """(content hash per platform, platforms) recorded in the conda lock."""
    from conda_lock.lockfile import parse_conda_lock_file

    try:
        lockfile = parse_conda_lock_file(spec.conda_lock_path)
    except Exception as error:  # pydantic or yaml errors from a damaged file
        raise RdftError(
            f"{spec.conda_lock_path} is not a valid conda-lock file ({type(error).__name__}); "
            f"run `rdft env lock {spec.name}`"
        ) from None
    return lockfile.metadata.content_hash, list(lockfile.metadata.platforms)


def install_lock(spec: EnvSpec, prefix: Path, cache_dir: Path, log) -> None:
    """Create `prefix` from the conda lock of `spec` for this platform."""
    binary = find_conda_binary()
    if binary:
        command = ["conda-lock", "install", "--conda", binary, "-p", str(prefix), str(spec.conda_lock_path)]
        if not shutil.which("conda-lock"):
            raise RdftError("conda-lock is not on PATH; reinstall rdft (`pip install rdft`)")
        log(f"$ {' '.join(command)}")
        proc = subprocess.run(command, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr)[-3000:]
            raise EnvBuildError(f"`conda-lock install` failed for env {spec.name!r} (exit {proc.returncode})", tail)
        return
    log(f"installing the conda packages of {spec.conda_lock_path.name} with py-rattler into {prefix}")
    request = {"lock": str(spec.conda_lock_path), "platform": current_platform(), "prefix": str(prefix),
               "cache_dir": str(cache_dir / "pkgs")}  # fmt: skip
    result = rattler_worker.call("install", request)  # in a child: see rdft/envs/rattler_worker.py
    if result.get("kind") == "platform":
        raise RdftError(
            f"{spec.conda_lock_path} has no packages for {current_platform()}; run `rdft env lock {spec.name}` here"
        )
    if "error" in result:  # download, checksum or link failures
        raise EnvBuildError(f"py-rattler could not install env {spec.name!r}", result["error"])


def activation_script(prefix: Path, path_entries: list[str]) -> str:
    """A bash script that activates `prefix` the way `conda activate` does (activate.d too)."""
    from rattler.shell import ActivationVariables, Shell, activate

    result = activate(prefix, ActivationVariables(None, path_entries), Shell.bash)
    return result.script
