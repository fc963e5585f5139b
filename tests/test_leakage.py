"""The leakage guard (rdft/datasets/leakage.py): the function the loop runs on every data
script's output, on hand-made planted cases in each family's real schema — exact, re-cased and
re-spaced copies, copies inside longer prompts, paraphrases that keep a 13-word window, PANORAMA
application numbers, molecules in another SMILES spelling — and on clean rows that share
boilerplate with evaluation items, which must all be kept. Then `rdft datasets check-leakage`
for every benchmark, from the command line."""

import json
from pathlib import Path

import pytest
from conftest import REPO, SHARED, one_line_error, skip_without

from rdft.datasets.leakage import drop_leaks, normalise

FIXTURES = REPO / "tests" / "fixtures"
BOILERPLATE = (
    "The probability can be written as $\\frac{m}{n}$, where $m$ and $n$ are relatively prime positive "
    "integers. Find $m+n$."
)
AIME_EVAL = [
    {"id": "I-1", "problem": "Aya walks 9 kilometers each morning and stops at a coffee shop for t minutes; "
     "at 3 kilometers per hour the walk takes her 4 hours in all. Find t.", "answer": "204"},
    {"id": "I-2", "problem": "A fair coin is tossed until two consecutive heads appear. " + BOILERPLATE,
     "answer": "7"},
    {"id": "I-3", "problem": "Two dice are rolled and the larger face is kept. " + BOILERPLATE, "answer": "47"},
    {"id": "I-4", "problem": "Find the remainder when $3^{100}$ is divided by 1000.", "answer": "1"},
]  # fmt: skip


def chat(user: str, answer: str = "\\boxed{1}") -> dict:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]}


def test_aime_planted_copies_are_dropped_and_boilerplate_is_kept():
    aya = AIME_EVAL[0]["problem"]
    rows = [
        chat(aya),  # exact
        chat(aya.upper()),  # re-cased
        chat("  \n".join(aya.split(" "))),  # re-spaced
        chat(f"Solve this competition problem carefully. {aya} Show your work."),  # inside a longer prompt
        {"instruction": "Answer.", "input": "", "output": f"The problem was: {aya}"},  # alpaca, in the answer
        chat(AIME_EVAL[3]["problem"].replace("$3^{100}$", "$3^{ 100 }$ \\, ")),  # LaTeX spacing
        # A paraphrase that keeps 13 words of the item's own text.
        chat("Every day Aya walks 9 kilometers each morning and stops at a coffee shop for t minutes; how long?"),
        # Clean: another coin problem with the same boilerplate as two evaluation items.
        chat("A fair coin is tossed three times and a die once. " + BOILERPLATE),
        # Clean: shorter common phrasing.
        chat("Find the remainder when $7^{50}$ is divided by 1000."),
        # Clean: unrelated.
        chat("What is 2 + 2?"),
    ]
    kept, report = drop_leaks("aime", rows, AIME_EVAL)
    assert report.counts() == {"exact": 6, "identifier": 0, "molecule": 0, "ngram": 1}
    assert report.dropped == {0: "exact", 1: "exact", 2: "exact", 3: "exact", 4: "exact", 5: "exact", 6: "ngram"}
    assert kept == rows[7:]
    assert report.summary()["evaluation_items_hit"] == 2


def test_aime_boilerplate_of_one_item_is_phrasing_when_the_training_set_repeats_it():
    """A phrase only ONE evaluation item uses is still boilerplate when three training rows with
    different prompts share it; a single training row with it is dropped (the documented cost)."""
    evaluation = [{"id": "a", "problem": "A bag holds 4 red and 6 blue marbles; two are drawn. " + BOILERPLATE},
                  {"id": "b", "problem": "Find the number of subsets of a 12 element set."}]  # fmt: skip
    three = [chat(f"A spinner with {k} equal sectors is spun twice. " + BOILERPLATE) for k in (5, 7, 9)]
    kept, report = drop_leaks("aime", three, evaluation)
    assert report.counts()["ngram"] == 0 and len(kept) == 3
    kept, report = drop_leaks("aime", three[:1], evaluation)
    assert report.counts()["ngram"] == 1 and kept == []


