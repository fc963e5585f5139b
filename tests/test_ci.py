"""CI's own promises (issue 27, item 22): a test that lacks its evidence (../shared, chromium,
Slurm) skips on a user's machine but fails in CI (CI=true), and `.ci/run` stops with its reason
when the apt-get install it needs fails, instead of running tox without the evidence."""

import os
import shutil
import subprocess
import sys

import pytest
from conftest import REPO


@pytest.mark.parametrize("ci, outcome", [("", "1 skipped"), ("true", "1 failed")])
def test_missing_evidence_skips_here_and_fails_in_ci(ci, outcome, tmp_path):
    (tmp_path / "test_needs_evidence.py").write_text(
        f"import sys\nsys.path.insert(0, {str(REPO / 'tests')!r})\nfrom conftest import skip_without\n\n\n"
        "def test_needs_chromium():\n"
        "    skip_without('chromium is not installed')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "CI"} | ({"CI": ci} if ci else {})
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path / "test_needs_evidence.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert outcome in result.stdout, result.stdout[-2000:]
    if ci:
        assert "chromium is not installed, and CI must have it" in result.stdout


def test_ci_run_stops_when_the_apt_install_fails(tmp_path):
    """Run as root on a host without chromium, where apt-get fails: exit 1 and the reason, and
    no tox (the stub folder holds no pip or tox: reaching them would be a different error)."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    (stubs / "apt-get").write_text("#!/bin/sh\necho 'E: Unable to locate package' >&2\nexit 100\n")
    (stubs / "id").write_text("#!/bin/sh\necho 0\n")  # as CI's root
    for stub in ("apt-get", "id"):
        (stubs / stub).chmod(0o755)
    (stubs / "dirname").symlink_to(shutil.which("dirname"))
    result = subprocess.run(
        [shutil.which("bash"), str(REPO / ".ci" / "run")],
        env={"PATH": str(stubs), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "ci: could not install Debian's chromium, which the report's browser test needs" in result.stderr
