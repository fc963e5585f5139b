"""Environment specs (`envs/<name>.yml`, conda's environment.yml format) and their lock files.

Next to each spec lie its locks:
- `<name>.conda-lock.yml`: conda-lock's format, the conda part solved for one or more platforms;
- `<name>.<variant>.txt`: pip locks with hashes, variant `cpu` or `cuda`.
Each lock records a hash of the part of the spec it was solved from, so an edited spec makes
the lock stale instead of silently diverging from it.

Two keys of rdft's own sit next to conda's: `variant-pip` lists pip packages for one torch
variant only (kernels that exist for CUDA alone, e.g. liger-kernel, bitsandbytes), and
`variants` limits an env to some variants (vLLM's `score` env is cuda only).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from rdft.errors import RdftError, did_you_mean

PLATFORMS = ("linux-64", "linux-aarch64", "linux-ppc64le", "osx-64", "osx-arm64", "win-64", "win-arm64")
PIP_HASH_LINE = re.compile(r"^# rdft-spec-sha256: ([0-9a-f]{64})\s*$", re.M)
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


# The keys of conda's environment.yml that conda-lock reads, plus `variables` (conda's own).
SPEC_KEYS = ("name", "channels", "dependencies", "variables", "platforms", "pip-repositories",
             "allow-pypi-requests", "category", "variant-pip", "variants")  # fmt: skip
VARIANTS = ("cpu", "cuda")


class EnvSpec(BaseModel):
    """One environment: its conda part and its pip part."""

    name: str
    path: Path
    channels: list[str]
    conda: list[str]  # conda match specs, e.g. "python=3.11"
    pip: list[str]  # pip requirements, locked per variant by uv
    variables: dict[str, str] = {}
    platforms: list[str] = []  # what `rdft env lock` solves the conda part for (default: this platform)
    pip_repositories: list[str] = []  # extra pip indexes, for the lock and the install
    allow_pypi_requests: bool = True  # False: pip packages come from pip_repositories only
    category: str = "main"  # the conda-lock category the packages are recorded under
    variant_pip: dict[str, list[str]] = {}  # pip packages for one variant only, locked with the rest
    variants: list[str] = list(VARIANTS)  # the torch variants this env exists for

    @property
    def folder(self) -> Path:
        return self.path.parent

    @property
    def conda_lock_path(self) -> Path:
        return self.folder / f"{self.name}.conda-lock.yml"

    def pip_lock_path(self, variant: str) -> Path:
        return self.folder / f"{self.name}.{variant}.txt"

    @property
    def python_version(self) -> str | None:
        """The `python=X.Y` pin of the conda part; the venv backend needs the same."""
        for dep in self.conda:
            match = re.fullmatch(r"python\s*[=<>]*=?\s*(\d+\.\d+)(\.\*)?", dep.strip())
            if match:
                return match.group(1)
        return None

    def pip_for(self, variant: str) -> list[str]:
        """The pip requirements of one variant: the common ones plus the variant's own."""
        return self.pip + self.variant_pip.get(variant, [])

    def conda_hash(self) -> str:
        return _sha256({"channels": self.channels, "dependencies": self.conda})

    def pip_hash(self, variant: str) -> str:
        sources = {"repositories": self.pip_repositories, "pypi": self.allow_pypi_requests}
        # Keys at their defaults stay out of the hash, so locks made before they existed stay valid.
        extra = {"variant_pip": self.variant_pip[variant]} if self.variant_pip.get(variant) else {}
        if sources != {"repositories": [], "pypi": True}:
            extra.update(sources)
        return _sha256({"pip": self.pip, "python": self.python_version, "variant": variant, **extra})

    def pip_indexes(self) -> list[tuple[str, str]]:
        """(option, url) for the pip lock and install: PyPI plus the spec's repositories, or, with
        allow-pypi-requests: false, the repositories alone."""
        if not self.pip_repositories:
            return []
        if self.allow_pypi_requests:
            return [("--extra-index-url", url) for url in self.pip_repositories]
        first, *rest = self.pip_repositories
        return [("--index-url", first), *(("--extra-index-url", url) for url in rest)]


