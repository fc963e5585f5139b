"""Reading answers out of model responses: one rule for every benchmark.

Drop `<think>…</think>` (and anything before a lone `</think>`), then take the LAST JSON object
in the response that holds the answer key — fenced or bare, prose around it is fine. Nothing
outside JSON is guessed. AIME is the exception: the last `\\boxed{…}`. Runs in the eval env;
imports nothing from rdft.
"""

from __future__ import annotations

import json
import re

THINK = re.compile(r"<think>.*?</think>", re.S)


def responses_of(results: list) -> list[str]:
    """The responses lm-eval hands a task's process_results: one string, or k of them (repeats)."""
    return list(results[0]) if isinstance(results[0], list) else [results[0]]


def per_sample(scores: list[dict]) -> dict:
    """An item scored once per sample: one sample's scores as they are; k samples keep theirs
    under `per_sample`, with the first one's at the top (what the diagnostics read)."""
    return scores[0] if len(scores) == 1 else {**scores[0], "per_sample": scores}


def strip_think(text: str) -> str:
    text = THINK.sub("", text or "")
    # A reasoning model whose opening tag was part of the prompt emits only the closing one.
    return text.rsplit("</think>", 1)[-1] if "</think>" in text else text


def json_objects(text: str) -> list[dict]:
    """Every JSON object in `text`, in order of where it starts (nested ones included)."""
    decoder = json.JSONDecoder()
    found = []
    for match in re.finditer(r"\{", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            found.append(value)
    return found


def last_json_value(response: str, key: str):
    """The value of `key` in the last JSON object that has it, or None when there is none."""
    for obj in reversed(json_objects(strip_think(response))):
        if key in obj:
            return obj[key]
    return None


def last_boxed(response: str) -> str | None:
    """The content of the last \\boxed{…} (braces matched by depth), or None."""
    text = strip_think(response)
    start = text.rfind("\\boxed")
    while start != -1:
        brace = text.find("{", start)
        if brace != -1 and text[start + len("\\boxed") : brace].strip() == "":
            depth = 0
            for index in range(brace, len(text)):
                if text[index] == "{":
                    depth += 1
                elif text[index] == "}":
                    depth -= 1
                    if depth == 0:
                        return text[brace + 1 : index]
        start = text.rfind("\\boxed", 0, start)
    return None
