"""The environment manager: `ensure(name)` gives a ready env built from its locks.

Layout under the envs folder (RDFT_ENVS_DIR, default FT_FILE_PATH/envs):

    train -> train-3f2a9c01d4e5/     a symlink, swapped atomically when a build completes
    train-3f2a9c01d4e5/              the prefix, named after its lock hash
        .rdft-env.json               written last: a prefix without it is an unfinished build
    .locks/train.lock                filelock: several rdft processes build an env once
    .logs/train-3f2a9c01d4e5.log     the build's output

Builds do not happen in a temporary folder renamed into place: conda packages and venvs embed
their absolute prefix in scripts and binaries, so a renamed prefix breaks. The prefix is built
where it will live, under a name nothing points to yet, and published by the symlink swap; a
failed build is deleted, so it leaves nothing behind.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Literal

from filelock import FileLock, Timeout
from pydantic import BaseModel

from rdft import __version__
from rdft.envs import conda, pip_lock
from rdft.envs.progress import BuildDisplay
from rdft.envs.spec import EnvSpec, find_spec, list_specs, pip_lock_hash
from rdft.errors import EnvBuildError, RdftError
from rdft.hardware import gpus
from rdft.resources import env_specs_dir
from rdft.runner import RunResult, base_environment, run
from rdft.settings import Settings

MARKER = ".rdft-env.json"
Backend = Literal["conda", "venv"]
ADOPTED = "adopted"  # the backend of an env that is a prebuilt interpreter (`rdft env adopt`)


class EnvRecord(BaseModel):
    """What a finished env remembers about how it was built (its `.rdft-env.json`)."""

    name: str
    variant: str
    backend: Backend | Literal["adopted"]
    lock_hash: str
    created: datetime.datetime
    rdft_version: str
    variables: dict[str, str] = {}  # the spec's `variables:`, set for every command
    python: str | None = None  # an adopted env's interpreter, as the user gave it


class Env(BaseModel):
    """A ready env: where it is and how to run a command inside it."""

    name: str
    prefix: Path  # the real folder
    link: Path  # the stable path users see (envs/<name>)
    record: EnvRecord

    @property
    def python(self) -> Path:
        if self.record.python:
            return Path(self.record.python)
        return self.prefix / "bin" / "python"

    def run(self, command: Sequence[str], *, extra_env: Mapping[str, str] | None = None, **kwargs) -> RunResult:
        """Run `command` inside this env (the keyword arguments are `rdft.runner.run`'s). Secrets
        reach the command only when the caller puts them in `extra_env`."""
        argv, environ = self.command(list(command), base_environment(extra_env))
        return run(argv, env=environ, **kwargs)

    def command(self, command: list[str], environ: dict[str, str]) -> tuple[list[str], dict[str, str]]:
        """The argv and environment that run `command` inside this env."""
        environ = {**environ, **self.record.variables}
        # uv installs no .pyc files (compiling everything costs more than the first imports), so the
        # env's processes write their own bytecode caches, also where PYTHONDONTWRITEBYTECODE is set
        # (as on CI hosts): without them every process compiles torch's modules again, 3 s per start.
        environ.pop("PYTHONDONTWRITEBYTECODE", None)
        if self.record.backend == ADOPTED:
            if not self.python.is_file():  # else PATH would fall through to some other python
                raise RdftError(
                    f"env {self.name!r} is the interpreter {self.python}, which is gone; adopt one again "
                    f"(`rdft env adopt {self.name} --python PATH`) or `rdft env remove {self.name}`"
                )
            # The interpreter's own folder first on PATH: its python, accelerate and the like.
            bin_dir = self.python.parent
            environ["PATH"] = f"{bin_dir}{os.pathsep}{environ.get('PATH', '')}"
            if (bin_dir.parent / "pyvenv.cfg").is_file():
                environ["VIRTUAL_ENV"] = str(bin_dir.parent)
            environ.pop("PYTHONHOME", None)
            return command, environ
        if self.record.backend == "venv":
            environ["VIRTUAL_ENV"] = str(self.prefix)
            environ["PATH"] = f"{self.prefix / 'bin'}{os.pathsep}{environ.get('PATH', '')}"
            environ.pop("PYTHONHOME", None)
            return command, environ
        binary = conda.find_conda_binary()
        if binary:
            return [binary, "run", "-p", str(self.prefix), "--no-capture-output", *command], environ
        path_entries = [p for p in environ.get("PATH", "").split(os.pathsep) if p]
        script = conda.activation_script(self.prefix, path_entries)
        # `exec "$@"` replaces the shell, so signals and exit codes are the command's own.
        return ["bash", "-c", f'{script}\nexec "$@"', "rdft-env-run", *command], environ


class EnvStatus(BaseModel):
    name: str
    backend: str
    variant: str
    path: Path
    state: str  # "ready", "missing", "stale: <why>", "outdated (lock changed)"
    size_bytes: int | None = None
    created: datetime.datetime | None = None


class EnvManager:
    def __init__(self, settings: Settings, log: Callable[[str], None] | None = None):
        self.settings = settings
        self.specs_dir = (settings.rdft_env_specs_dir or env_specs_dir()).expanduser().resolve()
        self.envs_dir = settings.envs_dir
        self.log = log or (lambda message: print(message, file=sys.stderr))
        self.display = BuildDisplay(self.log)
        self._variant: str | None = None

    # --- specs and locks -------------------------------------------------------------------
    def specs(self) -> list[EnvSpec]:
        if not self.specs_dir.is_dir():
            raise RdftError(f"env specs folder {self.specs_dir} does not exist; fix RDFT_ENV_SPECS_DIR")
        return list_specs(self.specs_dir)

    def spec(self, name: str) -> EnvSpec:
        return find_spec(self.specs_dir, name)

    def variant(self) -> str:
        """`cpu` or `cuda`: the setting, or `cuda` when nvidia-smi lists a GPU."""
        if self._variant is None:
            chosen = self.settings.rdft_torch_variant
            self._variant = chosen if chosen != "auto" else ("cuda" if gpus() else "cpu")
        return self._variant

    def backend(self, spec: EnvSpec) -> Backend:
        chosen = self.settings.ft_coder_costeer_env_type
        if chosen in ("conda", "venv"):
            return chosen
        # py-rattler is always there as a conda engine, so conda only needs a lock for here.
        if spec.conda_lock_path.is_file():
            _, platforms = conda.lock_info(spec)
            if conda.current_platform() in platforms:
                return "conda"
        return "venv"

    def lock(self, name: str, *, conda_part: bool = True, pip_part: bool = True) -> list[Path]:
        """Solve and write the locks of env `name`: conda (this platform) and pip (each variant)."""
        spec = self.spec(name)
        written = []
        if conda_part:
            if not spec.channels or not spec.conda:
                raise RdftError(f"{spec.path} has no conda part (channels + dependencies) to lock")
            conda.solve_lock(spec, self._lock_platforms(spec), self._cache_dir())
            written.append(spec.conda_lock_path)
        if pip_part and spec.pip:
            for variant in spec.variants:
                written.append(pip_lock.compile_lock(spec, variant))
        return written

    @staticmethod
    def _lock_platforms(spec: EnvSpec) -> list[str]:
        """The spec's `platforms:` (conda-lock's key), this platform first when listed; else this one."""
        here = conda.current_platform()
        if not spec.platforms:
            return [here]
        return sorted(spec.platforms, key=lambda platform: platform != here)

    def _check_locks(self, spec: EnvSpec, backend: Backend, variant: str, *, solve_missing: bool) -> str:
        """Verify the locks this env needs are present and fresh; return their combined hash."""
        digest = hashlib.sha256(f"{backend}\n{variant}\n".encode())
        if backend == "conda":
            if not spec.conda_lock_path.is_file():
                if not solve_missing:
                    raise RdftError(f"env {spec.name!r} has no conda lock; run `rdft env lock {spec.name}`")
                self.log(f"env {spec.name}: no conda lock yet, solving {spec.conda_lock_path.name}")
                conda.solve_lock(spec, self._lock_platforms(spec), self._cache_dir())
            hashes, platforms = conda.lock_info(spec)
            here = conda.current_platform()
            if here not in platforms:
                raise RdftError(f"{spec.conda_lock_path} has no {here} packages; run `rdft env lock {spec.name}`")
            missing = sorted(set(spec.platforms) - set(platforms))
            if missing:
                raise RdftError(
                    f"{spec.conda_lock_path.name} is stale: {spec.path.name} asks for platforms {', '.join(missing)} "
                    f"the lock lacks; run `rdft env lock {spec.name}`"
                )
            if hashes.get(here) != spec.conda_hash():
                raise RdftError(
                    f"{spec.conda_lock_path.name} is stale: {spec.path.name} changed since it was "
                    f"locked; run `rdft env lock {spec.name}`"
                )
            digest.update(spec.conda_lock_path.read_bytes())
        else:
            digest.update(f"python {spec.python_version}\n".encode())
        if spec.pip:
            path = spec.pip_lock_path(variant)
            if not path.is_file():
                if not solve_missing:
                    raise RdftError(f"env {spec.name!r} has no {path.name}; run `rdft env lock {spec.name}`")
                self.log(f"env {spec.name}: no pip lock yet, resolving {path.name}")
                pip_lock.compile_lock(spec, variant)
            if pip_lock_hash(path) != spec.pip_hash(variant):
                raise RdftError(
                    f"{path.name} is stale: {spec.path.name} changed since it was locked; "
                    f"run `rdft env lock {spec.name}`"
                )
            target = pip_lock.lock_target(path)
            if target and target != pip_lock.target_platform():
                raise RdftError(f"{path.name} was locked for {target}; run `rdft env lock {spec.name}` here")
            digest.update(path.read_bytes())
        return digest.hexdigest()

    # --- envs ----------------------------------------------------------------------------
    def current(self, name: str) -> Env | None:
        """The published env `name`, or None when there is none (or it is damaged)."""
        link = self.envs_dir / name
        marker = link / MARKER
        if not marker.is_file():
            return None
        try:
            record = EnvRecord.model_validate_json(marker.read_text())
        except ValueError:
            return None
        return Env(name=name, prefix=link.resolve(), link=link, record=record)

    def _interpreter_gone(self, env: Env) -> bool:
        """A built env whose interpreter was deleted: one that has an interpreter (a venv, or a
        conda env with python or pip packages; a conda env of tools alone has none) and lost it."""
        if env.record.backend == ADOPTED or env.python.is_file():
            return False
        spec = self.spec(env.name)
        has_python = any(re.match(r"python\b", dep.strip()) for dep in spec.conda) or bool(spec.pip)
        return env.record.backend == "venv" or has_python

    def ready(self, name: str) -> bool:
        """Whether env `name` can be used as it is: adopted, or built from its current lock (what
        `ensure` checks before building; reads no package files, so it is cheap on NFS)."""
        existing = self.current(name)
        if existing is None or existing.record.backend == ADOPTED:
            return existing is not None
        if self._interpreter_gone(existing):
            return False  # broken: its interpreter was deleted
        spec = self.spec(name)
        backend, variant = self.backend(spec), self.variant()
        return _matches(existing, backend, variant, self._lock_hash_if_fresh(spec, backend, variant))

    def ensure(self, name: str) -> Env:
        """The env `name`, created when missing and rebuilt when its lock changed."""
        return self._ensure(name, force=False)

    def ensure_all(self, names: list[str]) -> list[Env]:
        """Several envs, e.g. the three a first run needs. Built side by side (each under its own
        file lock) where the host has the cores for it; on a 2-core host one after the other,
        which measured faster (bench/RESULTS.md: uv already downloads and unpacks in parallel)."""
        if (os.cpu_count() or 1) < 4 or len(names) < 2:
            return [self.ensure(name) for name in names]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(len(names)) as pool:
            return list(pool.map(self.ensure, names))

    def adopt(self, name: str, python: Path, *, allow_missing: Sequence[str] = ()) -> tuple[Env, list[str]]:
        """Register a prebuilt interpreter (a cluster's module stack, a host without internet) as
        env `name`, after checking in it that every package of the spec's pip part is installed
        and imports. Returns the env and notes: version differences from the lock, and the
        variant-only packages (CUDA kernels) it lacks, which the recipes do without."""
        spec = self.spec(name)
        variant = self.variant()
        if variant not in spec.variants:  # as `ensure` refuses it: `rdft env run` would
            raise RdftError(
                f"env {name!r} exists for {', '.join(spec.variants)} hosts only and this one is {variant}; "
                "adopt it on a GPU host (or set RDFT_TORCH_VARIANT)"
            )
        interpreter = Path(python).expanduser().absolute()
        if not interpreter.is_file() or not os.access(interpreter, os.X_OK):
            raise RdftError(f"--python {python} is not an executable interpreter; give the path of its python")
        lock = spec.pip_lock_path(variant)
        locked = _locked_versions(lock) if lock.is_file() else {}
        needed = [_requirement_name(req) for req in spec.pip]
        optional = [_requirement_name(req) for req in spec.variant_pip.get(variant, [])]
        unknown = sorted({_normalise(n) for n in allow_missing} - {_normalise(n) for n in needed})
        if unknown:
            raise RdftError(
                f"--allow-missing {', '.join(unknown)}: not a package env {name!r} needs ({', '.join(needed)})"
            )
        probe = run([str(interpreter), "-c", _ADOPT_PROBE, *needed, *optional], echo=False, timeout=300)
        if not probe.ok:
            raise RdftError(f"{interpreter} could not run the package check ({_last_line(probe.tail)})")
        result = next((line for line in reversed(probe.tail.splitlines()) if line.startswith("{")), None)
        if result is None:
            raise RdftError(f"{interpreter} printed no package check: it is not a Python interpreter; give its python")
        probed = json.loads(result)
        found = probed["packages"]
        allowed = {_normalise(n) for n in allow_missing}
        missing = [f"{n} ({found[n]['error']})" for n in needed if found[n]["error"] and _normalise(n) not in allowed]
        if missing:
            raise RdftError(
                f"{interpreter} lacks what env {name!r} needs: {', '.join(missing)}; install them there "
                "(or pass --allow-missing NAME for one the runs will not use)"
            )
        notes = [f"{n} not installed (optional on {variant})" for n in optional if found[n]["error"]]
        wanted = spec.python_version
        if wanted and not (probed["python"] + ".").startswith(wanted + "."):  # the locks were solved for it
            notes.append(f"python {probed['python']} (the spec has {wanted})")
        for n in needed + optional:
            want, have = locked.get(_normalise(n)), found[n]["version"]
            if want and have and want != have:
                notes.append(f"{n} {have} (the lock has {want})")
        self.envs_dir.mkdir(parents=True, exist_ok=True)
        link = self.envs_dir / name
        if link.exists() and not link.is_symlink():
            raise RdftError(f"{link} exists and was not made by rdft; move it away and retry")
        folder = self.envs_dir / f"{name}-{ADOPTED}"
        old = self.current(name)
        tmp = self.envs_dir / f".{name}-{ADOPTED}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        record = EnvRecord(
            name=name,
            backend=ADOPTED,
            variant=variant,
            lock_hash="",
            python=str(interpreter),
            created=datetime.datetime.now(datetime.UTC),
            rdft_version=__version__,
            variables=spec.variables,
        )
        (tmp / MARKER).write_text(record.model_dump_json(indent=2))
        if old and old.prefix != folder:
            shutil.rmtree(old.prefix, ignore_errors=True)  # a managed build it replaces
            notes.append(
                f"the built env {name!r} it replaces is removed (`rdft env remove {name}` and "
                f"`rdft env create {name}` build it again)"
            )
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
        tmp_link = self.envs_dir / f".{name}.link.tmp"
        tmp_link.unlink(missing_ok=True)
        tmp_link.symlink_to(folder.name)
        os.replace(tmp_link, link)
        return Env(name=name, prefix=folder, link=link, record=record), notes

    def rebuild(self, name: str) -> Env:
        return self._ensure(name, force=True)

    def _ensure(self, name: str, *, force: bool) -> Env:
        spec = self.spec(name)
        backend, variant = self.backend(spec), self.variant()
        if variant not in spec.variants:
            raise RdftError(
                f"env {name!r} exists for {', '.join(spec.variants)} hosts only and this one is {variant}; "
                "use it on a GPU host (or set RDFT_TORCH_VARIANT)"
            )
        existing = self.current(name)
        if not force and existing and existing.record.backend == ADOPTED:
            return existing  # the user's own interpreter: used as it is, never rebuilt
        if not force and existing and self._interpreter_gone(existing):  # never run whatever python is on PATH
            raise RdftError(
                f"env {name} is broken: its interpreter {existing.python} is gone; rebuild it with "
                f"`rdft env rebuild {name}`"
            )
        if (
            not force
            and existing
            and _matches(existing, backend, variant, self._lock_hash_if_fresh(spec, backend, variant))
        ):
            return existing
        self.envs_dir.mkdir(parents=True, exist_ok=True)
        (self.envs_dir / ".locks").mkdir(exist_ok=True)
        lock = FileLock(str(self.envs_dir / ".locks" / f"{name}.lock"))
        try:
            lock.acquire(timeout=1)
        except Timeout:
            self.log(f"env {name}: another rdft process is building it; waiting")
            lock.acquire()
        try:
            lock_hash = self._check_locks(spec, backend, variant, solve_missing=True)
            existing = self.current(name)
            if existing and _matches(existing, backend, variant, lock_hash) and not force:
                return existing  # another process built it while we waited
            if existing and not force:
                self.log(f"env {name}: its lock changed since it was built; rebuilding")
            return self._build(spec, backend, variant, lock_hash, existing)
        finally:
            lock.release()

    def _lock_hash_if_fresh(self, spec: EnvSpec, backend: Backend, variant: str) -> str | None:
        try:
            return self._check_locks(spec, backend, variant, solve_missing=False)
        except RdftError:
            return None  # missing or stale: the locked path reports it properly

    def _build(self, spec: EnvSpec, backend: Backend, variant: str, lock_hash: str, old: Env | None) -> Env:
        name = spec.name
        link = self.envs_dir / name
        if link.exists() and not link.is_symlink():
            raise RdftError(f"{link} exists and was not made by rdft; move it away and retry")
        current = old.prefix if old else None
        # Prefixes without a marker are builds of a process that was killed: never published.
        own = re.compile(rf"^{re.escape(name)}-[0-9a-f]{{12}}(-\d+)?$")
        for leftover in self.envs_dir.iterdir():
            if own.match(leftover.name) and leftover != current and not (leftover / MARKER).is_file():
                shutil.rmtree(leftover, ignore_errors=True)
        prefix = self.envs_dir / f"{name}-{lock_hash[:12]}"
        if prefix == current:  # a forced rebuild: keep the working env until the new one is ready
            prefix = self.envs_dir / f"{name}-{lock_hash[:12]}-{time.time_ns()}"
        if prefix.exists():  # published once, then unlinked by hand: not in use
            shutil.rmtree(prefix)
        build_log = self.envs_dir / ".logs" / f"{prefix.name}.log"
        build_log.parent.mkdir(exist_ok=True)
        build_log.unlink(missing_ok=True)
        self.log(f"env {name}: building with {backend} ({variant}) in {prefix}")
        try:
            if backend == "conda":
                conda.install_lock(spec, prefix, self._cache_dir(), self.log)
                python = prefix / "bin" / "python"
                if spec.pip and not python.exists():
                    raise EnvBuildError(f"env {name!r} has pip dependencies but its conda part has no python")
            else:
                python = self._make_venv(spec, prefix, build_log)
            if spec.pip:
                self._pip_install(spec, python, variant, build_log)
            record = EnvRecord(
                name=name,
                backend=backend,
                variant=variant,
                lock_hash=lock_hash,
                created=datetime.datetime.now(datetime.UTC),
                rdft_version=__version__,
                variables=spec.variables,
            )
            tmp = prefix / f"{MARKER}.tmp"
            tmp.write_text(record.model_dump_json(indent=2))
            os.replace(tmp, prefix / MARKER)
        except BaseException:
            _remove_tree(prefix)
            raise
        # Publish: point the stable link at the new prefix in one atomic rename.
        tmp_link = self.envs_dir / f".{name}.link.tmp"
        tmp_link.unlink(missing_ok=True)
        tmp_link.symlink_to(prefix.name)
        os.replace(tmp_link, link)
        if old and old.prefix != prefix:
            shutil.rmtree(old.prefix, ignore_errors=True)
        self.log(f"env {name}: ready at {link}")
        return Env(name=name, prefix=prefix, link=link, record=record)

    def _make_venv(self, spec: EnvSpec, prefix: Path, build_log: Path) -> Path:
        """`uv venv` (a second, against several for `python -m venv`, which installs pip
        first), or `python -m venv` where uv cannot run."""
        interpreter = _python_for(spec)
        uv = self._uv()
        if uv is not None:
            result = run(
                [uv, "venv", "--quiet", "--seed", "--python", interpreter, str(prefix)], log_path=build_log, echo=False
            )
            if result.ok:
                return prefix / "bin" / "python"
            self.log(f"env {spec.name}: `uv venv` failed ({_last_line(result.tail)}); using `python -m venv`")
            _remove_tree(prefix)
        result = run([interpreter, "-m", "venv", str(prefix)], log_path=build_log, echo=False)
        if not result.ok:
            raise EnvBuildError(f"`python -m venv` failed for env {spec.name!r}", result.tail)
        return prefix / "bin" / "python"

    def _uv(self) -> str | None:
        """uv, unless RDFT_ENV_INSTALLER=pip (or uv cannot run here)."""
        return None if self.settings.rdft_env_installer == "pip" else uv_binary()

    def _pip_install(self, spec: EnvSpec, python: Path, variant: str, build_log: Path) -> None:
        """Install the pip lock into the env: with uv (parallel downloads, a shared cache), or with
        the env's own pip where uv cannot run or fails. Both take exactly the locked files
        (`--require-hashes --no-deps`)."""
        lock_path = spec.pip_lock_path(variant)
        # DeepSpeed ships as an sdist: build it without compiling CUDA ops (they JIT at run time).
        environ = base_environment({"DS_BUILD_OPS": "0", "PIP_NO_INPUT": "1"})
        sources: list[str] = [part for option in spec.pip_indexes() for part in option]
        for index in pip_lock.extra_indexes(variant):
            sources += ["--extra-index-url", index]
        uv = self._uv()
        if uv is not None:
            command = [uv, "pip", "install", "--python", str(python), "--require-hashes", "--no-deps",
                       "--index-strategy", "unsafe-best-match", "-r", str(lock_path), *sources]  # fmt: skip
            for link in pip_lock.find_links(variant):
                command += ["--find-links", link]
            self.log(f"env {spec.name}: uv pip install -r {lock_path.name} (log: {build_log})")
            build = self.display.start(spec.name, pip_lock.package_count(lock_path))
            result = run(command, env=environ, log_path=build_log, echo=False, on_line=build.line)
            self.display.finish(build, result.ok)
            if result.ok:
                return
            self.log(f"env {spec.name}: uv could not install the lock ({_last_line(result.tail)}); trying pip")
        command = [str(python), "-m", "pip", "install", "--require-hashes", "--no-deps",
                   "--disable-pip-version-check", "--no-input", "-r", str(lock_path), *sources]  # fmt: skip
        self.log(f"env {spec.name}: pip install -r {lock_path.name} (log: {build_log})")
        build = self.display.start(spec.name, pip_lock.package_count(lock_path))
        result = run(command, env=environ, log_path=build_log, echo=False, on_line=build.line)
        self.display.finish(build, result.ok)
        if not result.ok:
            raise EnvBuildError(f"pip could not install {lock_path.name} into env {spec.name!r}", result.tail)

    def remove(self, name: str) -> bool:
        """Delete env `name`; False when there was none."""
        link = self.envs_dir / name
        (self.envs_dir / ".locks").mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.envs_dir / ".locks" / f"{name}.lock")):
            if not link.is_symlink():
                return False
            target = link.resolve()
            link.unlink()
            shutil.rmtree(target, ignore_errors=True)
            return True

    def status(self) -> list[EnvStatus]:
        out = []
        for spec in self.specs():
            backend, variant = self.backend(spec), self.variant()
            existing = self.current(spec.name)
            try:
                fresh = self._check_locks(spec, backend, variant, solve_missing=False)
                problem = None
            except RdftError as error:
                fresh, problem = None, str(error).split(";")[0]
            if existing is not None and existing.record.backend == ADOPTED:
                state = f"adopted: {existing.record.python}"
                if not existing.python.is_file():
                    state += " (gone: adopt one again or `rdft env remove`)"
            elif variant not in spec.variants and existing is None:
                state = f"not for this host ({', '.join(spec.variants)} only)"
            elif existing is None:
                state = "missing" + (f" ({problem})" if problem else "")
            elif self._interpreter_gone(existing):
                state = f"broken: its interpreter is gone (run `rdft env rebuild {spec.name}`)"
            elif problem:
                state = f"stale: {problem}"
            elif _matches(existing, backend, variant, fresh):
                state = "ready"
            else:
                state = "outdated: lock changed since build (run `rdft env create`)"
            out.append(
                EnvStatus(
                    name=spec.name,
                    backend=existing.record.backend if existing else backend,
                    variant=existing.record.variant if existing else variant,
                    path=self.envs_dir / spec.name,
                    state=state,
                    size_bytes=_tree_size(existing.prefix) if existing else None,
                    created=existing.record.created if existing else None,
                )
            )
        return out

    def _cache_dir(self) -> Path:
        return self.envs_dir / ".cache"


def _remove_tree(path: Path, attempts: int = 50) -> None:
    """Delete a failed build. An installer's worker threads may still be writing into it for a
    moment after the error surfaced, so retry until the folder is really gone."""
    for _ in range(attempts):
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            return
        time.sleep(0.1)


def uv_binary() -> str | None:
    """The uv that ships with rdft (a dependency), or one on PATH; None where neither runs."""
    try:
        import uv

        found = uv.find_uv_bin()
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
    return found if found and os.access(found, os.X_OK) else None


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else "no output"


# Run by the adopted interpreter: each distribution's version and whether its modules import.
_ADOPT_PROBE = """
import importlib, importlib.metadata as md, json, sys
modules = {}
for module, dists in md.packages_distributions().items():
    for dist in dists:
        modules.setdefault(dist.lower().replace("_", "-"), []).append(module)
out = {}
for name in sys.argv[1:]:
    key = name.lower().replace("_", "-")
    try:
        version, error = md.version(name), None
    except md.PackageNotFoundError:
        out[name] = {"version": None, "error": "not installed"}
        continue
    for module in sorted(m for m in modules.get(key, []) if not m.startswith("_"))[:1]:
        try:
            importlib.import_module(module)
        except Exception as exc:
            error = f"import {module} failed: {type(exc).__name__}"
    out[name] = {"version": version, "error": error}
print(json.dumps({"python": "%d.%d.%d" % sys.version_info[:3], "packages": out}))
"""


def _requirement_name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;@]", requirement.strip(), maxsplit=1)[0]


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _locked_versions(lock: Path) -> dict[str, str]:
    out = {}
    for line in lock.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9][\w.-]*)==([^\s;\\]+)", line)
        if match:
            out[_normalise(match.group(1))] = match.group(2)
    return out


def _matches(env: Env, backend: str, variant: str, lock_hash: str | None) -> bool:
    record = env.record
    return lock_hash is not None and (record.backend, record.variant, record.lock_hash) == (backend, variant, lock_hash)


def _python_for(spec: EnvSpec) -> str:
    """An interpreter of the spec's Python version for the venv backend."""
    wanted = spec.python_version
    if wanted is None or f"{sys.version_info.major}.{sys.version_info.minor}" == wanted:
        return sys.executable
    found = shutil.which(f"python{wanted}")
    if found:
        return found
    raise RdftError(
        f"env {spec.name!r} needs Python {wanted} for the venv backend and python{wanted} is not "
        "on PATH; install it, or use the conda backend (FT_Coder_CoSTEER_env_type=conda)"
    )


def _tree_size(root: Path) -> int:
    seen: set[tuple[int, int]] = set()
    total = 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            try:
                st = os.lstat(os.path.join(folder, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total
