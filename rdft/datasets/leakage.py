"""The leakage guard: training rows that contain an item of the target benchmark's evaluation
data (validation and hidden test) are dropped, and counted by the reason they matched.

A row is read whole: every string in it (all turns, any field) is one text. An evaluation item
is described by keys that depend on its benchmark family:

- `exact`: the item's text (AIME problem, demo question, PANORAMA claims and abstract, the
  ChemCoTBench query), normalised — Unicode NFKC, case, whitespace, `$`, LaTeX spacing
  (`\\,` `\\;` `\\!` `\\left` `\\right`, `\\dfrac`/`\\tfrac` → `\\frac`) — and compared as words and
  punctuation marks: the whole text appears in the row, alone or inside a longer prompt.
  An item shorter than 6 words (a review, a label-sized question) says too little to be found
  inside longer text, so it is matched whole: a leak is a string of the row (any field, any
  turn) or the row's user turn that is, normalised, exactly the item's question. A user
  benchmark's prompt template rendered with the item is an exact key too (found inside text).
- `ngram`: the row shares a 13-word window with the item's text. Boilerplate must not cause a
  drop, so a window counts only when it is the item's own words: it occurs in no other
  evaluation group, it occurs in fewer than 3 training rows with different prompts (a phrase
  a training set repeats across problems is phrasing, not content), and it holds a word of at
  least 3 characters, or a number of at least 2 digits, that no other evaluation group uses.
- `identifier`: PANORAMA's application number appears in the row as a word (the benchmark
  splits applications 90:5:5, so a training row never legitimately names an evaluation one).
- `molecule`: ChemCoTBench's item is its molecule(s) and its task parameters, whatever the
  wording: the input molecule(s) appear in the row in any SMILES spelling (canonicalised with
  RDKit) — for reactions the whole reactant (or product) set, for a pair question both
  molecules — and the row names the item's parameters: the group added or removed (or counted),
  the property to optimise, the scaffold or ring asked for (`TASK_TERMS`, with their usual
  synonyms). A paraphrased instruction with the same molecule and the same edit is the item.

An exact key must belong to one group, and a key that is only part of an item (a PANORAMA claim)
must also hold a word of its own, so a generic dependent claim ("The method of claim 1, wherein
the steps are performed by a processor.") is no key. A row that matches several keys counts once, under the first of
exact, identifier, molecule, ngram. Items are grouped (PANORAMA: by application; otherwise one group per item) so the
claims of one application do not mark each other as boilerplate.

Runs on the host and, as `rdft_data.leakage`, in the data env (where RDKit is), also as a
command: python -m rdft_data.leakage --family F --eval-docs DOCS... --train FILE... [--output CLEAN]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

NGRAM = 13  # the usual decontamination window (GPT-3, Llama 2)
BOILERPLATE_TRAIN_ROWS = 3  # a window in this many training rows with different prompts is phrasing
MIN_EXACT_WORDS = 6  # shorter texts are matched only as a whole field or user turn (they say too little)
MIN_IDENTIFIER_CHARS = 6  # application numbers have 8 digits; shorter ones would match by chance
# ChemCoTBench's task parameters as words a row names them by (any one of a set's spellings):
# functional groups (the benchmark's GROUP_SMARTS names), properties to optimise, and what the
# structure questions ask for. A name not listed is matched by its own words.
GROUP_WORDS = {
    "hydroxyl": ("hydroxyl", "hydroxy", "oh", "alcohol"), "aldehyde": ("aldehyde", "formyl", "cho"),
    "ketone": ("ketone", "oxo", "carbonyl"), "carboxyl": ("carboxyl", "carboxylic", "cooh"),
    "ester": ("ester",), "anhydride": ("anhydride",), "amine": ("amine", "amino", "nh2"),
    "amide": ("amide", "amido"), "nitro": ("nitro", "no2"), "thiol": ("thiol", "sulfhydryl", "mercapto", "sh"),
    "halo": ("halo", "halogen", "halide", "fluoro", "chloro", "bromo", "iodo", "fluorine", "chlorine",
             "bromine", "iodine"),
    "benzene_ring": ("benzene", "phenyl", "aromatic"),
}  # fmt: skip
TASK_TERMS = {
    "logp": ("logp", "lipophilicity", "lipophilic", "hydrophobicity", "octanol"),
    "qed": ("qed", "druglikeness", "likeness"),
    "solubility": ("solubility", "soluble", "esol", "logs"),
    "drd": ("drd2", "drd", "dopamine"), "gsk": ("gsk3β", "gsk3b", "gsk3", "gsk", "glycogen"),
    "jnk": ("jnk3", "jnk", "kinase"),
    "murcko_scaffold": ("murcko", "scaffold", "framework"),
    "ring_count": ("ring", "rings"), "ring_system_scaffold": ("ring", "rings", "scaffold", "system"),
}  # fmt: skip
REASONS = ("exact", "identifier", "molecule", "ngram")
# The families with rules of their own; others: ANY_FAMILY.
FAMILIES = ("aime", "math", "mmlu", "panorama", "chemcotbench", "demo", "custom")
# Families whose item is its question text (problem, question): AIME, MATH, MMLU.
QUESTION_FAMILIES = ("aime", "math", "mmlu")
# What the guard compares, per family (`rdft datasets info` shows it).
RULES = {
    "aime": "the problem text: exact (normalised) or a shared 13-word window that is the problem's own",
    "math": "the problem text: exact (normalised) or a shared 13-word window that is the problem's own",
    "mmlu": "the question text: exact (normalised; a question under 6 words as a whole field or user turn) or a "
    "shared 13-word window that is the question's own",
    "panorama": "the application number, and the application's claims and abstract: exact or a shared 13-word window",
    "chemcotbench": "the input molecule(s) in any SMILES spelling (RDKit) with the same task parameters (group, "
    "property, scaffold or ring), and the query exactly",
    "demo": "the question text, exact (normalised)",
    "custom": "every text field of the item (prompt, answer, the rest): exact or a shared 13-word window; "
    "the prompt rendered with its template, exact; a question under 6 words as a whole field or user turn",
}
# A family the guard has no rule of its own for (a new one added under evaluation/tasks/): its
# schema is not known here, so every text field is a key, as for a user's benchmark.
ANY_FAMILY = RULES["custom"]

_LATEX_SPACING = re.compile(r"\\(?:[,;:! ]|quad|qquad|left|right)")
_FRACS = re.compile(r"\\[dt]frac")
# Chinese and Japanese write no spaces: each ideograph or kana counts as a word, so a question in
# them has as many words as characters (else a whole Chinese sentence would be one short "word").
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK_CHAR = re.compile(rf"[{_CJK}]")
_WORD = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+")
_TOKEN = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+|[^\w\s]")  # words and single punctuation marks
_SMILES_TOKEN = re.compile(r"[A-Za-z0-9@+\-\[\]()=#$%/\\.:*]{3,}")


def normalise(value: object) -> str:
    """Unicode form, case, `$` and LaTeX spacing do not make a text new."""
    text = unicodedata.normalize("NFKC", str(value)).casefold()
    text = _FRACS.sub(r"\\frac", _LATEX_SPACING.sub(" ", text)).replace("$", " ").replace("~", " ")
    return " ".join(text.split())


def words(value: object) -> list[str]:
    """The normalised text as words (letters and digits); punctuation and spacing drop out."""
    return _WORD.findall(normalise(value))


def tokens(value: object) -> list[str]:
    """The normalised text as words and punctuation marks: what exact matches compare, so
    `3-b-5?` is not found inside `3-b-5-7?` while spacing still does not matter."""
    return _TOKEN.findall(normalise(value))


def strings(value: object) -> Iterator[str]:
    """Every string inside a row (keys too), depth first: the guard reads all of it."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, inner in value.items():
            yield str(key)
            yield from strings(inner)
    elif isinstance(value, (list, tuple)):
        for inner in value:
            yield from strings(inner)
    elif value is not None:
        yield str(value)


