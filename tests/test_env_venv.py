"""The venv backend end to end with a small real pip lock (six, a pure-Python package from PyPI)."""

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import one_line_error

from rdft.envs import EnvManager
from rdft.settings import Settings

SECRET = "sk-venv-test-secret-9876543210"


def venv_settings(venv_env: dict, envs_dir) -> Settings:
    """The test's settings: its env specs and envs folder, venv backend, CPU torch."""
    return Settings(
        _env_file=None,
        rdft_env_specs_dir=venv_env["RDFT_ENV_SPECS_DIR"],
        rdft_envs_dir=envs_dir,
        ft_coder_costeer_env_type="venv",
        rdft_torch_variant="cpu",
    )


@pytest.fixture(scope="module")
def tiny_specs(tmp_path_factory):
    """A spec with its pip locks, made once by the real `rdft env lock` (uv against PyPI)."""
    specs = tmp_path_factory.mktemp("specs")
    (specs / "tiny.yml").write_text(
        "name: tiny\nchannels: [conda-forge]\ndependencies:\n  - python=3.11\n  - pip\n  - pip:\n      - six==1.16.0\n"
    )
    return specs


@pytest.fixture
def venv_env(rdft, tiny_specs):
    env = {"RDFT_ENV_SPECS_DIR": str(tiny_specs), "FT_Coder_CoSTEER_env_type": "venv", "RDFT_TORCH_VARIANT": "cpu"}
    if not (tiny_specs / "tiny.cpu.txt").exists():
        locked = rdft("env", "lock", "tiny", "--pip-only", env=env)
        assert locked.returncode == 0, locked.output
    return env


def test_pip_lock_has_hashes_and_spec_hash(venv_env, tiny_specs):
    for variant in ("cpu", "cuda"):
        text = (tiny_specs / f"tiny.{variant}.txt").read_text()
        assert re.search(r"^six==1\.16\.0 \\\n    --hash=sha256:[0-9a-f]{64}", text, re.M)
        assert re.search(r"^# rdft-spec-sha256: [0-9a-f]{64}$", text, re.M)


def test_create_run_ensure_remove(rdft, venv_env, tmp_path):
    created = rdft("env", "create", "tiny", env=venv_env)
    assert created.returncode == 0, created.output
    link = rdft.envs_dir / "tiny"
    assert created.stdout.strip() == str(link)

    ran = rdft(
        "env", "run", "tiny", "--", "python", "-c", "import six, sys; print(six.__version__, sys.prefix)", env=venv_env
    )
    assert ran.returncode == 0, ran.output
    version, prefix = ran.stdout.split()
    assert version == "1.16.0" and prefix == str(link.resolve())

    # A second ensure finds the env ready and returns at once.
    settings = venv_settings(venv_env, rdft.envs_dir)
    manager = EnvManager(settings)
    started = time.monotonic()
    again = manager.ensure("tiny")
    assert time.monotonic() - started <= 1.0
    assert manager.ready("tiny")
    # Built for the CPU: not ready for GPU jobs (a login node without GPUs submitting to GPU nodes).
    assert not EnvManager(settings.model_copy(update={"rdft_torch_variant": "cuda"})).ready("tiny")
    assert again.prefix == link.resolve() and again.record.backend == "venv"

    status = rdft("env", "status", env=venv_env)
    assert re.search(r"^tiny\s+venv\s+cpu\s+\d+ MiB\s+\d{4}-\d\d-\d\d \d\d:\d\d UTC\s+ready", status.stdout, re.M), (
        status.stdout
    )

    # An env whose interpreter was deleted is broken: said by status, refused by run (which must
    # never run whatever python is on PATH instead), repaired by rebuild.
    for python in (link / "bin").glob("python*"):
        python.unlink()
    status = rdft("env", "status", env=venv_env)
    assert re.search(r"^tiny\s.*broken: its interpreter is gone \(run `rdft env rebuild tiny`\)", status.stdout, re.M)
    assert not EnvManager(settings).ready("tiny")
    broken = rdft("env", "run", "tiny", "--", "python", "-c", "print(1)", env=venv_env)
    assert "env tiny is broken: its interpreter" in one_line_error(broken)
    assert "rebuild it with `rdft env rebuild tiny`" in one_line_error(broken)
    rebuilt = rdft("env", "rebuild", "tiny", env=venv_env)
    assert rebuilt.returncode == 0, rebuilt.output
    assert rdft("env", "run", "tiny", "--", "python", "-c", "import six", env=venv_env).returncode == 0

    removed = rdft("env", "remove", "tiny", env=venv_env)
    assert removed.returncode == 0 and not link.exists()
    assert [p for p in rdft.envs_dir.iterdir() if p.name.startswith("tiny")] == []


