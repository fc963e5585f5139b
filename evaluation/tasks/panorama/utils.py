"""PANORAMA scorers (PAR4PC, PI4PC, NOC4PC): strict JSON answers, unreadable answers count as wrong.

PAR4PC: `{"answer": "A"}` or `{"answer": ["A", "C"]}` with letters among the options; per item
exact match, the authors' custom score and F1 (primary: F1 averaged over items).
PI4PC: `{"answer": 17}` with one of the option keys (a list such as `[17]` is invalid, as in the
authors' code); gold hit (primary), custom score, accuracy.
NOC4PC: `{"code": "ALLOW" | "102" | "103"}`; accuracy and macro-F1 over all items (primary).
The task is the row's `hub.data_dir` (PAR4PC, PI4PC, NOC4PC), never the benchmark's name.

Chain-of-thought variants (`panorama_*_cot`, RD-Agent's opencompass `panorama_*_cot_gen`): a row
with `prompt: cot` has `benchmark_doc` mark each doc (`prompt_mode: cot`), and `doc_to_text`
renders a marked doc with the CoT prompt of the OpenCompass fork RD-Agent installs
(Jensen246/opencompass abc7c91, opencompass/datasets/panorama/panorama_*.py,
`_create_*_prompt(item, 'cot')`), text for text; the PANORAMA authors' own CoT prompts give the
same instructions, up to typos, hyphen characters and line layout. Where that code reads the data
loosely, rdft renders what it renders: a PI4PC/NOC4PC target claim is the claims list's
(claim_number − 1)th entry ("N/A" when the list is shorter), and JSON is dumped with ASCII escapes.
Option keys another row holds (None in this doc, as parquet stores all rows' keys in one struct)
are left out, where OpenCompass would list them as "None".
OpenCompass drops items whose CoT prompt is over 16,384 Qwen2.5-7B tokens; rdft keeps every item.
The CoT prompts ask for the reason first and the answer last (`{"reason": ..., "answer" | "code":
...}`), so the answer is read as for the plain tasks: from the LAST JSON object holding the key;
reasoning, tables, an echoed format example or a first draft before it are skipped (an answer cut
off before its JSON is read from the last such earlier object, or is unreadable). OpenCompass's
evaluators take the FIRST fenced JSON block, else the first regex match, else any bare
letter/number/code in the text, so an echoed example or a draft wins there; rdft guesses nothing.
Training rows of a reasoning benchmark (`reasoning: true`) must carry reasoning: NOC4PC's
examiner's office-action text, then the code; PAR4PC and PI4PC hold none, so their docs make no
row ("no reasoning") and a CoT run needs generated chain-of-thought.
Runs in the eval env; imports nothing from rdft.
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from answers import last_json_value, per_sample, responses_of

NOC_LABELS = ("102", "103", "ALLOW")
PROMPT_MODE = "prompt_mode"  # a doc's prompt variant, set by benchmark_doc from its row's `prompt`
PROMPTS = ("cot",)  # the variants a row's `prompt:` may name; without one, the plain prompt


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value] if value is not None else []


def _option_items(doc: dict) -> list[tuple[str, object]]:
    """The doc's options; parquet stores the options of all rows as one struct, so keys another
    row uses come back as None and are not options of this one."""
    return [(str(key), value) for key, value in (doc.get("options") or {}).items() if value is not None]


def _options(doc: dict) -> list[str]:
    return [key for key, _ in _option_items(doc)]


# --- PAR4PC -----------------------------------------------------------------------------------
def par4pc_answer(doc: dict, response: str) -> set[str] | None:
    value = last_json_value(response, "answer")
    letters = _as_list(value)
    if not letters or not all(isinstance(x, str) for x in letters):
        return None
    letters = {x.strip().upper() for x in letters}
    return letters if letters <= set(_options(doc) or "ABCDEFGH") else None


def par4pc_item(doc: dict, response: str) -> dict:
    gold = {str(x) for x in _as_list(doc["gold_answers"])}
    silver = {str(x) for x in _as_list(doc.get("silver_answers"))}
    pred = par4pc_answer(doc, response)
    if pred is None:
        return {"exact_match": 0, "custom_score": 0.0, "f1": 0.0, "unreadable": 1, "answer": None}
    hits = len(pred & gold)
    wrong = len(pred - gold - silver)
    missed = len(gold - pred)
    custom = max(0, 2 * hits - wrong - missed) / (2 * len(gold))
    precision = hits / len(pred) if pred else 0.0
    recall = hits / len(gold)
    f1 = 2 * precision * recall / (precision + recall) if hits else 0.0
    return {
        "exact_match": int(pred == gold),
        "custom_score": custom,
        "f1": f1,
        "unreadable": 0,
        "answer": ",".join(sorted(pred)),
    }


def par4pc_summary(items: list[dict]) -> dict:
    n = len(items)
    return {
        "f1": sum(i["f1"] for i in items) / n,
        "exact_match": sum(i["exact_match"] for i in items) / n,
        "custom_score": sum(i["custom_score"] for i in items) / n,
        "n_unreadable": sum(i["unreadable"] for i in items),
    }


# --- PI4PC ------------------------------------------------------------------------------------
def pi4pc_answer(doc: dict, response: str) -> int | None:
    value = last_json_value(response, "answer")
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int):
        return None
    return value if str(value) in _options(doc) else None


def pi4pc_item(doc: dict, response: str) -> dict:
    pred = pi4pc_answer(doc, response)
    gold = {int(x) for x in _as_list(doc["gold_answers"])}
    silver = {int(x) for x in _as_list(doc.get("silver_answers"))}
    points = 2 if pred in gold else 1 if pred in silver else 0
    return {
        "gold_hit": int(points == 2),
        "score": points / 2,
        "accuracy": int(points > 0),
        "unreadable": int(pred is None),
        "answer": None if pred is None else str(pred),
    }


def pi4pc_summary(items: list[dict]) -> dict:
    n = len(items)
    return {
        "gold_hit_rate": sum(i["gold_hit"] for i in items) / n,
        "custom_score": sum(i["score"] for i in items) / n,
        "accuracy": sum(i["accuracy"] for i in items) / n,
        "n_unreadable": sum(i["unreadable"] for i in items),
    }


# --- NOC4PC -----------------------------------------------------------------------------------
def noc4pc_gold(doc: dict) -> str:
    answer = doc["answer"]
    if isinstance(answer, str):
        answer = json.loads(answer) if answer.strip().startswith("{") else {"code": answer}
    return str(answer["code"]).strip().upper()


def noc4pc_answer(response: str) -> str | None:
    value = last_json_value(response, "code")
    if isinstance(value, bool) or value is None:
        return None
    code = str(value).strip().upper()
    return code if code in NOC_LABELS else None


def noc4pc_item(doc: dict, response: str) -> dict:
    pred = noc4pc_answer(response)
    gold = noc4pc_gold(doc)
    return {"gold": gold, "pred": pred, "correct": int(pred == gold), "unreadable": int(pred is None), "answer": pred}


def macro_f1(pairs: list[tuple[str, str | None]]) -> float:
    """Macro-F1 over the labels that occur (as gold or as a readable prediction), every item
    counted: an unreadable prediction is a miss for its gold class and a false positive for none."""
    labels = sorted({g for g, _ in pairs} | {p for _, p in pairs if p is not None})
    scores = []
    for label in labels:
        tp = sum(1 for g, p in pairs if g == label and p == label)
        fp = sum(1 for g, p in pairs if g != label and p == label)
        fn = sum(1 for g, p in pairs if g == label and p != label)
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(scores) / len(scores)


def noc4pc_summary(items: list[dict]) -> dict:
    n = len(items)
    return {
        "macro_f1": macro_f1([(i["gold"], i["pred"]) for i in items]),
        "accuracy": sum(i["correct"] for i in items) / n,
        "n_unreadable": sum(i["unreadable"] for i in items),
    }


# --- prompts (zero-shot, JSON answers) ----------------------------------------------------------
def _context(doc: dict) -> str:
    context = doc.get("context") or {}
    claims = context.get("claims") or []
    return (
        f"Application number: {doc.get('application_number', '')}\n"
        f"Title: {context.get('title', '')}\n"
        f"Abstract: {context.get('abstract', '')}\n"
        f"Claims: {json.dumps(list(claims), ensure_ascii=False)}\n"
        f"Target claim for analysis: claim {doc.get('claim_number', '')}\n"
    )


def par4pc_prompt(doc: dict) -> str:
    options = "\n".join(
        f"[{key}] {opt.get('patent_id', '')}: {opt.get('title', '')}\nAbstract: {opt.get('abstract', '')}\n"
        f"Claims: {json.dumps(list(opt.get('claims') or []), ensure_ascii=False)}"
        for key, opt in _option_items(doc)
    )
    return (
        "You are a patent expert. Identify which of the candidate patents an examiner would cite as prior art "
        "against the target claim of this application.\n\n"
        f"{_context(doc)}\nCandidate patents:\n{options}\n\n"
        'Answer with JSON only: {"answer": "A"} or {"answer": ["A", "C"]}.'
    )


def pi4pc_prompt(doc: dict) -> str:
    art = doc.get("prior_art_specification") or {}
    options = "\n".join(f"[{key}] {text}" for key, text in _option_items(doc))
    return (
        "You are a patent expert. Given the target claim and a prior-art patent, pick the one paragraph of the "
        "prior art an examiner would cite against the claim.\n\n"
        f"{_context(doc)}\nPrior art {art.get('patent_id', '')}: {art.get('title', '')}\n"
        f"Abstract: {art.get('abstract', '')}\nSpecification:\n{art.get('specification', '')}\n\n"
        f"Candidate paragraphs:\n{options}\n\n"
        'Answer with JSON only, the paragraph number as an integer: {"answer": 17}.'
    )


def noc4pc_prompt(doc: dict) -> str:
    arts = []
    for art in doc.get("prior_art_specifications") or []:
        paragraphs = "\n".join(f"[{p.get('key')}] {p.get('content', '')}" for p in art.get("paragraphs") or [])
        arts.append(
            f"Prior art {art.get('patent_id', '')}: {art.get('title', '')}\nAbstract: {art.get('abstract', '')}\n"
            f"Claims: {json.dumps(list(art.get('claims') or []), ensure_ascii=False)}\nCited paragraphs:\n{paragraphs}"
        )
    return (
        "You are an expert AI acting as a U.S. patent examiner. Decide whether the target claim is allowable, "
        "anticipated by a single reference (35 U.S.C. 102), or obvious (35 U.S.C. 103) over the prior art.\n\n"
        f"{_context(doc)}\n" + "\n\n".join(arts) + "\n\n"
        'Answer with JSON only: {"code": "ALLOW"}, {"code": "102"} or {"code": "103"}.'
    )


# --- prompts (chain of thought): OpenCompass's `_create_*_prompt(item, 'cot')`, text for text ---
def _parsed(value, default):
    """A field as OpenCompass reads it: JSON text decoded, None the default."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return default
    return default if value is None else value


