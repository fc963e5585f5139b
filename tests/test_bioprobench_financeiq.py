# ruff: noqa: E501 (the tables keep one item per line)
"""BioProBench (PQA, ORD, ERR, GEN) and FinanceIQ as RD-Agent scores them (OpenCompass's
bioprobench_{pqa,ord,err,gen} and FinanceIQ_gen_e0e6b5 configs in RD-Agent's fork): `rdft score`
on hand-made predictions equals what OpenCompass's own code gives on the same predictions, the
benchmarks' items are selected as RD-Agent selects them, and the training answers the offline
recipe builds are what the scorers read.

The reference values come from OpenCompass's code, unchanged, from RD-Agent's fork
(Jensen246/opencompass abc7c91): opencompass/datasets/bioprobench/*.py, datasets/FinanceIQ.py,
utils/{text_postprocessors,prompt,types}.py, openicl/icl_prompt_template.py,
openicl/icl_evaluator/{icl_hf_evaluator,hf_metrics/accuracy}.py and the configs
configs/datasets/{bioprobench,FinanceIQ}/*.py, in a throwaway venv where only the registry,
BaseDataset, BaseEvaluator's constructor, get_data_path, the retriever/inferencer names and the
sentence_transformers/keybert imports are stubbed:

    uv venv /tmp/ref-bpb && uv pip install --python /tmp/ref-bpb/bin/python numpy scikit-learn \
        "datasets<4" nltk rouge-score evaluate mmengine-lite   # scikit-learn 1.9.1, nltk 3.10.4, rouge-score 0.1.2
    .tox/py311/bin/python tests/test_bioprobench_financeiq.py /tmp/ref-bpb/cases   # writes these docs and predictions
    /tmp/ref-bpb/bin/python /tmp/ref-bpb/oc_ref.py /tmp/ref-bpb/cases

oc_ref.py loads each task's docs through the config's own dataset class (`load_dataset` handed the
docs: their `correct_ids` and `step` columns, their shuffle), renders each prompt with the config's
PromptTemplate, applies the config's pred_postprocessor (for FinanceIQ after the model's
`extract-non-reasoning-content`, as RD-Agent's thinking models run) and calls the config's
evaluator's `score`; FinanceIQ is one AccEvaluator run per subject (its dataset class reading
test/<subject>.csv and dev/<subject>.csv), averaged as RD-Agent's FinanceIQProcessor does. The
GEN evaluator's keyword and step metrics load sentence-transformers models, which cannot be
downloaded here: they are replaced by their "unavailable" return (None), and NLTK has no
punkt_tab data, so their BLEU and METEOR are None too. Its output (OpenCompass's percentages):

    pqa prompts equal to rdft's doc_to_text: 20 of 20   (ord, err, gen: 20 of 20 each; all 80 fixture items)
    PQA sample 1: {'accuracy': 50.0, 'brier_score': 0.40041666666666664, 'failed': 4, 'total': 10}
    ORD sample 1: {'exact_match': 66.66666666666666, 'kendall_tau': -0.5339805825242718, 'failed': 4, 'total': 10}
    ERR sample 1: {'accuracy': 75.0, 'precision': 75.0, 'recall': 75.0, 'f1': 75.0, 'failed': 2, 'total': 10}
    ERR sample 2: {'accuracy': 100.0, 'precision': 100.0, 'recall': 100.0, 'f1': 100.0, 'failed': 0, 'total': 10}
    GEN sample 1: {'BLEU': None, 'METEOR': None, 'ROUGE-1': 44.09665844168574, 'ROUGE-2': 31.07936507936508,
                   'ROUGE-L': 40.647978866013304, 'KW_Precision': None, 'KW_Recall': None, 'KW_F1': None,
                   'Step_Recall': None, 'Redundancy_Penalty': None, 'Failed': 1, 'Total': 7}
       per-item rouge_l: [1.0, 0.411214953271028, 0.49019607843137253, None, 0, 0.4444444444444444, 0.09302325581395349]
    FinanceIQ 税务师: predictions ['A', 'B', 'D', 'D', 'C'] -> {'accuracy': 80.0}
    FinanceIQ 期货从业资格: predictions ['B', 'B', 'B'] -> {'accuracy': 66.66666666666666}
    FinanceIQ 理财规划师: predictions ['A', 'C', 'A', 'P', ''] -> {'accuracy': 60.0}
    FinanceIQ 精算师-金融数学: predictions ['A', 'B', 'Ｂ', '', 'A'] -> {'accuracy': 40.0}
    FinanceIQ prompts equal to rdft's doc_to_text: 18 of 18   (the five ice rounds, HUMAN then BOT '答案是: X', and the
                                                               item's HUMAN round, joined by blank lines)
    FinanceIQ RD-Agent core metric: ('accuracy (average)', 61.666666666666664, True)

For comparison only (not asserted): the authors' own Metrics/{PQA,ERR}.py (YuyangSunshine/
bioprotocolbench b6f36cb, /tmp/ref-bpb/authors_ref.py) give the same PQA and ERR numbers on the
first samples; their ORD.py fails the string indices ['2', '0', '1'] that OpenCompass reads as
ints (exact match 0.6, tau -0.58 over the five it reads). RD-Agent's numbers are OpenCompass's, so
rdft follows those.

rdft counts every item where OpenCompass leaves unparsed answers out (the family docstring says
why), so its primary metrics differ from those where an answer is unreadable; the `opencompass`
metrics reproduce OpenCompass's, and the primary values are derived by hand in the comments.
"""

