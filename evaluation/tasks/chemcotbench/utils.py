"""ChemCoTBench scorers, with the benchmark authors' definitions and RDKit.

Rows come in two shapes, both normalised by `normalise`: the benchmark's own (`task`,
`subtask`, `gt`, `meta` as a JSON string) and the authors' published logs (inputs and gold as
fields, the model's answer in `json_results`, the subtask in `task` or `prop`).

- mol_und: counts (`{"count": n}`: exact accuracy, MAE), yes/no (`{"output": "Yes"}`: accuracy),
  Murcko scaffold (`{"Output Scaffold": smiles}`: 1 for the identical scaffold, else the Tanimoto
  of Morgan r=2 1024-bit fingerprints of the two scaffolds).
- mol_edit (`{"output": smiles}`): correct when the SMILES is valid and the named group's SMARTS
  count changes by exactly +1 (add), −1 (delete) or both (sub); the reference is not used.
- mol_opt (`{"Final Target Molecule": smiles}`): improvement = oracle(pred) − oracle(source),
  0 when unreadable or invalid; success = improvement > 0; best = improvement ≥ 0.5 (logp,
  solubility) or ≥ 0.3 (others). logp is TDC's penalised logP, qed RDKit's QED, solubility the
  authors' refit ESOL. DRD2/GSK3β/JNK3 are TDC's scikit-learn classifiers: their pickles
  (`drd2_current.pkl`, `gsk3b_current.pkl`, `jnk3_current.pkl`) are loaded from the folder in
  RDFT_CHEM_ORACLE_DIR when present; without them those subtasks are reported `unavailable`,
  never scored 0.
- reaction: fs/retro/nepp exact match by InChI; rcr case-insensitive text match; mechsel letter.
Runs in the eval env; imports nothing from rdft.
"""

from __future__ import annotations

import json
import os
import pickle
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import numpy
from answers import last_json_value, per_sample, responses_of
from rdkit import Chem, DataStructs, RDConfig, RDLogger
from rdkit.Chem import QED, AllChem, Crippen, Descriptors, rdFingerprintGenerator
from rdkit.Chem.Scaffolds import MurckoScaffold

RDLogger.DisableLog("rdApp.*")  # invalid SMILES from models are expected, not noise
sys.path.append(os.path.join(RDConfig.RDContribDir, "SA_Score"))
import sascorer  # noqa: E402

# Functional groups of mol_edit, as SMARTS (the benchmark authors' table).
GROUP_SMARTS = {
    "benzene_ring": "[cR1]1[cR1][cR1][cR1][cR1][cR1]1",
    "hydroxyl": "[OX2H]",
    "aldehyde": "[CX3H1](=O)[#6]",
    "ketone": "[#6][CX3](=O)[#6]",
    "carboxyl": "[CX3](=O)[OX2H1]",
    "ester": "[#6][CX3](=O)[OX2H0][#6]",
    "anhydride": "[CX3](=[OX1])[OX2][CX3](=[OX1])",
    "amine": "[NX3;H2,H1;!$(NC=O)]",
    "amide": "[NX3][CX3](=[OX1])[#6]",
    "nitro": "[$([NX3](=O)=O),$([NX3+](=O)[O-])][!#8]",
    "halo": "[F,Cl,Br,I]",
    "thiol": "[#16X2H]",
    "thioether": "[SX2][CX4]",
    "disulfide": "[#16X2H0][#16X2H0]",
    "sulfoxide": "[$([#16X3]=[OX1]),$([#16X3+][OX1-])]",
    "sulfone": "[$([#16X4](=[OX1])=[OX1]),$([#16X4+2]([OX1-])[OX1-])]",
    "sulfide": "[#16X2H0]",
    "nitrile": "[NX1]#[CX2]",
    "borane": "[BX3]",
}
FAMILY_OF = {
    "fg_count": "mol_und", "ring_count": "mol_und", "murcko_scaffold": "mol_und",
    "ring_system_scaffold": "mol_und", "mutated": "mol_und", "permutated": "mol_und", "equivalence": "mol_und",
    "add": "mol_edit", "delete": "mol_edit", "sub": "mol_edit",
    "logp": "mol_opt", "qed": "mol_opt", "solubility": "mol_opt", "drd": "mol_opt", "gsk": "mol_opt", "jnk": "mol_opt",
    "fs": "reaction", "retro": "reaction", "nepp": "reaction", "rcr": "reaction", "mechsel": "reaction",
}  # fmt: skip
ALIASES = {
    "fg_samples": "fg_count", "functional_group_count": "fg_count", "Murcko_scaffold": "murcko_scaffold",
    "mutated_list": "mutated", "permutated_list": "permutated", "permuted": "permutated",
    "mech_sel": "mechsel", "RCR": "rcr", "mol_opt_logp": "logp",
}  # fmt: skip
ANSWER_KEY = {
    "fg_count": "count", "ring_count": "count", "murcko_scaffold": "Output Scaffold",
    "logp": "Final Target Molecule", "qed": "Final Target Molecule", "solubility": "Final Target Molecule",
    "drd": "Final Target Molecule", "gsk": "Final Target Molecule", "jnk": "Final Target Molecule",
}  # fmt: skip
BEST_THRESHOLD = {"logp": 0.5, "solubility": 0.5}  # others: 0.3
ORACLE_FILES = {"drd": "drd2", "gsk": "gsk3b", "jnk": "jnk3"}
MORGAN = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=1024)