def _target_claim(context: dict, claim_num) -> str:
    """The claim under analysis, as OpenCompass finds it: the claims list's (claim_number − 1)th
    entry (a string, or a dict's claim_text), else "N/A"."""
    claims = context.get("claims")
    if isinstance(claims, list):
        for claim in claims:
            if isinstance(claim, dict) and claim.get("claimNumber") == claim_num:
                return claim.get("claim_text", "N/A")
        if str(claim_num).isdigit() and 0 <= int(claim_num) - 1 < len(claims):
            claim = claims[int(claim_num) - 1]
            if isinstance(claim, str):
                return claim
            if isinstance(claim, dict):
                return claim.get("claim_text", "N/A")
    return "N/A"


# The instructions each CoT prompt ends with, verbatim (str.format fills the claim number; {{ }}
# are the JSON examples' braces).
PAR4PC_COT = """
**Step-by-Step Instruction**
*Apply the Broadest Reasonable Interpretation (BRI) standard.*

1. **BRI Claim Charting**
   • Decompose Claim {claim_number} into numbered limitations [L1]-[Ln] and record element : function/relationship.

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
{{"reason":"Step1 ... ; Step2 ... ; Step3 ...", "answer":"A"}}
```
If multiple patents are cited:
```json
{{"reason":"Step1 ... ; Step2 ... ; Step3 ...", "answer": ["A","C","F"]}}
```
"""  # noqa: E501