import json
import sys
from pathlib import Path

import pytest
from conftest import REPO, one_line_error

FIXTURES = REPO / "tests" / "fixtures"
BIO_DOCS = FIXTURES / "benchmarks" / "bioprobench.jsonl"
FIQ_DOCS = FIXTURES / "benchmarks" / "financeiq.jsonl"

# One response per doc: the first ten items of each task in the fixture; the reading of their
# code in the comments (✓ right, ✗ wrong, ∅ unreadable: their `failed`).
PQA_PREDICTIONS = [
    "[ANSWER_START]0.3 & 90%[ANSWER_END]",  # ✓ 90
    "<think>[ANSWER_START]10 & 5%[ANSWER_END]</think>\nThe dose is 25 mg/mL. [ANSWER_START] 25 & 80% [ANSWER_END]",  # ✓ 80 (after </think>)
    "[ANSWER_START]1,400 70%[ANSWER_END]",  # ✓ 70 (no '&': the last word is the confidence)
    "[ANSWER_START]1×10⁶ & 60%[ANSWER_END]",  # ✗ 60
    "The answer is 25-30, with 90% confidence.",  # ∅ no tags
    "[ANSWER_START]open & 150%[ANSWER_END]",  # ∅ confidence over 100
    "[ANSWER_START]2.0×10^7 & 50% & sure[ANSWER_END]",  # ∅ two '&'
    "[ANSWER_START]Option D & 95%[ANSWER_END]",  # ✗ 95 (not the option's text)
    "[ANSWER_START]Scrape & 100%[ANSWER_END]",  # ✗ 100 (the gold is 'scrape')
    "[ANSWER_START]0.1-0.24 & high[ANSWER_END]",  # ∅ no confidence number
]
ORD_PREDICTIONS = [  # golds: [1,2,0] [0,2,3,1] [2,0,1] [4,0,2,1,3] (13 steps) [0,3,2,1] (15 steps) [2,0,1] [3,0,2,5,4,1] [5,4,1,3,0,2]
    "[ANSWER_START][1, 2, 0][ANSWER_END]",  # ✓ 3 pairs concordant
    "<think>[ANSWER_START][0, 1, 2, 3][ANSWER_END]</think>Draft: [ANSWER_START][3, 2, 1, 0][ANSWER_END] Final: [ANSWER_START][0, 2, 3, 1][ANSWER_END]",  # ✓ the last block; 6 of 6
    "[ANSWER_START](2, 0, 1)[ANSWER_END]",  # ✓ a tuple; 3 of 3
    "[ANSWER_START][4, 0, 1, 2, 3][ANSWER_END]",  # ✗ 9 of 10 pairs concordant
    "[ANSWER_START][8, 10, 6, 11, 1, 0, 3, 5, 7, 4, 9, 12, 2][ANSWER_END]",  # ✗ the gold reversed: 0 of 78
    "[ANSWER_START]0 3 2 1[ANSWER_END]",  # ∅ not a Python list (6 pairs)
    "[ANSWER_START][0, 1, 10, 14][ANSWER_END]",  # ∅ four of fifteen indices (105 pairs)
    "[ANSWER_START]['2', '0', '1'][ANSWER_END]",  # ✓ strings read as ints; 3 of 3
    "[ANSWER_START][3, 0, 2, 5, 4, 4][ANSWER_END]",  # ∅ not a reordering (15 pairs)
    "The order is [5, 4, 1, 3, 0, 2].",  # ∅ no tags (15 pairs)
]
ERR_PREDICTIONS = [  # golds: F F F T T T F F F T (False: the step has an error, the positive class)
    "[ANSWER_START]False[ANSWER_END]",  # ✓ TP
    "The CO2 level is wrong.\nFalse",  # ✓ TP (no tags: the last line)
    "[ANSWER_START]true[ANSWER_END]",  # ✗ FN
    "[ANSWER_START]True[ANSWER_END]",  # ✓ TN
    "[ANSWER_START]False[ANSWER_END]",  # ✗ FP
    "[ANSWER_START]Not True: it is False[ANSWER_END]",  # ✓ TN ("True" is looked for first)
    "[ANSWER_START]I cannot tell[ANSWER_END]",  # ∅ (rdft: the other label, True: FN)
    "",  # ∅ (rdft: FN)
    "[INST] Judge the step. [/INST]\n[ANSWER_START]False[ANSWER_END]",  # ✓ TP
    "<think>False at first sight.</think>[ANSWER_START]True[ANSWER_END]",  # ✓ TN
]
ERR_SECOND_SAMPLES = (
    ["[ANSWER_START]False[ANSWER_END]"] * 3
    + ["[ANSWER_START]True[ANSWER_END]"] * 3
    + ["[ANSWER_START]False[ANSWER_END]"] * 3
    + ["[ANSWER_START]True[ANSWER_END]"]
)  # all ten right
GEN_PREDICTIONS = [  # the first seven GEN items
    "[ANSWER_START]1. Detach the cells using a serological pipette.\n2. Centrifuge the tubes to pellet the cells.\n3. Wash the cells with PBS.\n4. Add ice-cold lysis buffer and homogenize the suspension.\n5. Determine the protein concentration using the Bradford assay.\n6. Dilute the extracts to 2 mg/mL protein.\n7. Immunoprecipitate each extract using anti-FLAG M2 resin.\n8. Analyze the samples by SDS-PAGE and quantify the intensity.[ANSWER_END]",  # the gold steps
    "[ANSWER_START]1. Glue two coverslips onto a slide with silicone grease.\n2. Put halocarbon oil where the coverslips meet the slide.\n3. Dissect the ovaries of a female fly under oil.\n4. Separate the oocytes and cover them with a coverslip.[ANSWER_END]",  # a paraphrase
    "<think>Lysis first, then filtering.</think>[ANSWER_START]1. Place the tissue in cold lysis buffer.\n2. Homogenize with a dounce homogenizer.\n3. Filter through a 30um filter and spin at 500x g.\n4. Count the nuclei.[ANSWER_END]",  # half the steps
    "1. Check the eggs.\n2. Roll the embryos on sandpaper.\n3. Add pronase.",  # ∅ no tags
    "[ANSWER_START][ANSWER_END]",  # an empty answer: read, ROUGE 0
    "<Structure>controls, then samples</Structure>[ANSWER_START]1. Dispense the positive and negative controls.\n2. Pipette the diluted serum.\n3. Incubate for 30 minutes and rinse with wash buffer.[ANSWER_END]",
    "[ANSWER_START]1. Preheat the oven to 180°C.\n2. Bake the cake for 40 minutes.[ANSWER_END]",  # unrelated
]
# FinanceIQ: 18 of the 20 prepared items (期货从业资格 424 and 432 left out, so the subjects'
# sizes differ and the subject mean differs from the item accuracy). Golds in the comments.
FIQ_SCORED = [("理财规划师", 195), ("理财规划师", 212), ("理财规划师", 255), ("理财规划师", 286), ("理财规划师", 294),
              ("精算师-金融数学", 44), ("精算师-金融数学", 48), ("精算师-金融数学", 61), ("精算师-金融数学", 79), ("精算师-金融数学", 87),
              ("税务师", 388), ("税务师", 405), ("税务师", 448), ("税务师", 479), ("税务师", 487),
              ("期货从业资格", 333), ("期货从业资格", 350), ("期货从业资格", 393)]  # fmt: skip
