"""`rdft benchmarks add`: the user's own evaluation file as a benchmark, with the same guarantees
as the built-in ones — seeded validation and hidden test splits, a strict answer rule, a
scorer checked against hand-computed values, and the leakage guard.

    FT_FILE_PATH/benchmarks/<name>/benchmark.yaml   the registration (family `custom`, its spec)
    FT_FILE_PATH/benchmarks/<name>/spec.json        the spec, as the eval and data envs read it
    FT_FILE_PATH/benchmarks/<name>/items.jsonl      every item (prepared: scoring reads it here)
    FT_FILE_PATH/benchmarks/<name>/scorer.py        a user scorer, when given

Everything is checked before anything is written, and the folder is staged and renamed into
place, so a bad input leaves the registry as it was.
"""

from __future__ import annotations

import ast
import datetime
import json
import math
import os
import re
import shutil
import string
from pathlib import Path

import yaml

from rdft.errors import RdftError, did_you_mean
from rdft.evaluation.benchmarks import USER_SPEC, benchmarks, shipped, user_benchmarks_dir
from rdft.evaluation.items import ITEMS, MANIFEST, PreparedItems
from rdft.files import clear_leftovers, removal_name, staging_dir
from rdft.tables import read_rows

METRICS = ("exact_match", "accuracy", "f1", "numeric_tolerance", "json_field_match")
METRIC_TEXT = {
    "exact_match": "the answer equals the gold one (whitespace trimmed)",
    "accuracy": "the answer equals the gold label (case and spacing ignored)",
    "f1": "word-level F1 between the answer and the gold one",
    "numeric_tolerance": "the answer is a number within {tolerance:g}·max(1, |gold|) of the gold one",
    "json_field_match": "share of the gold JSON object's fields the answer object matches",
}
NAME = re.compile(r"^[a-z][a-z0-9_]{1,40}$")
SPEC_FILE = "spec.json"


def template_fields(template: str) -> list[str]:
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as error:
        raise RdftError(f"--prompt-template is not a valid template ({error}); write fields as {{name}}") from None
    fields = [field for _, field, _, _ in parsed if field is not None]
    if not fields:
        raise RdftError("--prompt-template names no doc field; write fields as {name}, e.g. 'Review: {text}'")
    bad = [f for f in fields if not re.fullmatch(r"\w+", f)]
    if bad:
        raise RdftError(f"--prompt-template field {{{bad[0]}}} is not a plain doc field name; use {{name}}")
    return list(dict.fromkeys(fields))


def _number(value) -> float | None:
    # The scorer's own reading (evaluation/tasks/custom/utils.py, which runs in the eval env and
    # imports nothing from rdft): a gold answer it could not read would score every answer 0.
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    match = re.fullmatch(r"\s*([-+]?(?:\d[\d,]*\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*%?\s*", str(value))
    return float(match.group(1).replace(",", "")) if match else None


def _object(value) -> dict | None:
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return None
    return value if isinstance(value, dict) and value else None


def check_scorer(path: Path) -> None:
    """A user scorer is a Python file with `score(doc, response)`; checked without running it
    (it runs in the eval env)."""
    if not path.is_file():
        raise RdftError(f"--scorer {path} does not exist; give a Python file defining score(doc, response)")
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (SyntaxError, UnicodeDecodeError) as error:
        raise RdftError(f"--scorer {path} is not valid Python ({error}); fix the file") from None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "score" and len(node.args.args) == 2:
            return
    raise RdftError(f"--scorer {path} defines no score(doc, response) function; add one returning a dict")


