"""Answer checkers for generated chain-of-thought: keep a sample only when its answer is right.

They read answers with the benchmarks' own rule (`answers.py`, the file the scorers use), so
what passes here is what the scorer will accept.
"""

from __future__ import annotations

import math
import re

from .answers import last_boxed, last_json_value, strip_think

__all__ = ["boxed_answer", "json_fields", "math_check", "math_equal", "same_molecule", "strip_think"]


def boxed_answer(response: str) -> str | None:
    """The content of the response's last \\boxed{…} (after dropping <think>…</think>)."""
    return last_boxed(response)


_LATEX = [
    (re.compile(r"\\(?:left|right|displaystyle|!|,|;|:)"), ""),
    (re.compile(r"\\text\{([^}]*)\}"), r"\1"),
    (re.compile(r"\\(?:mathrm|mathbf)\{([^}]*)\}"), r"\1"),
    (re.compile(r"\^\{\\circ\}|°"), ""),
    (re.compile(r"\\[dt]frac"), r"\\frac"),
    (re.compile(r"\\(?:cdot|times)"), "*"),
    (re.compile(r"\\pi"), "pi"),
    (re.compile(r"\{,\}"), ""),
]
_FRAC = re.compile(r"\\frac\{([^{}]*)\}\{([^{}]*)\}")
_SQRT = re.compile(r"\\sqrt\{([^{}]*)\}")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")


def _normalise_latex(text: str) -> str:
    text = text.strip().strip("$").strip()
    for pattern, replacement in _LATEX:
        text = pattern.sub(replacement, text)
    text = _THOUSANDS.sub("", text)
    for _ in range(5):  # nested fractions and roots, innermost first
        text = _SQRT.sub(r"sqrt(\1)", _FRAC.sub(r"((\1)/(\2))", text))
    return text.replace("{", "(").replace("}", ")").replace("^", "**").replace(" ", "").rstrip(".")


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def math_equal(predicted: str | None, reference: str | int | float, *, tolerance: float = 1e-6) -> bool:
    """Whether two answers are the same number or expression: `\\frac{1}{2}` = `0.5` = `1/2`,
    `2\\sqrt{2}` = `\\sqrt{8}`, `025` = `25`."""
    if predicted is None:
        return False
    a, b = _normalise_latex(str(predicted)), _normalise_latex(str(reference))
    if a == b:
        return True
    x, y = _number(a), _number(b)
    if x is not None and y is not None:
        return math.isclose(x, y, rel_tol=tolerance, abs_tol=tolerance)
    try:
        import sympy
        from sympy.parsing.sympy_parser import implicit_multiplication_application, parse_expr, standard_transformations

        transformations = (*standard_transformations, implicit_multiplication_application)
        difference = parse_expr(a, transformations=transformations) - parse_expr(b, transformations=transformations)
        return bool(sympy.simplify(difference) == 0)
    except Exception:  # anything sympy cannot read is not an equal answer
        return False


def math_check(reference: str | int | float):
    """A `check` for ModelPool: the reply's last \\boxed{} equals `reference`."""
    return lambda response: math_equal(boxed_answer(response), reference)


def same_molecule(predicted: str | None, reference: str | None) -> bool:
    """RDKit equality: both SMILES parse and have the same InChI (the scorers' definition)."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")  # unparsable SMILES are an answer, not a log line
    if not predicted or not reference:
        return False
    a, b = Chem.MolFromSmiles(predicted.strip()), Chem.MolFromSmiles(reference.strip())
    return a is not None and b is not None and Chem.MolToInchi(a) == Chem.MolToInchi(b)


def json_fields(response: str, *required: str) -> dict | None:
    """The values of `required` keys, each from the last JSON object in the response that holds
    it (fenced or bare), or None when one is missing."""
    values = {key: last_json_value(response, key) for key in required}
    return None if any(value is None for value in values.values()) else values
