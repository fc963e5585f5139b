"""Samples in and out of data scripts: debug sampling, token lengths, atomic writers."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

DEBUG_SAMPLES = 100  # what `--debug` keeps, as RD-Agent's coder debug runs


def is_debug(argv: Sequence[str] | None = None) -> bool:
    """The script was started with `--debug` (the coder's proving run) or RDFT_DATA_DEBUG=1."""
    args = sys.argv[1:] if argv is None else argv
    return "--debug" in args or os.environ.get("RDFT_DATA_DEBUG") == "1"


def debug_sample(items: Sequence, n: int | None = None) -> list:
    """`items` as they are, or the first `n` (RDFT_DEBUG_SAMPLES, default 100) in debug mode."""
    if not is_debug():
        return list(items)
    limit = n or int(os.environ.get("RDFT_DEBUG_SAMPLES") or DEBUG_SAMPLES)
    return list(items[:limit])


class TokenCounter:
    """Token counts with a model's own tokenizer (its tokenizer.json), or whitespace-separated
    words when no model is given."""

    def __init__(self, model: str | Path | None = None):
        self.model = str(model) if model else None
        self._tokenizer = None
        if model is not None:
            from tokenizers import Tokenizer

            path = Path(model)
            file = path / "tokenizer.json" if path.is_dir() else path
            self._tokenizer = Tokenizer.from_file(str(file)) if file.exists() else Tokenizer.from_pretrained(str(model))

    @property
    def unit(self) -> str:
        return "tokens" if self._tokenizer is not None else "words"

    def count(self, text: str) -> int:
        if not text:
            return 0
        if self._tokenizer is None:
            return len(text.split())
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def count_many(self, texts: Sequence[str]) -> list[int]:
        if self._tokenizer is None:
            return [self.count(text) for text in texts]
        encoded = self._tokenizer.encode_batch([text or "" for text in texts], add_special_tokens=False)
        return [len(item.ids) for item in encoded]


def sample_text(sample: dict) -> str:
    """All the text a chat or alpaca sample trains on (a GRPO prompt row: its prompt)."""
    if "prompt" in sample and "messages" not in sample:
        prompt = sample["prompt"]
        return prompt if isinstance(prompt, str) else "\n".join(str(m.get("content") or "") for m in prompt)
    if "messages" in sample:
        return "\n".join(str(message.get("content") or "") for message in sample["messages"])
    return "\n".join(str(sample.get(key) or "") for key in ("system", "instruction", "input", "output"))


def filter_by_tokens(
    samples: Iterable[dict], counter: TokenCounter, max_tokens: int, text: Callable[[dict], str] = sample_text
) -> tuple[list[dict], int]:
    """(the samples whose text has at most `max_tokens` tokens, how many were dropped)."""
    samples = list(samples)
    lengths = counter.count_many([text(sample) for sample in samples])
    kept = [sample for sample, length in zip(samples, lengths, strict=True) if length <= max_tokens]
    return kept, len(samples) - len(kept)


def write_atomically(path: Path, write: Callable) -> Path:
    """`write(handle)` into a sibling file, then renamed over `path`: all or nothing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _check_chat(sample: dict, number: int) -> None:
    messages = sample.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ValueError(f"sample {number} has no `messages` list")
    for message in messages:
        if message.get("role") not in ("system", "user", "assistant") or not isinstance(message.get("content"), str):
            raise ValueError(f"sample {number}: each message needs a role (system/user/assistant) and text content")
    if messages[-1]["role"] != "assistant":
        raise ValueError(f"sample {number} does not end with an assistant message")


def write_chat_jsonl(samples: Iterable[dict], path: str | Path) -> Path:
    """`{"messages": [...]}` per line, validated, written atomically (a crash leaves the old file)."""
    samples = list(samples)
    for number, sample in enumerate(samples):
        _check_chat(sample, number)
    return write_atomically(
        path, lambda handle: handle.writelines(json.dumps(sample, ensure_ascii=False) + "\n" for sample in samples)
    )


def write_prompt_jsonl(samples: Iterable[dict], path: str | Path) -> Path:
    """GRPO's rows, `{"prompt": <the benchmark's prompt>, "doc": <the row its answers are scored
    against>}` per line, validated, written atomically."""
    samples = list(samples)
    for number, sample in enumerate(samples):
        if not isinstance(sample.get("prompt"), str) or not sample["prompt"].strip():
            raise ValueError(f"sample {number} needs a `prompt` string (the benchmark's doc_to_text)")
        if not isinstance(sample.get("doc"), dict):
            raise ValueError(f"sample {number} needs a `doc` object (the row its reward scores against)")
    return write_atomically(
        path, lambda handle: handle.writelines(json.dumps(sample, ensure_ascii=False) + "\n" for sample in samples)
    )


def write_alpaca_json(samples: Iterable[dict], path: str | Path) -> Path:
    """A JSON list of `{"instruction", "input", "output"[, "system"]}`, validated, atomically."""
    samples = list(samples)
    for number, sample in enumerate(samples):
        if not isinstance(sample.get("instruction"), str) or not isinstance(sample.get("output"), str):
            raise ValueError(f"sample {number} needs string `instruction` and `output`")
    return write_atomically(path, lambda handle: json.dump(samples, handle, ensure_ascii=False, indent=1))