def test_secrets_reach_a_command_only_when_asked_and_never_its_log(rdft, venv_env):
    (rdft.workdir / ".env").write_text(f"OPENAI_API_KEY={SECRET}\nHF_TOKEN=hf_venv_test_token_1234\n")
    show = ["python", "-c", "import os; print('key=' + os.environ.get('OPENAI_API_KEY', 'unset'))"]
    log = rdft.workdir / "run.log"
    plain = rdft("env", "run", "tiny", "--log", str(log), "--", *show, env=venv_env)
    assert plain.returncode == 0, plain.output
    assert "key=unset" in plain.stdout
    asked = rdft("env", "run", "tiny", "--with-secrets", "--log", str(log), "--", *show, env=venv_env)
    assert asked.returncode == 0, asked.output
    assert "key=***" in asked.stdout and SECRET not in asked.output
    assert SECRET not in log.read_text() and "key=***" in log.read_text()

    doctor = rdft("doctor", env=venv_env)
    assert doctor.returncode == 0, doctor.output
    assert re.search(r"^key OPENAI_API_KEY\s+set$", doctor.stdout, re.M)
    assert re.search(r"^key HF_TOKEN\s+set$", doctor.stdout, re.M)
    assert SECRET not in doctor.output and "hf_venv_test_token_1234" not in doctor.output


def test_timeout_through_the_cli(rdft, venv_env):
    result = rdft(
        "env", "run", "tiny", "--timeout", "1", "--", "python", "-c", "import time; time.sleep(300)", env=venv_env
    )
    assert result.returncode == 124
    assert "timed out after 1 s" in result.stderr


def test_half_way_failure_leaves_no_env(rdft, venv_env, tmp_path):
    specs = tmp_path / "specs"
    specs.mkdir()
    source = venv_env["RDFT_ENV_SPECS_DIR"]
    (specs / "tiny.yml").write_text((Path(source) / "tiny.yml").read_text())
    lock = (Path(source) / "tiny.cpu.txt").read_text()
    # The venv is made, then pip refuses a package whose hash does not match.
    tampered = re.sub(r"--hash=sha256:[0-9a-f]{64}", "--hash=sha256:" + "0" * 64, lock)
    assert tampered != lock
    (specs / "tiny.cpu.txt").write_text(tampered)
    result = rdft("env", "create", "tiny", env={**venv_env, "RDFT_ENV_SPECS_DIR": str(specs)})
    line = one_line_error(result)
    assert "pip could not install tiny.cpu.txt into env 'tiny'" in line
    assert "HASH" in result.stderr.upper()  # pip's own complaint, from the tail
    assert [p for p in rdft.envs_dir.iterdir() if p.name.startswith("tiny")] == []


def test_stale_pip_lock_is_an_error(rdft, venv_env, tmp_path):
    specs = tmp_path / "specs"
    specs.mkdir()
    source = Path(venv_env["RDFT_ENV_SPECS_DIR"])
    (specs / "tiny.yml").write_text((source / "tiny.yml").read_text().replace("six==1.16.0", "six==1.17.0"))
    (specs / "tiny.cpu.txt").write_text((source / "tiny.cpu.txt").read_text())
    line = one_line_error(rdft("env", "create", "tiny", env={**venv_env, "RDFT_ENV_SPECS_DIR": str(specs)}))
    assert "tiny.cpu.txt is stale" in line and "run `rdft env lock tiny`" in line


def installer_of_six(rdft, venv_env) -> str:
    """The INSTALLER record of the tiny env's one package (uv and pip each write their name)."""
    read = "import importlib.metadata as m; print(m.distribution('six').read_text('INSTALLER'))"
    ran = rdft("env", "run", "tiny", "--", "python", "-c", read, env=venv_env)
    assert ran.returncode == 0, ran.output
    return ran.stdout.strip()