FIQ_PREDICTIONS = [
    "答案是: A",  # A ✓
    "C",  # C ✓
    "The answer is A.",  # A ✓ (the last capital)
    "答案是B，因为GDP会增长",  # D: 'P' ✗
    "我选ｃ",  # C: no capital ∅ ✗
    "<think>应该是B吧</think>答案是: A",  # A ✓ (the thinking is dropped)
    "答案是: B",  # C ✗
    "答案是 Ｂ",  # B: the full-width 'Ｂ' is a capital, not 'B' ✗
    "",  # D: ∅ ✗
    "A. 选项A正确",  # A ✓
    "答案是: A",  # A ✓
    "答案是: B",  # B ✓
    "答案是: D",  # A ✗
    "D",  # D ✓
    "答案是: C",  # C ✓
    "答案是: B",  # B ✓
    "答案是: B",  # B ✓
    "答案是: B",  # A ✗
]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def bio_docs(task: str, n: int) -> list[dict]:
    return [doc for doc in read_jsonl(BIO_DOCS) if doc["id"].startswith(f"TEST-{task}-")][:n]


def fiq_docs() -> list[dict]:
    rows = {(row["subject"], row["Unnamed: 0"]): row for row in read_jsonl(FIQ_DOCS)}
    return [rows[key] for key in FIQ_SCORED]