PI4PC_COT = """
**Step-by-Step Method**
*Use the Broadest-Reasonable-Interpretation (BRI) standard throughout.*

1.  **BRI Claim Deconstruction**
    • Break the claim {claim_num} into **numbered limitations** (e.g., [1A]-[1F]).
    • Write each limitation in examiner-style "element : function / relationship" form.
    • Try to include as much of the claim as possible.

2.  **Key Distinguishing Feature(s)**
    • Identify which limitation(s) the applicant asserts as novel / non-obvious.
    • List all the features that should be considered when evaluating novelty and non-obviousness.

3.  **Prior-Art Mapping Table (one table per option paragraph)**
    • For each of the five option paragraphs, provide a detailed mapping to Claim {claim_num} elements.
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
    • Select exactly one paragraph based on its relevance to the novelty or non-obviousness of the Key Distinguishing Features (KD-x) in Claim {claim_num}.
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
{{"reason":"Step1 ... ; Step2 ... ; Step3 ... ; Step4 ...; Step5 ...; Step6 ...","answer": 17}}
```
"""  # noqa: E501

NOC4PC_COT = """
**Analysis Task and Response Instructions:**

Perform your internal reasoning first, then draft the *Office-Action-style* text.

---

### INTERNAL REASONING (not shown to applicant)
1. Apply the Broadest-Reasonable-Interpretation (BRI) to Claim {claim_num}; chart every limitation [L1]-[Ln].
   1-a. *Statutory check* - confirm Claim{claim_num} fits a statutory class (process, machine, manufacture, composition).
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

* Start: **"Regarding Claim {claim_num}, ..."**
* Use examiner diction:
  - "Reference X (Col. Y, lines Z) discloses ..."
  - "Therefore, Claim {claim_num} is rejected under 35 U.S.C. § 102(a) as being anticipated by Reference X."
  - or "It would have been obvious to one of ordinary skill to modify X with Y (same field, predictable results) ... ⇒ § 103 rejection."
  - or "The cited references do not teach or render obvious limitation [Lk] ... Claim {claim_num} is allowable."

* If § 103, list **all** references in the combination (e.g., "in view of Smith '123").
* Cite at least one column-line or paragraph for each matched limitation.
* Keep length ≤ 200 words.

---

### OUTPUT (JSON only)
Always write the "reason" first and then write the "answer".
Return exactly one JSON object:

```json
{{
  "reason": "<OA-style paragraph above>",
  "code": "102" | "103" | "ALLOW"
}}
```
"""  # noqa: E501