# --- molecules --------------------------------------------------------------------------------
def mol(smiles) -> Chem.Mol | None:
    if not isinstance(smiles, str) or not smiles.strip():
        return None
    return Chem.MolFromSmiles(smiles.strip())


def count_group(molecule: Chem.Mol, group: str) -> int:
    key = group.strip().lower().replace(" ", "_")
    pattern = Chem.MolFromSmarts(GROUP_SMARTS[key])
    matches = len(molecule.GetSubstructMatches(pattern))
    if key == "sulfide":  # disulfides are counted apart
        matches -= len(molecule.GetSubstructMatches(Chem.MolFromSmarts(GROUP_SMARTS["disulfide"])))
    return matches


def scaffold_score(predicted, gold) -> float:
    pred_mol, gold_mol = mol(predicted), mol(gold)
    if pred_mol is None or gold_mol is None:
        return 0.0
    pred_scaffold = MurckoScaffold.GetScaffoldForMol(pred_mol)
    gold_scaffold = MurckoScaffold.GetScaffoldForMol(gold_mol)
    if Chem.MolToSmiles(pred_scaffold) == Chem.MolToSmiles(gold_scaffold):
        return 1.0
    return DataStructs.TanimotoSimilarity(MORGAN.GetFingerprint(pred_scaffold), MORGAN.GetFingerprint(gold_scaffold))


def penalized_logp(molecule: Chem.Mol) -> float:
    """TDC's penalised logP: normalised Crippen logP − SA score − large-ring penalty (the
    largest cycle of networkx's cycle basis, as TDC computes it)."""
    import networkx  # only this oracle needs it (the data env, which reads prompts, has none)

    log_p = Crippen.MolLogP(molecule)
    sa = -sascorer.calculateScore(molecule)
    cycles = networkx.cycle_basis(networkx.Graph(Chem.rdmolops.GetAdjacencyMatrix(molecule)))
    cycle = -max(0, max((len(c) for c in cycles), default=0) - 6)
    return (
        (log_p - 2.4570953396190123) / 1.434324401111988
        + (sa - -3.0525811293166134) / 0.8335207024513095
        + (cycle - -0.0485696876403053) / 0.2860212110245455
    )


