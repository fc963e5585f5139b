"""PANORAMA's chain-of-thought benchmarks (RD-Agent's panorama_*_cot, OpenCompass's
panorama_*_cot_gen): the prompt of a fixture item as OpenCompass writes it, answers read after a
long reasoning through `rdft score`, and the offline recipe's training rows (reasoning or none)."""

import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import REPO, one_line_error

from rdft.datasets.toolkit import data_env_variables
from rdft.resources import evaluation_dir

FIXTURES = REPO / "tests" / "fixtures"
TASKS = ("par4pc", "pi4pc", "noc4pc")
# The reference values below come from OpenCompass's own module (Jensen246/opencompass abc7c91,
# opencompass/datasets/panorama/panorama_TASK.py, saved under /tmp/oc-ref/opencompass/datasets/
# panorama/), run in the eval env by a script `run_oc.py` that stubs the framework imports and calls it:
#   for name in (opencompass, .openicl, .openicl.icl_evaluator, .registry, .datasets, .datasets.panorama,
#                .datasets.base): sys.modules[name] = types.ModuleType(name)
#   registry.ICL_EVALUATORS = registry.LOAD_DATASET = <register_module() returns the class unchanged>
#   icl_evaluator.BaseEvaluator = base.BaseDataset = object; exec panorama_TASK.py as a module m
#   prompt: m._create_TASK_prompt(doc, "cot")
#   score:  m.TASKEvaluator().score(predictions, references), references = {gold_answers,
#           silver_answers, negative_answers} per doc (PI4PC: + option_keys), NOC4PC: the gold code


def items(task: str) -> list[dict]:
    path = FIXTURES / "benchmarks" / f"panorama_{task}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def shown_prompt(rdft, env: dict, benchmark: str, task: str) -> str:
    """The first validation item's prompt (the fixture's item 0 under the seeded split) as
    `rdft benchmarks show` renders it: prepare.py, the row, the family's doc_to_text."""
    source = FIXTURES / "benchmarks" / f"panorama_{task}.jsonl"
    prepared = rdft("benchmarks", "prepare", benchmark, "--source", str(source), "--force", env=env)
    assert prepared.returncode == 0, prepared.output
    shown = rdft("benchmarks", "show", benchmark, env=env)
    assert shown.returncode == 0, shown.output
    return shown.stdout.split("prompt of the first validation item:\n", 1)[1].removesuffix("\n")


def test_cot_prompts_are_opencompass_text(rdft, shared_dirs, eval_env, tmp_path):
    """Item 0 of each fixture, rendered for the CoT benchmark, is OpenCompass's CoT template
    (Jensen246/opencompass abc7c91, the fork RD-Agent installs: opencompass/datasets/panorama/
    panorama_{par4pc,pi4pc,noc4pc}.py, `_create_*_prompt(item, 'cot')`) filled with the item's
    fields, below; their code, run on the same item, writes the same text:
        .tox/rdft-envs/eval/bin/python run_oc.py prompt TASK tests/fixtures/benchmarks/panorama_TASK.jsonl 0
    (for all 60 fixture items and the 30 published samples under ../shared/data/panorama-samples,
    rdft's text is theirs).
    The plain benchmark renders the same item with its own prompt: the row, not the item, decides."""
    env = {**shared_dirs, "FT_FILE_PATH": str(tmp_path / "ft")}
    for task, expected in (("par4pc", PAR4PC_COT), ("pi4pc", PI4PC_COT), ("noc4pc", NOC4PC_COT)):
        assert shown_prompt(rdft, env, f"panorama_{task}_cot", task) == expected, task
    # The same items under the plain benchmarks: rdft's zero-shot prompts, no CoT instructions.
    plain = {task: shown_prompt(rdft, env, f"panorama_{task}", task) for task in TASKS}
    assert plain["par4pc"].startswith("You are a patent expert. Identify which of the candidate patents")
    assert plain["pi4pc"].startswith("You are a patent expert. Given the target claim and a prior-art patent")
    assert plain["noc4pc"].startswith("You are an expert AI acting as a U.S. patent examiner. Decide whether")
    assert not any("Broadest" in prompt for prompt in plain.values())


