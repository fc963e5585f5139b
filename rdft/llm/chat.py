"""The agent's chat model, through litellm, configured by RD-Agent's settings:

CHAT_MODEL, CHAT_TEMPERATURE, CHAT_STREAM, CHAT_FREQUENCY_PENALTY/CHAT_PRESENCE_PENALTY,
OPENAI_API_KEY/OPENAI_API_BASE, MAX_RETRY and RETRY_WAIT_SECONDS (transient errors),
DUMP_CHAT_CACHE/USE_CHAT_CACHE (a persistent reply cache under FT_FILE_PATH/chat-cache),
REASONING_THINK_RM (drop <think>…</think>) and LOG_LLM_CHAT_CONTENT (whether the chat log keeps
the text or only sizes and timings).

`structured(messages, Model)` asks for JSON, validates it with the pydantic model and re-asks
with the validation error, RDFT_LLM_REASK times at most.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from rdft.errors import RdftError
from rdft.files import write_atomic
from rdft.settings import Settings

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no price-table download at import

Schema = TypeVar("Schema", bound=BaseModel)
THINK = re.compile(r"<think>.*?</think>", re.S)
FENCED = re.compile(r"```(?:json)?\s*\n(.*?)\n```", re.S)


class LLMUnavailable(RdftError):
    """The chat model could not be reached or kept failing after the retries."""


class InvalidReply(RdftError):
    """The chat model's replies never passed validation."""


def strip_think(text: str) -> str:
    text = THINK.sub("", text)
    return text.rsplit("</think>", 1)[-1].strip() if "</think>" in text else text.strip()


def parse_json(text: str) -> object:
    """The reply's JSON: a fenced block if there is one, else the outermost {...}."""
    fenced = FENCED.findall(text)
    candidate = fenced[-1] if fenced else text[text.find("{") : text.rfind("}") + 1]
    return json.loads(candidate)