def esol(molecule: Chem.Mol) -> float:
    """The benchmark authors' refit ESOL (log solubility)."""
    heavy = molecule.GetNumHeavyAtoms()
    aromatic = sum(1 for atom in molecule.GetAtoms() if atom.GetIsAromatic()) / heavy if heavy else 0.0
    return (
        0.26121066137801696
        - 0.7416739523408995 * Crippen.MolLogP(molecule)
        - 0.0066138847738667125 * Descriptors.MolWt(molecule)
        + 0.003451545565957996 * Descriptors.NumRotatableBonds(molecule)
        - 0.42624840441316975 * aromatic
    )


def _drd2_features(molecule: Chem.Mol):
    """TDC's DRD2 features: Morgan radius-3 feature counts folded into 2048 slots."""
    counts = AllChem.GetMorganFingerprint(molecule, 3, useCounts=True, useFeatures=True)
    features = numpy.zeros((1, 2048), numpy.int32)
    for index, value in counts.GetNonzeroElements().items():
        features[0, index % 2048] += int(value)
    return features


def _ecfp4_bits(molecule: Chem.Mol):
    """TDC's GSK3β/JNK3 features: Morgan radius-2 2048-bit vector."""
    bits = AllChem.GetMorganFingerprintAsBitVect(molecule, 2, nBits=2048)
    features = numpy.zeros((2048,))
    DataStructs.ConvertToNumpyArray(bits, features)
    return features.reshape(1, -1)


def load_activity_oracles(folder: str | None) -> dict:
    """The DRD2/GSK3β/JNK3 classifiers found in `folder`, as molecule → probability functions."""
    oracles = {}
    for subtask, stem in ORACLE_FILES.items():
        path = next(
            (
                os.path.join(folder, f"{stem}{suffix}.pkl")
                for suffix in ("_current", "")
                if folder and os.path.isfile(os.path.join(folder, f"{stem}{suffix}.pkl"))
            ),
            None,
        )
        if path is None:
            continue
        with open(path, "rb") as handle:
            model = pickle.load(handle)
        featurize = _drd2_features if subtask == "drd" else _ecfp4_bits
        oracles[subtask] = lambda m, model=model, featurize=featurize: float(model.predict_proba(featurize(m))[0, 1])
    return oracles


ORACLES = {"logp": penalized_logp, "qed": QED.qed, "solubility": esol}
ORACLES.update(load_activity_oracles(os.environ.get("RDFT_CHEM_ORACLE_DIR")))


def same_molecule(predicted, gold) -> bool:
    pred_mol, gold_mol = mol(predicted), mol(gold)
    if pred_mol is None or gold_mol is None:
        return False
    return Chem.MolToInchi(pred_mol) == Chem.MolToInchi(gold_mol)


# --- rows ---------------------------------------------------------------------------------------
def _meta(row: dict) -> dict:
    meta = row.get("meta") or {}
    return json.loads(meta) if isinstance(meta, str) and meta.strip() else meta if isinstance(meta, dict) else {}


def subtask_of(row: dict) -> str:
    name = row.get("subtask") or row.get("prop") or row.get("task") or ""
    name = ALIASES.get(name, name)
    if name not in FAMILY_OF:
        raise ValueError(f"unknown ChemCoTBench subtask {name!r}")
    return name