def par4pc_cot_prompt(doc: dict) -> str:
    context = _parsed(doc.get("context", {}), {})
    claim_number = doc.get("claim_number", "N/A")
    app_number = doc.get("application_number", "N/A")
    title, abstract = context.get("title", "N/A"), context.get("abstract", "N/A")
    context_claims_json = json.dumps(context.get("claims", []), indent=4)
    prompt = f"""You are a patent expert tasked with identifying cited patents for a specific claim rejection based *only* on the provided context and options.

**Context:**
*   **Application Number:** {app_number}
*   **Title:** {title}
*   **Abstract:** {abstract}
*   **Initial Claims:**
    {context_claims_json}

**Target Claim for Analysis:** Claim {claim_number}

**Options (Potential Cited Patents):**
"""  # noqa: E501
    for letter, details in sorted(_option_items(doc)):
        details = _parsed(details, {})
        details = details if isinstance(details, dict) else {}
        claims = details.get("claims", [])
        prompt += f"\n{letter}: Patent ID: {details.get('patent_id', 'N/A')}\n"
        prompt += f"   Title: {details.get('title', 'N/A')}\n"
        prompt += f"   Abstract: {details.get('abstract', 'N/A')}\n"
        prompt += f"   Claims: {json.dumps(claims, indent=4) if claims else '[]'}\n"
    return prompt + PAR4PC_COT.format(claim_number=claim_number)