def test_an_unknown_prompt_variant_is_one_line(rdft, shared_dirs, eval_env, tmp_path):
    """A row naming a prompt the family lacks stops the items' preparation, naming the fix."""
    tree = tmp_path / "evaluation"
    shutil.copytree(evaluation_dir(), tree, ignore=shutil.ignore_patterns("__pycache__"))
    row = yaml.safe_load((tree / "benchmarks.yaml").read_text())["panorama_par4pc_cot"]
    with open(tree / "benchmarks.yaml", "a", encoding="utf-8") as table:
        table.write(yaml.safe_dump({"panorama_par4pc_verbose": {**row, "prompt": "verbose"}}))
    env = {**shared_dirs, "FT_FILE_PATH": str(tmp_path / "ft"), "RDFT_EVALUATION_DIR": str(tree)}
    source = FIXTURES / "benchmarks" / "panorama_par4pc.jsonl"
    refused = rdft("benchmarks", "prepare", "panorama_par4pc_verbose", "--source", str(source), env=env)
    assert "panorama_par4pc_verbose has prompt: 'verbose'; use `prompt: cot` or leave it out" in one_line_error(refused)


# Reasoning as a CoT answer writes it before its JSON: a claim chart, a table naming every option,
# the format example echoed from the prompt. None of it is read; only the last JSON with the key.
CHART = (
    "Step 1. BRI claim charting: [L1] vent : opened by a motor; [L2] motor : runs above a set air temperature.\n"
    "Step 2. Core concept: temperature-driven venting.\n"
    "| Opt | Maps limits | Term/synonym | Field match | Score |\n|-----|-----|-----|-----|-----|\n"
    + "".join(
        f"| {letter} | L1? | - | {'yes' if letter in 'ACF' else 'no'} | {i % 3} |\n"
        for i, letter in enumerate("ABCDEFGH")
    )
    + 'The required format is {"reason":"Step1 ... ; Step2 ... ; Step3 ...", "answer":"A"}; A and H are only partial.\n'
)
PARAGRAPHS = (
    "1. BRI claim deconstruction: [1A] vent : opened by a motor; [1B] motor : above a set temperature.\n"
    "| Opt# | Maps to elements | Exact term | Col-Line | Match score |\n|---|---|---|---|---|\n"
    "| 24 | - | - | ¶24 | 0 |\n| 15 | 1B | motor | ¶15 | 1 |\n| 7 | 1A, 1B | motor opens | ¶7 | 3 |\n"
    'Format reminder: {"reason":"Step1 ... ; Step6 ...","answer": 17}\n'
)
OFFICE_ACTION = (
    "### INTERNAL REASONING\n[L1] greenhouse vent; [L2] motor; [L3] set air temperature.\n"
    "Reference 1 discloses [L1]-[L3]; a 103 combination is not needed, and ALLOW does not apply.\n"
    'First draft: {"code": "102"}\n### DRAFT OA LANGUAGE\n'
)
PAR4PC_ANSWERS = [
    CHART + '```json\n{"reason": "Step1 motor vent; Step2 C teaches L1-L2; Step3 §102", "answer": "C"}\n```',
    CHART + '{"reason": "Step1 ...; Step2 A with C, same field; Step3 §103", "answer": ["C", "A"]}',
    '<think>I first guessed {"answer": "B"}, but B is an insole.</think>\n' + CHART + '{"answer": "C", "reason": "."}',
    CHART + '```json\n{"reason": "Step3 §103 over F in view of D and H", "answer": ["F", "D", "H"]}\n```',
    CHART + "So D and F together teach every limitation; the answer is D and F.",  # cut off: the echo is read
    CHART + '```json\n{"reason": "Step1 {L1: drum}; Step2 F teaches \\"answer\\" timing", "answer": "f"}\n```',
    CHART + '{"reason": "Step3 nothing anticipates", "answer": "none of them"}',  # not letters: unreadable
]
PI4PC_ANSWERS = [
    PARAGRAPHS + '```json\n{"reason": "Step1 ...; Step4 ¶7 maps 1A-1B; Step6 §102", "answer": 7}\n```',
    PARAGRAPHS + '{"reason": "Step5 ¶42 ranks first", "answer": "42"}',
    PARAGRAPHS + '{"answer": 15, "reason": "Step6 consistent"}',
    PARAGRAPHS + '```json\n{"reason": "Step4 ¶11 partial", "answer": 11}\n```',
    PARAGRAPHS + '{"reason": "Step5 a tie", "answer": "9 or 22"}',  # not one key: unreadable
]
NOC4PC_ANSWERS = [
    OFFICE_ACTION
    + '```json\n{"reason": "Regarding Claim 1, US8821654 discloses ... anticipated.", "code": "102"}\n```',
    OFFICE_ACTION + '{"reason": "Regarding Claim 2, it would have been obvious to modify ...", "code": "103"}',
    OFFICE_ACTION + '{"reason": "Regarding Claim 3, the references do not teach [L3] ...", "code": "allow"}',
    OFFICE_ACTION + '{"reason": "Regarding Claim 1, obvious over ...", "code": "103"}',
    OFFICE_ACTION + "Therefore, Claim 2 is rejected under 35 U.S.C. § 103 as obvious.",  # cut off: the draft is read
    OFFICE_ACTION + '{"reason": "Regarding Claim 3, ...", "code": "REJECT"}',  # not a code: unreadable
]


