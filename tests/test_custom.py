"""Your own data and target: `rdft datasets add`, `rdft benchmarks add`, then the real loop on them,
the scorer against hand-computed values, the leakage guard, and every bad input in one line."""

import csv
import json
import random
import subprocess
from pathlib import Path

import pytest
from conftest import CliResult, clean_environ, one_line_error

WORDS = {"positive": ["great", "lovely", "superb", "delightful", "wonderful"],
         "negative": ["awful", "dreadful", "terrible", "boring", "horrible"]}  # fmt: skip
TEMPLATE = "Review: {text}\nIs the review positive or negative?"
LABEL_ACCURACY = ("--answer-field", "label", "--answer-key", "label", "--metric", "accuracy")  # the sentiment rule


def review(rng: random.Random, label: str, index: int) -> dict:
    filler = " ".join(rng.choice(["the", "film", "plot", "cast", "music", "ending"]) for _ in range(4))
    return {"id": f"r{index}", "text": f"{filler} was {rng.choice(WORDS[label])} number {index}", "label": label}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture
def user(tmp_path, shared_dirs):
    """An FT_FILE_PATH of this test's own (the registries live there), sharing the built envs and
    the tiny model; `call` runs the real CLI in it."""
    ft = tmp_path / "ft"
    ft.mkdir()
    (ft / "models").symlink_to(Path(shared_dirs["FT_FILE_PATH"]) / "models", target_is_directory=True)
    env = clean_environ(**{**shared_dirs, "FT_FILE_PATH": str(ft)})

    def call(*args, timeout: int = 900) -> CliResult:
        proc = subprocess.run(
            ["rdft", *map(str, args)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout
        )
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    call.ft = ft
    return call


def registry_state(ft: Path) -> list[str]:
    return sorted(str(p.relative_to(ft)) for p in ft.rglob("*") if "models" not in p.parts and ".locks" not in p.parts)


def test_own_dataset_and_benchmark_through_the_loop(user, tmp_path, data_env, eval_env, train_env):
    rng = random.Random(0)
    evaluation = [review(rng, label, i) for i, label in enumerate(["positive", "negative"] * 6)]
    train = [review(rng, label, 100 + i) for i, label in enumerate(["positive", "negative"] * 40)]
    planted = dict(evaluation[3], id="copy")  # a copy of an evaluation item: the guard must drop it
    write_jsonl(tmp_path / "eval.jsonl", evaluation)
    write_jsonl(tmp_path / "train.jsonl", train)
    write_jsonl(tmp_path / "train_with_copy.jsonl", [*train, planted])

    added = user("datasets", "add", "reviews", "--source", tmp_path / "train.jsonl", "--license", "CC0")
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == "reviews: 80 rows (columns); columns id (string), text (string), label (string)"
    listed = user("datasets", "list").stdout
    mine = listed.split("your datasets")[1]
    assert "reviews" in mine and "reviews" not in listed.split("your datasets")[0]
    info = user("datasets", "info", "reviews").stdout
    assert "columns, 80 rows" in info and f"local: {tmp_path / 'train.jsonl'}" in info
    # CSV, and parquet (read in the data env), and a folder of them: the same rows and schema.
    with open(tmp_path / "train.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "text", "label"])
        writer.writeheader()
        writer.writerows(train[:10])
    folder = tmp_path / "parts"
    folder.mkdir()
    to_parquet = "import sys, pandas; pandas.read_json(sys.argv[1], lines=True).to_parquet(sys.argv[2])"
    assert data_env.run(["python", "-c", to_parquet, str(tmp_path / "train.jsonl"), str(folder / "a.parquet")]).ok
    write_jsonl(folder / "b.jsonl", train[:5])
    assert user("datasets", "add", "reviews_csv", "--source", tmp_path / "train.csv").stdout.strip() == (
        "reviews_csv: 10 rows (columns); columns id (string), text (string), label (string)"
    )
    both = user("datasets", "add", "reviews_parts", "--source", folder)
    assert both.stdout.strip() == "reviews_parts: 85 rows (columns); columns id (string), text (string), label (string)"

    bench = user(
        "benchmarks",
        "add",
        "sentiment",
        "--docs",
        tmp_path / "eval.jsonl",
        "--prompt-template",
        TEMPLATE,
        *LABEL_ACCURACY,
    )
    assert bench.returncode == 0, bench.stderr
    assert bench.stdout.startswith("sentiment: 12 items, 6 validation / 6 test; primary accuracy: ")
    assert "sentiment" in user("benchmarks", "list").stdout.split("your benchmarks")[1]
    # The leakage guard knows the new benchmark: a planted copy of one of its items is dropped.
    copied = tmp_path / "train_with_copy.jsonl"
    checked = user("datasets", "check-leakage", "--benchmark", "sentiment", copied, "--json")
    assert checked.returncode == 0, checked.stderr
    dropped = {"exact": 1, "identifier": 0, "molecule": 0, "ngram": 0}
    assert json.loads(checked.stdout) == {"rows": 81, "kept": 80, "dropped": dropped}

    run = user(
        "run",
        "--base-model",
        "tiny:llama",
        "--benchmark",
        "sentiment",
        "--dataset",
        "reviews",
        "--loop-n",
        "1",
        "--max-gen-toks",
        "32",
        "--samples",
        "1",
        "--target",
        "Tell positive from negative film reviews",
        timeout=1500,
    )
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    log = Path(run.stdout.split("log: ")[1].split()[0])
    validation = json.loads((log / "Loop_0" / "running" / "validation" / "summary.json").read_text())
    assert validation["benchmark"] == "sentiment" and validation["n"] == 6
    assert validation["primary"]["name"] == "accuracy"

    # The trained model is what was scored: lm-eval's seeds are fixed, so the base model would answer
    # as it did when the run scored it, and most answers differ.
    def answers(folder: Path) -> list[str]:
        return [json.loads(line)["response"] for line in (folder / "predictions.jsonl").read_text().splitlines()]

    tuned, base = answers(log / "Loop_0" / "running" / "validation"), answers(log / "baseline" / "validation")
    assert len(tuned) == len(base) == 6 and sum(a != b for a, b in zip(tuned, base, strict=True)) >= 3
    data = json.loads((log / "Loop_0" / "running" / "data.json").read_text())
    assert data["samples"] == 80 and data["dropped_leakage"] == 0
    # The feedback shows the items without full marks, with the benchmark's own question and gold
    # fields (issue 27 item 7: they were [] for a custom metric).
    validation_dir = log / "Loop_0" / "running" / "validation"
    scored = [json.loads(line) for line in (validation_dir / "items.jsonl").read_text().splitlines()]
    docs = [json.loads(line) for line in next(validation_dir.glob("docs.*.jsonl")).read_text().splitlines()]
    assert [item["full_marks"] for item in scored] == [item["score"] == 1 for item in scored]  # the scored value
    wrong = json.loads((log / "Loop_0" / "feedback" / "feedback.json").read_text())["wrong_samples"]
    expected = [(doc["text"], doc["label"]) for doc, item in zip(docs, scored, strict=True) if not item["full_marks"]]
    assert [(w["question"], w["gold"]) for w in wrong] == expected
    scenario = json.loads((log / "scenario.json").read_text())
    assert scenario["target"] == "Tell positive from negative film reviews"
    assert "The user's own benchmark (12 items)" in scenario["description"]

    # Bad inputs: one line, non-zero, the registry as it was.
    before = registry_state(user.ft)
    (tmp_path / "noanswer.jsonl").write_text(json.dumps({"text": "x"}) + "\n" + json.dumps({"text": "y"}) + "\n")
    (tmp_path / "one.jsonl").write_text(json.dumps({"text": "x", "label": "a"}) + "\n")
    (tmp_path / "broken.jsonl").write_text('{"text": "x", "label": "a"}\n{oops\n')
    (tmp_path / "noscore.py").write_text("def grade(doc, response):\n    return {}\n")
    (tmp_path / "wrongkey.py").write_text("def score(doc, response):\n    return {'other': 1}\n")
    (tmp_path / "ragged.csv").write_text("text,label\nhello,pos\nbad,neg,extra\n")
    (tmp_path / "notalist.jsonl").write_text(json.dumps({"messages": "hi"}) + "\n")
    (tmp_path / "robot.jsonl").write_text(json.dumps({"messages": [{"role": "robot", "content": "x"}]}) + "\n")
    (tmp_path / "dup.jsonl").write_text("".join(json.dumps({"id": "same", "text": f"t{i}", "label": "a"}) + "\n"
                                                for i in range(3)))  # fmt: skip
    docs = ["--docs", tmp_path / "eval.jsonl", "--prompt-field", "text", "--answer-field", "label"]
    cases = {
        ("benchmarks", "add", "sentiment", *docs, "--metric", "accuracy"): "benchmark sentiment exists; remove it",
        ("benchmarks", "add", "aime25", *docs, "--metric", "accuracy"): "aime25 is a built-in benchmark",
        ("benchmarks", "add", "other", *docs, "--metric", "acuracy"): "metric 'acuracy'; did you mean 'accuracy'?",
        ("benchmarks", "add", "other", *docs): "give --metric",
        ("benchmarks", "add", "other", "--docs", tmp_path / "noanswer.jsonl", "--prompt-field", "text",
         "--answer-field", "label", "--metric", "accuracy"): "--docs item 1 has no 'label'",
        ("benchmarks", "add", "other", "--docs", tmp_path / "one.jsonl", "--prompt-field", "text",
         "--answer-field", "label", "--metric", "accuracy"): "holds 1 item(s); a benchmark needs at least 2",
        ("benchmarks", "add", "other", "--docs", tmp_path / "broken.jsonl", "--prompt-field", "text",
         "--answer-field", "label", "--metric", "accuracy"): "broken.jsonl:2 is not valid JSON",
        ("benchmarks", "add", "other", *docs, "--metric", "numeric_tolerance"): "'positive' is not a number",
        ("benchmarks", "add", "other", *docs, "--metric", "json_field_match"): "is not a JSON object",
        ("benchmarks", "add", "other", "--docs", tmp_path / "eval.jsonl", "--prompt-template", "Say {}",
         "--answer-field", "label", "--metric", "accuracy"): "is not a plain doc field name",
        ("benchmarks", "add", "other", *docs, "--scorer", tmp_path / "noscore.py"): "defines no score(doc, response)",
        # A scorer whose dict lacks the averaged key would score every answer 0.0: refused at add.
        ("benchmarks", "add", "other", *docs, "--scorer", tmp_path / "wrongkey.py"):
            "returns no 'score' (its keys: other)",
        # Two items with one id: predictions name their item by id, so right answers would score 0.
        ("benchmarks", "add", "other", "--docs", tmp_path / "dup.jsonl", "--prompt-field", "text",
         "--answer-field", "label", "--metric", "accuracy"): "--docs items 1 and 2 share the id 'same'",
        ("benchmarks", "add", "other", *docs, "--metric", "numeric_tolerance", "--tolerance", "nan"):
            "--tolerance must be a finite number, 0 or more",
        ("benchmarks", "add", "other", "--docs", tmp_path / "missing.jsonl", "--prompt-field", "text",
         "--answer-field", "label", "--metric", "accuracy"): "missing.jsonl does not exist",
        ("benchmarks", "remove", "aime25"): "aime25 is a built-in benchmark",
        ("benchmarks", "remove", "sentimnt"): "no benchmark 'sentimnt' of yours; did you mean 'sentiment'?",
        ("datasets", "add", "reviews", "--source", tmp_path / "train.jsonl"): "dataset reviews exists; remove it first",
        ("datasets", "add", "deepscaler", "--source", tmp_path / "train.jsonl"): "deepscaler is a built-in dataset",
        ("datasets", "add", "new", "--source", tmp_path / "broken.jsonl"): "broken.jsonl:2 is not valid JSON",
        ("datasets", "add", "Bad Name", "--source", tmp_path / "train.jsonl"): "must be 2-41 lower-case letters",
        ("datasets", "remove", "deepscaler"): "deepscaler is a built-in dataset",
        # Malformed rows are refused where they are, not registered as columns that train on nothing.
        ("datasets", "add", "new", "--source", tmp_path / "ragged.csv"): "ragged.csv:3 has more fields than its header",
        ("datasets", "add", "new", "--source", tmp_path / "notalist.jsonl"): "row 1: messages is not a list",
        ("datasets", "add", "new", "--source", tmp_path / "robot.jsonl"): "row 1: unknown role 'robot'",
        ("run", "--base-model", "tiny:llama", "--target", "be good at reviews"): "rdft benchmarks add NAME --docs",
    }  # fmt: skip
    for args, message in cases.items():
        result = user(*args)
        assert message in one_line_error(result), (args, result.stderr)
        assert registry_state(user.ft) == before, args

    assert user("benchmarks", "remove", "sentiment").returncode == 0
    assert user("datasets", "remove", "reviews").returncode == 0
    assert "sentiment" not in user("benchmarks", "list").stdout
    assert not (user.ft / "benchmarks" / "sentiment").exists() and not (user.ft / "datasets" / "reviews").exists()


def score(user, tmp_path: Path, name: str, items: list[dict], responses: list[str], *options) -> dict:
    write_jsonl(tmp_path / f"{name}.jsonl", items)
    added = user("benchmarks", "add", name, "--docs", tmp_path / f"{name}.jsonl", "--prompt-field", "q", *options)
    assert added.returncode == 0, added.stderr
    predictions = write_jsonl(
        tmp_path / f"{name}.pred.jsonl", [{"doc_id": i, "response": r} for i, r in enumerate(responses)]
    )
    result = user("score", "--benchmark", name, "--docs", tmp_path / f"{name}.jsonl", "--predictions", predictions)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_each_metric_against_hand_computed_values(user, tmp_path, eval_env):
    # accuracy on labels in JSON: case and spacing ignored; no JSON object = unreadable = wrong.
    labels = [{"q": f"q{i}", "label": label} for i, label in enumerate(["pos", "neg", "pos", "neg"])]
    summary = score(
        user,
        tmp_path,
        "labels",
        labels,
        ['{"label": "POS"}', 'I think {"label": " neg "}', "pos", '{"label": "pos"}'],
        *LABEL_ACCURACY,
    )
    assert summary["primary"]["value"] == pytest.approx(2 / 4)  # items 1 and 2 right; 3 unreadable; 4 wrong
    assert summary["metrics"]["n_unreadable"] == 1

    # exact match on the last \boxed{}: case counts.
    exact = [{"q": "a", "gold": "Paris"}, {"q": "b", "gold": "Rome"}]
    summary = score(
        user,
        tmp_path,
        "capitals",
        exact,
        ["\\boxed{Lyon} then \\boxed{Paris}", "\\boxed{rome}"],
        "--answer-field",
        "gold",
        "--metric",
        "exact_match",
    )
    assert summary["primary"]["value"] == pytest.approx(1 / 2)

    # f1: SQuAD words. "the big red dog" vs gold "a red dog barks": words {big, red, dog} vs {red, dog, barks}:
    # 2 common; precision 2/3, recall 2/3 → F1 2/3. Second item exact → 1. Mean 5/6.
    spans = [{"q": "a", "gold": "a red dog barks"}, {"q": "b", "gold": "blue"}]
    summary = score(
        user,
        tmp_path,
        "spans",
        spans,
        ['{"a": "the big red dog"}', '{"a": "Blue."}'],
        "--answer-field",
        "gold",
        "--answer-key",
        "a",
        "--metric",
        "f1",
    )
    assert summary["primary"]["value"] == pytest.approx((2 / 3 + 1) / 2)

    # numeric tolerance 0.01 of max(1, |gold|): 101 vs 100 passes (1 ≤ 1), 0.02 vs 0 fails (0.02 > 0.01),
    # "1,000.5" vs 1000 passes (0.5 ≤ 10), "about 3" is unreadable, 0.005 vs 0 passes only through
    # the floor of 1 (0.005 ≤ 0.01, where 0.01·|0| would allow nothing).
    numbers = [
        {"q": "a", "n": 100},
        {"q": "b", "n": "0"},
        {"q": "c", "n": 1000},
        {"q": "d", "n": 3},
        {"q": "e", "n": 0},
    ]
    summary = score(
        user,
        tmp_path,
        "numbers",
        numbers,
        ["\\boxed{101}", "\\boxed{0.02}", "\\boxed{1,000.5}", "\\boxed{about 3}", "\\boxed{0.005}"],
        "--answer-field",
        "n",
        "--metric",
        "numeric_tolerance",
        "--tolerance",
        "0.01",
    )
    assert summary["primary"]["value"] == pytest.approx(3 / 5)
    assert summary["metrics"]["n_unreadable"] == 1

    # json_field_match: the share of the gold object's fields matched: 2 of 3, then 2 of 2.
    records = [{"q": "a", "rec": {"name": "Ada", "year": 1815, "city": "London"}},
               {"q": "b", "rec": json.dumps({"name": "Alan", "year": 1912})}]  # fmt: skip
    summary = score(
        user,
        tmp_path,
        "records",
        records,
        ['{"name": "ada", "year": 1815, "city": "Paris"}', 'x {"year": "1912", "name": "Alan"}'],
        "--answer-field",
        "rec",
        "--metric",
        "json_field_match",
    )
    assert summary["primary"]["value"] == pytest.approx((2 / 3 + 1) / 2)
    assert summary["metrics"]["correct_rate"] == pytest.approx(1 / 2)

    # A user scorer replaces the metric: its `hits` key is averaged.
    (tmp_path / "scorer.py").write_text(
        "def score(doc, response):\n    return {'hits': response.count(doc['word']) / 2}\n"
    )
    words = [{"q": "a", "word": "cat"}, {"q": "b", "word": "dog"}]
    summary = score(
        user,
        tmp_path,
        "counting",
        words,
        ["cat cat", "dog"],
        "--answer-field",
        "word",
        "--scorer",
        tmp_path / "scorer.py",
        "--scorer-key",
        "hits",
    )
    assert summary["primary"]["name"] == "hits" and summary["primary"]["value"] == pytest.approx((1 + 0.5) / 2)


def test_guard_drops_a_planted_copy_of_a_custom_item(user, tmp_path):
    from rdft.datasets.leakage import Guard

    items = [{"q": "Summarise the quarterly report of the northern lighthouse keepers guild", "a": "x"},
             {"q": "Translate the harbour notice about winter mooring fees into French", "a": "y"}]  # fmt: skip
    rows = [
        {"messages": [{"role": "user", "content": "Please: " + items[1]["q"]}, {"role": "assistant", "content": "…"}]},
        {"messages": [{"role": "user", "content": "Summarise the annual report of the city library"},
                      {"role": "assistant", "content": "…"}]},
    ]  # fmt: skip
    report = Guard("custom", items).check(rows)
    assert report.dropped == {0: "exact"} and report.counts()["exact"] == 1


def test_short_items_are_matched_whole_and_in_their_template(user, tmp_path, data_env, eval_env):
    """The README's own example: 4-word reviews. A copy of an item — raw as a field, as a chat's
    user turn re-cased with a full stop, or inside the benchmark's template — is dropped; other
    short reviews, a bare label and the template around another review are kept (issue 27, item 1)."""
    reviews = ["the plot was superb", "a dull and slow film", "I loved every minute", "the acting was wooden",
               "pure joy from start", "two hours I regret"]  # fmt: skip
    items = [{"id": f"r{i}", "text": text, "label": ["positive", "negative"][i % 2]} for i, text in enumerate(reviews)]
    write_jsonl(tmp_path / "eval.jsonl", items)
    added = user("benchmarks", "add", "sentiment", "--docs", tmp_path / "eval.jsonl", "--prompt-template", TEMPLATE,
                 *LABEL_ACCURACY)  # fmt: skip
    assert added.returncode == 0, added.stderr
    # `benchmarks show` prints the prompt lm-eval renders: the template's real newline, the answer rule.
    shown = user("benchmarks", "show", "sentiment")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.endswith(
        "prompt of the first validation item:\nReview: a dull and slow film\nIs the review positive or negative?\n"
        'End your answer with a JSON object {"label": <your answer>}.\n'
    )
    # A template typed as "...\n..." in double quotes holds a backslash and an n: said, not guessed.
    literal = user("benchmarks", "add", "literal", "--docs", tmp_path / "eval.jsonl", "--prompt-template",
                   "Review: {text}\\nIs it good?", *LABEL_ACCURACY)  # fmt: skip
    assert literal.returncode == 0 and "holds a backslash and an n, not a newline" in literal.stderr

    def chat(text: str) -> dict:
        return {"messages": [{"role": "user", "content": text}, {"role": "assistant", "content": "positive"}]}

    rows = [
        {"id": "t1", "text": "the plot was superb", "label": "positive"},  # raw, as a field
        chat("The  PLOT was superb."),  # the whole user turn, re-cased and re-spaced
        chat(TEMPLATE.format(text="I loved every minute") + "\nPut the final answer in \\boxed{}."),  # templated
        {"id": "t2", "text": "the plot was superb and so was the cast", "label": "positive"},  # a longer review
        chat(TEMPLATE.format(text="a fine and moving film")),  # the template around another review
        {"id": "t3", "text": "the acting was wooden too", "label": "negative"},
        chat("positive"),  # a bare label (every item's answer)
    ]
    write_jsonl(tmp_path / "train.jsonl", rows)
    checked = user("datasets", "check-leakage", "--benchmark", "sentiment", tmp_path / "train.jsonl", "--json")
    assert checked.returncode == 0, checked.stderr
    dropped = {"exact": 3, "identifier": 0, "molecule": 0, "ngram": 0}
    assert json.loads(checked.stdout) == {"rows": 7, "kept": 4, "dropped": dropped}