def cases() -> dict[str, tuple[list[dict], list[list[str]]]]:
    """benchmark → (docs, each doc's responses): what both rdft and oc_ref.py score."""
    return {
        "bioprobench_pqa": (bio_docs("PQA", 10), [[r] for r in PQA_PREDICTIONS]),
        "bioprobench_ord": (bio_docs("ORD", 10), [[r] for r in ORD_PREDICTIONS]),
        "bioprobench_err": (
            bio_docs("ERR", 10),
            [[a, b] for a, b in zip(ERR_PREDICTIONS, ERR_SECOND_SAMPLES, strict=True)],
        ),
        "bioprobench_gen": (bio_docs("GEN", 7), [[r] for r in GEN_PREDICTIONS]),
        "financeiq": (fiq_docs(), [[r] for r in FIQ_PREDICTIONS]),
    }


def write_case(folder: Path, benchmark: str, docs: list[dict], responses: list[list[str]]) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    docs_path, predictions = folder / f"{benchmark}.docs.jsonl", folder / f"{benchmark}.predictions.jsonl"
    docs_path.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    rows = [{"doc_id": i, "response": r} for i, group in enumerate(responses) for r in group]
    predictions.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return docs_path, predictions


if __name__ == "__main__":  # the cases as files, for the reference run (module docstring)
    for name, (docs, responses) in cases().items():
        write_case(Path(sys.argv[1]), name, docs, responses)


@pytest.fixture
def score(rdft, shared_dirs, eval_env, tmp_path):
    def call(benchmark: str, docs: list[dict], responses: list[list[str]]) -> dict:
        docs_path, predictions = write_case(tmp_path / "cases", benchmark, docs, responses)
        result = rdft("score", "--benchmark", benchmark, "--docs", str(docs_path), "--predictions", str(predictions),
                      env=shared_dirs)  # fmt: skip
        assert result.returncode == 0, result.output
        return json.loads(result.stdout)

    return call


def test_pqa_matches_opencompass(score):
    summary = score("bioprobench_pqa", *cases()["bioprobench_pqa"])
    # OpenCompass: 3 right of the 6 it parses, Brier over those six ((.1² + .2² + .3² + .6² + .95² + 1²) / 6).
    assert summary["metrics"]["opencompass"] == pytest.approx(
        {"accuracy": 0.5, "brier_score": 0.40041666666666664, "failed": 4}
    )
    # rdft: the four unreadable answers stay in the denominator: 3 of 10.
    assert summary["primary"]["name"] == "accuracy" and summary["primary"]["value"] == pytest.approx(0.3)
    assert summary["metrics"]["n_unreadable"] == 4