def score(rdft, env: dict, benchmark: str, docs: list[dict], answers: list[str], tmp_path: Path) -> dict:
    docs_path = tmp_path / f"{benchmark}.docs.jsonl"
    docs_path.write_text("".join(json.dumps(doc) + "\n" for doc in docs))
    predictions = tmp_path / f"{benchmark}.predictions.jsonl"
    predictions.write_text("".join(json.dumps({"doc_id": i, "response": r}) + "\n" for i, r in enumerate(answers)))
    result = rdft(
        "score", "--benchmark", benchmark, "--docs", str(docs_path), "--predictions", str(predictions), env=env
    )
    assert result.returncode == 0, result.output
    return json.loads(result.stdout)


def test_answers_are_read_after_long_reasoning(rdft, shared_dirs, eval_env, tmp_path):
    """Hand-made CoT answers to the fixtures' first items, scored by `rdft score`: the last JSON
    object holding the key, whatever reasoning precedes it; the plain twin scores them the same
    (one scorer). OpenCompass's evaluators on the same answers (`run_oc.py score TASK DOCS.jsonl
    PREDICTIONS.json`: the first 7/5/6 fixture items and the answers below) read the FIRST fenced JSON
    block, else the FIRST regex match, else any bare letter/number/code: the echoed format example
    or the first draft wins, and their PAR4PC regex adds the letters of the word "answer" (A, E).
    They read PAR4PC C | A,C,E | A,B,E | D,F,H | A,E | F | A,E: exact_match 28.57, custom_score
    53.57, macro_f1 52.17 (pooled over items); PI4PC 7 | 17 | 17 | 11 | 17: gold_hit_rate 20.0,
    custom_score 30.0, accuracy 40.0; NOC4PC 102 for all six: accuracy 33.33, macro_f1 16.67.
    rdft reads the final answer, as for the plain tasks (the family docstring says why)."""
    env = shared_dirs
    par4pc, pi4pc, noc4pc = items("par4pc")[:7], items("pi4pc")[:5], items("noc4pc")[:6]
    # PAR4PC, gold C | A,C | C | F (silver D) | D,F | F | A. Item 1: the final JSON, not the
    # echoed format example; 2: the guess inside <think> is dropped; 3: F right, D silver (free),
    # H wrong: P 1/3, R 1, F1 0.5, custom (2 − 1) / 2; 4: cut off, so the echoed example's A is
    # the last JSON: wrong, custom max(0, −1 − 2) = 0; 5: braces and quotes inside the reason,
    # "f" read as F; 6: "none of them" is no letter: unreadable. F1 = (1+1+1+0.5+0+1+0) / 7.
    for benchmark in ("panorama_par4pc_cot", "panorama_par4pc"):
        summary = score(rdft, env, benchmark, par4pc, PAR4PC_ANSWERS, tmp_path)
        assert summary["primary"]["name"] == "f1" and summary["primary"]["value"] == pytest.approx(4.5 / 7)
        assert summary["metrics"]["exact_match"] == pytest.approx(4 / 7)
        assert summary["metrics"]["custom_score"] == pytest.approx(4.5 / 7)
        assert summary["metrics"]["n_unreadable"] == 1
    # PI4PC, gold 7 (silver 15) | 12 | 15 | 5 (silver 11) | 9: 7 gold; "42" a negative option;
    # 15 gold after the echoed example's 17; 11 silver (half a point); "9 or 22" unreadable.
    for benchmark in ("panorama_pi4pc_cot", "panorama_pi4pc"):
        summary = score(rdft, env, benchmark, pi4pc, PI4PC_ANSWERS, tmp_path)
        assert summary["primary"]["name"] == "gold_hit_rate" and summary["primary"]["value"] == pytest.approx(2 / 5)
        assert summary["metrics"]["custom_score"] == pytest.approx((1 + 0 + 1 + 0.5 + 0) / 5)
        assert summary["metrics"]["accuracy"] == pytest.approx(3 / 5)
        assert summary["metrics"]["n_unreadable"] == 1
    # NOC4PC, gold 102 | 103 | ALLOW | 102 | 103 | ALLOW; read 102, 103, ALLOW, 103, then 102 (cut
    # off: the first draft's JSON is the last one), then none ("REJECT"). Per class F1 =
    # 2tp / (2tp + fp + fn): 102 tp 1, fp 1, fn 1: 1/2; 103 the same: 1/2; ALLOW tp 1, fn 1: 2/3.
    for benchmark in ("panorama_noc4pc_cot", "panorama_noc4pc"):
        summary = score(rdft, env, benchmark, noc4pc, NOC4PC_ANSWERS, tmp_path)
        assert summary["primary"]["name"] == "macro_f1"
        assert summary["primary"]["value"] == pytest.approx((1 / 2 + 1 / 2 + 2 / 3) / 3)
        assert summary["metrics"]["accuracy"] == pytest.approx(3 / 6)
        assert summary["metrics"]["n_unreadable"] == 1