def row_text(row: object) -> str:
    return "\n".join(strings(row))


def user_turn(row: object) -> str | None:
    """A chat row's user turns, joined (None for other rows): matched whole against short items."""
    if isinstance(row, dict) and isinstance(row.get("messages"), list):
        return "\n".join(
            text
            for message in row["messages"]
            if isinstance(message, dict) and message.get("role") == "user"
            for text in strings(message.get("content"))
        )
    return None


def row_prompt(row: object) -> str:
    """What a row asks (everything but its assistant turns / alpaca output): rows that differ
    only in their answers are one prompt when counting how common a phrase is."""
    if isinstance(row, dict) and isinstance(row.get("messages"), list):
        return "\n".join(
            text
            for message in row["messages"]
            if isinstance(message, dict) and message.get("role") != "assistant"
            for text in strings(message.get("content"))
        )
    if isinstance(row, dict) and ("instruction" in row or "output" in row):
        return row_text({k: v for k, v in row.items() if k != "output"})
    return row_text(row)


# --- molecules (RDKit, imported when a chemistry benchmark is guarded) ---------------------------
class Molecules:
    """Canonical SMILES of the molecules written in a text, any spelling (cached per token)."""

    def __init__(self):
        from rdkit import Chem, RDLogger

        RDLogger.DisableLog("rdApp.*")  # most tokens of prose are not SMILES
        self.chem = Chem
        self.cache: dict[str, str | None] = {}

    def canonical(self, smiles: str) -> str | None:
        if smiles not in self.cache:
            mol = self.chem.MolFromSmiles(smiles) if smiles else None
            self.cache[smiles] = self.chem.MolToSmiles(mol) if mol is not None and mol.GetNumAtoms() >= 2 else None
        return self.cache[smiles]

    def fragments(self, smiles: str) -> set[str]:
        """The canonical fragments of a (possibly dotted) SMILES."""
        out = set()
        for part in str(smiles).split("."):
            canonical = self.canonical(part.strip())
            if canonical:
                out.add(canonical)
        return out

    def in_text(self, text: str) -> set[str]:
        found = set()
        for token in _SMILES_TOKEN.findall(text):
            token = token.rstrip(".,:;")
            if sum(c.isalpha() for c in token) >= 2:
                found |= self.fragments(token)
                if token.count("(") != token.count(")"):  # "(CCO)" or "CCO)" in prose
                    found |= self.fragments(token.strip("()"))
        return found


