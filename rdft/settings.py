"""Every setting rdft reads, from the environment and a `.env` file in the working directory.

The `.env` template of RD-Agent's fine-tuning guide loads unchanged. Settings that only mean
something to RD-Agent are accepted and reported as ignored (see IGNORED), never silently dead.
Nobody else in rdft reads os.environ for configuration.
"""

from __future__ import annotations

import difflib
import functools
import io
import json
import os
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from rdft.errors import RdftError

# Settings of RD-Agent's template that rdft accepts but has no use for, and why.
IGNORED: dict[str, str] = {
    "BACKEND": "rdft always calls models through litellm",
    "EMBEDDING_MODEL": "rdft uses no embeddings",
    "EMBEDDING_USE_AZURE": "rdft uses no embeddings",
    "DUMP_EMBEDDING_CACHE": "rdft uses no embeddings",
    "USE_EMBEDDING_CACHE": "rdft uses no embeddings",
    "MULTI_PROC_N": "rdft runs one experiment at a time per run; use `rdft batch` for parallel runs",
    "STEP_SEMAPHORE": "rdft runs one experiment at a time per run; use `rdft batch` for parallel runs",
    "FT_DOCKER_ENABLE_CACHE": "Docker only; rdft runs without Docker",
    "FT_UPDATE_LLAMA_FACTORY": "rdft does not use LLaMA-Factory",
    "LOG_FORMAT_CONSOLE": "a loguru format; rdft's console output is drawn by rich",
}

# Environment variables whose values are secrets: kept out of child processes unless asked
# for, and redacted from every log the runner writes.
SECRET_NAMES = ("OPENAI_API_KEY", "HF_TOKEN", "RDFT_AZURE_SAS_TOKEN")

EnvBackend = Literal["auto", "conda", "venv"]
TorchVariant = Literal["auto", "cpu", "cuda"]