SCORER_PROBE = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("rdft_user_scorer", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
result = module.score(json.loads(sys.argv[2]), sys.argv[3])
print(json.dumps({"type": type(result).__name__, "keys": sorted(map(str, result)) if isinstance(result, dict) else [],
                  "value": result.get(sys.argv[4]) if isinstance(result, dict) else None}, default=repr))
"""


def probe_scorer(settings, path: Path, doc: dict, response: str, key: str) -> None:
    """Run the user's scorer once, in the eval env where it will run, on the first item and its
    own gold answer: a scorer that fails, returns no dict, or lacks `key` is refused now, not
    averaged as 0.0 over every answer later."""
    from rdft.envs import EnvManager

    env = EnvManager(settings).ensure("eval")
    ran = env.run(["python", "-c", SCORER_PROBE, str(path), json.dumps(doc), response, key], echo=False, timeout=120)
    last = (ran.tail.strip().splitlines() or ["no output"])[-1]
    if not ran.ok or not last.startswith("{"):
        raise RdftError(f"--scorer {path} fails on item 1 ({last[:200]}); fix it")
    found = json.loads(last)
    if found["type"] != "dict":
        raise RdftError(f"--scorer {path} returns a {found['type']}, not a dict; return a dict of numbers")
    if key not in found["keys"]:
        raise RdftError(
            f"--scorer {path} returns no {key!r} (its keys: {', '.join(found['keys']) or 'none'}); "
            f"return it or give --scorer-key one of them"
        )
    value = found["value"]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RdftError(f"--scorer {path} returns {key} = {value!r}, not a number; return a number in [0, 1]")


def add_benchmark(
    settings,
    name: str,
    *,
    docs: Path,
    answer_field: str,
    prompt_field: str | None = None,
    prompt_template: str | None = None,
    metric: str | None = None,
    answer_key: str | None = None,
    tolerance: float | None = None,
    scorer: Path | None = None,
    scorer_key: str = "score",
    description: str | None = None,
):
    """Register benchmark `name` from the user's docs; returns its table entry."""
    if not NAME.match(name):
        raise RdftError(
            f"benchmark name {name!r} must be 2-41 lower-case letters, digits or _ (starting with a letter)"
        )
    if name in shipped():
        raise RdftError(f"{name} is a built-in benchmark; choose another name")
    folder = user_benchmarks_dir() / name
    if (folder / USER_SPEC).is_file():
        raise RdftError(f"benchmark {name} exists; remove it first (`rdft benchmarks remove {name}`)")
    if folder.exists():
        raise RdftError(f"{folder} holds prepared items of another benchmark; choose another name")
    if bool(prompt_field) == bool(prompt_template):
        raise RdftError("give the prompt as --prompt-field FIELD or --prompt-template 'TEXT {field}' (one of them)")
    if scorer is None:
        if metric is None:
            raise RdftError(f"give --metric ({', '.join(METRICS)}) or --scorer FILE.py")
        if metric not in METRICS:
            raise RdftError(
                f"unknown metric {metric!r}; {did_you_mean(metric, list(METRICS))}use one of {', '.join(METRICS)}"
            )
    elif metric is not None:
        raise RdftError("--scorer replaces --metric; give one of them")
    if tolerance is not None and metric != "numeric_tolerance":
        raise RdftError("--tolerance is for --metric numeric_tolerance only")
    if tolerance is not None and not 0 <= tolerance < math.inf:  # NaN fails every comparison: refused too
        raise RdftError("--tolerance must be a finite number, 0 or more (a share of max(1, |gold|))")
    if scorer is not None:
        check_scorer(scorer)
    fields = template_fields(prompt_template) if prompt_template else [prompt_field]
    docs = Path(docs).expanduser()
    rows = read_rows(docs, "--docs", settings)
    if len(rows) < 2:
        raise RdftError(
            f"--docs {docs} holds {len(rows)} item(s); a benchmark needs at least 2 (a validation and a test split)"
        )
    seen: dict[str, int] = {}
    for number, row in enumerate(rows, 1):
        if row.get("id") not in (None, ""):  # predictions name their item by id: two items, one id
            first = seen.setdefault(str(row["id"]), number)
            if first != number:
                raise RdftError(
                    f"--docs items {first} and {number} share the id {row['id']!r}; give every item its own id "
                    "(predictions name their item by it)"
                )
        for field in [*fields, answer_field]:
            if row.get(field) in (None, ""):
                raise RdftError(
                    f"--docs item {number} has no {field!r}; every item needs "
                    f"{', '.join(repr(f) for f in dict.fromkeys([*fields, answer_field]))}"
                )
        if metric == "numeric_tolerance" and _number(row[answer_field]) is None:
            raise RdftError(
                f"--docs item {number}: {answer_field} {row[answer_field]!r} is not a number, "
                "which --metric numeric_tolerance needs"
            )
        if metric == "json_field_match" and _object(row[answer_field]) is None:
            raise RdftError(
                f"--docs item {number}: {answer_field} is not a JSON object, "
                "which --metric json_field_match compares field by field"
            )
    if scorer is not None:  # on the first item with its own gold answer, as the rule reads it
        gold = rows[0][answer_field]
        probe_scorer(
            settings,
            scorer,
            rows[0],
            json.dumps({answer_key: gold}) if answer_key else f"\\boxed{{{gold}}}",
            scorer_key,
        )
    spec = {
        "prompt_field": prompt_field, "prompt_template": prompt_template, "answer_field": answer_field,
        "answer_key": answer_key, "metric": metric or "scorer", "fields": [*fields, answer_field],
    }  # fmt: skip
    if metric == "numeric_tolerance":
        spec["tolerance"] = 1e-6 if tolerance is None else tolerance
    if scorer is not None:
        spec.update(scorer=str(folder / "scorer.py"), scorer_key=scorer_key)
    primary_name = scorer_key if scorer is not None else metric
    rule = f'the last JSON object with "{answer_key}"' if answer_key else "the last \\boxed{}"
    if metric == "json_field_match":
        rule = f"the last JSON object{f' under {answer_key!r}' if answer_key else ''}"
    what = (
        f"{scorer.name}'s {scorer_key}"
        if scorer is not None
        else METRIC_TEXT[metric].format(tolerance=spec.get("tolerance", 0))
    )
    entry = {
        "family": "custom",
        "repo": f"yours: {docs.resolve()}",
        "data": str(folder / ITEMS),
        "n": len(rows),
        "description": description,
        "primary": {"metric": primary_name, "direction": "higher",
                    "description": f"{what}; the answer is {rule}, unreadable counts as wrong"},
        "custom": spec,
    }  # fmt: skip
    root = user_benchmarks_dir()
    root.mkdir(parents=True, exist_ok=True)
    clear_leftovers(root)  # what a killed add or remove left
    staging = staging_dir(root, name)
    try:
        (staging / ITEMS).write_text(
            "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8"
        )
        (staging / USER_SPEC).write_text(yaml.safe_dump(entry, sort_keys=False, allow_unicode=True))
        (staging / SPEC_FILE).write_text(json.dumps(spec, indent=1))
        if scorer is not None:
            shutil.copy2(scorer, staging / "scorer.py")
        manifest = PreparedItems(
            benchmark=name, source=str(docs.resolve()), n=len(rows), prepared=datetime.datetime.now(datetime.UTC)
        )
        (staging / MANIFEST).write_text(manifest.model_dump_json(indent=1))
        os.rename(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    benchmarks.cache_clear()
    return benchmarks()[name]


def remove_benchmark(name: str) -> Path:
    if name in shipped():
        raise RdftError(f"{name} is a built-in benchmark; only benchmarks you added can be removed")
    folder = user_benchmarks_dir() / name
    clear_leftovers(folder.parent)  # what a killed add or remove left
    if not (folder / USER_SPEC).is_file():
        mine = [n for n, b in benchmarks().items() if b.custom]
        raise RdftError(f"no benchmark {name!r} of yours; {did_you_mean(name, mine)}see `rdft benchmarks list`")
    doomed = removal_name(folder)
    os.rename(folder, doomed)  # gone from the table at once, even if the delete below is interrupted
    shutil.rmtree(doomed, ignore_errors=True)
    benchmarks.cache_clear()
    return folder


def spec_path(name: str) -> Path | None:
    """The spec file of a user benchmark (the data env's scorer reads it), else None."""
    path = user_benchmarks_dir() / name / SPEC_FILE
    return path if path.is_file() else None