def test_aime_real_problems_of_another_year_are_kept():
    """The false-drop measurement the README quotes: AIME 2024 against AIME 2025 and back."""
    folder = SHARED / "data" / "aime"
    if not folder.is_dir():
        skip_without(f"{folder} is absent (CI and the team's machines have it)")
    a24 = [json.loads(line) for line in (folder / "test2024.jsonl").read_text().splitlines() if line.strip()]
    a25 = [
        json.loads(line)
        for name in ("test2025-I.jsonl", "test2025-II.jsonl")
        for line in (folder / name).read_text().splitlines()
        if line.strip()
    ]
    _, report = drop_leaks("aime", [chat(d["problem"]) for d in a24], a25)
    assert report.counts() == {"exact": 0, "identifier": 0, "molecule": 0, "ngram": 0}
    _, report = drop_leaks("aime", [chat(d["problem"]) for d in a25], a24)
    assert report.counts() == {"exact": 0, "identifier": 0, "molecule": 0, "ngram": 1}  # 1 of 30: see README
    _, report = drop_leaks("aime", [chat(d["problem"]) for d in a25], a25)
    assert report.counts()["exact"] == 30


def panorama_doc(number: str, claim: int, claims: list[str], **extra) -> dict:
    return {
        "application_number": number,
        "claim_number": claim,
        "context": {
            "title": "Wireless mesh radios",
            "abstract": "A mesh of radios relays packets between "
            "nodes using a shared schedule and adaptive power control.",
            "claims": claims,
        },
        **extra,
    }


PANORAMA_CLAIMS = [
    "1. A method comprising receiving, at a first radio node, a beacon frame that carries a relay schedule, and "
    "adjusting a transmit power of the node according to a congestion count reported by neighbouring nodes.",
    "2. The method of claim 1, wherein the beacon frame is sent every 100 milliseconds.",
]


GENERIC = "3. The method of claim 1, wherein the steps are performed by a processor of the device."


def test_panorama_identifiers_claims_and_paraphrases():
    battery = ["1. A device comprising a battery and a solar panel that charges the battery during daylight.", GENERIC]
    evaluation = [
        panorama_doc("15091542", 1, [*PANORAMA_CLAIMS, GENERIC]),
        panorama_doc("15091542", 2, [*PANORAMA_CLAIMS, GENERIC]),
        panorama_doc("15100000", 1, battery),
    ]
    rows = [
        panorama_doc("15091542", 3, PANORAMA_CLAIMS),  # the same application, another claim: its claims, exact
        chat("Application 15091542, claim 1: which prior art applies?"),  # the number alone: identifier
        chat("Claim: " + PANORAMA_CLAIMS[0].upper()),  # the claim re-cased, no number: exact
        chat("Consider a node: receiving, at a first radio node, a beacon frame that carries a relay schedule, "
             "then acting on it."),  # a 13-word window of the claim: ngram
        panorama_doc("16000001", 1, ["1. A kettle that boils water with an induction coil.", GENERIC]),  # clean
        chat("Application 1509154: a near number is not the number."),  # clean
    ]  # fmt: skip
    kept, report = drop_leaks("panorama", rows, evaluation)
    assert report.dropped == {0: "exact", 1: "identifier", 2: "exact", 3: "ngram"}
    assert kept == rows[4:]


def test_panorama_real_samples_of_other_applications_are_kept():
    folder = SHARED / "data" / "panorama-samples"
    if not folder.is_dir():
        skip_without(f"{folder} is absent (CI and the team's machines have it)")

    def load(task: str) -> list[dict]:
        return [json.loads(p.read_text()) for p in sorted((folder / task).glob("*.json"))]

    par, pi, noc = load("par4pc"), load("pi4pc"), load("noc4pc")
    assert drop_leaks("panorama", par, pi)[1].dropped == {}  # other applications: nothing dropped
    assert drop_leaks("panorama", pi, par)[1].dropped == {}
    assert len(drop_leaks("panorama", noc, pi)[1].dropped) == 10  # the same application: every row