def _default_file_path() -> Path:
    return Path.home() / ".cache" / "rdft"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        case_sensitive=False,
        extra="allow",  # unknown keys in .env are reported, not fatal
        validate_default=True,
        env_ignore_empty=True,  # KEY= in .env means "unset", as in shells
    )

    # --- LLM (the agent's own calls) ---
    chat_model: str = "gpt-4o"
    chat_temperature: float | None = None
    chat_stream: bool = True
    chat_frequency_penalty: float | None = None
    chat_presence_penalty: float | None = None
    openai_api_key: SecretStr | None = None
    openai_api_base: str | None = None
    max_retry: int = Field(10, ge=0)
    retry_wait_seconds: float = Field(5.0, ge=0)
    dump_chat_cache: bool = False
    use_chat_cache: bool = False
    log_llm_chat_content: bool = True
    reasoning_think_rm: bool = True

    # --- fine-tuning scenario ---
    ft_file_path: Path = Field(default_factory=_default_file_path)
    ft_coder_costeer_env_type: EnvBackend | Literal["docker"] = Field(
        "auto", validation_alias="FT_Coder_CoSTEER_env_type"
    )
    ft_api_max_workers: int = Field(8, ge=1)
    rdft_llm_timeout: float = Field(120.0, gt=0)  # seconds per call of the data toolkit's model pools
    ft_strong_models: Annotated[list[str], NoDecode] = ["gpt-5", "gpt-5.1"]
    ft_weak_models: Annotated[list[str], NoDecode] = ["gpt-4o-mini"]
    ft_target_benchmark: str | None = None
    ft_user_target_scenario: str | None = None
    ft_data_processing_timeout: int = Field(3600, ge=1)
    ft_judge_model: str | None = None
    ft_judge_retry: int = Field(10, ge=0)
    ft_base_model: str | None = None
    ft_benchmark_description: str | None = None
    ft_dataset: str | None = None
    ft_upper_data_size_limit: int = Field(2000, ge=1)
    ft_full_timeout: int = Field(360000, ge=1)  # full training, seconds
    ft_debug_data_processing_timeout: int = Field(1200, ge=1)
    ft_micro_batch_timeout: int = Field(1800, ge=1)  # the coder's debug training
    ft_coder_max_loop: int = Field(10, ge=1)
    ft_force_think_token: bool = False
    # The forgetting check: every candidate (and the base model) is also scored on a fixed seeded
    # slice of each of these benchmarks; a loop that loses more than the tolerance (points) on
    # one is never the confirmed best.
    ft_regression_benchmarks: Annotated[list[str], NoDecode] = []
    ft_regression_items: int = Field(100, ge=2)
    ft_regression_tolerance: float | None = Field(None, ge=0)
    ft_track: Literal["mlflow", "tensorboard"] | None = None  # loop-level tracking (rdft run --track)
    log_trace_path: Path | None = None  # the run's log folder (default log/<UTC timestamp>)

    # --- rdft's agent loop ---
    rdft_search: Literal["greedy", "aide"] = "greedy"  # parent = best node, or AIDE drafts/improve/debug
    rdft_significance: float = Field(0.05, gt=0, lt=1)  # a confirmed gain needs p(not better) below this
    rdft_llm_reask: int = Field(3, ge=0)  # re-asks of an LLM reply that fails validation
    rdft_remote: str | None = None  # log sync target (fsspec URL), see `rdft logs sync`
    rdft_azure_account: str | None = None  # az:// remotes: the storage account
    rdft_azure_sas_token: SecretStr | None = None
    rdft_azure_sas_file: Path | None = None  # a file holding the SAS token

    # --- Hugging Face ---
    hf_token: SecretStr | None = None
    hf_endpoint: str | None = None  # a mirror or a local stand-in for https://huggingface.co

    # --- rdft's own ---
    rdft_env_specs_dir: Path | None = None  # a folder of the user's own env specs
    rdft_envs_dir: Path | None = None  # where envs are created; default FT_FILE_PATH/envs
    rdft_torch_variant: TorchVariant = "auto"  # which pip lock: cpu, cuda, or by nvidia-smi
    rdft_env_installer: Literal["auto", "pip"] = "auto"  # auto: uv where it runs, else pip
    rdft_knowledge_dir: Path | None = None  # the experience store shared by runs; default FT_FILE_PATH/knowledge
    rdft_chem_oracle_dir: Path | None = None  # TDC's drd2/gsk3b/jnk3 pickles for ChemCoTBench mol_opt

    # The template's ignored keys are declared so they validate and never count as unknown.
    backend: str | None = None
    embedding_model: str | None = None
    embedding_use_azure: bool | None = None
    dump_embedding_cache: bool | None = None
    use_embedding_cache: bool | None = None
    multi_proc_n: int | None = None
    step_semaphore: int | None = None
    ft_docker_enable_cache: bool | None = None
    ft_update_llama_factory: bool | None = None
    log_format_console: str | None = None

    @field_validator("ft_strong_models", "ft_weak_models", "ft_regression_benchmarks", mode="before")
    @classmethod
    def _model_list(cls, value: object) -> object:
        """A JSON list, as in RD-Agent's template, or a plain comma-separated list."""
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.startswith("["):
            try:
                return json.loads(text)
            except json.JSONDecodeError:
                raise ValueError('must be a JSON list like ["gpt-5", "gpt-5.1"] or comma-separated') from None
        return [part.strip() for part in text.split(",") if part.strip()]

    @field_validator("ft_coder_costeer_env_type", mode="before")
    @classmethod
    def _lower_backend(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("ft_coder_costeer_env_type")
    @classmethod
    def _no_docker(cls, value: str) -> str:
        if value == "docker":
            raise ValueError(
                "rdft is Docker-less; set FT_Coder_CoSTEER_env_type to conda or venv (or remove it to let rdft choose)"
            )
        return value

    @property
    def envs_dir(self) -> Path:
        return (self.rdft_envs_dir or self.ft_file_path / "envs").expanduser().resolve()

    def ignored_in_use(self) -> list[str]:
        """Names of RD-Agent-only settings that are set, so they can be reported."""
        values = self.model_dump(include={name.lower() for name in IGNORED})
        return [name for name in IGNORED if values[name.lower()] is not None]

    def unknown_keys(self) -> list[str]:
        """Keys of the .env file that no setting reads, each with the closest known name."""
        known = [name.upper() for name in type(self).model_fields] + ["FT_CODER_COSTEER_ENV_TYPE"]
        out = []
        for key in self.model_extra or {}:
            close = difflib.get_close_matches(key.upper(), known, n=1)
            out.append(f"{key.upper()} (did you mean {close[0]}?)" if close else key.upper())
        return out

    def secrets(self) -> dict[str, str]:
        """Secret values that are set, by environment-variable name."""
        values = {
            "OPENAI_API_KEY": self.openai_api_key,
            "HF_TOKEN": self.hf_token,
            "RDFT_AZURE_SAS_TOKEN": self.rdft_azure_sas_token,
        }
        return {k: v.get_secret_value() for k, v in values.items() if v and v.get_secret_value()}


def _one_line(error: ValidationError, env_file: str | Path | None) -> str:
    """The first bad setting by name, and by line where .env sets it; never its value (a value in
    the wrong setting may be a key: MAX_RETRY=sk-… must not reach a terminal or a log)."""
    first = error.errors()[0]
    key = str(first["loc"][0]) if first["loc"] else "?"
    key = "FT_Coder_CoSTEER_env_type" if key.lower() == "ft_coder_costeer_env_type" else key.upper()
    line = _line_of(env_file, key)
    where = f" (.env line {line})" if line else ""
    message = first["msg"].removeprefix("Value error, ")
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"setting {key}{where} is invalid: {message}; fix it in .env or the environment{more}"


def _line_of(env_file: str | Path | None, key: str) -> int | None:
    """The line of `env_file` that sets `key` (the last one: it wins), if any."""
    if env_file is None or not Path(env_file).is_file():
        return None
    found = None
    for number, text in enumerate(Path(env_file).read_text(encoding="utf-8").splitlines(), 1):
        name = text.strip().removeprefix("export ").split("=", 1)[0].strip()
        if name.lower() == key.lower():
            found = number
    return found


def check_env_file(env_file: str | Path | None) -> None:
    """A line of .env that is no KEY=VALUE is an error with its line number (python-dotenv would
    drop it silently — an API key on such a line would just be missing)."""
    if env_file is None or not Path(env_file).is_file():
        return
    from dotenv.parser import parse_stream

    try:
        text = Path(env_file).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise RdftError(f"{env_file} is not UTF-8 text; save it as UTF-8") from None
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:  # the line may hold a key: only a leading setting name is shown
            name = re.match(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)", binding.original.string)
            shown = f" (it starts with {name.group(1)})" if name else ""
            raise RdftError(f"{env_file} line {binding.original.line} is not KEY=VALUE{shown}; fix or remove that line")


def check_file_path(settings: Settings) -> str | None:
    """FT_FILE_PATH is a writable folder. A missing one is created — but a path the user gave
    only when its parent exists (a typo must not grow a tree somewhere); returns the note to show."""
    path = settings.ft_file_path.expanduser()
    if path.exists():
        if not path.is_dir():
            raise RdftError(f"FT_FILE_PATH {path} is a file, not a folder; point FT_FILE_PATH at a folder")
        if not os.access(path, os.W_OK | os.X_OK):
            raise RdftError(f"FT_FILE_PATH {path} is not writable; fix its permissions or choose another folder")
        return None
    given = "ft_file_path" in settings.model_fields_set
    if given and not path.parent.is_dir():
        raise RdftError(
            f"FT_FILE_PATH {path} does not exist and neither does its parent {path.parent}; create it or fix the path"
        )
    try:
        path.mkdir(parents=not given)
    except OSError as error:
        raise RdftError(f"cannot create FT_FILE_PATH {path} ({error.strerror}); choose a writable folder") from None
    return f"created FT_FILE_PATH {path}"


def load_settings(env_file: str | Path | None = ".env") -> Settings:
    """Settings from the environment and `env_file`; bad values raise a one-line RdftError."""
    check_env_file(env_file)
    try:
        return Settings(_env_file=env_file)
    except ValidationError as error:
        raise RdftError(_one_line(error, env_file)) from None
    except SettingsError as error:  # a value pydantic-settings could not even decode
        raise RdftError(f"{error}; fix it in .env or the environment") from None


@functools.cache
def get_settings() -> Settings:
    return load_settings()