def test_uv_builds_by_default_and_pip_is_the_fallback(rdft, venv_env, tmp_path):
    """uv installs the lock (`uv venv` + `uv pip install --require-hashes`); where uv cannot (here:
    offline with an empty cache) the env's own pip installs the same lock; RDFT_ENV_INSTALLER=pip
    skips uv."""
    fresh = {"UV_CACHE_DIR": str(tmp_path / "uv-cache"), "PIP_CACHE_DIR": str(tmp_path / "pip-cache")}
    created = rdft("env", "create", "tiny", env={**venv_env, **fresh})
    assert created.returncode == 0, created.output
    assert "uv pip install -r tiny.cpu.txt" in created.stderr and "trying pip" not in created.stderr
    assert installer_of_six(rdft, venv_env) == "uv"  # the package's own record says who installed it
    assert rdft("env", "remove", "tiny", env=venv_env).returncode == 0

    fallback = rdft(
        "env", "create", "tiny", env={**venv_env, **fresh, "UV_CACHE_DIR": str(tmp_path / "empty"), "UV_OFFLINE": "1"}
    )
    assert fallback.returncode == 0, fallback.output
    assert "uv could not install the lock" in fallback.stderr and "pip install -r tiny.cpu.txt" in fallback.stderr
    ran = rdft("env", "run", "tiny", "--", "python", "-c", "import six; print(six.__version__)", env=venv_env)
    assert ran.stdout.strip() == "1.16.0" and installer_of_six(rdft, venv_env) == "pip"
    assert rdft("env", "remove", "tiny", env=venv_env).returncode == 0

    pip_only = rdft("env", "create", "tiny", env={**venv_env, **fresh, "RDFT_ENV_INSTALLER": "pip"})
    assert pip_only.returncode == 0, pip_only.output
    assert "uv pip" not in pip_only.stderr and ": pip install -r tiny.cpu.txt" in pip_only.stderr
    assert installer_of_six(rdft, venv_env) == "pip"


def test_build_progress_reads_the_installers_lines():
    """The progress of a build, from uv's and pip's own output lines (as they print them)."""
    from rdft.envs.progress import BuildDisplay

    lines: list[str] = []
    display = BuildDisplay(lines.append, live=False)
    build = display.start("data", 8)
    for text in [
        "Resolved 8 packages in 543ms",
        "Downloading pyarrow (52.5MiB)",
        "Downloading rdkit (30.4MiB)",
        " Downloaded rdkit",
        " Downloaded pyarrow",
        "Prepared 8 packages in 3.19s",
    ]:
        build.line(text + "\n")
    assert (build.ready, build.bytes) == (2, int(52.5 * 2**20) + int(30.4 * 2**20))
    assert lines == ["env data: 2/8 packages, 83 MiB fetched"]  # a quarter reached: one plain line
    build.line("Installed 8 packages in 428ms\n")
    display.finish(build, ok=True)
    assert build.describe() == "8/8 packages, 83 MiB fetched"
    assert lines[-1].startswith("env data: 8 packages installed in ")
    pip = display.start("tiny", 3)
    for text in ["Collecting six==1.16.0", "Collecting rich==13.0", "Installing collected packages: six, rich, x"]:
        pip.line(text)
    assert (pip.ready, pip.total) == (3, 3)