# --- evaluation items ---------------------------------------------------------------------------
@dataclass
class Item:
    group: str
    texts: list[str] = field(default_factory=list)  # exact and n-gram keys
    exact_only: list[str] = field(default_factory=list)  # exact keys only (templated prompts)
    questions: list[str] = field(default_factory=list)  # what the item asks: under 6 words, matched whole
    parts: bool = False  # texts are parts of the item (claims), not the whole question: keys need own words
    identifiers: list[str] = field(default_factory=list)
    molecules: set[str] = field(default_factory=set)  # every fragment must appear in the row
    terms: list[tuple[str, ...]] = field(default_factory=list)  # chemistry: each a parameter's spellings


def _lower(doc: dict) -> dict:
    return {str(k).lower(): v for k, v in doc.items()}


def _meta(doc: dict) -> dict:
    meta = doc.get("meta") or {}
    if isinstance(meta, str):
        try:
            meta = json.loads(meta) if meta.strip() else {}
        except json.JSONDecodeError:
            return {}
    return meta if isinstance(meta, dict) else {}


CHEM_INPUT_FIELDS = ("molecule", "src_smiles", "source", "src", "smiles", "reactants", "product", "input")


def chem_input(doc: dict) -> str | None:
    """The item's input molecule(s): from its own fields or meta, or the reactant side of a
    reaction SMILES."""
    merged = {**_meta(doc), **{k: v for k, v in doc.items() if k != "meta"}}
    for key in CHEM_INPUT_FIELDS:
        value = merged.get(key)
        if isinstance(value, str) and value.strip():
            return value
    reaction = merged.get("rxn_smiles")
    if isinstance(reaction, str) and ">" in reaction:
        return reaction.split(">")[0]
    return None


def chem_terms(merged: dict) -> list[tuple[str, ...]]:
    """The words a row must name to ask a ChemCoTBench item's task (see TASK_TERMS), besides
    its molecules: one tuple of spellings per parameter."""
    subtask = str(merged.get("subtask") or merged.get("prop") or merged.get("task") or "").lower()
    terms = []
    for key in ("added_group", "removed_group", "fg_name"):
        group = merged.get(key)
        if isinstance(group, str) and group.strip():
            name = "_".join(words(group))
            terms.append(GROUP_WORDS.get(name, GROUP_WORDS.get(name.removesuffix("_group"), tuple(words(group)))))
    if subtask in TASK_TERMS:
        terms.append(TASK_TERMS[subtask])
    return terms