def test_demo_questions():
    evaluation = [{"question": "Which one is a letter: 3-b-5?", "answer": "b"}]
    rows = [
        chat("which one is a letter:3 - b - 5 ?"),  # re-spaced copy
        chat("Which one is a letter: 3-b-5-7?"),  # a different question that starts the same way
        chat("Which one is a letter: 4-b-5?"),
    ]
    kept, report = drop_leaks("demo", rows, evaluation)
    assert report.dropped == {0: "exact"} and kept == rows[1:]


def test_short_items_are_matched_as_a_whole_field_or_user_turn():
    """An item under 6 words says too little to be looked for inside other text, so it is a leak
    only as a whole string of the row or the whole user turn — normalised — and only when it is
    one item's own (a text two items share, or one of common words only, is no key)."""
    evaluation = [
        {"id": "S-1", "problem": "Compute 17 squared.", "answer": "289"},
        {"id": "S-2", "problem": "Find x.", "answer": "1"},  # two items' text: no key
        {"id": "S-3", "problem": "Find x.", "answer": "2"},
        *AIME_EVAL,
    ]
    rows = [
        chat("compute  17 SQUARED"),  # the whole user turn, re-cased, punctuation aside
        {"instruction": "Compute 17 squared.", "input": "", "output": "289"},  # a whole field (alpaca)
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Compute 17 squared."},
                      {"role": "assistant", "content": "289"}]},  # the user turn beside a system prompt
        chat("Compute 17 squared, then add 3."),  # a longer question: kept
        chat("Please compute 17 squared for me."),  # inside other words: too little evidence, kept
        chat("Find x."),
    ]  # fmt: skip
    kept, report = drop_leaks("aime", rows, evaluation)
    assert report.dropped == {0: "exact", 1: "exact", 2: "exact"} and kept == rows[3:]


def test_math_mmlu_and_chinese_items_inside_longer_prompts():
    """MATH and MMLU items are their question texts (the aime rule); FinanceIQ, a family the guard
    has no rule for, keys every text field — and a Chinese question counts one word per character,
    so a copy inside a longer prompt is caught by its 13-word windows."""
    problem = "A bag holds 3 red marbles and 5 blue marbles. One marble is drawn at random. What is the probability?"
    rows = [chat(f"Solve: {problem} Give a fraction."), chat("A bag holds 2 red marbles. What is the probability?")]
    kept, report = drop_leaks("math", rows, [{"problem": problem, "level": "Level 2", "solution": "\\boxed{3/8}"}])
    assert report.dropped == {0: "exact"} and kept == rows[1:]
    question = "Which planet is known as the Red Planet?"  # under 6 words? no: 8; matched exact or by window
    rows = [chat(question), chat(f"Question: {question}\nA. Venus\nB. Mars\nAnswer:"), chat("Which planet is largest?")]
    kept, report = drop_leaks("mmlu", rows, [{"question": question, "choices": ["Venus", "Mars"], "answer": 1}])
    assert sorted(report.dropped) == [0, 1] and kept == rows[2:]
    question = "对照了有关的财务计算数据后，下述各项关于此客户财务状况的评定，哪项是错误的？"
    item = {"Question": question, "A": "客户的清偿比率并不合适", "B": "此客户的流动性比率超过正常范围",
            "Answer": "A", "subject": "理财规划师"}  # fmt: skip
    header, options = "以下是中国关于理财规划师考试的单项选择题。", "\nA. 甲\nB. 乙\n答案："
    rows = [
        chat(f"{header}\n{question}{options}"),  # the item inside a prompt
        chat(f"{header}\n下述各项关于客户的评定，哪项是正确的？{options}"),  # another question
    ]
    kept, report = drop_leaks("financeiq", rows, [item])
    assert list(report.dropped) == [0] and kept == rows[1:]


def test_normalisation():
    assert normalise("  $\\dfrac{1}{2}$\\,and\\!\\left( x \\right) ") == "\\frac{1}{2} and ( x )"
    assert normalise("ＡＢＣ") == "abc"  # NFKC + case


# --- from the command line, in the data env (RDKit canonicalises molecules) ---------------------
def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return path


def check(rdft, shared_dirs, benchmark: str, train: Path, docs: Path | None, *extra: str) -> dict:
    args = ["datasets", "check-leakage", "--benchmark", benchmark, str(train), "--json", *extra]
    if docs is not None:
        args += ["--eval-docs", str(docs)]
    result = rdft(*args, env=shared_dirs)
    assert result.returncode == 0, result.output
    return json.loads(result.stdout)