def run_recipe(data_env, shared_dirs, tmp_path: Path, benchmark: str, dataset: str, folder: str):
    """The offline data recipe (recipes/data_recipe.py, as the planner ships it) on the fixture
    dataset's training file: (its exit, data_stats.json, its rows)."""
    datasets = tmp_path / "datasets" / dataset
    datasets.mkdir(parents=True)
    shutil.copy2(FIXTURES / "datasets" / dataset / folder / "train.parquet", datasets / "train.parquet")
    work = tmp_path / benchmark
    work.mkdir()
    recipe = {
        "datasets": [dataset],
        "benchmark": benchmark,
        "benchmark_family": "panorama",
        "max_samples": 100,
        "seed": 0,
        "tasks_dir": str(evaluation_dir() / "tasks"),
        "force_think": False,
        "rows": "chat",
    }
    (work / "data_recipe.json").write_text(json.dumps(recipe))
    extra = data_env_variables(Path(shared_dirs["RDFT_ENVS_DIR"]))
    extra["RDFT_DATASETS_DIR"] = str(tmp_path / "datasets")
    result = data_env.run(["python", str(REPO / "recipes" / "data_recipe.py")], extra_env=extra, cwd=work, echo=False)
    stats = json.loads((work / "data_stats.json").read_text())
    rows = [json.loads(line) for line in (work / "data.jsonl").read_text().splitlines()] if result.ok else []
    return result, stats, rows