class ChatLLM:
    def __init__(self, settings: Settings, chat_log: Callable[[dict], None] | None = None):
        self.settings = settings
        self.model = settings.chat_model
        self.chat_log = chat_log  # receives one record per exchange (text only if LOG_LLM_CHAT_CONTENT)
        self.cache_dir = settings.ft_file_path.expanduser().resolve() / "chat-cache"
        self.calls = 0

    def __repr__(self) -> str:
        return f"ChatLLM({self.model!r})"

    # --- cache ---------------------------------------------------------------------------------
    def _params(self) -> dict:
        s = self.settings
        params = {
            "temperature": s.chat_temperature,
            "frequency_penalty": s.chat_frequency_penalty,
            "presence_penalty": s.chat_presence_penalty,
        }
        return {k: v for k, v in params.items() if v is not None}

    def _cache_path(self, messages: list[dict]) -> Path:
        blob = json.dumps({"model": self.model, "messages": messages, "params": self._params()}, sort_keys=True)
        key = hashlib.sha256(blob.encode()).hexdigest()
        return self.cache_dir / key[:2] / f"{key}.json"

    def _cached(self, messages: list[dict]) -> str | None:
        if not self.settings.use_chat_cache:
            return None
        try:
            return json.loads(self._cache_path(messages).read_text())["content"]
        except (OSError, ValueError, KeyError):
            return None

    def _store(self, messages: list[dict], content: str) -> None:
        if not self.settings.dump_chat_cache:
            return
        write_atomic(self._cache_path(messages), json.dumps({"model": self.model, "content": content}))

    # --- calls ---------------------------------------------------------------------------------
    def complete(self, messages: list[dict], *, purpose: str = "chat") -> str:
        """The reply's text (<think> dropped when REASONING_THINK_RM)."""
        start = time.monotonic()
        content = self._cached(messages)
        cached = content is not None
        if content is None:
            content = self._call_with_retries(messages)
            self._store(messages, content)
        if self.settings.reasoning_think_rm:
            content = strip_think(content)
        record = {
            "purpose": purpose,
            "model": self.model,
            "cached": cached,
            "seconds": round(time.monotonic() - start, 3),
            "reply_chars": len(content),
            "prompt_chars": sum(len(str(m.get("content", ""))) for m in messages),
        }
        if self.settings.log_llm_chat_content:
            record.update(messages=messages, reply=content)
        if self.chat_log is not None:
            self.chat_log(record)
        return content

    def _call_with_retries(self, messages: list[dict]) -> str:
        import litellm
        import openai

        litellm.suppress_debug_info = True
        s = self.settings
        transient = (
            litellm.Timeout,
            litellm.APIConnectionError,
            litellm.RateLimitError,
            litellm.InternalServerError,
            litellm.ServiceUnavailableError,
            litellm.BadGatewayError,
        )
        last = "no attempt"
        for attempt in range(s.max_retry + 1):
            try:
                self.calls += 1
                return self._call(litellm, messages)
            except transient as error:
                last = type(error).__name__  # never the message: providers echo parts of the key
            except openai.OpenAIError as error:  # every litellm error: auth, bad request, unknown model
                raise LLMUnavailable(
                    f"the chat model {self.model} refused the request ({type(error).__name__}); check CHAT_MODEL, "
                    "OPENAI_API_KEY and OPENAI_API_BASE"
                ) from None
            if attempt < s.max_retry:
                time.sleep(s.retry_wait_seconds * (2**attempt if attempt < 6 else 64))
        raise LLMUnavailable(f"the chat model {self.model} kept failing ({last}) after {s.max_retry + 1} tries")

    def _call(self, litellm, messages: list[dict]) -> str:
        s = self.settings
        extra = {}
        if s.openai_api_base and "/" not in self.model:
            extra["custom_llm_provider"] = "openai"  # an OpenAI-compatible endpoint serving a plain name
        response = litellm.completion(
            model=self.model,
            messages=messages,
            api_key=s.openai_api_key.get_secret_value() if s.openai_api_key else None,
            base_url=s.openai_api_base,
            stream=s.chat_stream,
            num_retries=0,
            drop_params=True,
            timeout=600,
            **self._params(),
            **extra,
        )
        if s.chat_stream:
            parts = [chunk.choices[0].delta.content or "" for chunk in response if chunk.choices]
            content = "".join(parts)
        else:
            content = response.choices[0].message.content or ""
        if not content.strip():
            raise litellm.InternalServerError("empty reply", llm_provider="rdft", model=self.model)
        return content

    def structured(self, messages: list[dict], schema: type[Schema], *, purpose: str) -> Schema:
        """A reply validated as `schema`; invalid replies are re-asked with the error."""
        conversation = structured_messages(messages, schema)
        error = "no reply"
        for _ in range(self.settings.rdft_llm_reask + 1):
            reply = self.complete(conversation, purpose=purpose)
            try:
                return schema.model_validate(parse_json(reply))
            except (ValueError, ValidationError) as problem:
                error = str(problem).splitlines()[0] if isinstance(problem, json.JSONDecodeError) else str(problem)
            conversation = [
                *conversation,
                {"role": "assistant", "content": reply},
                {
                    "role": "user",
                    "content": (f"That reply is not valid: {error}\nReply again with the corrected JSON object only."),
                },
            ]
        raise InvalidReply(f"the chat model's {purpose} reply never validated: {error.splitlines()[0]}")


def structured_messages(messages: list[dict], schema: type[BaseModel]) -> list[dict]:
    """`messages` and the request for one JSON object of `schema`: what a structured call sends
    first (and what `rdft prompt` shows)."""
    shape = json.dumps(schema.model_json_schema(), indent=1)
    return [
        *messages,
        {
            "role": "user",
            "content": f"Reply with one JSON object in a ```json block that matches this JSON schema:\n{shape}",
        },
    ]
