"""The data toolkit (`rdft_data`) against an OpenAI-compatible server on 127.0.0.1: fail-over,
retries, timeouts, malformed replies, the cache, accounting, concurrency; its writers, filters
and profiles; and how it reaches the data env."""

import json
import logging
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import REPO
from llm_server import Hang, LLMServer, Malformed, Status

from rdft.datasets.toolkit import toolkit_path

SECRET = "sk-toolkit-secret-31415926"


@pytest.fixture(scope="module")
def rdft_data(tmp_path_factory):
    """The toolkit as data scripts import it: the assembled `rdft_data` package."""
    sys.path.insert(0, str(toolkit_path(tmp_path_factory.mktemp("toolkit"))))
    import rdft_data

    yield rdft_data
    sys.path.pop(0)


def pool(rdft_data, server, models, tmp_path, **options):
    defaults = {"api_key": SECRET, "api_base": server.base_url, "backoff": 0.01, "cache": tmp_path / "cache"}
    return rdft_data.ModelPool(models, **{**defaults, **options})


def ask(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_retries_then_fail_over_with_accounting(rdft_data, tmp_path, caplog):
    failures = {"b": 2}  # b fails twice with 500, then answers

    def reply(body):
        model = body["model"]
        if model == "a":
            return Status(429)
        if failures.get(model):
            failures[model] -= 1
            return Status(500)
        return f"{model} says \\boxed{{4}}"

    with LLMServer(reply) as server, caplog.at_level(logging.DEBUG):
        models = pool(rdft_data, server, ["openai/a", "openai/b"], tmp_path, max_retries=2)
        answer = models.complete(ask("2+2?"))
    assert answer.content == "b says \\boxed{4}" and answer.model == "openai/b" and not answer.cached
    per_model = [r["body"]["model"] for r in server.requests]
    assert per_model == ["a", "a", "a", "b", "b", "b"]  # 1 + 2 retries each, a's 429 then b's 500s
    usage = models.usage
    assert (usage.calls, usage.retries, usage.failovers, usage.failures) == (1, 4, 1, 0)
    assert (usage.prompt_tokens, usage.completion_tokens) == (10, 5)
    assert all(r["auth"] == f"Bearer {SECRET}" for r in server.requests)
    assert SECRET not in caplog.text and SECRET not in repr(models)


def test_round_robin_start_spreads_requests(rdft_data, tmp_path):
    with LLMServer(lambda body: "ok") as server:
        models = pool(rdft_data, server, ["openai/a", "openai/b", "openai/c"], tmp_path, cache=False)
        replies = models.map([f"q{i}" for i in range(6)], ask, progress=False)
    assert [r.model for r in replies] == ["openai/a", "openai/b", "openai/c"] * 2
    assert models.usage.per_model == {"openai/a": 2, "openai/b": 2, "openai/c": 2}


def test_timeouts_malformed_replies_and_checks_move_on(rdft_data, tmp_path, caplog):
    def reply(body):
        return {"slow": Hang(3), "bad": Malformed(), "wrong": "\\boxed{5}"}.get(body["model"], "\\boxed{4}")

    with LLMServer(reply) as server:
        models = pool(
            rdft_data,
            server,
            ["openai/slow", "openai/bad", "openai/wrong", "openai/good"],
            tmp_path,
            timeout=0.5,
            max_retries=1,
        )
        start = time.monotonic()
        answer = models.complete(ask("2+2?"), check=rdft_data.math_check(4))
        elapsed = time.monotonic() - start
        assert answer.model == "openai/good"
        assert elapsed < 2.5  # the hung model cost two 0.5 s timeouts, not 3 s each
        assert [r["body"]["model"] for r in server.requests] == ["slow", "slow", "bad", "bad", "wrong", "good"]

        # Every model fails: the item is None in map(), counted, logged without the key.
        dead = pool(rdft_data, server, ["openai/bad"], tmp_path, max_retries=0)
        with caplog.at_level(logging.WARNING, logger="rdft_data"):
            assert dead.map(["x"], ask, progress=False) == [None]
    # litellm reports a body that is not a chat completion as an InternalServerError: transient.
    assert dead.usage.failures == 1 and "openai/bad: InternalServerError" in caplog.text
    assert SECRET not in caplog.text
    with pytest.raises(rdft_data.PoolExhausted, match="openai/bad: InternalServerError"):
        dead.complete(ask("y"))


def test_a_rerun_is_served_from_the_cache(rdft_data, tmp_path):
    with LLMServer(lambda body: "cached \\boxed{1}") as server:
        first = pool(rdft_data, server, ["openai/a"], tmp_path)
        first.map([f"q{i}" for i in range(20)], ask, progress=False, temperature=0.7)
        assert len(server.requests) == 20
        rerun = pool(rdft_data, server, ["openai/a"], tmp_path)
        replies = rerun.map([f"q{i}" for i in range(20)], ask, progress=False, temperature=0.7)
        assert len(server.requests) == 20  # nothing new reached the API
        assert all(r.cached for r in replies) and rerun.usage.cache_hits == 20 and rerun.usage.calls == 0
        # Different parameters are a different request.
        rerun.complete(ask("q0"), temperature=0.0)
        assert len(server.requests) == 21
    for path in (tmp_path / "cache").rglob("*.json"):
        assert SECRET not in path.read_text()


def test_the_pool_keeps_its_workers_busy(rdft_data, tmp_path):
    """100 calls on 16 workers: every reply right and counted once, and the server sees the calls
    at once (16 in flight at its peak, never more), not one after another. How fast the pool is
    against bare litellm (1,000 calls, 64 workers) is bench/pool_throughput.py's measure."""
    lock = threading.Lock()
    state = {"now": 0, "peak": 0}

    def slow(body):
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        time.sleep(0.2)
        with lock:
            state["now"] -= 1
        return "re: " + body["messages"][-1]["content"]

    with LLMServer(slow) as server:
        models = pool(rdft_data, server, ["openai/a", "openai/b"], tmp_path, workers=16, timeout=30)
        replies = models.map([f"q{i}" for i in range(100)], ask, progress=False)
    assert [reply.content for reply in replies] == [f"re: q{i}" for i in range(100)]
    assert models.usage.calls == 100 and models.usage.cache_hits == 0 and len(server.requests) == 100
    assert 8 <= state["peak"] <= 16, state  # concurrent, and bounded by the workers


def test_writers_are_atomic_and_validate(rdft_data, tmp_path):
    chat = [{"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "\\boxed{4}"}]}]
    path = rdft_data.write_chat_jsonl(chat, tmp_path / "out" / "data.jsonl")
    assert [json.loads(line) for line in path.read_text().splitlines()] == chat
    with pytest.raises(ValueError, match="sample 1 does not end with an assistant message"):
        rdft_data.write_chat_jsonl([*chat, {"messages": [{"role": "user", "content": "?"}]}], path)
    assert [json.loads(line) for line in path.read_text().splitlines()] == chat  # the old file is intact
    alpaca = [{"instruction": "2+2?", "input": "", "output": "4"}]
    assert json.loads(rdft_data.write_alpaca_json(alpaca, tmp_path / "data.json").read_text()) == alpaca
    assert not list(tmp_path.rglob(".*.json*"))  # no temporary files left behind

    words = rdft_data.TokenCounter()
    samples = [{"instruction": "one two", "output": "three"}, {"instruction": "a " * 10, "output": "b"}]
    kept, dropped = rdft_data.filter_by_tokens(samples, words, max_tokens=5)
    assert kept == samples[:1] and dropped == 1


def local_tokenizer(folder: Path) -> Path:
    """A word-level tokenizer trained here: every known word is one token, others are [UNK]."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(["the cat sat on the mat"], trainers.WordLevelTrainer(special_tokens=["[UNK]"]))
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    return folder


PROFILE_ROWS = [
    {"problem": "one", "solution": "", "answer": "1"},
    {"problem": "one two three", "solution": "a b", "answer": "2"},
    {"problem": "one two three four five", "solution": None, "answer": "3"},
    {"problem": "the cat sat on the mat. one two three four", "solution": "x", "answer": "4"},
]


def write_profile_fixture(root: Path) -> None:
    (root / "math").mkdir(parents=True)
    (root / "math" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in PROFILE_ROWS))
    (root / "extra.json").write_text(json.dumps([{"text": "hello world"}]))


def test_profile_numbers_match_hand_computed_values(rdft_data, tmp_path):
    from rdft_data.profile import profile_folder, render

    write_profile_fixture(tmp_path / "ds")
    profile = profile_folder(tmp_path / "ds", name="fixture")
    assert profile["items"] == 5 and profile["unit"] == "words"
    math = profile["tasks"]["math"]
    assert math["items"] == 4 and math["files"] == ["math/train.jsonl"]
    # problem words: 1, 3, 5, 10 → nearest-rank p50 = 2nd value, p99 = 4th.
    assert math["fields"]["problem"] == {"empty_ratio": 0.0, "min": 1, "p50": 3, "p99": 10, "max": 10}
    # solution: "" and null are empty (2 of 4); the rest are 2 words and 1 word.
    assert math["fields"]["solution"] == {"empty_ratio": 0.5, "min": 1, "p50": 1, "p99": 2, "max": 2}
    assert profile["tasks"]["."]["fields"]["text"]["max"] == 2
    text = render(profile)
    assert "Dataset fixture: 5 items; lengths in words." in text and "## math  (4 items" in text

    tokens = profile_folder(tmp_path / "ds", tokenizer=str(local_tokenizer(tmp_path / "tok")))
    # Word-level tokens split the "." off: "the cat sat on the mat . one two three four" is 11 tokens.
    assert tokens["unit"] == "tokens" and tokens["tasks"]["math"]["fields"]["problem"]["max"] == 11


def test_profile_cli_runs_in_the_data_env_and_caches(rdft, shared_dirs, data_env, tmp_path):
    write_profile_fixture(tmp_path / "src")
    # A local copy must hold deepscaler's fields (prepare checks them): the top-level file too.
    row = {"problem": "hello world", "answer": "5", "solution": ""}
    (tmp_path / "src" / "extra.json").write_text(json.dumps([row]))
    env = {**shared_dirs, "FT_FILE_PATH": str(tmp_path / "ft")}
    prepared = rdft("datasets", "prepare", "deepscaler", "--source", str(tmp_path / "src"), env=env)
    assert prepared.returncode == 0, prepared.output
    first = rdft("datasets", "profile", "deepscaler", "--json", env=env)
    assert first.returncode == 0, first.output
    profile = json.loads(first.stdout)
    assert profile["tasks"]["math"]["fields"]["problem"]["p50"] == 3
    cache = tmp_path / "ft" / "datasets" / "deepscaler" / ".rdft"
    written = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    text = rdft("datasets", "profile", "deepscaler", env=env)
    assert "## math  (4 items" in text.stdout
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == written  # served from the cache
    tokenized = rdft(
        "datasets", "profile", "deepscaler", "--tokenizer", str(local_tokenizer(tmp_path / "tok")), "--json", env=env
    )
    assert json.loads(tokenized.stdout)["tasks"]["math"]["fields"]["problem"]["max"] == 11
    not_prepared = rdft("datasets", "profile", "chemcot", env=env)
    assert not_prepared.returncode != 0 and "run `rdft datasets prepare chemcot` first" in not_prepared.stderr


def test_data_scripts_import_the_toolkit_in_the_data_env(rdft, shared_dirs, data_env, tmp_path):
    """A data script run the way rdft runs it: checkers with RDKit and sympy, the strong pool from
    the settings, the key passed only to the script and never written anywhere."""
    with LLMServer(lambda body: "Reasoning... so the answer is \\boxed{\\frac{1}{2}}") as server:
        env = {**shared_dirs, "OPENAI_API_KEY": SECRET, "OPENAI_API_BASE": server.base_url,
               "FT_STRONG_MODELS": "openai/strong-a,openai/strong-b", "FT_API_MAX_WORKERS": "4",
               "FT_FILE_PATH": str(tmp_path / "ft")}  # fmt: skip
        script = REPO / "tests" / "in_env" / "check_toolkit.py"
        result = rdft(
            "env",
            "run",
            "data",
            "--with-secrets",
            "--log",
            str(tmp_path / "run.log"),
            "--",
            "python",
            str(script),
            str(tmp_path / "data.jsonl"),
            "--debug",
            env=env,
        )
    assert result.returncode == 0, result.output
    assert "toolkit ok" in result.stdout
    rows = [json.loads(line) for line in (tmp_path / "data.jsonl").read_text().splitlines()]
    assert len(rows) == 3  # --debug kept 3 of 5 problems (RDFT_DEBUG_SAMPLES)
    assert {r["body"]["model"] for r in server.requests} == {"strong-a", "strong-b"}
    for path in [tmp_path / "run.log", tmp_path / "data.jsonl", *(tmp_path / "ft").rglob("*.json")]:
        assert SECRET not in path.read_text(), path
    assert SECRET not in result.output