def test_offline_recipe_trains_cot_benchmarks_on_reasoning_only(data_env, shared_dirs, tmp_path):
    """NOC4PC's rows carry the examiner's office-action reason, then the code: all 40 fixture rows
    become rows. PAR4PC and PI4PC hold no reasoning: every row is dropped for it and the recipe
    stops (a CoT run on them needs generated chain-of-thought); their plain twins keep the rows."""
    result, stats, rows = run_recipe(
        data_env, shared_dirs, tmp_path, "panorama_noc4pc_cot", "panorama-noc4pc", "NOC4PC"
    )
    assert result.ok, result.tail
    assert stats == {"rows_read": 40, "samples": 40, "dropped": {}}
    answers = [row["messages"][1]["content"] for row in rows]
    assert (
        "Regarding claim 1, US8412209 discloses opening a valve when a soil sensor reads dry (paragraph [0014]), "
        'so the claim is anticipated.\n\n{"code": "102"}'
    ) in answers
    finals = [answer.rpartition("\n\n") for answer in answers]
    assert all(len(reason.split()) >= 5 for reason, _, _ in finals)  # what the data-quality gate counts
    codes = sorted(json.loads(final)["code"] for _, _, final in finals)
    assert codes == ["102"] * 16 + ["103"] * 14 + ["ALLOW"] * 10  # the fixture's codes, each row kept
    # The rows train on the prompt the CoT benchmark is scored with (benchmark_doc marks the row),
    # not the plain twin's.
    users = [row["messages"][0]["content"] for row in rows]
    assert all("Perform your internal reasoning first" in user for user in users)
    for task, dataset, folder in (("par4pc", "panorama-par4pc", "PAR4PC"), ("pi4pc", "panorama-pi4pc", "PI4PC")):
        result, stats, _ = run_recipe(data_env, shared_dirs, tmp_path / task, f"panorama_{task}_cot", dataset, folder)
        assert not result.ok and "no samples left" in result.tail
        reason = "no reasoning (this benchmark scores reasoned answers: generate the chain-of-thought)"
        assert stats == {"rows_read": 40, "samples": 0, "dropped": {reason: 40}}
        result, stats, _ = run_recipe(
            data_env, shared_dirs, tmp_path / f"{task}-plain", f"panorama_{task}", dataset, folder
        )
        assert result.ok and stats["samples"] == 40, result.tail


