"""Model pools for data scripts: litellm calls with fail-over, retries, a response cache,
token/cost accounting and a thread pool.

    pool = strong_pool()                       # STRONG_MODEL_POOL, OPENAI_API_KEY, OPENAI_BASE_URL
    replies = pool.map(items, lambda item: [{"role": "user", "content": item["problem"]}])
    print(pool.usage)                          # calls, cache hits, retries, tokens, cost

A request goes to the pool's models in round-robin order (request i starts at model i mod n, so
independent quotas share the load); a model that keeps failing is left for the next one. 429, 5xx,
timeouts and connection errors are retried on the same model with exponential backoff first;
a malformed reply counts as a transient error. Replies are cached on disk, keyed by model,
messages and parameters, so a rerun of the same script costs nothing.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import random
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

# litellm fetches its price table from GitHub at import unless told otherwise; data envs are
# often offline, and the bundled table is what the cost accounting uses anyway.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

log = logging.getLogger("rdft_data")

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})


class PoolExhausted(RuntimeError):
    """Every model of the pool failed one request (after its retries)."""


@dataclass(frozen=True)
class Reply:
    content: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost: float
    cached: bool


@dataclass
class Usage:
    """What a pool has spent, counted across threads."""

    calls: int = 0  # successful API calls
    cache_hits: int = 0
    retries: int = 0
    failovers: int = 0  # a request moved on to the next model
    failures: int = 0  # requests every model failed
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    per_model: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def called(self, reply: Reply) -> None:
        with self._lock:
            self.calls += 1
            self.prompt_tokens += reply.prompt_tokens
            self.completion_tokens += reply.completion_tokens
            self.cost += reply.cost
            self.per_model[reply.model] = self.per_model.get(reply.model, 0) + 1

    def as_dict(self) -> dict:
        return {
            "calls": self.calls,
            "cache_hits": self.cache_hits,
            "retries": self.retries,
            "failovers": self.failovers,
            "failures": self.failures,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": round(self.cost, 6),
            "per_model": dict(self.per_model),
        }

    def __str__(self) -> str:
        return (
            f"{self.calls} calls ({self.cache_hits} from cache, {self.retries} retries, {self.failovers} fail-overs, "
            f"{self.failures} failed), {self.prompt_tokens}+{self.completion_tokens} tokens, ${self.cost:.4f}"
        )


class ResponseCache:
    """One JSON file per reply under `folder`, written atomically (safe across processes)."""

    def __init__(self, folder: Path):
        self.folder = folder

    @staticmethod
    def key(model: str, messages: Sequence[dict], params: dict) -> str:
        blob = json.dumps({"model": model, "messages": list(messages), "params": params}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        try:
            return json.loads(self._path(key).read_text())
        except (OSError, ValueError):
            return None

    def put(self, key: str, value: dict) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "w") as handle:
            json.dump(value, handle)
        os.replace(tmp, path)


def default_cache_dir() -> Path:
    return Path(os.environ.get("RDFT_LLM_CACHE") or Path.home() / ".cache" / "rdft" / "llm-cache")


def _transient(error: Exception) -> bool:
    """Worth retrying on the same model: rate limits, server errors, timeouts, lost connections."""
    import litellm

    transient = (
        litellm.Timeout, litellm.APIConnectionError, litellm.RateLimitError, litellm.InternalServerError,
        litellm.ServiceUnavailableError, litellm.BadGatewayError, MalformedReply,
    )  # fmt: skip
    if isinstance(error, transient):
        return True
    return isinstance(error, litellm.APIError) and error.status_code in RETRY_STATUS


class MalformedReply(ValueError):
    """The API answered, but not with a chat completion that has text."""


class ModelPool:
    """A pool of models behind one call: fail-over, retries, cache, usage accounting."""

    def __init__(
        self,
        models: Sequence[str],
        *,
        api_key: str | None = None,
        api_base: str | None = None,
        timeout: float = 120.0,
        max_retries: int = 3,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        workers: int = 8,
        cache: bool | Path = True,
        **params,
    ):
        if not models:
            raise ValueError("a model pool needs at least one model")
        self.models = list(models)
        self._api_key = api_key
        self.api_base = api_base
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.workers = workers
        self.params = params  # defaults for every call (temperature, max_tokens ...)
        self.cache = None if cache is False else ResponseCache(default_cache_dir() if cache is True else Path(cache))
        self.usage = Usage()
        _POOLS.append(self)

    def __repr__(self) -> str:  # never shows the key
        return f"ModelPool({self.models}, workers={self.workers}, timeout={self.timeout})"

    # --- one request ---------------------------------------------------------------------------
    def complete(
        self, messages: Sequence[dict], *, start: int = 0, check: Callable[[str], bool] | None = None, **params
    ) -> Reply:
        """A reply from the first model (from `start`, round-robin) that gives one that passes
        `check`; PoolExhausted when none does."""
        params = {**self.params, **params}
        n = len(self.models)
        order = [self.models[(start + i) % n] for i in range(n)]
        errors = []
        for position, model in enumerate(order):
            if position:
                self.usage.add(failovers=1)
            try:
                reply = self._from_model(model, messages, params)
            except Exception as error:  # every provider error moves on to the next model
                errors.append(f"{model}: {self._describe(error)}")
                continue
            if check is not None and not check(reply.content):
                errors.append(f"{model}: reply rejected by the check")
                continue
            return reply
        self.usage.add(failures=1)
        raise PoolExhausted("; ".join(errors))

    def _from_model(self, model: str, messages: Sequence[dict], params: dict) -> Reply:
        key = self.cache.key(model, messages, params) if self.cache else None
        if key and (hit := self.cache.get(key)) is not None:
            self.usage.add(cache_hits=1)
            return Reply(hit["content"], model, hit["prompt_tokens"], hit["completion_tokens"], 0.0, cached=True)
        for attempt in range(self.max_retries + 1):
            try:
                reply = self._call(model, messages, params)
            except Exception as error:
                if attempt < self.max_retries and _transient(error):
                    self.usage.add(retries=1)
                    delay = min(self.max_backoff, self.backoff * 2**attempt)
                    time.sleep(delay * random.uniform(0.5, 1.0))  # jitter: threads do not retry in lockstep
                    continue
                raise
            self.usage.called(reply)
            if key:
                self.cache.put(
                    key,
                    {
                        "content": reply.content,
                        "prompt_tokens": reply.prompt_tokens,
                        "completion_tokens": reply.completion_tokens,
                        "model": model,
                    },
                )
            return reply
        raise AssertionError("unreachable")

    def _call(self, model: str, messages: Sequence[dict], params: dict) -> Reply:
        import litellm

        litellm.suppress_debug_info = True  # errors are counted and logged here, once, without its banner
        extra = {}
        if self.api_base and "/" not in model:
            extra["custom_llm_provider"] = "openai"  # an OpenAI-compatible gateway serving plain model names
        response = litellm.completion(
            model=model,
            messages=list(messages),
            api_key=self._api_key,
            base_url=self.api_base,
            timeout=self.timeout,
            num_retries=0,  # retries are ours: litellm's would hide them from fail-over and accounting
            drop_params=True,
            **extra,
            **params,
        )
        choices = response.get("choices") or []
        content = choices[0].get("message", {}).get("content") if choices else None
        if not isinstance(content, str) or not content.strip():
            raise MalformedReply("no text in the reply")
        usage = response.get("usage") or {}
        cost = (response._hidden_params or {}).get("response_cost") or 0.0
        return Reply(
            content,
            model,
            usage.get("prompt_tokens") or 0,
            usage.get("completion_tokens") or 0,
            float(cost),
            cached=False,
        )

    @staticmethod
    def _describe(error: Exception) -> str:
        """The error's kind, never its message: provider messages can echo the key."""
        import openai

        status = f" ({error.status_code})" if isinstance(error, openai.APIStatusError) else ""
        return type(error).__name__ + status

    # --- many requests -------------------------------------------------------------------------
    def map(
        self,
        items: Iterable,
        to_messages: Callable[[object], Sequence[dict]],
        *,
        check: Callable[[str], bool] | None = None,
        desc: str = "LLM calls",
        progress: bool = True,
        **params,
    ) -> list[Reply | None]:
        """Replies in the order of `items` (None where every model failed), `workers` at a time."""
        items = list(items)
        results: list[Reply | None] = [None] * len(items)

        def one(index: int) -> None:
            try:
                results[index] = self.complete(to_messages(items[index]), start=index, check=check, **params)
            except PoolExhausted as error:
                log.warning("item %d: every model failed: %s", index, error)

        bar = _progress(len(items), desc) if progress else None
        with ThreadPoolExecutor(max_workers=self.workers) as executor:
            for future in [executor.submit(one, i) for i in range(len(items))]:
                future.result()
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()
        log.info("%s: %s", desc, self.usage)
        return results


