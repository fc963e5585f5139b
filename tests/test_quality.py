"""The data-quality gate after the coder's debug run: the rules refuse data without reasoning
where the benchmark scores reasoned answers, rows over data.max_length, duplicates, answers the
benchmark's scorer marks wrong against the dataset's gold, and full runs over their budget — each
with a reason the coder can act on. Statistics come from rdft_data.quality in the data env."""

import json
from pathlib import Path

import pytest
from conftest import small_scenario

from rdft.loop.quality import gate
from rdft.loop.scenario import DatasetView, Scenario
from rdft.loop.workspace import StepFailed

SUFFIX = "\nPlease reason step by step, and put your final answer within \\boxed{}."  # AIME's prompt
PROBLEMS = [{"problem": f"What is {n} + {n}?", "answer": str(2 * n), "solution": ""} for n in range(1, 21)]


def scenario(tmp_path: Path, benchmark: str = "aime24", family: str = "aime") -> Scenario:
    folder = tmp_path / "datasets" / "deepscaler"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.jsonl").write_text("".join(json.dumps(p) + "\n" for p in PROBLEMS))
    view = DatasetView(name="deepscaler", path=str(folder), description="", profile="")
    return small_scenario(tmp_path, benchmark, family, datasets=[view], upper_data_size_limit=100)


def rows(answer) -> list[dict]:
    return [
        {"messages": [{"role": "user", "content": p["problem"] + SUFFIX}, {"role": "assistant", "content": answer(p)}]}
        for p in PROBLEMS
    ]


def reasoned(p: dict) -> str:
    return f"Adding the number to itself doubles it, which gives {p['answer']}. So \\boxed{{{p['answer']}}}"


def check(settings, tmp_path, data: list[dict], *, measured: dict | None = None, case: Scenario | None = None):
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in data))
    return gate(
        settings,
        case or scenario(tmp_path),
        data=path,
        datasets=["deepscaler"],
        measured=measured or {"rows": len(data), "data_seconds": 2.0, "tokens_per_s": 1000.0, "dropped_too_long": 0},
        config={"data": {"max_length": 256}, "train": {"epochs": 2}},
        rows_full=100,
        recipe="doubling",
        llm=None,
        log=tmp_path / "quality.log",
        timeout=300,
    )


def refused(settings, tmp_path, data, **kwargs) -> str:
    with pytest.raises(StepFailed) as failure:
        check(settings, tmp_path, data, **kwargs)
    assert failure.value.stage == "quality"
    return str(failure.value)


def test_good_data_passes_with_its_statistics_and_projection(shared_settings, data_env, tmp_path):
    record = check(shared_settings, tmp_path, rows(reasoned))
    stats = record["stats"]
    assert (stats["rows"], stats["with_reasoning"], stats["duplicates"]) == (20, 20, 0)
    # Every user turn is AIME's own prompt for a deepscaler row, and every answer is right by
    # AIME's scorer against the row's gold.
    assert (stats["prompt_matched"], stats["gold_checked"], stats["gold_correct"]) == (20, 20, 20)
    # 20 debug rows took 2 s: 100 rows take 10 s; tokens: mean length x 100 rows x 2 epochs at 1000/s.
    projected = record["projected"]
    assert projected["data_seconds"] == 10.0
    assert projected["train_tokens"] == int(stats["tokens_mean"] * 100 * 2)
    assert projected["train_seconds"] == pytest.approx(projected["train_tokens"] / 1000, abs=0.1)
    assert json.loads((tmp_path / "quality.json").read_text())["reasons"] == []


def test_each_rule_refuses_with_a_reason_the_coder_can_act_on(shared_settings, data_env, tmp_path):
    bare = refused(shared_settings, tmp_path, rows(lambda p: f"\\boxed{{{p['answer']}}}"))
    assert "only 0 of 20 rows carry reasoning" in bare and "generate or keep the chain-of-thought" in bare
    # The same bare answers are fine where the benchmark scores answers alone (the demo).
    demo = scenario(tmp_path, "demo_letter", "demo")
    assert check(shared_settings, tmp_path, rows(lambda p: f"\\boxed{{{p['answer']}}}"), case=demo)["reasons"] == []

    long = refused(shared_settings, tmp_path, rows(reasoned), measured={"rows": 20, "dropped_too_long": 8})
    assert "8 of 20 rows are longer than data.max_length (256 tokens" in long and "raise data.max_length" in long

    wrong = refused(shared_settings, tmp_path, rows(lambda p: reasoned(p).replace("{" + p["answer"] + "}", "{1}")))
    assert "only 0 of 20 answers are correct by the benchmark's scorer" in wrong

    twice = refused(shared_settings, tmp_path, rows(reasoned)[:10] * 2)
    assert "10 of 20 rows are duplicates" in twice

    slow = refused(shared_settings, tmp_path, rows(reasoned), measured={"rows": 20, "data_seconds": 800.0})
    assert "the full data run would take about 4000 s for 100 rows, over FT_DATA_PROCESSING_TIMEOUT (3600 s)" in slow