def test_adopt_a_prebuilt_interpreter(rdft, venv_env, tmp_path):
    """`rdft env adopt` registers a venv built outside rdft, after checking it has the spec's packages."""
    prebuilt = tmp_path / "prebuilt"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(prebuilt)], check=True)
    python = prebuilt / "bin" / "python"
    lacking = rdft("env", "adopt", "tiny", "--python", str(python), env=venv_env)
    assert "lacks what env 'tiny' needs: six (not installed)" in one_line_error(lacking)
    assert not (rdft.envs_dir / "tiny").exists()
    # A package the runs will not use can be waived by name; it is adopted, and then replaced below.
    waived = rdft("env", "adopt", "tiny", "--python", str(python), "--allow-missing", "six", env=venv_env)
    assert waived.returncode == 0 and waived.stdout.strip() == f"tiny: adopted {python}", waived.output
    assert rdft("env", "remove", "tiny", env=venv_env).returncode == 0

    # Give the prebuilt venv six: rdft's own build of the spec, reached through a .pth file.
    assert rdft("env", "create", "tiny", env=venv_env).returncode == 0
    managed = (rdft.envs_dir / "tiny").resolve()
    site = next(prebuilt.glob("lib/python*/site-packages"))
    # The managed build is removed when the prebuilt one replaces it: copy six, then point a .pth at it.
    shutil.copytree(next(managed.glob("lib/python*/site-packages")), tmp_path / "six-site")
    (site / "six.pth").write_text(str(tmp_path / "six-site") + "\n")
    # Its metadata says another version than the lock's: adopted, with a note saying so.
    info = next((tmp_path / "six-site").glob("six-1.16.0.dist-info"))
    metadata = (info / "METADATA").read_text().replace("Version: 1.16.0", "Version: 1.16.9")
    (info / "METADATA").write_text(metadata)
    info.rename(info.with_name("six-1.16.9.dist-info"))

    adopted = rdft("env", "adopt", "tiny", "--python", str(python), env=venv_env)
    assert adopted.returncode == 0, adopted.output
    assert adopted.stdout.strip() == f"tiny: adopted {python}"
    assert "rdft: note: six 1.16.9 (the lock has 1.16.0)" in adopted.stderr
    assert not managed.exists()  # the managed build it replaced is gone, and the notes say so
    assert "rdft: note: the built env 'tiny' it replaces is removed" in adopted.stderr
    ran = rdft(
        "env", "run", "tiny", "--", "python", "-c", "import six, sys; print(six.__version__, sys.prefix)", env=venv_env
    )
    assert ran.returncode == 0, ran.output
    assert ran.stdout.split() == ["1.16.0", str(prebuilt)]  # the runner uses the adopted interpreter
    status = rdft("env", "status", env=venv_env)
    assert re.search(rf"^tiny\s+adopted\s+cpu\s.*adopted: {re.escape(str(python))}", status.stdout, re.M), status.stdout
    doctor = rdft("doctor", env=venv_env)
    assert re.search(rf"^env tiny\s+adopted: {re.escape(str(python))}$", doctor.stdout, re.M), doctor.stdout
    assert doctor.stdout.count("env tiny") == 1, doctor.stdout  # envs/tiny and envs/tiny-adopted are one env
    # Adopted envs are used as they are: ensure never rebuilds them.
    settings = venv_settings(venv_env, rdft.envs_dir)
    assert EnvManager(settings).ensure("tiny").python == python
    assert EnvManager(settings).ready("tiny")  # what `rdft batch --executor slurm` asks before an env job
    assert rdft("env", "remove", "tiny", env=venv_env).returncode == 0 and not EnvManager(settings).ready("tiny")
    bad = rdft("env", "adopt", "tiny", "--python", str(tmp_path / "nope"), env=venv_env)
    assert "is not an executable interpreter" in one_line_error(bad)
    not_python = rdft("env", "adopt", "tiny", "--python", shutil.which("true"), env=venv_env)
    assert "printed no package check: it is not a Python interpreter; give its python" in one_line_error(not_python)
    typo = rdft("env", "adopt", "tiny", "--python", str(python), "--allow-missing", "sx", env=venv_env)
    assert "--allow-missing sx: not a package env 'tiny' needs (six)" in one_line_error(typo)
    assert not (rdft.envs_dir / "tiny").exists()  # refusals register nothing

    # The adopted interpreter deleted later: said, never replaced by whatever python is on PATH.
    assert rdft("env", "adopt", "tiny", "--python", str(python), env=venv_env).returncode == 0
    shutil.rmtree(prebuilt)
    gone = rdft("env", "run", "tiny", "--", "python", "-c", "print(1)", env=venv_env)
    assert f"env 'tiny' is the interpreter {python}, which is gone; adopt one again" in one_line_error(gone)
    assert "(gone: adopt one again or `rdft env remove`)" in rdft("env", "status", env=venv_env).stdout