def item_of(family: str, doc: dict, index: int, molecules: Molecules | None, spec: dict | None = None) -> Item:
    lowered = _lower(doc)
    if family in QUESTION_FAMILIES:  # the problem is the item; its answer is any row's answer too
        group = str(lowered.get("id", index))
        problem = str(lowered.get("problem") or lowered.get("question") or "")
        return Item(group=f"item-{group}", texts=[problem], questions=[problem])
    if family == "demo":
        question = str(lowered.get("question") or "")
        return Item(group=f"item-{index}", texts=[question], questions=[question])
    if family == "panorama":
        number = str(lowered.get("application_number") or "").strip()
        context = lowered.get("context") or {}
        if isinstance(context, str):
            context = json.loads(context) if context.strip().startswith("{") else {}
        texts = [str(claim) for claim in (context.get("claims") or [])]
        if context.get("abstract"):
            texts.append(str(context["abstract"]))
        return Item(
            group=f"application-{number or index}",
            texts=texts,
            identifiers=[number] if len(number) >= MIN_IDENTIFIER_CHARS else [],
            parts=True,
        )
    if family == "chemcotbench":
        query = str(doc.get("query") or doc.get("Instruction") or "")
        source = chem_input(doc)
        found = molecules.fragments(source) if source and molecules else set()
        if not found and query and molecules:  # the molecule is only in the prompt
            found = molecules.in_text(query)
        merged = {**_meta(doc), **{k: v for k, v in doc.items() if k != "meta"}}
        partner = merged.get("mutated") or merged.get("permutated")  # a pair question asks about both
        if isinstance(partner, str) and molecules:
            found |= molecules.fragments(partner)
        return Item(
            group=f"item-{index}",
            exact_only=[query] if query else [],
            questions=[query] if query else [],
            molecules=found,
            terms=chem_terms(merged),
        )
    # custom (a user's benchmark) and any family without a rule here: every text field is a key.
    # With the benchmark's spec, the prompt fields are its question (a short answer or label is
    # no key: it is any row's answer too), and the template rendered with the item is a key.
    texts = [value for value in doc.values() if isinstance(value, str) and value.strip()]
    questions, rendered = [], []
    if spec:
        questions = [str(doc[f]) for f in spec.get("fields", [])[:-1] if isinstance(doc.get(f), (str, int, float))]
        if spec.get("prompt_template"):
            try:
                rendered = [spec["prompt_template"].format(**doc)]
            except (KeyError, IndexError, ValueError):  # an item without a field: scored as such, no key
                rendered = []
    return Item(group=f"item-{index}", texts=texts, parts=True, exact_only=rendered, questions=questions)


# --- the guard ----------------------------------------------------------------------------------
_START = 4  # exact keys are indexed by this many first words (< MIN_EXACT_WORDS)


def _windows(sequence: list[str]) -> Iterator[tuple[str, ...]]:
    for start in range(len(sequence) - NGRAM + 1):
        yield tuple(sequence[start : start + NGRAM])