def normalise(row: dict) -> dict:
    """The fields a scorer needs, from a benchmark row or an authors' log row."""
    meta = _meta(row)
    merged = {**meta, **{k: v for k, v in row.items() if k != "meta"}}
    subtask = subtask_of(row)
    gold = row.get("gt") if row.get("gt") not in (None, "") else meta.get("gt")  # ChemCoT rows keep it in meta
    if isinstance(gold, str) and gold.strip().startswith("{"):
        gold = json.loads(gold)
    if gold is None and "json_results" in row:  # authors' logs carry the gold answer in their own fields
        gold = {
            "fg_count": merged.get("fg_num"),
            "ring_count": merged.get("count"),
            "murcko_scaffold": merged.get("largest_scaffold"),
            "ring_system_scaffold": "Yes",  # the authors score the rate of "yes"
            "mutated": "No",  # a mutated molecule is a different molecule
            "permutated": "Yes",  # a permuted SMILES is the same molecule
        }.get(subtask)  # their yes/no subtasks hold one answer by construction: only a log row takes it
    if gold is None and FAMILY_OF[subtask] in ("mol_und", "reaction"):
        # A dataset row without its gold is not scored against a guessed one (a constant "Yes"
        # would score a constant-answer model 1.0 on it).
        raise ValueError(f"{subtask} item {row.get('id', '')!s} has no gold answer (gt); give the benchmark's rows")
    source = next((merged[k] for k in ("molecule", "src_smiles", "source", "src", "smiles") if merged.get(k)), None)
    return {
        "subtask": subtask,
        "family": FAMILY_OF[subtask],
        "gold": gold,
        "source": source,
        "added_group": merged.get("added_group"),
        "removed_group": merged.get("removed_group"),
    }


def response_text(response) -> str:
    return response if isinstance(response, str) else json.dumps(response)


# --- scoring ----------------------------------------------------------------------------------
def score_item(row: dict, response) -> dict:
    """The item's scores, and `answer`: what was read from the response (None when nothing)."""
    item = normalise(row)
    subtask, text = item["subtask"], response_text(response)
    out = {"subtask": subtask, "family": item["family"]}
    value = None
    if subtask in ("fg_count", "ring_count"):
        value = last_json_value(text, "count")
        count = int(value) if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()) else None
        gold = int(item["gold"])
        out.update(readable=int(count is not None), correct=int(count == gold))
        out["abs_error"] = abs(count - gold) if count is not None else None
    elif subtask in ("ring_system_scaffold", "mutated", "permutated", "equivalence"):
        value = last_json_value(text, "output")
        answer = value.strip().lower() if isinstance(value, str) and value.strip().lower() in ("yes", "no") else None
        out.update(readable=int(answer is not None), correct=int(answer == str(item["gold"]).strip().lower()))
    elif subtask == "murcko_scaffold":
        value = last_json_value(text, "Output Scaffold")
        out.update(readable=int(mol(value) is not None), score=scaffold_score(value, item["gold"]))
    elif subtask in ("add", "delete", "sub"):
        value = last_json_value(text, "output")
        predicted, source = mol(value), mol(item["source"])
        correct = False
        if predicted is not None and source is not None:
            if subtask in ("add", "sub"):
                group = item["added_group"]
                correct = count_group(predicted, group) == count_group(source, group) + 1
            if subtask in ("delete", "sub"):
                group = item["removed_group"]
                removed = count_group(predicted, group) == count_group(source, group) - 1
                correct = removed if subtask == "delete" else correct and removed
        out.update(readable=int(predicted is not None), correct=int(correct))
    elif FAMILY_OF[subtask] == "mol_opt":
        value = last_json_value(text, "Final Target Molecule")
        if subtask not in ORACLES:
            out.update(unavailable=True, answer=value if isinstance(value, str) else None)
            return out
        predicted, source = mol(value), mol(item["source"])
        oracle = ORACLES[subtask]
        improvement = oracle(predicted) - oracle(source) if predicted is not None and source is not None else 0.0
        out.update(
            readable=int(predicted is not None),
            improvement=improvement,
            success=int(improvement > 0),
            best=int(improvement >= BEST_THRESHOLD.get(subtask, 0.3)),
        )
    elif subtask in ("fs", "retro", "nepp"):
        value = last_json_value(text, "output")
        gold = item["gold"]
        gold = gold.get("Major Product") if isinstance(gold, dict) else gold
        out.update(readable=int(mol(value) is not None), correct=int(same_molecule(value, gold)))
    elif subtask == "rcr":
        value = last_json_value(text, "output")
        answer = value.strip().lower() if isinstance(value, str) else None
        out.update(readable=int(answer is not None), correct=int(answer == str(item["gold"]).strip().lower()))
    elif subtask == "mechsel":
        value = last_json_value(text, "output")
        answer = value.strip().upper() if isinstance(value, str) and len(value.strip()) == 1 else None
        out.update(readable=int(answer is not None), correct=int(answer == str(item["gold"]).strip().upper()))
    out["answer"] = None if value is None else value.strip() if isinstance(value, str) else json.dumps(value)
    return out


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def subtask_metrics(items: list[dict]) -> dict:
    """Each subtask's metrics, and its score in [0, 1] for the primary metric (`subtask_score`)."""
    subtask = items[0]["subtask"]
    out = {"n": len(items), "n_unreadable": sum(1 - i.get("readable", 1) for i in items)}
    if subtask in ("fg_count", "ring_count"):
        errors = [i["abs_error"] for i in items if i["abs_error"] is not None]
        out.update(exact_accuracy=_mean([i["correct"] for i in items]), mae=_mean(errors) if errors else None)
        out["subtask_score"] = out["exact_accuracy"]
    elif subtask == "murcko_scaffold":
        out["scaffold_score"] = out["subtask_score"] = _mean([i["score"] for i in items])
    elif subtask in ("add", "delete", "sub"):
        out["correct_rate"] = out["subtask_score"] = _mean([i["correct"] for i in items])
    elif FAMILY_OF[subtask] == "mol_opt":
        out.update(
            success_rate=_mean([i["success"] for i in items]),
            best_rate=_mean([i["best"] for i in items]),
            mean_improvement=_mean([i["improvement"] for i in items]),
        )
        out["subtask_score"] = out["success_rate"]
    else:
        key = "accuracy" if FAMILY_OF[subtask] == "mol_und" or subtask in ("rcr", "mechsel") else "exact_match"
        out[key] = out["subtask_score"] = _mean([i["correct"] for i in items])
    return out


