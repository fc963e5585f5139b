# ruff: noqa: E501 (the tables keep one item per line)
"""MATH and MMLU as RD-Agent scores them (OpenCompass's math_0shot_gen_393424 and mmlu_gen):
`rdft score` on hand-made predictions equals what OpenCompass's own code gives on the same
predictions, and the offline data recipe builds rows the scorers accept from deepscaler and
cais/mmlu's auxiliary_train (fixtures in their real schemas).

The reference values were computed by running OpenCompass's code, unchanged, from RD-Agent's fork
(Jensen246/opencompass abc7c91; the same files in open-compass/opencompass a5acc4b): a throwaway
venv with the real opencompass/datasets/math.py, utils/text_postprocessors.py and
openicl/icl_evaluator/{icl_base_evaluator,icl_hf_evaluator,hf_metrics/accuracy}.py, only the
registry, get_data_path and mmengine's ConfigDict stubbed:

    uv venv /tmp/ref-oc/venv && uv pip install --python /tmp/ref-oc/venv/bin/python \
        evaluate scikit-learn scipy datasets numpy            # evaluate 0.4.6, scikit-learn 1.9.1
    cd /tmp/ref-oc && venv/bin/python ref.py                  # per replica, as OpenICLEvalTask scores
    venv/bin/python ref_evaluate.py                           # BaseEvaluator.evaluate with n replicas

ref.py applies, per sample index r (one OpenCompass run of n=1): the model's
`extract-non-reasoning-content`, the dataset's pred_postprocessor (`math_postprocess_v2`; for MMLU
`match_answer_pattern` with `(?i)ANSWER\\s*:\\s*([A-D])`), then `MATHEvaluator(version='v2').score`
against `extract_boxed_answer(solution)` (MATHDataset's reference) or `AccEvaluator().score`
against `'ABCD'[answer]`. Its output:

    MATH per-replica accuracy (%): [100.0, 60.0, 20.0] -> mean 60.0
    MATH per item correct: [[1,1,1], [1,1,0], [1,0,0], [1,0,0], [1,1,0], [1,0,1], [1,0,0], [1,1,0], [1,1,0], [1,1,0]]
    MMLU replica 0 preds: ['B', 'C', 'A', 'd', 'B', '', '', 'D', 'c', 'A']   -> 60.0
    MMLU replica 1 preds: ['b', '', 'D', 'D', 'B', 'A', 'C', '', 'C', '']    -> 50.0

and ref_evaluate.py: MATH `accuracy (3 runs average)` 60.0 (avg@3). For MMLU with n=2 OpenCompass
reports 50.0: AccEvaluator returns no per-item details, so BaseEvaluator.evaluate returns the LAST
replica's score; rdft's avg@k is the mean of the per-sample runs (55.0), the reading the family
docstring states (RD-Agent runs n=1, where the two agree).

For comparison only (not asserted): the MATH authors' own rule (hendrycks/math modeling/
math_equivalence.is_equiv on the last box, no fallback; /tmp/ref-oc/ref_hendrycks.py) gives 0.5 on
these predictions: it reads \\boxed{0.5} = \\frac{1}{2} and "34 \\text{ ft}" = 34 and does not read
"The answer is 6.", 5.0 = 5, (2,inf) or \\boxed{A} = \\text{(A)}; RD-Agent's numbers are
OpenCompass's, so rdft follows those.
"""

import json
import re
from pathlib import Path

import pytest
from conftest import REPO, one_line_error

FIXTURES = REPO / "tests" / "fixtures"
MATH_DOCS = FIXTURES / "benchmarks" / "math.jsonl"
MMLU_DOCS = FIXTURES / "benchmarks" / "mmlu.jsonl"

