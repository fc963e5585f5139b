"""Model folders for training and the loop: tiny test models (built once in the train env),
local folders and Hub ids, and their config.json."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock
from rich.console import Console

from rdft.envs import Env
from rdft.errors import RdftError
from rdft.resources import recipes_dir
from rdft.settings import Settings
from rdft.training.config import TrainConfig

# A Hugging Face Hub model id, e.g. Qwen/Qwen2.5-7B-Instruct.
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def build_tiny_model(env: Env, arch: str, model_dir: Path, console: Console, verbose: bool = False) -> Path:
    """The tiny test model at `model_dir`, built in the train env the first time (once, when
    several runs ask at the same time)."""
    if (model_dir / "config.json").is_file():
        return model_dir
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(model_dir.parent / f".{model_dir.name}.lock"):
        if (model_dir / "config.json").is_file():  # another process built it meanwhile
            return model_dir
        console.print(f"rdft: building the tiny {arch} model at {model_dir}")
        command = ["python", str(recipes_dir() / "tiny_model.py"), "--out", str(model_dir), "--arch", arch]
        built = env.run(command, echo=verbose)
        if not built.ok:
            raise RdftError(f"building the tiny model failed: {built.tail.strip().splitlines()[-1:]}")
    return model_dir


TINY_ARCHS = ("llama", "qwen2")  # what tiny:<arch> builds (recipes/tiny_model.py)


def resolve_model(config: TrainConfig, settings: Settings) -> Path | None:
    """The local model folder (tiny models live under FT_FILE_PATH/models), or None for a hub id."""
    arch = config.model.tiny_arch
    if arch:
        if arch not in TINY_ARCHS:
            raise RdftError(f"model.path tiny:{arch} is unknown; use {' or '.join('tiny:' + a for a in TINY_ARCHS)}")
        return settings.ft_file_path.expanduser().resolve() / "models" / f"tiny-{arch}"
    path = Path(config.model.path)
    return path if path.is_absolute() else None


def model_config_json(
    config: TrainConfig, model_dir: Path | None, settings: Settings, *, required: bool = True
) -> Path | None:
    """The model's config.json: local, or fetched from the Hub (a few KB). When not `required` (a
    dry run) a model not built or not reachable yet gives None instead of an error."""
    if model_dir is not None:
        return model_dir / "config.json" if (model_dir / "config.json").is_file() else None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RemoteEntryNotFoundError, RepositoryNotFoundError

    token = settings.hf_token.get_secret_value() if settings.hf_token else None
    repo = config.model.path
    try:
        return Path(hf_hub_download(repo, "config.json", token=token, endpoint=settings.hf_endpoint))
    # The Hub's own answers are errors even in a dry run: a mistyped id is said before any run.
    except GatedRepoError:  # a subclass of RepositoryNotFoundError: first
        raise RdftError(
            f"model.path {repo!r} is gated on the Hub; accept its terms there and set HF_TOKEN to a token with access"
        ) from None
    except RepositoryNotFoundError:
        raise RdftError(
            f"model.path {repo!r} is not a model repo on the Hub (or it is private: set HF_TOKEN); check the id"
        ) from None
    except RemoteEntryNotFoundError:  # not its sibling LocalEntryNotFoundError: that one is no answer
        raise RdftError(f"model.path {repo!r} has no config.json on the Hub: not a transformers model") from None
    except HfHubHTTPError as error:
        if error.response is not None and error.response.status_code == 401:
            raise RdftError("the Hub refused HF_TOKEN (401 Unauthorized); set a valid token or unset it") from None
        if not required:  # the Hub answered, but with a server error: as if it had not
            return None
        raise RdftError(f"cannot fetch config.json of {repo!r} ({error}); try again, or give a local folder") from None
    except Exception as error:  # no answer (offline, a proxy, a timeout): a dry run plans without the shape
        if not required:
            return None
        raise RdftError(
            f"cannot fetch config.json of {repo!r} ({type(error).__name__}); "
            "check the network or HF_ENDPOINT, or give a local folder"
        ) from None


# --- the architecture: what the planner and scoring count from config.json ---------------------
@dataclass(frozen=True)
class ModelShape:
    vocab: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    tied: bool
    qkv_bias: bool = False  # Qwen2 always; Llama when attention_bias
    o_bias: bool = False
    mlp_bias: bool = False

    @property
    def linear_params(self) -> int:
        """Parameters of the decoder layers' linear maps (what LoRA targets as all-linear)."""
        attention = self.hidden * self.head_dim * (2 * self.heads + 2 * self.kv_heads)
        mlp = 3 * self.hidden * self.intermediate
        return self.layers * (attention + mlp)

    @property
    def params(self) -> int:
        norms = self.layers * 2 * self.hidden + self.hidden
        embeddings = self.vocab * self.hidden * (1 if self.tied else 2)
        q_out, kv_out = self.heads * self.head_dim, self.kv_heads * self.head_dim
        biases = self.layers * (
            (q_out + 2 * kv_out) * self.qkv_bias
            + self.hidden * self.o_bias
            + (2 * self.intermediate + self.hidden) * self.mlp_bias
        )
        return self.linear_params + norms + embeddings + biases

    def lora_params(self, rank: int) -> int:
        q_out, kv_out = self.heads * self.head_dim, self.kv_heads * self.head_dim
        per_layer = (
            (self.hidden + q_out)  # q
            + 2 * (self.hidden + kv_out)  # k, v
            + (q_out + self.hidden)  # o
            + 2 * (self.hidden + self.intermediate)  # gate, up
            + (self.intermediate + self.hidden)  # down
        )
        return self.layers * rank * per_layer


def shape_from_config(config_path: Path) -> ModelShape:
    try:
        raw = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise RdftError(f"cannot read the model's config {config_path}: {error}; check model.path") from None
    raw = raw.get("text_config", raw)
    try:
        heads = raw["num_attention_heads"]
        attention_bias = bool(raw.get("attention_bias", False))
        return ModelShape(
            vocab=raw["vocab_size"],
            hidden=raw["hidden_size"],
            intermediate=raw["intermediate_size"],
            layers=raw["num_hidden_layers"],
            heads=heads,
            kv_heads=raw.get("num_key_value_heads") or heads,
            head_dim=raw.get("head_dim") or raw["hidden_size"] // heads,
            tied=bool(raw.get("tie_word_embeddings", False)),
            qkv_bias=raw.get("model_type") == "qwen2" or attention_bias,
            o_bias=attention_bias,
            mlp_bias=bool(raw.get("mlp_bias", False)),
        )
    except KeyError as missing:
        raise RdftError(
            f"{config_path} has no {missing}; the planner knows Llama/Qwen2/Mistral-style decoders — "
            "set train.micro_batch_size and train.gradient_checkpointing by hand"
        ) from None
