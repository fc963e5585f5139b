"""The score belongs to the base model's descendant.

The run records the base model's weight files (size, time, SHA-256) when it starts. Before any
checkpoint is scored, rdft checks that the base's weights are still those files (a swapped-in,
already tuned base would otherwise pass for the run's work), that an adapter names the run's
base model, and that a full fine-tune has the base model's shape."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
SHAPE_KEYS = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")


class NotDescendant(Exception):
    """Weights that do not derive from the run's base model; the message says why."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(model_dir: Path) -> dict[str, dict]:
    """Every weight file of a model folder: {name: {size, mtime_ns, sha256}}."""
    out = {}
    for path in sorted(Path(model_dir).iterdir()):
        if path.is_file() and path.suffix in WEIGHT_SUFFIXES:
            stat = path.stat()
            out[path.name] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": _sha256(path)}
    return out


def check_base(model_dir: Path, recorded: dict[str, dict]) -> None:
    """The base model's weights are the ones recorded at the start (re-hashed only when a file's
    size or time moved)."""
    if not recorded:
        return
    present = {p.name: p for p in Path(model_dir).iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES}
    if set(present) != set(recorded):
        raise NotDescendant(
            f"the base model's weight files changed since the run started ({sorted(present)} instead of "
            f"{sorted(recorded)}); scores would not belong to the base model"
        )
    for name, record in recorded.items():
        stat = present[name].stat()
        if (stat.st_size, stat.st_mtime_ns) != (record["size"], record["mtime_ns"]):
            if _sha256(present[name]) != record["sha256"]:
                raise NotDescendant(
                    f"the base model's {name} changed since the run started; scores would not belong to the base model"
                )


def check_descendant(base_dir: Path, recorded: dict[str, dict], *, adapter: Path | None, model: Path | None) -> dict:
    """Refuse weights that do not derive from the base model; returns what was checked."""
    base_dir = Path(base_dir).resolve()
    check_base(base_dir, recorded)
    checked: dict = {"base_model": str(base_dir), "base_weights": {k: v["sha256"] for k, v in recorded.items()}}
    if adapter is not None:
        config = json.loads((adapter / "adapter_config.json").read_text())
        named = config.get("base_model_name_or_path")
        if not named or Path(named).expanduser().resolve() != base_dir:
            raise NotDescendant(
                f"the adapter in {adapter} was trained on {named!r}, not the run's base model {base_dir}"
            )
        checked["adapter_base"] = named
    if model is not None:
        base = json.loads((base_dir / "config.json").read_text())
        tuned = json.loads((Path(model) / "config.json").read_text())
        differs = [key for key in SHAPE_KEYS if base.get(key) != tuned.get(key)]
        if differs:
            raise NotDescendant(
                f"the model in {model} does not have the base model's shape ({', '.join(differs)} differ)"
            )
        checked["model_shape"] = {key: base.get(key) for key in SHAPE_KEYS}
    return checked