def pi4pc_cot_prompt(doc: dict) -> str:
    context = _parsed(doc.get("context", {}), {})
    prior_art = _parsed(doc.get("prior_art_specification", {}), {})
    claim_num = doc.get("claim_number", "N/A")
    app_num = doc.get("application_number", "N/A")
    target_claim_text = _target_claim(context, claim_num)
    options = _option_items(doc)
    try:
        options = sorted(options, key=lambda item: int(str(item[0])))
    except (ValueError, TypeError):
        pass
    options_text = "\n".join(f"{key}: {text}" for key, text in options)
    title, abstract = context.get("title", "N/A"), context.get("abstract", "N/A")
    art_id, art_title = prior_art.get("patent_id", "N/A"), prior_art.get("title", "N/A")
    art_abstract = prior_art.get("abstract", "N/A")
    specification = prior_art.get("specification", "Full specification text not available.")
    prompt = f"""You are an expert patent examiner reviewing a patent application.
Your task is to identify the **single most relevant paragraph** from the provided Prior Art Specification that is cited to reject Claim {claim_num} of the Target Application ({app_num}).

**Target Application Context:**
* **Title:** {title}
* **Abstract:** {abstract}
* **Claim {claim_num}:** {target_claim_text}

**Prior Art Specification Context:**
* **Patent ID:** {art_id}
* **Title:** {art_title}
* **Abstract:** {art_abstract}
* **Full Specification Text:**
{specification}

* **Cited Paragraph Options (Excerpts from the Full Specification above):**
Review the following paragraphs, which are excerpts from the full specification provided above. Choose the **one paragraph key (integer)** from the list below that best supports the rejection of Claim {claim_num}.

Options:
{options_text}

**CRITICAL INSTRUCTION:**
Based on your analysis of the **Full Specification Text** and the **Target Application Claim {claim_num}**, you **MUST** select **EXACTLY ONE** integer key from the **5 options** provided above.
Under no circumstances should you choose a key not present in the options or provide multiple keys, ranges, reasoning, or explanations.
"""  # noqa: E501
    return prompt + PI4PC_COT.format(claim_num=claim_num)


def _indented(first: str, rest: str, text: str) -> str:
    """`text`'s first line after `first`, the others after `rest` (OpenCompass's claim and
    paragraph layout); `first` alone, stripped of its trailing space, when it is empty."""
    lines = text.splitlines()
    if not lines:
        return first.rstrip(" ") + "\n"
    return f"{first}{lines[0]}\n" + "".join(f"{rest}{line}\n" for line in lines[1:])


