"""The CLI as a user meets it: help, version, doctor, env list, and one-line errors."""

import re
import subprocess
import sys
from pathlib import Path

from conftest import REPO, one_line_error

import rdft as rdft_package


def test_help_lists_commands(rdft):
    result = rdft("--help")
    assert result.returncode == 0
    assert re.search(r"^\s+doctor\s", result.stdout, re.M) and re.search(r"^\s+env\s", result.stdout, re.M)
    env_help = rdft("env", "--help").stdout
    for command in ("create", "list", "lock", "rebuild", "remove", "run", "status"):
        assert re.search(rf"^\s+{command}\s", env_help, re.M), command


def test_version(rdft):
    result = rdft("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"rdft, version {rdft_package.__version__}"


def test_doctor_reports_the_host(rdft, tmp_path):
    result = rdft("doctor")
    assert result.returncode == 0, result.output
    out = result.stdout
    assert re.search(rf"^python\s+{sys.version_info.major}\.{sys.version_info.minor}\.", out, re.M)
    assert re.search(r"^conda engine py-rattler\s+\d+\.\d+", out, re.M)
    assert re.search(r"^conda engine micromamba\s+", out, re.M)
    assert re.search(r"^(gpus\s+none|gpu 0\s+)", out, re.M)
    assert re.search(r"^key OPENAI_API_KEY\s+not set$", out, re.M)
    match = re.search(r"^free disk\s+([\d.]+) GiB under (\S+)$", out, re.M)
    assert match and float(match.group(1)) > 0
    # FT_FILE_PATH does not exist yet: the nearest existing parent is measured.
    assert match.group(2) == str(tmp_path)


def test_env_list_shows_shipped_specs_and_locks(rdft):
    result = rdft("env", "list")
    assert result.returncode == 0, result.output
    for name in ("train", "eval", "data"):
        assert re.search(rf"^{name}\s+venv\s+locks: {name}\.cpu\.txt, {name}\.cuda\.txt$", result.stdout, re.M)


def test_specs_ship_inside_the_installed_package():
    """tox installs rdft from a wheel: the specs and locks must be inside it, not only in the tree."""
    from rdft.resources import env_specs_dir, recipes_dir

    folder = env_specs_dir()
    for name in ("train", "eval", "data"):
        assert (folder / f"{name}.yml").is_file()
        assert (folder / f"{name}.cpu.txt").is_file() and (folder / f"{name}.cuda.txt").is_file()
    package = Path(rdft_package.__file__).resolve().parent
    assert (recipes_dir() / "sft.py").is_file() and (recipes_dir() / "configs" / "tiny_cpu_lora.yaml").is_file()
    if package.parent != REPO:  # installed from a wheel, as tox does
        assert folder == package / "env_specs" and recipes_dir() == package / "recipes"


def test_bad_inputs_are_one_line(rdft, tmp_path):
    assert "did you mean 'train'" in one_line_error(rdft("env", "create", "trian"))
    assert "give an env NAME or --all" in one_line_error(rdft("env", "rebuild"))
    missing = one_line_error(rdft("env", "list", env={"RDFT_ENV_SPECS_DIR": str(tmp_path / "nope")}))
    assert "does not exist; fix RDFT_ENV_SPECS_DIR" in missing
    bad_spec = tmp_path / "specs"
    bad_spec.mkdir()
    (bad_spec / "x.yml").write_text("name: x\nchannels: [conda-forge\n")
    assert "x.yml is not valid YAML at line" in one_line_error(
        rdft("env", "list", env={"RDFT_ENV_SPECS_DIR": str(bad_spec)})
    )
    (bad_spec / "x.yml").write_text("name: x\ndependencies: [python=3.11]\nchanels: [conda-forge]\n")
    assert "unknown key 'chanels'" in one_line_error(rdft("env", "list", env={"RDFT_ENV_SPECS_DIR": str(bad_spec)}))


def test_env_run_needs_a_command(rdft):
    result = rdft("env", "run", "train")
    assert result.returncode == 2 and "Missing argument 'COMMAND...'" in result.stderr


def test_python_dash_m_works():
    proc = subprocess.run([sys.executable, "-m", "rdft", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and "rdft, version" in proc.stdout