def split_metrics(items: list[dict]) -> dict:
    """Per-subtask metrics; the primary value is computed by `primary_value`."""
    unavailable = sorted({i["subtask"] for i in items if i.get("unavailable")})
    by_subtask: dict[str, list[dict]] = {}
    for item in items:
        if not item.get("unavailable"):
            by_subtask.setdefault(item["subtask"], []).append(item)
    metrics = {name: subtask_metrics(group) for name, group in sorted(by_subtask.items())}
    for name in unavailable:
        metrics[name] = {"n": sum(1 for i in items if i["subtask"] == name), "unavailable": True}
    return {"subtasks": metrics, "unavailable": unavailable}


def primary_value(items: list[dict]) -> float | None:
    """mol_und and reaction: the mean of the subtasks' [0,1] scores; mol_edit and mol_opt: the
    rate over all (available) items."""
    scored = [i for i in items if not i.get("unavailable")]
    if not scored:
        return None
    family = scored[0]["family"]
    if family in ("mol_edit",):
        return _mean([i["correct"] for i in scored])
    if family == "mol_opt":
        return _mean([i["success"] for i in scored])
    groups: dict[str, list[dict]] = {}
    for item in scored:
        groups.setdefault(item["subtask"], []).append(item)
    return _mean([subtask_metrics(group)["subtask_score"] for group in groups.values()])


# --- lm-eval hooks ----------------------------------------------------------------------------
def doc_to_text(doc: dict) -> str:
    """The benchmark's own prompt; ChemCoTDataset rows carry theirs in the same field."""
    return str(doc["query"])


def answer_key(row: dict) -> str:
    """The JSON key a subtask's answer is read from."""
    return ANSWER_KEY.get(subtask_of(row), "output")


def _family_docs(dataset, family: str):
    return dataset.filter(lambda row: FAMILY_OF.get(ALIASES.get(row["subtask"], row["subtask"])) == family)


def mol_und_docs(dataset):
    return _family_docs(dataset, "mol_und")


def mol_edit_docs(dataset):
    return _family_docs(dataset, "mol_edit")