def noc4pc_cot_prompt(doc: dict) -> str:
    claim_num = doc.get("claim_number", "N/A")
    app_num = doc.get("application_number", "N/A")
    context = _parsed(doc.get("context", {}), {})
    prior_art_specs = _parsed(doc.get("prior_art_specifications", []), [])
    target_title, target_abstract = context.get("title", "N/A"), context.get("abstract", "N/A")
    claims = context.get("claims", []) or []
    try:  # by position only, as OpenCompass finds a NOC4PC target claim
        index = int(claim_num) - 1
    except (ValueError, TypeError):
        index = -1
    target_claim_text = "N/A"
    if 0 <= index < len(claims):
        claim = claims[index]
        target_claim_text = str(claim["claim_text"] if isinstance(claim, dict) and "claim_text" in claim else claim)
    prompt = f"""You are an expert AI acting as a U.S. Patent Examiner.
Your task is to analyze **Target Claim {claim_num}** of the **Target Patent Application** in view of the provided **Prior Art Specifications**.

Determine if **Target Claim {claim_num}** is allowable or should be rejected under 35 U.S.C. § 102 (lack of novelty) or 35 U.S.C. § 103 (obviousness).

**Target Patent Application Information:**
*   Application Number: {app_num}
*   Target Claim Number: {claim_num}
*   Title: {target_title}
*   Abstract: {target_abstract}
*   Target Claim {claim_num} Text to Analyze:
    ```
    {target_claim_text}
    ```

**Prior Art Specifications (Cited as Basis for Potential Rejection):**
The following prior art documents and specific paragraphs were cited as potentially relevant for the rejection of the target claim. Analyze the target claim against the information presented in these specific paragraphs **and the claims** of the prior art.
"""  # noqa: E501
    if not prior_art_specs:
        prompt += "No prior art specifications provided for analysis.\n"
    for number, spec in enumerate(prior_art_specs or [], 1):
        prompt += f"\n--- Prior Art #{number} ---\n"
        prompt += f"*   Patent ID: {spec.get('patent_id', 'N/A')}\n"
        prompt += f"*   Title: {spec.get('title', 'N/A')}\n"
        prompt += f"*   Abstract: {spec.get('abstract', 'N/A')}\n"
        prompt += "*   Claims:\n"
        art_claims = spec.get("claims", [])
        if not art_claims:
            prompt += "    (No claims provided for this prior art)\n"
        for index, claim in enumerate(art_claims or [], 1):
            text = str(claim["claim_text"] if isinstance(claim, dict) and "claim_text" in claim else claim)
            prompt += _indented(f"    {index}. ", "       ", text)
        prompt += "*   Cited Paragraphs from Specification (Basis for Analysis):\n"
        paragraphs = spec.get("paragraphs", [])
        if not paragraphs:
            prompt += "    (No specific paragraphs cited for this prior art)\n"
        for paragraph in paragraphs or []:
            key = paragraph.get("key", "N/A")
            prompt += _indented(f"    [{key}]: ", "          ", paragraph.get("content", "") or "")
    return prompt + NOC4PC_COT.format(claim_num=claim_num)


def doc_to_text(doc: dict) -> str:
    """The exact user prompt a PANORAMA doc is scored with (the task follows from the doc's
    shape, the variant from its `prompt_mode`, which benchmark_doc sets from the row); the
    offline data recipe builds its training prompts with it too."""
    mode = doc.get(PROMPT_MODE)
    if mode is not None and mode not in PROMPTS:
        raise ValueError(f"panorama: a doc's {PROMPT_MODE} is {mode!r}; it may only be cot (or absent)")
    if "prior_art_specifications" in doc:
        return noc4pc_cot_prompt(doc) if mode else noc4pc_prompt(doc)
    if "prior_art_specification" in doc:
        return pi4pc_cot_prompt(doc) if mode else pi4pc_prompt(doc)
    return par4pc_cot_prompt(doc) if mode else par4pc_prompt(doc)


# --- training answers: (reasoning, the final answer as the scorer reads it), None without gold ---
def par4pc_target(doc: dict) -> tuple[str, str] | None:
    letters = [str(x) for x in _as_list(doc.get("gold_answers"))]
    return ("", json.dumps({"answer": letters})) if letters else None


def pi4pc_target(doc: dict) -> tuple[str, str] | None:
    gold = _as_list(doc.get("gold_answers"))
    return ("", json.dumps({"answer": int(gold[0])})) if gold and str(gold[0]).isdigit() else None


def noc4pc_target(doc: dict) -> tuple[str, str] | None:
    """The examiner's office-action reasoning, then the code (the CoT prompt's `{"reason",
    "code"}` object would hide the reasoning inside the final answer, where the data-quality
    gate does not count it)."""
    answer = doc.get("answer")
    if isinstance(answer, str):
        answer = json.loads(answer) if answer.strip().startswith("{") else {"code": answer}
    if not isinstance(answer, dict) or str(answer.get("code", "")).strip().upper() not in NOC_LABELS:
        return None
    return str(answer.get("reason") or "").strip(), json.dumps({"code": str(answer["code"]).strip().upper()})