class Guard:
    """Built from the evaluation docs of one benchmark family; `check(rows)` says, per row, the
    reason it leaks (or None)."""

    def __init__(self, family: str, docs: Iterable[dict], spec: dict | None = None):
        self.family = family
        self.molecules = Molecules() if family == "chemcotbench" else None
        self.items = [item_of(family, doc, i, self.molecules, spec) for i, doc in enumerate(docs)]
        groups_of_text: dict[tuple[str, ...], set[str]] = {}
        parts: set[tuple[str, ...]] = set()  # keys that are a part of an item (a claim), not all of it
        groups_of_window: dict[tuple[str, ...], set[str]] = {}
        groups_of_word: dict[str, set[str]] = {}
        for item in self.items:
            for text in item.texts + item.exact_only:
                groups_of_text.setdefault(tuple(tokens(text)), set()).add(item.group)
                if item.parts:
                    parts.add(tuple(tokens(text)))
                for word in words(text):
                    groups_of_word.setdefault(word, set()).add(item.group)
            for text in item.texts:
                for window in _windows(words(text)):
                    groups_of_window.setdefault(window, set()).add(item.group)

        def own(word: str) -> bool:  # (a CJK character is a word: one item's own is as telling as a long word)
            long = len(word) >= 3 or (word.isdigit() and len(word) >= 2) or bool(_CJK_CHAR.fullmatch(word))
            return len(groups_of_word.get(word, ())) == 1 and long

        # Exact keys: long enough, not shared by two groups, and, when a key is only part of an
        # item (a claim), holding a word of its own (boilerplate claims, templates); indexed by
        # their first tokens so a row is scanned once, not once per key.
        self.exact: dict[tuple[str, ...], list[tuple[list[str], str]]] = {}
        for key, groups in groups_of_text.items():
            key_words = [t for t in key if t[0].isalnum()]
            if len(groups) > 1 or len(key_words) < MIN_EXACT_WORDS:
                continue
            if key not in parts or any(own(w) for w in key_words):
                self.exact.setdefault(key[:_START], []).append((list(key), next(iter(groups))))

        # Short questions: matched only as a whole string of a row, with the same care (one group,
        # a word of their own: "positive" or "yes" shared by items is no key).
        self.whole: dict[tuple[str, ...], str] = {}
        for item in self.items:
            for text in item.questions:
                key_words = tuple(words(text))  # words only: "The plot was superb." is the item too
                if key_words and len(key_words) < MIN_EXACT_WORDS and any(own(w) for w in key_words):
                    self.whole[key_words] = "" if self.whole.get(key_words, item.group) != item.group else item.group
        self.whole = {key: group for key, group in self.whole.items() if group}  # one group's only

        self.windows = {
            window: next(iter(groups))
            for window, groups in groups_of_window.items()
            if len(groups) == 1 and any(own(word) for word in window)
        }
        self.identifiers = {i: item.group for item in self.items for i in item.identifiers}
        self.chemistry = [item for item in self.items if item.molecules]

    def reason(
        self, text: str, marks: list[str], row_words: list[str], row: object = None
    ) -> tuple[str | None, str | None]:
        """(reason, evaluation group) of one row, n-gram evidence aside (decided by `check`)."""
        if self.whole:
            for whole in [*strings(row), user_turn(row) or ""]:
                group = self.whole.get(tuple(words(whole)))
                if group:
                    return "exact", group
        for start in range(len(marks) - _START + 1):
            for key, group in self.exact.get(tuple(marks[start : start + _START]), ()):
                if marks[start : start + len(key)] == key:
                    return "exact", group
        if self.identifiers:
            present = set(row_words)
            for identifier, group in self.identifiers.items():
                if identifier.casefold() in present:
                    return "identifier", group
        if self.chemistry:
            found = self.molecules.in_text(text)
            if found:
                present = set(row_words)
                for item in self.chemistry:
                    if item.molecules <= found and all(any(w in present for w in term) for term in item.terms):
                        return "molecule", item.group
        return None, None

    def check(self, rows: Iterable[object]) -> Report:
        """The reason each row leaks, in one pass (rows are not kept)."""
        report = Report(rows=0)
        candidates: dict[int, set[tuple[str, ...]]] = {}
        prompts_of_window: dict[tuple[str, ...], set[str]] = {}
        for index, row in enumerate(rows):
            report.rows += 1
            text = row_text(row)
            row_words = words(text)
            row_windows = set(_windows(row_words)) if self.windows else set()
            reason, group = self.reason(text, tokens(text), row_words, row)
            if reason:
                report.add(index, reason, group)
                continue
            hits = {w for w in row_windows if w in self.windows}
            if hits:
                candidates[index] = hits
                prompt = hashlib.sha1(normalise(row_prompt(row)).encode()).hexdigest()
                for window in hits:
                    seen = prompts_of_window.setdefault(window, set())
                    if len(seen) < BOILERPLATE_TRAIN_ROWS:
                        seen.add(prompt)
        for index, hits in sorted(candidates.items()):
            evidence = [w for w in hits if len(prompts_of_window[w]) < BOILERPLATE_TRAIN_ROWS]
            if evidence:
                report.add(index, "ngram", self.windows[min(evidence)])
        return report