# Three samples per fixture item (golds: 6, \dfrac{3}{8}, 5, 3\sqrt{2}, (5,-3), (2,\infty), 1,
# \frac{1}{2}, 34\text{ feet}, \text{(A)}); OpenCompass's verdicts in the comments.
MATH_PREDICTIONS = [
    ["so $x = \\boxed{6}$.", "\\boxed{x=6}", "The answer is 6."],  # ✓ ✓ ✓ (no box: the "answer is" sentence)
    ["\\boxed{\\frac{3}{8}}", "\\boxed{3/8}", "\\boxed{0.375}"],  # ✓ ✓ ✗
    ["\\boxed{5.0}", "\\boxed{\\sqrt{25}}", ""],  # ✓ ✗ ✗ (empty: unreadable)
    [
        "\\boxed{3\\sqrt2}",
        "\\boxed{\\sqrt{18}}",
        "<think>it is \\boxed{3\\sqrt{2}}</think> The diagonal is \\boxed{4.24}",
    ],  # ✓ ✗ ✗
    ["\\boxed{(5, -3)}", "\\boxed{\\left(5,-3\\right)}", "\\boxed{(-3,5)}"],  # ✓ ✓ ✗
    ["\\boxed{(2, \\infty)}", "\\boxed{x > 2}", "\\boxed{(2,inf)}"],  # ✓ ✗ ✓
    ["The remainder is $\\boxed{1}$.", "I cannot solve this problem.", "\\boxed{6}"],  # ✓ ✗ (first sentence) ✗
    ["\\boxed{\\frac12}", "$\\boxed{\\dfrac{1}{2}}$", "\\boxed{0.5}"],  # ✓ ✓ ✗ (v2 does not map 0.5 to ½)
    ["\\boxed{34}", "\\boxed{34 \\text{ ft}}", "\\boxed{17}"],  # ✓ ✓ ✗ (a trailing \text{} unit is dropped)
    ["\\boxed{\\text{(A)}}", "\\boxed{A}", "\\boxed{(B)}"],  # ✓ ✓ ✗
]
# Two samples per fixture item (golds B C A D B A C D C A); OpenCompass's reading in the comments.
MMLU_PREDICTIONS = [
    ["Mitochondria make ATP.\nANSWER: B", "ANSWER: b"],  # B ✓, b ✗ (the letter's case is kept)
    ["Answer: C", "The answer is C"],  # C ✓, none ✗
    ["ANSWER: A\n\nThe other answer: B is wrong.", "answer:D"],  # the FIRST match: A ✓, D ✗
    ["Answer: definitely D", "ANSWER : D"],  # d (from "definitely") ✗, D ✓
    ["<think>ANSWER: A</think>ANSWER: B", "**ANSWER: B**"],  # thinking dropped: B ✓, B ✓
    ["", "ANSWER: A"],  # none ✗, A ✓
    ["ANSWER: (C)", "ANSWER: C) True, False"],  # none ✗, C ✓
    ["Final ANSWER: D", "ANSWER: E"],  # D ✓, none ✗
    ["answer: c", "ANSWER: C"],  # c ✗, C ✓
    ["I think the answer: A", "A"],  # A ✓, none ✗
]
# cais/mmlu auxiliary_train rows (hand-written, ARC/RACE-like): (question, choices, answer). The
# fixture tests/fixtures/datasets/mmlu-auxiliary-train/auxiliary_train/train-00000-of-00001.parquet
# holds them as the Hub file does, nested: {"train": {"answer", "choices", "question", "subject": ""}}
# (written from this table with pyarrow in the data env; test_the_auxiliary_train_fixture checks it).
# The last row has 3 choices: the recipe drops it.
AUX_TRAIN = [
    ("Which of these is a mammal?", ["Shark", "Dolphin", "Trout", "Octopus"], 1),
    ("What force pulls objects toward the center of the Earth?", ["Magnetism", "Friction", "Gravity", "Tension"], 2),
    ("Water freezes at what temperature in degrees Celsius?", ["0", "32", "100", "-10"], 0),
    ("Which planet is closest to the Sun?", ["Venus", "Earth", "Mars", "Mercury"], 3),
    ("Plants take in which gas from the air to make food?", ["Oxygen", "Carbon dioxide", "Nitrogen", "Helium"], 1),
    ("A student measures the mass of a rock. Which tool should she use?", ["Balance", "Thermometer", "Ruler", "Stopwatch"], 0),
    ("Which part of a plant takes in water from the soil?", ["Leaves", "Flowers", "Roots", "Seeds"], 2),
    ("What is the main source of energy for the water cycle?", ["The Moon", "Wind", "Volcanoes", "The Sun"], 3),
    ("Which material conducts electricity best?", ["Rubber", "Copper", "Wood", "Glass"], 1),
    ("Maria read the note twice before she smiled. Why did she most likely read it twice?", ["She could not believe the good news", "She was bored", "The note was blank", "She had lost her glasses"], 0),
    ("In the story, Tom saved his coins for a year to buy a bicycle. What does this show about Tom?", ["He is careless", "He is patient", "He is angry", "He is lazy"], 1),
    ("Which of these is a renewable resource?", ["Coal", "Oil", "Solar energy", "Natural gas"], 2),
    ("How many legs does an insect have?", ["Four", "Eight", "Ten", "Six"], 3),
    ("What do we call animals that eat only plants?", ["Herbivores", "Carnivores", "Omnivores", "Decomposers"], 0),
    ("Which state of matter has a definite volume but no definite shape?", ["Solid", "Liquid", "Gas", "Plasma"], 1),
    ("The Moon shines at night because it", ["makes its own light", "is on fire", "reflects light from the Sun", "absorbs starlight"], 2),
    ("Which organ pumps blood through the body?", ["Lungs", "Liver", "Kidney", "Heart"], 3),
    ("A ball rolls farther on a smooth floor than on carpet because the carpet has more", ["friction", "gravity", "mass", "light"], 0),
    ("What is the boiling point of water at sea level in degrees Fahrenheit?", ["100", "212", "180", "32"], 1),
    ("Which layer of the Earth do we live on?", ["Core", "Mantle", "Crust", "Outer core"], 2),
    ("A fossil of a fish found on a mountain suggests that the area was once", ["a desert", "a glacier", "a forest", "covered by water"], 3),
    ("Which of these helps a cactus survive in the desert?", ["Thick stems that store water", "Large thin leaves", "Shallow bright flowers", "Soft bark"], 0),
    ("The letter said the museum would open at nine. Ann arrived at eight. What did she have to do?", ["Go home", "Wait for an hour", "Buy a ticket twice", "Call the police"], 1),
    ("Which tool would best help you see the craters on the Moon?", ["Microscope", "Magnifying glass", "Telescope", "Periscope"], 2),
    ("Sound travels fastest through which of these?", ["Air", "Vacuum", "Water", "Steel"], 3),
    ("What kind of rock forms when lava cools?", ["Igneous", "Sedimentary", "Metamorphic", "Limestone"], 0),
    ("Which of these is a chemical change?", ["Melting ice", "Burning paper", "Cutting wood", "Dissolving sugar"], 1),
    ("What gas do humans breathe out that plants use?", ["Oxygen", "Hydrogen", "Carbon dioxide", "Argon"], 2),
    ("In the passage, the farmer woke before dawn every day. The word dawn means", ["midnight", "noon", "evening", "early morning"], 3),
    ("Which simple machine is a ramp?", ["Inclined plane", "Pulley", "Lever", "Wheel and axle"], 0),
    ("A thermometer is used to measure", ["weight", "temperature", "length", "speed"], 1),
    ("Which of these animals hibernates in winter?", ["Robin", "Salmon", "Bear", "Deer"], 2),
    ("Why do people wear light-colored clothes in summer?", ["They are heavier", "They absorb more heat", "They are warmer", "They reflect more sunlight"], 3),
    ("Which body system breaks down food?", ["Digestive system", "Nervous system", "Skeletal system", "Respiratory system"], 0),
    ("The author wrote the letter mainly to", ["complain about the weather", "thank a neighbor for help", "sell a house", "describe a war"], 1),
    ("Which unit is used to measure electric current?", ["Volt", "Ohm", "Ampere"], 2),
]  # fmt: skip
MMLU_PROMPT_HEAD = (
    "Answer the following multiple choice question. The last line of your response should be of the following "
    "format: 'ANSWER: $LETTER' (without quotes) where LETTER is one of ABCD. Think step by step before answering."
)


