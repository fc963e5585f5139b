"""The shipped `train` env, built for real from its `cpu` pip lock with the venv backend."""

import time

from rdft.envs import EnvManager


def test_train_env_imports_the_training_stack(train_env, shared_settings, tmp_path):
    assert train_env.record.backend == "venv" and train_env.record.variant == "cpu"
    check = (
        "import torch, transformers, peft, accelerate, deepspeed; "
        "print(torch.__version__, torch.cuda.is_available(), transformers.__version__, peft.__version__, "
        "accelerate.__version__, deepspeed.__version__)"
    )
    result = train_env.run(["python", "-c", check], echo=False, cwd=tmp_path)
    assert result.ok, result.tail
    torch_version, cuda, transformers, peft, accelerate, deepspeed = result.tail.strip().splitlines()[-1].split()
    assert torch_version == "2.13.0+cpu" and cuda == "False"
    assert (transformers, peft, accelerate, deepspeed) == ("5.24.0", "0.21.2", "1.15.0", "0.19.8")

    started = time.monotonic()
    again = EnvManager(shared_settings).ensure("train")
    assert time.monotonic() - started <= 1.0
    assert again.prefix == train_env.prefix