def test_ord_matches_opencompass(score):
    summary = score("bioprobench_ord", *cases()["bioprobench_ord"])
    # OpenCompass: 4 exact of the 6 parsed; tau over their 103 pairs, 24 concordant: (48 − 103) / 103.
    assert summary["metrics"]["opencompass"] == pytest.approx(
        {"exact_match": 4 / 6, "kendall_tau": -0.5339805825242718, "failed": 4}
    )
    # rdft: the unreadable items' 6 + 105 + 15 + 15 pairs count as discordant: (48 − 244) / 244.
    assert summary["primary"]["name"] == "kendall_tau" and summary["primary"]["value"] == pytest.approx(-196 / 244)
    assert summary["metrics"]["exact_match"] == pytest.approx(0.4) and summary["metrics"]["n_unreadable"] == 4


def test_err_matches_opencompass_per_sample_set(score):
    summary = score("bioprobench_err", *cases()["bioprobench_err"])
    # F1 is a split-level metric: avg@2 is the mean of the two sample sets'. OpenCompass: 75 then
    # 100 (its two runs above), so 0.875 for each of accuracy, precision, recall, F1.
    assert summary["metrics"]["opencompass"] == pytest.approx(
        {"f1": 0.875, "accuracy": 0.875, "precision": 0.875, "recall": 0.875, "failed": 1.0}
    )
    # rdft, first set: the two unreadable answers (gold False) count as True: TP 3, FP 1, FN 3 →
    # precision 3/4, recall 3/6, F1 0.6, accuracy 6/10; the second set is all right.
    assert summary["primary"]["name"] == "f1" and summary["primary"]["value"] == pytest.approx((0.6 + 1) / 2)
    assert summary["metrics"]["accuracy"] == pytest.approx((0.6 + 1) / 2)
    assert summary["metrics"]["precision"] == pytest.approx((0.75 + 1) / 2)
    assert summary["metrics"]["recall"] == pytest.approx((0.5 + 1) / 2)


def test_gen_matches_opencompass_rouge(score, eval_env):
    summary = score("bioprobench_gen", *cases()["bioprobench_gen"])
    metrics = summary["metrics"]
    # OpenCompass's ROUGE means over the six answers it parses (per item ROUGE-L: 1.0, 0.4112,
    # 0.4902, —, 0, 0.4444, 0.0930).
    assert {k: metrics["opencompass"][k] for k in ("ROUGE-L", "ROUGE-1", "ROUGE-2", "failed")} == pytest.approx(
        {"ROUGE-L": 0.40647978866013304, "ROUGE-1": 0.4409665844168574, "ROUGE-2": 0.3107936507936508, "failed": 1}
    )
    # rdft: the unreadable answer scores 0 among seven.
    assert summary["primary"]["name"] == "rouge_l" and summary["primary"]["value"] == pytest.approx(
        0.40647978866013304 * 6 / 7
    )
    assert metrics["rouge_1"] == pytest.approx(0.4409665844168574 * 6 / 7)
    # The keyword and step metrics need models rdft does not download: named, never faked.
    assert {"KW_F1", "Step_Recall", "Redundancy_Penalty"} <= set(metrics["not_computed"])
    # BLEU and METEOR need NLTK data (punkt_tab, wordnet) that no package installs.
    probe = eval_env.run(["python", "-c", "import nltk; nltk.data.find('tokenizers/punkt_tab')"], echo=False)
    if probe.ok:
        assert 0 <= metrics["bleu"] <= 1 and "BLEU" not in metrics["not_computed"]
    else:
        assert metrics["bleu"] is None and metrics["opencompass"]["BLEU"] is None and "BLEU" in metrics["not_computed"]


def test_financeiq_matches_opencompass(score):
    summary = score("financeiq", *cases()["financeiq"])
    # OpenCompass (AccEvaluator per subject after last_capital_postprocess): 税务师 80, 期货从业资格
    # 66.67, 理财规划师 60, 精算师-金融数学 40; RD-Agent's FinanceIQProcessor: 61.667 on average.
    subjects = {"税务师": 0.8, "期货从业资格": 2 / 3, "理财规划师": 0.6, "精算师-金融数学": 0.4}
    assert summary["metrics"]["subjects"] == pytest.approx(subjects)
    assert summary["primary"]["name"] == "subject_mean_accuracy"
    assert summary["primary"]["value"] == pytest.approx(0.6166666666666666)
    # Item accuracy 11 of 18; '我选ｃ' and '' hold no capital letter.
    assert summary["metrics"]["accuracy"] == pytest.approx(11 / 18) and summary["metrics"]["n_unreadable"] == 2