@pytest.fixture
def score(rdft, shared_dirs, eval_env, tmp_path):
    def call(benchmark: str, docs: Path, predictions: list[list[str]], samples: list[int] | None = None) -> dict:
        rows = [
            {"doc_id": i, "response": responses[j]}
            for i, responses in enumerate(predictions)
            for j in (samples if samples is not None else range(len(responses)))
        ]
        path = tmp_path / f"{benchmark}.predictions.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        # The fixture's first docs, one per prediction list (its later items serve the loop tests).
        scored = tmp_path / f"{benchmark}.docs.jsonl"
        scored.write_text("".join(docs.read_text().splitlines(keepends=True)[: len(predictions)]))
        result = rdft(
            "score", "--benchmark", benchmark, "--docs", str(scored), "--predictions", str(path), env=shared_dirs
        )
        assert result.returncode == 0, result.output
        return json.loads(result.stdout)

    return call


def test_math_equals_opencompass(score):
    # One sample index at a time: OpenCompass's n=1 runs, 100.0, 60.0 and 20.0 (ref.py).
    for sample, expected in ((0, 1.0), (1, 0.6), (2, 0.2)):
        assert score("math", MATH_DOCS, MATH_PREDICTIONS, [sample])["primary"]["value"] == pytest.approx(expected)
    summary = score("math", MATH_DOCS, MATH_PREDICTIONS)
    # avg@3: 18 of 30 samples right = OpenCompass's "accuracy (3 runs average)" 60.0 (ref_evaluate.py).
    assert summary["n"] == 10 and summary["primary"]["name"] == "accuracy"
    assert summary["primary"]["value"] == pytest.approx(0.6)
    assert summary["metrics"]["pass_at_k"] == 1.0  # every item has a right sample
    # No \boxed{}: "The answer is 6.", "" and "I cannot solve this problem." (the first still scores).
    assert summary["metrics"]["n_unreadable"] == 3 and summary["metrics"]["n_without_gold"] == 0
    assert summary["metrics"]["samples_per_item"] == 3


