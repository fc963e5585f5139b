"""The offline planner on hand-made traces: it never proposes a recipe it already ran, builds on
the best scored experiment (accepted or not), repeats a change that paid off, and says why."""

from rdft.loop.proposal import Params, default_params, propose_offline
from rdft.loop.scenario import DatasetView, ModelFacts, Scenario
from rdft.loop.trace import Node


def scenario(parameters: int = 4_000_000, gpus: bool = False) -> Scenario:
    return Scenario(
        benchmark="aime25",
        benchmark_family="aime",
        description="AIME",
        primary_metric="accuracy",
        base_model=ModelFacts(
            name="m",
            path="/m",
            model_type="llama",
            parameters=parameters,
            context_length=2048,
            chat_template=True,
            think_tokens=False,
        ),
        hardware={"gpus": [{"memory_gib": 80}] if gpus else []},
        memory="",
        datasets=[
            DatasetView(name="deepscaler", path="/d", description="", profile="", p99_tokens=300),
            DatasetView(name="aime-old", path="/a", description="", profile="", p99_tokens=200),
        ],
        upper_data_size_limit=2000,
        budgets={},
    )


def node(loop: int, parent: int | None, validation: float | None) -> Node:
    return Node(
        loop=loop,
        parent=parent,
        kind="improve" if parent is not None else "draft",
        status="done" if validation is not None else "failed",
        validation=validation,
    )


def test_default_recipe_first_then_never_a_repeat():
    s = scenario()
    first = propose_offline(s, [], [])
    assert first.params == default_params(s)
    assert first.params.max_length == 384  # the data's p99 (300) + the template, rounded up to 64
    assert first.params.method == "full"  # a small model takes a full fine-tune
    finished, tried = [], []
    for loop in range(25):
        proposal = propose_offline(s, finished, tried)
        assert proposal.params.key() not in {p.key() for p in tried}, loop
        tried.append(proposal.params)
        parent = max(finished, key=lambda pair: pair[0].validation)[0].loop if finished else None
        finished.append((node(loop, parent, validation=(loop * 7919 % 13) / 13), proposal.params))


def test_builds_on_the_better_of_two_and_repeats_the_change_that_paid():
    s = scenario()
    a = default_params(s)
    b = a.model_copy(update={"learning_rate": a.learning_rate * 3})
    proposal = propose_offline(s, [(node(0, None, 0.30), a), (node(1, 0, 0.50), b)], [a, b])
    assert proposal.params == b.model_copy(update={"learning_rate": b.learning_rate * 3})  # the same way again
    assert proposal.hypothesis.startswith("SFT from loop 1's recipe with a larger learning rate (learning_rate")
    assert "loop 1 scored 0.5, the best of 2 scored" in proposal.reason
    assert "the same change paid before: loop 1 scored 0.5 against 0.3 for loop 0" in proposal.reason


def test_a_change_that_did_worse_is_not_built_on():
    s = scenario()
    a = default_params(s)
    b = a.model_copy(update={"learning_rate": a.learning_rate * 3})
    proposal = propose_offline(s, [(node(0, None, 0.30), a), (node(1, 0, 0.10), b)], [a, b])
    assert proposal.params == a.model_copy(update={"epochs": a.epochs + 1})  # from loop 0, the next change
    assert "loop 1 (learning_rate changed) did worse: 0.1 against 0.3" in proposal.reason
    assert proposal.hypothesis.startswith("SFT from loop 0's recipe with more epochs (epochs 3 -> 4)")


def test_failed_experiments_count_as_tried_and_large_models_keep_lora():
    s = scenario(parameters=7_000_000_000, gpus=True)
    a = default_params(s)
    assert (a.method, a.learning_rate, a.max_length) == ("lora", 1e-4, 384)
    proposal = propose_offline(s, [(node(0, None, None), a)], [a])  # the default failed: not scored
    assert proposal.params.key() != a.key()
    tried = [a, proposal.params]
    for _ in range(30):
        tried.append(propose_offline(s, [], tried).params)
    assert {p.method for p in tried} == {"lora"}  # 7B: no full fine-tune among the options
    assert len({p.key() for p in tried}) == len(tried)


def test_params_accept_the_llm_shape():
    assert Params(learning_rate=1e-4, epochs=1, max_samples=10).method == "lora"