def prepare(rdft, env: dict, benchmark: str, source: Path) -> tuple[object, list[dict]]:
    result = rdft("benchmarks", "prepare", benchmark, "--source", str(source), "--force", env=env)
    items = Path(env["FT_FILE_PATH"]) / "benchmarks" / benchmark / "items.jsonl"
    return result, read_jsonl(items) if result.returncode == 0 else []


def test_bioprobench_items_are_the_tasks_own(rdft, shared_dirs, eval_env, tmp_path):
    """The fixture holds the four tasks' items together, as a user's local copy may: each
    benchmark keeps its task's twenty; a file without any is refused in one line."""
    env = {**shared_dirs, "FT_FILE_PATH": str(tmp_path / "ft")}
    for task in ("PQA", "ORD", "ERR", "GEN"):
        result, items = prepare(rdft, env, f"bioprobench_{task.lower()}", BIO_DOCS)
        assert result.returncode == 0, result.output
        assert [item["id"] for item in items] == [f"TEST-{task}-{i:06d}" for i in range(20)]
    gen_only = tmp_path / "gen.jsonl"
    gen_only.write_text("".join(json.dumps(d) + "\n" for d in bio_docs("GEN", 20)))
    refused, _ = prepare(rdft, env, "bioprobench_pqa", gen_only)
    assert (
        "none of the 20 rows is a BioProBench PQA item (question, choices, answer); give its PQA_test.json"
        in one_line_error(refused)
    )


# RD-Agent's test part of each test file: the last min(ceil(n/2), 100) rows (split.py), so the
# first benchmark index is n − that: 理财规划师 295 − 100 = 195, 精算师-金融数学 88 − 44 = 44,
# 税务师 488 − 100 = 388, 期货从业资格 433 − 100 = 333.
FIRST_ITEM = {"保险从业资格CICE": 596, "基金从业资格": 772, "期货从业资格": 333, "注册会计师（CPA）": 1211, "理财规划师": 195,
              "税务师": 388, "精算师-金融数学": 44, "经济师": 420, "证券从业资格": 1076, "银行从业资格": 1144}  # fmt: skip
# The Hub's test split: the ten CSVs in file-name order, each row's index counting from 0.
HUB_FILES = {"保险从业资格CICE": 696, "基金从业资格": 872, "期货从业资格": 433, "注册会计师（CPA）": 1311, "理财规划师": 295,
             "税务师": 488, "精算师-金融数学": 88, "经济师": 520, "证券从业资格": 1176, "银行从业资格": 1244}  # fmt: skip


def test_financeiq_items_are_rdagents_test_part(rdft, shared_dirs, eval_env, tmp_path):
    env = {**shared_dirs, "FT_FILE_PATH": str(tmp_path / "ft")}
    # The fixture names its subjects: the row just before each cut is left out.
    result, items = prepare(rdft, env, "financeiq", FIQ_DOCS)
    assert result.returncode == 0, result.output
    kept = [(item["subject"], item["Unnamed: 0"]) for item in items]
    assert len(kept) == 20 and all(index >= FIRST_ITEM[subject] for subject, index in kept)
    assert set(FIQ_SCORED) < set(kept) and ("理财规划师", 194) not in kept and ("精算师-金融数学", 43) not in kept

    # Rows as the Hub's CSV loader gives them (no file names): each file told apart by where the
    # index restarts, named by its length; 944 items, each subject's last rows.
    rows = [{"Unnamed: 0": i, "Question": f"{subject} question {i}", "A": "a", "B": "b", "C": "c", "D": "d", "Answer": "A"}
            for subject, n in HUB_FILES.items() for i in range(n)]  # fmt: skip
    hub = tmp_path / "hub.jsonl"
    hub.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    result, items = prepare(rdft, env, "financeiq", hub)
    assert result.returncode == 0, result.output
    assert len(items) == 944
    for subject, n in HUB_FILES.items():
        own = [item for item in items if item["subject"] == subject]
        assert [item["Unnamed: 0"] for item in own] == list(range(FIRST_ITEM[subject], n))
        assert all(item["Question"].startswith(subject) for item in own)

    # Part of a file cannot be named: one line.
    hub.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows[:-1]), encoding="utf-8")
    refused, _ = prepare(rdft, env, "financeiq", hub)
    assert "rows 5880-7122 are not one whole test file of Duxiaoman-DI/FinanceIQ" in one_line_error(refused)


