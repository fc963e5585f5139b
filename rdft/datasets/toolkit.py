"""The data toolkit as data scripts import it: `rdft_data`, assembled from this package's
sources (rdft/datatools/, the leakage guard, and the benchmarks' answer reader) into a folder
that rdft puts on PYTHONPATH for every command in the `data` env.

The data env never sees the rest of rdft (or the host's site-packages): only this folder."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from rdft.resources import evaluation_dir

PACKAGE = "rdft_data"


def toolkit_sources() -> dict[str, Path]:
    """File name in `rdft_data` → its source."""
    sources = {path.name: path for path in sorted((Path(__file__).parents[1] / "datatools").glob("*.py"))}
    sources["leakage.py"] = Path(__file__).with_name("leakage.py")
    sources["answers.py"] = evaluation_dir() / "tasks" / "answers.py"
    return sources


def toolkit_path(root: Path) -> Path:
    """A folder holding `rdft_data/` (under `root`, named after the sources' hash); put it on
    PYTHONPATH. Built once per version of the sources, published by an atomic rename."""
    sources = toolkit_sources()
    digest = hashlib.sha256()
    for name, path in sources.items():
        digest.update(name.encode() + b"\0" + path.read_bytes())
    target = root / digest.hexdigest()[:12]
    if (target / PACKAGE / "__init__.py").exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=".building-"))
    try:
        (staging / PACKAGE).mkdir()
        for name, path in sources.items():
            shutil.copy2(path, staging / PACKAGE / name)
        os.rename(staging, target)
    except OSError:
        if not (target / PACKAGE / "__init__.py").exists():  # not another process winning the race
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def data_script_environment(settings, *, with_secrets: bool) -> dict[str, str]:
    """What a data script sees besides the env itself: the toolkit, the model pools, the worker
    count and the response cache (RD-Agent's variable names, so its scripts run unchanged) and,
    only when asked, the key. The key never goes anywhere else."""
    import json

    variables = {
        **data_env_variables(settings.envs_dir),
        "STRONG_MODEL_POOL": json.dumps(settings.ft_strong_models),
        "WEAK_MODEL_POOL": json.dumps(settings.ft_weak_models),
        "FT_API_MAX_WORKERS": str(settings.ft_api_max_workers),
        "RDFT_LLM_CACHE": str(settings.ft_file_path.expanduser().resolve() / "llm-cache"),
    }
    if settings.openai_api_base:
        variables["OPENAI_BASE_URL"] = settings.openai_api_base
    if with_secrets and settings.openai_api_key:
        variables["OPENAI_API_KEY"] = settings.openai_api_key.get_secret_value()
    return variables


def data_env_variables(envs_dir: Path) -> dict[str, str]:
    """The environment entries that make `import rdft_data` work in the data env."""
    path = str(toolkit_path(envs_dir / ".toolkit"))
    existing = os.environ.get("PYTHONPATH")
    return {"PYTHONPATH": path + (os.pathsep + existing if existing else "")}