CHEM_EVAL = [
    {"id": "e1", "task": "mol_edit", "subtask": "add", "gt": None,
     "query": "Modify the molecule CC(=O)Oc1ccccc1C(=O)O by adding a hydroxyl. Answer as JSON {\"output\": SMILES}.",
     "meta": json.dumps({"molecule": "CC(=O)Oc1ccccc1C(=O)O", "added_group": "hydroxyl"})},
    {"id": "e2", "task": "mol_und", "subtask": "ring_count", "gt": "2",
     "query": "How many benzene rings does the molecule c1ccc2ccccc2c1 contain? Answer as JSON {\"count\": n}.",
     "meta": json.dumps({"smiles": "c1ccc2ccccc2c1", "ring": "c1ccccc1"})},
    {"id": "e3", "task": "reaction", "subtask": "fs", "gt": json.dumps({"Major Product": "CCOC(C)=O"}),
     "query": "Predict the major product of CCO and CC(=O)O under acid catalysis. Answer as JSON {\"output\": SMILES}.",
     "meta": json.dumps({"reactants": "CCO.CC(=O)O"})},
]  # fmt: skip


def test_chemistry_molecules_in_any_spelling(rdft, shared_dirs, data_env, eval_env, tmp_path):
    docs = write_jsonl(tmp_path / "bench.jsonl", CHEM_EVAL)
    rows = [
        # e1's molecule in another SMILES spelling, same subtask (add a group): molecule.
        chat("Modify the molecule OC(=O)c1ccccc1OC(C)=O by adding a hydroxyl. Answer as JSON {\"output\": SMILES}."),
        # e1's query verbatim: exact.
        chat(CHEM_EVAL[0]["query"]),
        # e2's molecule spelled differently, the same question: molecule.
        chat("How many benzene rings does the molecule C1=CC=C2C=CC=CC2=C1 contain? Answer as JSON {\"count\": n}."),
        # e3's reactant set, reordered and respelled: molecule.
        chat("Predict the major product of OC(C)=O and OCC under acid catalysis. Answer as JSON {\"output\": SMILES}."),
        # Clean: e1's molecule under another subtask (counting rings).
        chat("How many rings does the molecule OC(=O)c1ccccc1OC(C)=O contain? Answer as JSON {\"count\": n}."),
        # Clean: only one of e3's reactants.
        chat("Predict the major product of CCO and CC(=O)Cl. Answer as JSON {\"output\": SMILES}."),
        # Clean: another molecule, the same subtask as e1.
        chat("Modify the molecule c1ccccc1 by adding a hydroxyl. Answer as JSON {\"output\": SMILES}."),
        # e1 paraphrased: other words, another spelling, the same molecule and the same edit: molecule.
        chat("Attach one more OH to O=C(O)c1ccccc1OC(C)=O and reply with the resulting structure."),
        # Clean: e1's molecule, paraphrased, with another group.
        chat("Attach a nitro substituent to O=C(O)c1ccccc1OC(C)=O and reply with the resulting structure."),
    ]  # fmt: skip
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    out = tmp_path / "clean.jsonl"
    counts = check(rdft, shared_dirs, "chemcotbench_mol_edit", train, docs, "--output", str(out))
    # mol_edit's docs are e1 alone (the benchmark's rows are narrowed to its task family).
    assert counts == {"rows": 9, "kept": 6, "dropped": {"exact": 1, "identifier": 0, "molecule": 2, "ngram": 0}}
    kept = [json.loads(line) for line in out.read_text().splitlines()]
    assert kept == [rows[i] for i in (2, 3, 4, 5, 6, 8)]
    counts = check(rdft, shared_dirs, "chemcotbench_mol_und", train, docs)
    assert counts["dropped"] == {"exact": 0, "identifier": 0, "molecule": 1, "ngram": 0}
    counts = check(rdft, shared_dirs, "chemcotbench_reaction", train, docs)
    assert counts["dropped"] == {"exact": 0, "identifier": 0, "molecule": 1, "ngram": 0}