# Runs in the eval env: every training fixture row's answer, built by the family's training_answer
# as the offline recipe builds it, earns full marks from the family's own scorer; rows of another
# task, FinanceIQ rows without a subject (before the post-download step) and FinanceIQ benchmark
# items are refused.
CHECK_TRAINING = r"""
import csv, importlib.util, json, math, sys
from pathlib import Path
tasks, fixtures = Path(sys.argv[1]), Path(sys.argv[2])
sys.path.insert(0, str(tasks))
def family(name):
    spec = importlib.util.spec_from_file_location(name, tasks / name / "utils.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
def built(module, entry, doc):
    parts = module.training_answer(entry, doc, False)
    if isinstance(parts, str):
        return parts
    answer = f"{parts[0]}\n\n{parts[1]}".strip()
    return module.full_marks(entry, module.score(entry, doc, [answer])) and module.doc_to_text(doc) and "full marks"
out = {}
bio = family("bioprobench")
metric = {"pqa": "accuracy", "ord": "kendall_tau", "err": "f1", "gen": "rouge_l"}
for task in metric:
    rows = json.loads((fixtures / f"bioprobench-{task}" / f"{task.upper()}.json").read_text())
    for name in metric:
        entry = {"name": f"bioprobench_{name}", "primary": {"metric": metric[name]}}
        verdicts = [built(bio, entry, row) for row in rows]
        out[f"{task} rows for {name}"] = {v: verdicts.count(v) for v in verdicts}
edge = {"ord": {"question": "q", "wrong_steps": ["Mix.", "Spin.", "Mix."], "correct_steps": ["Mix.", "Mix.", "Spin."]},
        "pqa": {"question": "Add ____ of buffer.", "choices": ["A & B", "C"], "answer": "A & B"}}
out["edge"] = [built(bio, {"name": f"bioprobench_{task}", "primary": {"metric": metric[task]}}, row) for task, row in edge.items()]
fiq = family("financeiq")
entry = {"name": "financeiq", "primary": {"metric": "subject_mean_accuracy"}}
verdicts = []
for path in sorted((fixtures / "financeiq" / "data" / "test").glob("*.csv")):
    rows = list(csv.DictReader(path.open(encoding="utf-8", newline="")))
    keep = len(rows) - min(math.ceil(len(rows) * 0.5), 100)  # RD-Agent's split.py, as the post-download step keeps them
    verdicts += [built(fiq, entry, {**row, "subject": path.stem}) for row in rows[:keep]]
    verdicts += [built(fiq, entry, row) for row in rows[:1]]  # as downloaded: no subject
items = [json.loads(line) for line in (fixtures.parent / "benchmarks" / "financeiq.jsonl").read_text().splitlines()]
verdicts += [built(fiq, entry, item) for item in items]
out["financeiq"] = {v: verdicts.count(v) for v in verdicts}
print(json.dumps(out))
"""


def test_training_answers_earn_full_marks(eval_env):
    from rdft.resources import evaluation_dir

    result = eval_env.run(
        ["python", "-c", CHECK_TRAINING, str(evaluation_dir() / "tasks"), str(FIXTURES / "datasets")], echo=False
    )
    assert result.ok, result.tail
    counts = json.loads(result.tail.strip().splitlines()[-1])
    for task in ("pqa", "ord", "err", "gen"):
        assert counts[f"{task} rows for {task}"] == {"full marks": 32}
        for other in {"pqa", "ord", "err", "gen"} - {task}:
            assert counts[f"{task} rows for {other}"] == {f"not a {other.upper()} row": 32}
    # A step that repeats makes a gold list that is no reordering; an option holding '&' cannot be
    # read back (their parser splits on it): neither is taught.
    assert counts["edge"] == ["a step repeats", "the gold answer cannot be read back (holds '&' or surrounding spaces)"]
    # FinanceIQ: 9 kept of the 18-row file, and the 4 fixture items just before their file's cut
    # (RD-Agent's training part) earn full marks; the 20 past it are refused.
    assert counts["financeiq"] == {
        "full marks": 9 + 4,
        "no subject or row index (prepare the dataset with its post-download step)": 1,
        "a FinanceIQ benchmark item (the last rows of its test file)": 20,
    }