_POOLS: list[ModelPool] = []  # every pool this process made: what they spent is written at exit


def _write_usage() -> None:
    """The summed usage of every pool, to RDFT_USAGE_FILE (rdft sets it for data scripts: the
    coder's debug run projects the full run's API cost from it)."""
    target = os.environ.get("RDFT_USAGE_FILE")
    if not target or not _POOLS:
        return
    total: dict = {}
    for pool in _POOLS:
        for key, value in pool.usage.as_dict().items():
            if key == "per_model":
                merged = total.setdefault(key, {})
                for model, count in value.items():
                    merged[model] = merged.get(model, 0) + count
            else:
                total[key] = total.get(key, 0) + value
    path = Path(target)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w") as out:
        json.dump(total, out)
    os.replace(temporary, path)


atexit.register(_write_usage)


def _progress(total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="call", disable=None)  # disable=None: silent when not a TTY


def _models_from_env(variable: str, default: list[str]) -> list[str]:
    raw = os.environ.get(variable)
    if not raw:
        return default
    try:
        value = json.loads(raw)
    except ValueError:
        value = [part.strip() for part in raw.split(",") if part.strip()]
    return [value] if isinstance(value, str) else list(value)


def pool_from_env(tier: str, **overrides) -> ModelPool:
    """The `strong` or `weak` pool as rdft passes it to data scripts: STRONG_MODEL_POOL /
    WEAK_MODEL_POOL (JSON lists), OPENAI_API_KEY, OPENAI_BASE_URL and FT_API_MAX_WORKERS."""
    defaults = {"strong": ["gpt-5", "gpt-5.1"], "weak": ["gpt-4o-mini"]}
    options = {
        "api_key": os.environ.get("OPENAI_API_KEY"),
        "api_base": os.environ.get("OPENAI_BASE_URL") or os.environ.get("OPENAI_API_BASE"),
        "workers": int(os.environ.get("FT_API_MAX_WORKERS") or 8),
        "timeout": float(os.environ.get("RDFT_LLM_TIMEOUT") or 120),
        **overrides,
    }
    return ModelPool(_models_from_env(f"{tier.upper()}_MODEL_POOL", defaults[tier]), **options)


def strong_pool(**overrides) -> ModelPool:
    """Chain-of-thought generation and reasoning."""
    return pool_from_env("strong", **overrides)


def weak_pool(**overrides) -> ModelPool:
    """Filtering and format conversion."""
    return pool_from_env("weak", **overrides)
