"""The leakage guard: training items that are items of the target benchmark's evaluation data
are dropped and counted, compared on normalised identifying fields."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

_SPACE = re.compile(r"\s+")


def normalise(value: object) -> str:
    """Case, Unicode form and whitespace do not make an item new."""
    text = unicodedata.normalize("NFKC", str(value)).casefold()
    return _SPACE.sub(" ", text).strip()


def item_key(item: dict, fields: list[str]) -> tuple[str, ...] | None:
    """The normalised values of `fields` (matched case-insensitively, since datasets spell
    `problem` and `Problem`), or None when the item lacks one."""
    lowered = {str(k).lower(): v for k, v in item.items()}
    values = []
    for field in fields:
        value = lowered.get(field.lower())
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        values.append(normalise(value))
    return tuple(values)


def drop_overlaps(train: Iterable[dict], evaluation: Iterable[dict], fields: list[str]) -> tuple[list[dict], int]:
    """(the training items that do not appear in `evaluation`, how many were dropped)."""
    banned = {key for key in (item_key(item, fields) for item in evaluation) if key is not None}
    kept, dropped = [], 0
    for item in train:
        if item_key(item, fields) in banned:
            dropped += 1
        else:
            kept.append(item)
    return kept, dropped


QUESTION_FIELDS = ("problem", "question", "query", "claim", "input", "prompt")


def question_texts(docs: Iterable[dict], min_chars: int = 12) -> set[str]:
    """The normalised question text of each evaluation doc (its first question-like field)."""
    texts = set()
    for doc in docs:
        lowered = {str(k).lower(): v for k, v in doc.items()}
        for field in QUESTION_FIELDS:
            value = lowered.get(field)
            if isinstance(value, str) and len(value.strip()) >= min_chars:
                texts.add(normalise(value))
                break
    return texts


def sample_prompt(sample: dict) -> str:
    """The text a chat or alpaca training sample shows the model (everything but its answer)."""
    if "messages" in sample:
        return " ".join(str(m.get("content", "")) for m in sample["messages"] if m.get("role") != "assistant")
    return " ".join(str(sample.get(key) or "") for key in ("system", "instruction", "input"))


def drop_evaluation_questions(samples: Iterable[dict], docs: Iterable[dict]) -> tuple[list[dict], int]:
    """(the training samples whose prompt contains no evaluation question, how many were dropped):
    the guard on what a data script wrote, whatever its format."""
    questions = question_texts(docs)
    kept, dropped = [], 0
    for sample in samples:
        prompt = normalise(sample_prompt(sample))
        if any(question in prompt for question in questions):
            dropped += 1
        else:
            kept.append(sample)
    return kept, dropped