def test_variant_packages_lock_for_their_variant_only(rdft, tmp_path):
    specs = tmp_path / "specs"
    specs.mkdir()
    base = (
        "name: kit\nchannels: [conda-forge]\ndependencies:\n  - python=3.11\n  - pip\n  - pip:\n      - six==1.16.0\n"
    )
    (specs / "kit.yml").write_text(base + "variant-pip:\n  cuda:\n    - packaging==24.1\n")
    env = {"RDFT_ENV_SPECS_DIR": str(specs), "FT_Coder_CoSTEER_env_type": "venv", "RDFT_TORCH_VARIANT": "cpu"}
    assert rdft("env", "lock", "kit", "--pip-only", env=env).returncode == 0
    assert "packaging==24.1" in (specs / "kit.cuda.txt").read_text()
    assert (
        "packaging" not in (specs / "kit.cpu.txt").read_text() and "six==1.16.0" in (specs / "kit.cpu.txt").read_text()
    )
    # The cpu lock stays fresh when only the cuda packages change.
    (specs / "kit.yml").write_text(base + "variant-pip:\n  cuda:\n    - packaging==24.2\n")
    status = rdft("env", "status", env=env).stdout
    assert re.search(r"^kit\s+venv\s+cpu\s.*\smissing\s+\S+$", status, re.M), status  # not "stale"
    # ... while the cuda lock is stale: the variant's packages are part of its hash.
    cuda = rdft("env", "status", env={**env, "RDFT_TORCH_VARIANT": "cuda"}).stdout
    assert re.search(r"^kit\s+venv\s+cuda\s.*missing \(kit\.cuda\.txt is stale", cuda, re.M), cuda
    # An env limited to cuda hosts says so on a CPU host.
    (specs / "gpuonly.yml").write_text(base.replace("name: kit", "name: gpuonly") + "variants: [cuda]\n")
    assert rdft("env", "lock", "gpuonly", "--pip-only", env=env).returncode == 0
    assert not (specs / "gpuonly.cpu.txt").exists() and (specs / "gpuonly.cuda.txt").is_file()
    refused = rdft("env", "create", "gpuonly", env=env)
    assert "exists for cuda hosts only and this one is cpu" in one_line_error(refused)
    refused = rdft("env", "adopt", "gpuonly", "--python", sys.executable, env=env)  # `env run` would refuse it
    assert "exists for cuda hosts only and this one is cpu; adopt it on a GPU host" in one_line_error(refused)
    assert "variant 'gpu'" in one_line_error(
        rdft("env", "list", env={**env, "RDFT_ENV_SPECS_DIR": str(_spec_dir(tmp_path, base + "variants: [gpu]\n"))})
    )


def _spec_dir(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "bad-specs"
    folder.mkdir()
    (folder / "kit.yml").write_text(text)
    return folder


def test_shipped_cuda_locks_hold_the_gpu_kernels():
    from rdft.resources import env_specs_dir

    train = (env_specs_dir() / "train.cuda.txt").read_text()
    assert re.search(r"^liger-kernel==", train, re.M) and re.search(r"^bitsandbytes==", train, re.M)
    assert not re.search(r"^(liger-kernel|bitsandbytes)==", (env_specs_dir() / "train.cpu.txt").read_text(), re.M)
    score = (env_specs_dir() / "score.cuda.txt").read_text()
    assert re.search(r"^vllm==", score, re.M) and re.search(r"^lm-eval==", score, re.M)
    assert not (env_specs_dir() / "score.cpu.txt").exists()


def test_every_shipped_lock_matches_its_spec():
    """CI builds the cpu locks only: a cuda lock left stale by a spec edit would first fail on a
    user's GPU host. Each lock records the hash of the spec part it was solved from."""
    from rdft.envs.spec import PIP_HASH_LINE, load_spec
    from rdft.resources import env_specs_dir

    checked = []
    for path in sorted(env_specs_dir().glob("*.yml")):
        spec = load_spec(path)
        for variant in spec.variants:
            lock = spec.pip_lock_path(variant)
            assert lock.is_file(), f"{lock.name} is missing: run `rdft env lock {spec.name}`"
            recorded = PIP_HASH_LINE.search(lock.read_text())
            assert recorded and recorded.group(1) == spec.pip_hash(variant), f"{lock.name} is stale"
            checked.append(lock.name)
    assert {"train.cpu.txt", "train.cuda.txt", "eval.cuda.txt", "score.cuda.txt"} <= set(checked)


def test_adopt_notes_another_python(rdft, tmp_path):
    """The locks were solved for the spec's Python: an interpreter of another one is adopted with a note."""
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "kit.yml").write_text(
        "name: kit\nchannels: [conda-forge]\ndependencies:\n  - python=3.10\n  - pip\n  - pip:\n      - pyyaml\n"
    )
    env = {"RDFT_ENV_SPECS_DIR": str(specs), "FT_Coder_CoSTEER_env_type": "venv", "RDFT_TORCH_VARIANT": "cpu"}
    adopted = rdft("env", "adopt", "kit", "--python", sys.executable, env=env)
    assert adopted.returncode == 0, adopted.output
    running = ".".join(map(str, sys.version_info[:3]))
    assert f"rdft: note: python {running} (the spec has 3.10)" in adopted.stderr