# The task of a row (its hub.data_dir): the item scorer, the summary, the training answer.
TASKS = {
    "PAR4PC": (par4pc_item, par4pc_summary, par4pc_target),
    "PI4PC": (pi4pc_item, pi4pc_summary, pi4pc_target),
    "NOC4PC": (noc4pc_item, noc4pc_summary, noc4pc_target),
}


def task_of(entry: dict) -> str:
    task = str((entry.get("hub") or {}).get("data_dir") or "").upper()
    if task not in TASKS:
        raise ValueError(
            f"panorama: {entry.get('name')}'s row has hub.data_dir {task or 'none'}; "
            "give it PAR4PC, PI4PC or NOC4PC in evaluation/benchmarks.yaml"
        )
    return task


# lm-eval's own table: the item's metric averaged over its k sampled responses.
def par4pc_process_results(doc: dict, results: list) -> dict:
    values = [par4pc_item(doc, r)["f1"] for r in responses_of(results)]
    return {"f1": sum(values) / len(values)}


def pi4pc_process_results(doc: dict, results: list) -> dict:
    values = [pi4pc_item(doc, r)["gold_hit"] for r in responses_of(results)]
    return {"gold_hit": sum(values) / len(values)}


def noc4pc_process_results(doc: dict, results: list) -> dict:
    values = [noc4pc_item(doc, r)["correct"] for r in responses_of(results)]
    return {"correct": sum(values) / len(values)}


# --- the family interface: evaluation/score.py and recipes/data_recipe.py call only these --------
def score(entry: dict, doc: dict, responses: list[str], judge=None) -> dict:
    item = TASKS[task_of(entry)][0]
    return per_sample([item(doc, response) for response in responses])


def summarize(entry: dict, items: list[dict]) -> dict:
    return TASKS[task_of(entry)][1](items)


def primary(entry: dict, items: list[dict]) -> float | None:
    return summarize(entry, items)[entry["primary"]["metric"]]


def full_marks(entry: dict, item: dict) -> bool:
    return item.get("f1", item.get("gold_hit", item.get("correct"))) == 1


def training_answer(entry: dict, doc: dict, force_think: bool) -> tuple[str, str] | str:
    """(reasoning, final answer) of a training row built from `doc` (the task's own files), or
    why it has none: NOC4PC's examiner's reason, then the code; the others their answer JSON.
    A reasoning benchmark (`reasoning: true`: the CoT variants) takes only rows with reasoning,
    which PAR4PC and PI4PC never hold: a CoT run on them needs generated chain-of-thought."""
    parts = TASKS[task_of(entry)][2](doc)
    if parts is None:
        return "no gold answer"
    if entry.get("reasoning") and not parts[0]:
        return "no reasoning (this benchmark scores reasoned answers: generate the chain-of-thought)"
    return parts


def benchmark_doc(entry: dict, row: dict) -> dict:
    """`row` (an item or a training row, in the benchmark's schema) as the benchmark's docs hold
    it: marked with its row's prompt variant (`prompt: cot`) for doc_to_text; a plain benchmark's
    docs carry no mark."""
    mode = entry.get("prompt")
    if mode is not None and mode not in PROMPTS:
        raise ValueError(f"panorama: {entry.get('name')} has prompt: {mode!r}; use `prompt: cot` or leave it out")
    if mode:
        return {**row, PROMPT_MODE: mode}
    return {key: value for key, value in row.items() if key != PROMPT_MODE}


def benchmark_docs(entry: dict, rows: list[dict]) -> list[dict]:
    """The benchmark's own items among its source's rows (all of them here), as its docs hold
    them (benchmark_doc)."""
    return [benchmark_doc(entry, row) for row in rows]