@dataclass
class Report:
    rows: int
    dropped: dict[int, str] = field(default_factory=dict)  # row index → reason
    groups: set[str] = field(default_factory=set)  # evaluation groups (items, applications) hit

    def add(self, index: int, reason: str, group: str | None) -> None:
        self.dropped[index] = reason
        if group:
            self.groups.add(group)

    def counts(self) -> dict[str, int]:
        return {reason: sum(1 for r in self.dropped.values() if r == reason) for reason in REASONS}

    def summary(self) -> dict:
        return {
            "rows": self.rows,
            "kept": self.rows - len(self.dropped),
            "dropped": self.counts(),
            "evaluation_items_hit": len(self.groups),
        }


def drop_leaks(family: str, rows: list, docs: Iterable[dict], spec: dict | None = None) -> tuple[list, Report]:
    """(the rows that leak nothing, the report): what the loop applies to a data script's output.
    `spec`: a user benchmark's (its prompt fields and template)."""
    report = Guard(family, docs, spec).check(rows)
    return [row for index, row in enumerate(rows) if index not in report.dropped], report


# --- the command (in the data env) --------------------------------------------------------------
def iter_rows(path: Path) -> Iterator:
    """The rows of a JSONL / JSON / parquet / CSV file, or of every such file in a folder, one at
    a time where the format allows (a 50,000-row parquet of patents need not sit in memory)."""
    from rdft_data.profile import data_files
    from rdft_data.profile import read_rows as read_file

    for file in data_files(path) if path.is_dir() else [path]:
        if file.suffix == ".jsonl":
            with open(file, encoding="utf-8") as handle:
                yield from (json.loads(line) for line in handle if line.strip())
        elif file.suffix == ".parquet":
            import pyarrow.parquet as pq

            for batch in pq.ParquetFile(file).iter_batches(batch_size=256):
                yield from batch.to_pylist()
        else:
            yield from read_file(file)


def write_rows(rows: Iterable, path: Path) -> None:
    """Chat JSONL, or a JSON list (alpaca) when `path` ends in .json; atomically."""
    from rdft_data.records import write_atomically

    if path.suffix == ".json":
        write_atomically(path, lambda handle: json.dump(list(rows), handle, ensure_ascii=False, indent=1))
    else:
        write_atomically(path, lambda handle: handle.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Drop training rows that contain evaluation items.")
    parser.add_argument("--family", required=True, help=f"{', '.join(FAMILIES)}, or any other (every text field)")
    parser.add_argument("--eval-docs", type=Path, nargs="+", required=True)
    parser.add_argument("--train", type=Path, nargs="+", required=True)
    parser.add_argument("--output", type=Path, help="Write the kept rows here (.jsonl: JSONL, .json: a JSON list).")
    parser.add_argument("--report", type=Path, help="Also write the counts (JSON) here: what rdft reads.")
    parser.add_argument("--spec", type=Path, help="A user benchmark's spec.json (its prompt fields and template).")
    args = parser.parse_args(argv)

    def train_rows() -> Iterator:
        for path in args.train:
            yield from iter_rows(path)

    try:
        docs = [doc for path in args.eval_docs for doc in iter_rows(path)]
        if not docs:
            raise SystemExit("leakage: the evaluation docs hold no items; give the benchmark's docs")
        spec = json.loads(args.spec.read_text(encoding="utf-8")) if args.spec else None
        report = Guard(args.family, docs, spec).check(train_rows())
        if args.output is not None:  # a second pass: the rows are never all in memory at once
            write_rows((row for i, row in enumerate(train_rows()) if i not in report.dropped), args.output)
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise SystemExit(f"leakage: cannot read the files: {error}") from None
    summary = report.summary()
    summary["dropped_rows"] = {str(k): v for k, v in sorted(report.dropped.items())[:50]}
    text = json.dumps(summary)
    if args.report is not None:
        from rdft_data.records import write_atomically

        write_atomically(args.report, lambda handle: handle.write(text))
    print(text)


if __name__ == "__main__":
    main(sys.argv[1:])
