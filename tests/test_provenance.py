"""The score belongs to the base model's descendant (rdft/loop/provenance.py): a base whose weights
changed after the run started, an adapter trained on another model, or a full model of another
shape is refused before scoring."""

import json
import os

import pytest

from rdft.loop.provenance import NotDescendant, check_descendant, fingerprint

CONFIG = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 99}


@pytest.fixture
def base(tmp_path):
    folder = tmp_path / "base"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(CONFIG))
    (folder / "model.safetensors").write_bytes(b"weights-of-the-base" * 100)
    return folder


def adapter_for(path, base_name) -> object:
    path.mkdir()
    (path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(base_name), "r": 8}))
    return path


def test_the_runs_own_descendants_pass(base, tmp_path):
    recorded = fingerprint(base)
    assert recorded["model.safetensors"]["size"] == 1900
    checked = check_descendant(base, recorded, adapter=adapter_for(tmp_path / "adapter", base), model=None)
    assert checked["adapter_base"] == str(base)
    assert checked["base_weights"] == {"model.safetensors": recorded["model.safetensors"]["sha256"]}
    tuned = tmp_path / "tuned"
    tuned.mkdir()
    (tuned / "config.json").write_text(json.dumps({**CONFIG, "torch_dtype": "float32"}))
    assert check_descendant(base, recorded, adapter=None, model=tuned)["model_shape"]["hidden_size"] == 64
    # Touching the file without changing it: re-hashed, still the base.
    os.utime(base / "model.safetensors", ns=(1, 1))
    check_descendant(base, recorded, adapter=None, model=None)


def test_a_swapped_base_is_refused(base):
    recorded = fingerprint(base)
    (base / "model.safetensors").write_bytes(b"an-already-tuned-model" * 100)
    with pytest.raises(NotDescendant, match=r"the base model.s model\.safetensors changed since the run started"):
        check_descendant(base, recorded, adapter=None, model=None)
    (base / "model.safetensors").unlink()
    (base / "model-00001.safetensors").write_bytes(b"x")
    with pytest.raises(NotDescendant, match="weight files changed"):
        check_descendant(base, recorded, adapter=None, model=None)


def test_an_adapter_of_another_model_is_refused(base, tmp_path):
    other = adapter_for(tmp_path / "adapter", "Qwen/Qwen2.5-7B-Instruct-tuned")
    with pytest.raises(NotDescendant, match=r"was trained on .Qwen/Qwen2\.5-7B-Instruct-tuned., not the run.s base"):
        check_descendant(base, fingerprint(base), adapter=other, model=None)


def test_a_full_model_of_another_shape_is_refused(base, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({**CONFIG, "hidden_size": 4096, "num_hidden_layers": 32}))
    with pytest.raises(NotDescendant, match="hidden_size, num_hidden_layers differ"):
        check_descendant(base, fingerprint(base), adapter=None, model=other)