def test_datasets_keep_only_training_files(rdft, shared_dirs, eval_env, data_env, tmp_path):
    """A copy of BioProBench's repo (the four tasks' training and test files): each task's name
    keeps its own training file, `bioprobench` the four; FinanceIQ's dev files (the benchmark's
    five-shot examples) are removed."""
    import shutil

    repo = tmp_path / "BioProBench"
    repo.mkdir()
    for task in ("pqa", "ord", "err", "gen"):
        for path in (FIXTURES / "datasets" / f"bioprobench-{task}").iterdir():
            shutil.copy(path, repo / path.name)
    env = {**shared_dirs, "FT_FILE_PATH": str(tmp_path / "ft")}
    expected = {"bioprobench": ["ERR.json", "GEN.json", "ORD.json", "PQA.json"], "bioprobench-pqa": ["PQA.json"],
                "bioprobench-gen": ["GEN.json"], "financeiq": sorted(f"data/test/{p.name}" for p in (FIXTURES / "datasets" / "financeiq" / "data" / "test").iterdir())}  # fmt: skip
    for name, files in expected.items():
        source = FIXTURES / "datasets" / "financeiq" if name == "financeiq" else repo
        result = rdft("datasets", "prepare", name, "--source", str(source), env=env)
        assert result.returncode == 0, result.output
        manifest = json.loads((tmp_path / "ft" / "datasets" / name / ".rdft-dataset.json").read_text())
        assert sorted(manifest["files"]) == files, name
    assert len(manifest["removed"]) == 4 and all("/dev/" in path for path in manifest["removed"])


def test_bad_docs_are_one_line(rdft, shared_dirs, eval_env, tmp_path):
    docs = fiq_docs()[:1]
    docs[0] = {key: value for key, value in docs[0].items() if key != "subject"} | {"subject": "外汇交易员"}
    path, predictions = write_case(tmp_path, "financeiq", docs, [["答案是: A"]])
    result = rdft(
        "score", "--benchmark", "financeiq", "--docs", str(path), "--predictions", str(predictions), env=shared_dirs
    )
    assert "FinanceIQ doc 195 names no known subject" in one_line_error(result)
    order = bio_docs("ORD", 1)
    order[0]["correct_steps"] = [*order[0]["correct_steps"][:-1], "a step that was never shuffled in"]
    path, predictions = write_case(tmp_path, "bioprobench_ord", order, [["[ANSWER_START][0, 1, 2][ANSWER_END]"]])
    result = rdft(
        "score",
        "--benchmark",
        "bioprobench_ord",
        "--docs",
        str(path),
        "--predictions",
        str(predictions),
        env=shared_dirs,
    )
    assert "ORD item TEST-ORD-000000: a correct step is not among its wrong_steps" in one_line_error(result)


def test_financeiq_dataset_keeps_rdagents_training_part(rdft, shared_dirs, eval_env, data_env, tmp_path):
    """After prepare, each test file holds the rows before RD-Agent's test part (split.py with
    split="train": the first n − min(ceil(n/2), 100); 9 of each 18-row fixture file), each naming
    its subject, so the training prompts are the benchmark's."""
    env = {**shared_dirs, "FT_FILE_PATH": str(tmp_path / "ft")}
    source = FIXTURES / "datasets" / "financeiq"
    result = rdft("datasets", "prepare", "financeiq", "--source", str(source), env=env)
    assert result.returncode == 0, result.output
    import csv

    for path in sorted((source / "data" / "test").glob("*.csv")):
        original = list(csv.reader(path.open(encoding="utf-8", newline="")))
        prepared = tmp_path / "ft" / "datasets" / "financeiq" / "data" / "test" / path.name
        rows = list(csv.reader(prepared.open(encoding="utf-8", newline="")))
        assert rows == [[*original[0], "subject"], *[[*row, path.stem] for row in original[1:10]]]