def planted(benchmark: str, docs: list[dict]) -> tuple[list[dict], dict[str, int]]:
    """Training rows for a benchmark: two copies of its first evaluation items (as the loop's data
    script would write them, with the benchmark's own prompt) and clean rows; the expected counts."""
    if benchmark.startswith("aime"):
        problem = docs[0].get("problem") or docs[0]["Problem"]
        return [chat(problem + "\nPlease reason step by step."), chat("What is 6 times 7?")], {"exact": 1}
    if benchmark.startswith("panorama"):
        doc = docs[0]
        copy = chat(f"Application number: {doc['application_number']}\nTarget claim: {doc['claim_number']}")
        claim = doc["context"]["claims"][0]
        return [copy, chat(f"Claim under review: {claim}"), chat("Is a bicycle patentable?")], {
            "identifier": 1,
            "exact": 1,
        }
    if benchmark.startswith("chemcotbench"):
        return [chat(docs[0]["query"]), chat("How many rings does CCO have?")], {"exact": 1}
    return [chat(docs[0]["question"] + "\nPut the letter in \\boxed{}."), chat("Which one is a letter: 1-2?")], {
        "exact": 1
    }


@pytest.mark.parametrize(
    "benchmark",
    [
        "aime24",
        "aime25",
        "panorama_par4pc",
        "panorama_pi4pc",
        "panorama_noc4pc",
        "chemcotbench_mol_und",
        "chemcotbench_mol_edit",
        "chemcotbench_mol_opt",
        "chemcotbench_reaction",
        "demo_letter",
    ],
)
def test_check_leakage_cli_for_every_benchmark(benchmark, rdft, shared_dirs, data_env, eval_env, tmp_path):
    if benchmark == "demo_letter":
        source = None  # its own items, shipped with rdft
        lines = (REPO / "evaluation" / "data" / "demo_letter.jsonl").read_text().splitlines()
    else:
        name = "chemcotbench" if benchmark.startswith("chemcotbench") else benchmark
        source = FIXTURES / "benchmarks" / f"{name}.jsonl"
        lines = source.read_text().splitlines()
    docs = [json.loads(line) for line in lines]
    if benchmark.startswith("chemcotbench"):
        docs = [d for d in docs if d["task"] == benchmark.removeprefix("chemcotbench_")]
    rows, expected = planted(benchmark, docs)
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    counts = check(rdft, shared_dirs, benchmark, train, source)
    dropped = sum(expected.values())
    assert counts == {
        "rows": len(rows),
        "kept": len(rows) - dropped,
        "dropped": {reason: expected.get(reason, 0) for reason in counts["dropped"]},
    }
    assert set(counts["dropped"]) == {"exact", "identifier", "molecule", "ngram"}


def test_check_leakage_bad_input_is_one_line(rdft, tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", [chat("x")])
    assert "unknown benchmark 'aime26'" in one_line_error(
        rdft("datasets", "check-leakage", "--benchmark", "aime26", str(train))
    )
    assert "does not exist" in one_line_error(
        rdft("datasets", "check-leakage", "--benchmark", "aime25", str(tmp_path / "missing.jsonl"))
    )


def test_grpo_and_dpo_prompt_rows_are_guarded():
    """GRPO's and DPO's rows are prompts with the benchmark row their answers are scored against
    (`{"prompt", "doc"}`): a planted evaluation item is dropped and counted, as a text prompt, as
    chat messages, or only in its doc; other questions are kept."""
    evaluation = [{"question": "Which one is a letter: 3-b-5?", "answer": "b"}]
    suffix = "\nPut the letter in \\boxed{}."
    planted = evaluation[0]
    rows = [
        {"prompt": planted["question"] + suffix, "doc": planted},
        {"prompt": [{"role": "user", "content": planted["question"] + suffix}], "doc": planted},
        {"prompt": "Which one is a letter: 4-c-5?" + suffix, "doc": planted},  # the item in its doc only
        {"prompt": "Which one is a letter: 4-b-5?" + suffix, "doc": {"question": "Which one is a letter: 4-b-5?",
                                                                      "answer": "b"}},
    ]  # fmt: skip
    kept, report = drop_leaks("demo", rows, evaluation)
    assert report.dropped == {0: "exact", 1: "exact", 2: "exact"} and kept == rows[3:]
