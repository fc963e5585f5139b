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


def test_torch_is_asked_once_per_process_and_the_disk_each_time(train_env, tmp_path, monkeypatch):
    """The hardware probe starts torch in the train env once per process for one interpreter and
    one CUDA_VISIBLE_DEVICES (a loop asked three times, ~2 s each); each workspace still gets its
    hardware.json with the free disk of the moment. The interpreter here is a wrapper that is
    removed after the first probe: a second probe that started a process would fail."""
    import json

    import pytest

    from rdft.envs.manager import ADOPTED, Env
    from rdft.errors import RdftError
    from rdft.hardware import probe_in_env

    folder = tmp_path / "bin"
    folder.mkdir()
    wrapper = folder / "python"
    wrapper.write_text(f'#!/bin/sh\nexec {train_env.python} "$@"\n')
    wrapper.chmod(0o755)
    record = train_env.record.model_copy(update={"backend": ADOPTED, "python": str(wrapper)})
    env = Env(name="train", prefix=folder, link=folder, record=record)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()

    asked = probe_in_env(env, first)
    assert asked["torch"] == "2.13.0+cpu" and asked["cuda_visible_devices"] is None
    wrapper.unlink()
    again = probe_in_env(env, second)  # no process: the wrapper is gone
    assert json.loads((second / "hardware.json").read_text()) == again
    assert {k: v for k, v in again.items() if k != "disk_free_gib"} == {
        k: v for k, v in asked.items() if k != "disk_free_gib"
    }
    assert again["disk_free_gib"] > 0
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # other devices: torch is asked again
    with pytest.raises(RdftError, match="is gone"):
        probe_in_env(env, second)
