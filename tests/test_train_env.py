"""The shipped `train` env, built for real from its `cpu` pip lock with the venv backend.

The env is built once per test session under RDFT_TEST_ENVS_DIR (tox keeps it in .tox/, so
reruns reuse it; ensure() rebuilds it whenever the lock changes).
"""

import os
import time

import pytest

from rdft.envs import EnvManager
from rdft.runner import run_in_env
from rdft.settings import Settings


@pytest.fixture(scope="session")
def shared_envs_dir(tmp_path_factory):
    configured = os.environ.get("RDFT_TEST_ENVS_DIR")
    return configured if configured else str(tmp_path_factory.mktemp("shared-envs"))


def test_train_env_imports_the_training_stack(shared_envs_dir, tmp_path):
    settings = Settings(
        _env_file=None, rdft_envs_dir=shared_envs_dir, ft_coder_costeer_env_type="venv", rdft_torch_variant="cpu"
    )
    manager = EnvManager(settings)
    env = manager.ensure("train")
    assert env.record.backend == "venv" and env.record.variant == "cpu"

    check = (
        "import torch, transformers, peft, accelerate, deepspeed; "
        "print(torch.__version__, torch.cuda.is_available(), transformers.__version__, peft.__version__, "
        "accelerate.__version__, deepspeed.__version__)"
    )
    result = run_in_env(env, ["python", "-c", check], echo=False, cwd=tmp_path)
    assert result.ok, result.tail
    torch_version, cuda, transformers, peft, accelerate, deepspeed = result.tail.strip().splitlines()[-1].split()
    assert torch_version == "2.13.0+cpu" and cuda == "False"
    assert (transformers, peft, accelerate, deepspeed) == ("5.24.0", "0.21.2", "1.15.0", "0.19.8")

    started = time.monotonic()
    again = EnvManager(settings).ensure("train")
    assert time.monotonic() - started <= 1.0
    assert again.prefix == env.prefix