# OpenCompass's CoT templates with the fixtures' item 0 filled in (application 17120456, claim 1).
PAR4PC_COT = """You are a patent expert tasked with identifying cited patents for a specific claim rejection based *only* on the provided context and options.

**Context:**
*   **Application Number:** 17120456
*   **Title:** Greenhouse vent opener
*   **Abstract:** A vent opens by itself when the greenhouse gets too warm.
*   **Initial Claims:**
    [
    "1. A greenhouse vent opened by a motor above a set air temperature.",
    "2. The vent of claim 1, closing when wind speed is high.",
    "3. The vent of claim 1, driven by a wax actuator without electricity."
]

**Target Claim for Analysis:** Claim 1

**Options (Potential Cited Patents):**

A: Patent ID: US2015097702
   Title: Wind-safe skylight
   Abstract: Shuts in wind.
   Claims: [
    "1. A wind skylight."
]

B: Patent ID: US9113427
   Title: Warm insole
   Abstract: Heats cold toes.
   Claims: [
    "1. A heated insole."
]

C: Patent ID: US8821654
   Title: Thermostatic window
   Abstract: Opens when warm.
   Claims: [
    "1. A motor window."
]

D: Patent ID: US2016345120
   Title: App garment
   Abstract: Set by phone.
   Claims: [
    "1. A linked garment."
]

E: Patent ID: US8656109
   Title: Food drum
   Abstract: Drops food on time.
   Claims: [
    "1. A drum feeder."
]

F: Patent ID: US2014158442
   Title: Filter pump
   Abstract: Filters tank water.
   Claims: [
    "1. A sponge pump."
]

G: Patent ID: US7543298
   Title: Mail flag
   Abstract: Rises with the lid.
   Claims: [
    "1. A lid-switch box."
]

H: Patent ID: US2017187664
   Title: Delivery sensor
   Abstract: Alerts a phone.
   Claims: [
    "1. A radio sensor."
]

**Step-by-Step Instruction**
*Apply the Broadest Reasonable Interpretation (BRI) standard.*

1. **BRI Claim Charting**
   • Decompose Claim 1 into numbered limitations [L1]-[Ln] and record element : function/relationship.

2. **Core Inventive Concept & Problem**
   • Summarise in ≤ 20 words the inventive concept + technical problem.

3. **Single-Reference Screening (§102)**
   • For each option (A-H) rate coverage:
     | Opt | Maps limits | Term/synonym | Field match | Score* |
     |-----|------------|---------------|-------------|--------|
     *Score: 0 = no key feature, 1 = partial, 2 = full anticipation.*

4. **Multi-Reference Analysis (§103)**
   a. Pick options with Score ≥ 1.
   b. Build coverage matrix to find smallest combo covering all limits.
   c. For each viable combo, supply a motivation-to-combine (same field, complementary function, predictable substitution, etc.).
   d. Rank: full coverage → clear motivation → earliest primary art.

5. **Consistency & Inherency Check**
   • Reject art that contradicts any limitation; accept inherent feature only if necessarily present.

6. **Output (JSON only)**
    Always write the "reason" **first** and then write the "answer".
   • "reason" MUST include:
     Step1 <claim focus>; Step2 <mapping & motivation> ; Step3 <§102 or §103>.
   • Keep "reason" ≤ 200 words.
   • "answer" = single letter **or** list of letters.

```json
{"reason":"Step1 ... ; Step2 ... ; Step3 ...", "answer":"A"}
```
If multiple patents are cited:
```json
{"reason":"Step1 ... ; Step2 ... ; Step3 ...", "answer": ["A","C","F"]}
```
"""  # noqa: E501
PI4PC_COT = """You are an expert patent examiner reviewing a patent application.
Your task is to identify the **single most relevant paragraph** from the provided Prior Art Specification that is cited to reject Claim 1 of the Target Application (17120456).

**Target Application Context:**
* **Title:** Greenhouse vent opener
* **Abstract:** A vent opens by itself when the greenhouse gets too warm.
* **Claim 1:** 1. A greenhouse vent opened by a motor above a set air temperature.

**Prior Art Specification Context:**
* **Patent ID:** US8821654
* **Title:** Thermostatic window
* **Abstract:** Opens when warm.
* **Full Specification Text:**
[0001] The disclosure concerns a thermostatic window. [0007] A motor opens the window when the air exceeds the set point. [0015] The motor is powered from the mains supply.

* **Cited Paragraph Options (Excerpts from the Full Specification above):**
Review the following paragraphs, which are excerpts from the full specification provided above. Choose the **one paragraph key (integer)** from the list below that best supports the rejection of Claim 1.

Options:
7: A motor opens the window when the air exceeds the set point.
15: The motor is powered from the mains supply.
24: Components may be combined or omitted as needed.
41: The embodiments described are examples and do not limit the claims.
60: Other variations will be apparent to a person skilled in the art.

**CRITICAL INSTRUCTION:**
Based on your analysis of the **Full Specification Text** and the **Target Application Claim 1**, you **MUST** select **EXACTLY ONE** integer key from the **5 options** provided above.
Under no circumstances should you choose a key not present in the options or provide multiple keys, ranges, reasoning, or explanations.

**Step-by-Step Method**
*Use the Broadest-Reasonable-Interpretation (BRI) standard throughout.*

1.  **BRI Claim Deconstruction**
    • Break the claim 1 into **numbered limitations** (e.g., [1A]-[1F]).
    • Write each limitation in examiner-style "element : function / relationship" form.
    • Try to include as much of the claim as possible.

2.  **Key Distinguishing Feature(s)**
    • Identify which limitation(s) the applicant asserts as novel / non-obvious.
    • List all the features that should be considered when evaluating novelty and non-obviousness.

3.  **Prior-Art Mapping Table (one table per option paragraph)**
    • For each of the five option paragraphs, provide a detailed mapping to Claim 1 elements.
    • Use the table format to score the degree of overlap between each option paragraph and the claim limitations.
    • IMPORTANT: **Do not skip any options** — evaluate all five paragraphs.
    | Opt# | Maps to elements | Exact term / BRI synonym | Col-Line (or ¶) | Match score* |
    |------|-----------------|--------------------------|-----------------|-------------|
    |  ##  |                 |                          |                 |             |
    |  ##  |                 |                          |                 |             |
    |  ##  |                 |                          |                 |             |
    |  ##  |                 |                          |                 |             |
    |  ##  |                 |                          |                 |             |
    *Scoring: 0 = missing, 1 = mention, 2 = partial, 3 = full & explicit.*

4.  **Select the Most Relevant Paragraph for Patentability Evaluation**
    • Your goal is to identify exactly ONE paragraph most relevant to evaluate the novelty/non-obviousness of the applicant's claimed invention.
    • Select exactly one paragraph based on its relevance to the novelty or non-obviousness of the Key Distinguishing Features (KD-x) in Claim 1.
    • Do not select multiple keys or provide general reasoning.
    • Focus on technical relevance, improvements, and system integration when selecting your paragraph.
    Selection Criteria:
    • Consider paragraphs that scored ≥ 1 points in Step 3.
    • Technical Objectives: Does the paragraph directly support the technical objectives of the Claim? Does it provide a solution to the problem presented by the Claim?
    • Prior Art Improvements: Does the paragraph present innovative improvements to existing systems or technologies?
    • System Integration: Does the paragraph explain how elements of the system described in the Claim interact or integrate with each other?
    • Motivation to Combine: Does the paragraph offer a motivational context for combining features, particularly for a §103 rejection?

    Output Requirements:
    • Clearly indicate your final selection as the Primary Reference (PR).
    • Provide a concise reason for your selection based strictly on the criteria above.

5. **Consistency & Inherency Check**
   • Verify the selected paragraph does not contradict any claim limitation.

6. **Output (JSON only)**
    Always write the "reason" first and then write the "answer".
   • 'reason' MUST list Step1-Step6 in order, each separated by ';'.
     ▸ Step1 <statutory/context> ;
     ▸ Step2 <limits> ;
     ▸ Step3 <key feature> ;
     ▸ Step4 <mapping & score> ;
     ▸ Step5 <rank/tie-break> ;
     ▸ Step6 <consistency/inherency & §102 or §103 result>.
   • Keep "reason" ≤ 1000 words.
   • "answer" = single paragraph key (int).

```json
{"reason":"Step1 ... ; Step2 ... ; Step3 ... ; Step4 ...; Step5 ...; Step6 ...","answer": 17}
```
"""  # noqa: E501
NOC4PC_COT = """You are an expert AI acting as a U.S. Patent Examiner.
Your task is to analyze **Target Claim 1** of the **Target Patent Application** in view of the provided **Prior Art Specifications**.

Determine if **Target Claim 1** is allowable or should be rejected under 35 U.S.C. § 102 (lack of novelty) or 35 U.S.C. § 103 (obviousness).

**Target Patent Application Information:**
*   Application Number: 17120456
*   Target Claim Number: 1
*   Title: Greenhouse vent opener
*   Abstract: A vent opens by itself when the greenhouse gets too warm.
*   Target Claim 1 Text to Analyze:
    ```
    1. A greenhouse vent opened by a motor above a set air temperature.
    ```

**Prior Art Specifications (Cited as Basis for Potential Rejection):**
The following prior art documents and specific paragraphs were cited as potentially relevant for the rejection of the target claim. Analyze the target claim against the information presented in these specific paragraphs **and the claims** of the prior art.

--- Prior Art #1 ---
*   Patent ID: US8821654
*   Title: Thermostatic window
*   Abstract: Opens when warm.
*   Claims:
    1. 1. A motor window.
*   Cited Paragraphs from Specification (Basis for Analysis):
    [7]: A motor opens the window when the air exceeds the set point.

**Analysis Task and Response Instructions:**

Perform your internal reasoning first, then draft the *Office-Action-style* text.

---

### INTERNAL REASONING (not shown to applicant)
1. Apply the Broadest-Reasonable-Interpretation (BRI) to Claim 1; chart every limitation [L1]-[Ln].
   1-a. *Statutory check* - confirm Claim1 fits a statutory class (process, machine, manufacture, composition).
   1-b. *Limitation numbering*-  break the claim into [L1]-[Ln] and record in "element : function / relationship" form.
   1-c. *Key-feature flag* - mark limitations asserted (or apparent) as novel / non-obvious.
2. Compare each limitation to the teachings (claims + cited paragraphs) of every prior-art reference.
3. Decide:
   • §102 anticipation if a single reference explicitly, implicitly, or inherently discloses each and every limitation.
        Under BRI, interpret broadly: functional equivalence or conventional components (processors, databases, modules, memory, standard network elements, known protocols, etc.) count as implicit disclosures.
    • §103 obviousness if any of the following apply:
        (a) A primary reference discloses at least 70% of the limitations explicitly or implicitly, and remaining limitations constitute routine modifications, predictable optimizations (e.g., efficiency, speed, cost reduction, miniaturization), or standard practices known to a person of ordinary skill in the field.
        (b) A combination of references collectively covers all limitations and demonstrates a clear, implicit or explicit KSR rationale, such as addressing the same technical problem, improving performance, enhancing usability, or following common industry practices.
        (c) The limitations not explicitly disclosed are obvious through common general knowledge or widely recognized industry standards or textbooks in the field.
    • ALLOW Only if:
    No single reference or combination of references, even considering implicit disclosures and general knowledge, discloses or renders obvious specific, detailed implementation aspects (unique structures, algorithmic specifics, or non-trivial process steps), AND
    No reasonable motivation or rationale (performance improvement, standard practice, or known solution) can be objectively articulated to bridge these gaps.

---

### DRAFT OA LANGUAGE (will be revealed)
Write the *reason* paragraph exactly like an Office Action:

* Start: **"Regarding Claim 1, ..."**
* Use examiner diction:
  - "Reference X (Col. Y, lines Z) discloses ..."
  - "Therefore, Claim 1 is rejected under 35 U.S.C. § 102(a) as being anticipated by Reference X."
  - or "It would have been obvious to one of ordinary skill to modify X with Y (same field, predictable results) ... ⇒ § 103 rejection."
  - or "The cited references do not teach or render obvious limitation [Lk] ... Claim 1 is allowable."

* If § 103, list **all** references in the combination (e.g., "in view of Smith '123").
* Cite at least one column-line or paragraph for each matched limitation.
* Keep length ≤ 200 words.

---

### OUTPUT (JSON only)
Always write the "reason" first and then write the "answer".
Return exactly one JSON object:

```json
{
  "reason": "<OA-style paragraph above>",
  "code": "102" | "103" | "ALLOW"
}
```
"""  # noqa: E501