def test_mmlu_equals_opencompass(score):
    # One sample index at a time: OpenCompass's n=1 runs, 60.0 and 50.0 (ref.py).
    first = score("mmlu", MMLU_DOCS, MMLU_PREDICTIONS, [0])
    assert first["primary"]["value"] == pytest.approx(0.6)
    assert first["metrics"]["n_unreadable"] == 2  # "" and "ANSWER: (C)"
    second = score("mmlu", MMLU_DOCS, MMLU_PREDICTIONS, [1])
    assert second["primary"]["value"] == pytest.approx(0.5) and second["metrics"]["n_unreadable"] == 3
    both = score("mmlu", MMLU_DOCS, MMLU_PREDICTIONS)
    assert both["primary"]["value"] == pytest.approx(0.55)  # avg@2: (6 + 5) / 20
    # One item per subject here, so the macro average over subjects equals the item accuracy.
    assert both["metrics"]["subject_macro_accuracy"] == pytest.approx(0.55) and both["metrics"]["subjects"] == 10
    assert both["metrics"]["n_unreadable"] == 5


def test_mmlu_subject_macro_average(score, tmp_path):
    """Accuracy counts items; the subject macro average (RD-Agent's mean over OpenCompass's
    per-subject datasets) counts subjects: 3 nutrition items, 2 right, and 1 philosophy item,
    wrong → accuracy 2/4, macro (2/3 + 0) / 2 = 1/3."""
    docs = tmp_path / "mmlu.jsonl"
    rows = [{"question": f"q{i}", "subject": "nutrition", "choices": list("wxyz"), "answer": i} for i in range(3)]
    rows.append({"question": "q3", "subject": "philosophy", "choices": list("wxyz"), "answer": 3})
    docs.write_text("".join(json.dumps(row) + "\n" for row in rows))
    summary = score("mmlu", docs, [["ANSWER: A"], ["ANSWER: B"], ["ANSWER: A"], ["ANSWER: A"]])
    assert summary["primary"]["value"] == pytest.approx(0.5)
    assert summary["metrics"]["subject_macro_accuracy"] == pytest.approx(1 / 3)


def test_bad_mmlu_docs_are_one_line(rdft, shared_dirs, eval_env, tmp_path):
    docs, predictions = tmp_path / "d.jsonl", tmp_path / "p.jsonl"
    predictions.write_text(json.dumps({"doc_id": 0, "response": "ANSWER: A"}) + "\n")
    docs.write_text(json.dumps({"question": "q", "subject": "s", "choices": list("abcd"), "answer": 7}) + "\n")
    args = ["score", "--benchmark", "mmlu", "--docs", str(docs), "--predictions", str(predictions)]
    assert "MMLU answer 7 is not 0-3 (or A-D); give cais/mmlu's rows" in one_line_error(rdft(*args, env=shared_dirs))
    docs.write_text(json.dumps({"question": "q", "subject": "s", "choices": list("abcd")}) + "\n")
    assert "doc 1 has no 'answer', which mmlu docs hold" in one_line_error(rdft(*args, env=shared_dirs))