def _sha256(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def load_spec(path: Path) -> EnvSpec:
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise RdftError(f"{path} is not valid YAML{where}; fix the file") from None
    if not isinstance(raw, dict):
        raise RdftError(f"{path} must be a mapping with name, channels and dependencies")
    unknown = set(raw) - set(SPEC_KEYS)
    if unknown:
        key = sorted(unknown)[0]
        raise RdftError(
            f"{path}: unknown key {key!r}; {did_you_mean(key, list(SPEC_KEYS))}an env spec has {', '.join(SPEC_KEYS)}"
        )
    conda: list[str] = []
    pip: list[str] = []
    for dep in raw.get("dependencies") or []:
        if isinstance(dep, str):
            conda.append(dep)
        elif isinstance(dep, dict) and set(dep) == {"pip"}:
            pip.extend(str(req) for req in dep["pip"] or [])
        else:
            raise RdftError(f"{path}: dependency {dep!r} is neither a conda spec nor a `pip:` list")
    for platform in raw.get("platforms") or []:
        if platform not in PLATFORMS:
            raise RdftError(
                f"{path}: unknown platform {platform!r}; {did_you_mean(str(platform), list(PLATFORMS))}"
                f"use conda's names: {', '.join(PLATFORMS)}"
            )
    if not isinstance(raw.get("allow-pypi-requests", True), bool):
        raise RdftError(f"{path}: allow-pypi-requests must be true or false")
    if raw.get("allow-pypi-requests") is False and not raw.get("pip-repositories"):
        raise RdftError(f"{path}: allow-pypi-requests is false but there are no pip-repositories to install from")
    variant_pip = raw.get("variant-pip") or {}
    if not isinstance(variant_pip, dict) or not all(isinstance(v, list) for v in variant_pip.values()):
        raise RdftError(f"{path}: variant-pip must map a variant (cpu, cuda) to a list of pip requirements")
    variants = raw.get("variants") or list(VARIANTS)
    for variant in [*variant_pip, *variants]:
        if variant not in VARIANTS:
            raise RdftError(
                f"{path}: unknown variant {variant!r}; {did_you_mean(str(variant), list(VARIANTS))}"
                f"use {' or '.join(VARIANTS)}"
            )
    name = raw.get("name") or path.stem
    if name != path.stem:
        raise RdftError(f"{path}: name {name!r} must match the file name {path.stem!r}")
    if not NAME_RE.match(name):
        raise RdftError(f"{path}: env name {name!r} must be lower-case letters, digits, - or _")
    try:
        return EnvSpec(
            name=name,
            path=path,
            channels=[str(c) for c in raw.get("channels") or []],
            conda=conda,
            pip=pip,
            variables={str(k): str(v) for k, v in (raw.get("variables") or {}).items()},
            platforms=[str(p) for p in raw.get("platforms") or []],
            pip_repositories=[str(u) for u in raw.get("pip-repositories") or []],
            allow_pypi_requests=raw.get("allow-pypi-requests", True),
            category=str(raw.get("category") or "main"),
            variant_pip={str(k): [str(r) for r in v] for k, v in variant_pip.items()},
            variants=[str(v) for v in variants],
        )
    except ValidationError as error:
        raise RdftError(f"{path}: {error.errors()[0]['msg']}") from None


def list_specs(folder: Path) -> list[EnvSpec]:
    return [load_spec(p) for p in sorted(folder.glob("*.yml")) if not p.name.endswith(".conda-lock.yml")]


def find_spec(folder: Path, name: str) -> EnvSpec:
    path = folder / f"{name}.yml"
    if not path.is_file():
        names = [p.name for p in list_specs(folder)]
        hint = did_you_mean(name, names) or f"known envs: {', '.join(names) or 'none'} "
        raise RdftError(f"no env spec {name!r} in {folder}; {hint}(see `rdft env list`)")
    return load_spec(path)


def pip_lock_hash(path: Path) -> str | None:
    """The spec hash a pip lock was generated from, or None for a file without one."""
    match = PIP_HASH_LINE.search(path.read_text()[:2000])
    return match.group(1) if match else None