def mol_opt_docs(dataset):
    return _family_docs(dataset, "mol_opt")


def reaction_docs(dataset):
    return _family_docs(dataset, "reaction")


def process_results(doc: dict, results: list) -> dict:
    """One number per item for lm-eval's own table (rdft's summary uses `split_metrics`); NaN marks
    an item whose oracle is unavailable, so it can never pass for a 0."""
    values = []
    for response in responses_of(results):  # k sampled responses: their mean
        item = score_item(doc, response)
        if item.get("unavailable"):
            return {"score": float("nan")}
        values.append(next((float(item[key]) for key in ("correct", "score", "success") if key in item), 0.0))
    return {"score": sum(values) / len(values)}


# --- the family interface: evaluation/score.py and recipes/data_recipe.py call only these --------
def score(entry: dict, doc: dict, responses: list[str], judge=None) -> dict:
    return per_sample([score_item(doc, response) for response in responses])


def summarize(entry: dict, items: list[dict]) -> dict:
    """Per-subtask metrics; docs of another task family than the benchmark's are refused (a
    mol_und file scored as mol_opt would score nothing right)."""
    expected = entry["name"].removeprefix("chemcotbench_")
    wrong = sorted({item["family"] for item in items} - {expected})
    if wrong:
        raise SystemExit(
            f"score: docs hold {', '.join(wrong)} rows, not {expected}; use --benchmark chemcotbench_{wrong[0]}"
        )
    return split_metrics(items)


def primary(entry: dict, items: list[dict]) -> float | None:
    return primary_value(items)


def full_marks(entry: dict, item: dict) -> bool:
    """Full marks under the authors' rule; where rdft has no oracle for the property (mol_opt's
    DRD2/GSK3β/JNK3 without their pickles), a valid molecule is accepted."""
    if item.get("unavailable"):
        return mol(item.get("answer")) is not None
    return any(item.get(key) in (1, 1.0) for key in ("correct", "success", "score"))


def training_answer(entry: dict, doc: dict, force_think: bool) -> tuple[str, str] | str:
    """(reasoning, final answer) of a training row built from a ChemCoT row (`query`,
    `raw_cot`/`struct_cot`, gold in `meta`), or why it has none: the chain-of-thought, ending
    with the subtask's answer JSON (appended from the gold when the chain-of-thought lacks it)."""
    cot = doc.get("raw_cot") or doc.get("struct_cot")
    cot = cot if isinstance(cot, str) or cot is None else json.dumps(cot, ensure_ascii=False)
    if not cot or not cot.strip():
        return "no reasoning"
    key = answer_key(doc)
    value = last_json_value(cot, key)
    if value is not None:
        return cot.strip(), "" if not force_think else json.dumps({key: value}, ensure_ascii=False)
    meta = _meta(doc)
    gold = doc.get("gt") if doc.get("gt") not in (None, "") else meta.get("gt", meta.get("answer"))
    if gold in (None, "") and doc.get("task") == "mol_edit":
        gold = meta.get("reference")  # an edit the authors made; the scorer checks it like any answer
    if isinstance(gold, str) and gold.strip().startswith("{"):
        gold = json.loads(gold)
    if isinstance(gold, dict):
        gold = gold.get(key, gold.get("Major Product", gold.get("output")))
    if gold in (None, ""):
        return "no answer"
    return cot.strip(), json.dumps({key: gold}, ensure_ascii=False)


def benchmark_doc(entry: dict, row: dict) -> dict:
    """`row` (an item or a training row) as the benchmark's docs hold it: as it is (the family has
    no prompt variants)."""
    return row


def benchmark_docs(entry: dict, rows: list[dict]) -> list[dict]:
    """The benchmark's task family (mol_und, mol_edit, mol_opt, reaction) among ChemCoTBench's
    rows, which the Hub repo holds all together."""
    family = entry["name"].removeprefix("chemcotbench_")
    return [row for row in rows if FAMILY_OF.get(subtask_of(row)) == family]