def test_the_auxiliary_train_fixture(data_env):
    """The parquet fixture is this file's table, nested under `train` as cais/mmlu's file is."""
    path = FIXTURES / "datasets" / "mmlu-auxiliary-train" / "auxiliary_train" / "train-00000-of-00001.parquet"
    code = "import json, sys, pyarrow.parquet as pq; t = pq.read_table(sys.argv[1]); print(json.dumps([str(t.schema), t.to_pylist()]))"
    result = data_env.run(["python", "-c", code, str(path)], echo=False, tail_chars=100_000)
    assert result.ok, result.tail
    schema, rows = json.loads(result.tail.strip().splitlines()[-1])
    assert (
        schema.splitlines()[0]
        == "train: struct<answer: int64, choices: list<element: string>, question: string, subject: string>"
    )
    assert rows == [{"train": {"answer": a, "choices": c, "question": q, "subject": ""}} for q, c, a in AUX_TRAIN]


def test_the_data_recipe_builds_rows_the_scorers_accept(rdft, shared_dirs, data_env, eval_env, tmp_path):
    """deepscaler → math and auxiliary_train → mmlu through `rdft datasets prepare --source` (after
    the benchmarks' items, so the leakage report runs) and the offline recipe: the user turn is
    the benchmark's prompt, the answer what its scorer reads, and each drop is counted."""
    from rdft.datasets.toolkit import data_env_variables

    env = {**shared_dirs, "FT_FILE_PATH": str(tmp_path / "ft")}
    for benchmark, items in (("math", MATH_DOCS), ("mmlu", MMLU_DOCS)):
        prepared = rdft("benchmarks", "prepare", benchmark, "--source", str(items), env=env)
        assert prepared.returncode == 0, prepared.output
        assert f"{benchmark}: 20 items" in prepared.stdout
    for dataset, benchmark, rows in (("deepscaler", "math", 40), ("mmlu-auxiliary-train", "mmlu", 36)):
        prepared = rdft("datasets", "prepare", dataset, "--source", str(FIXTURES / "datasets" / dataset), env=env)
        assert prepared.returncode == 0, prepared.output
        assert (
            f"  overlap with {benchmark}: 0 of {rows} rows hold its validation or test items "
            "(exact 0, identifier 0, molecule 0, ngram 0)"
        ) in prepared.stdout.splitlines(), prepared.stdout

    def build(dataset: str, benchmark: str) -> tuple[dict, list[tuple[str, str]]]:
        work = tmp_path / benchmark
        work.mkdir()
        recipe = {"datasets": [dataset], "benchmark": benchmark, "benchmark_family": benchmark, "max_samples": 100,
                  "seed": 0, "tasks_dir": str(REPO / "evaluation" / "tasks")}  # fmt: skip
        (work / "data_recipe.json").write_text(json.dumps(recipe))
        variables = {
            **data_env_variables(Path(shared_dirs["RDFT_ENVS_DIR"])),
            "RDFT_DATASETS_DIR": str(tmp_path / "ft" / "datasets"),
        }
        result = data_env.run(
            ["python", str(REPO / "recipes" / "data_recipe.py")], extra_env=variables, cwd=work, echo=False
        )
        assert result.ok, result.tail
        turns = [
            (row["messages"][0]["content"], row["messages"][1]["content"])
            for row in map(json.loads, (work / "data.jsonl").read_text().splitlines())
        ]
        return json.loads((work / "data_stats.json").read_text()), turns

    # deepscaler's fixture: 6 empty solutions, 1 boxed 14 against the answer 13, 1 empty answer.
    stats, turns = build("deepscaler", "math")
    assert stats["rows_read"] == 40 and stats["samples"] == 32
    assert stats["dropped"] == {"no reasoning": 6, "solution disagrees with the answer": 1, "no answer": 1}
    answers = {
        row["problem"]: row["answer"]
        for row in json.loads((FIXTURES / "datasets" / "deepscaler" / "deepscaler.json").read_text())
    }
    suffix = "\nPlease reason step by step, and put your final answer within \\boxed{}."
    for user, assistant in turns:
        assert (
            user.endswith(suffix)
            and re.findall(r"\\boxed\{(.*)\}", assistant)[-1] == answers[user.removesuffix(suffix)]
        )

    stats, turns = build("mmlu-auxiliary-train", "mmlu")
    assert stats["rows_read"] == 36 and stats["samples"] == 35
    assert stats["dropped"] == {"not the benchmark's schema": 1}  # the 3-choice row
    letters = {question: "ABCD"[answer] for question, _, answer in AUX_TRAIN}
    for user, assistant in turns:
        question = user.split("\n\n")[1]
        assert user.startswith(MMLU_PROMPT_HEAD) and "\n\nA) " in user and assistant == f"ANSWER: {letters[question]}"
