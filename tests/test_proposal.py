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


def test_rows_are_sized_with_the_rows_the_benchmark_prompt_makes():
    """A benchmark whose prompt adds instructions or few-shot examples (FinanceIQ's five shots) has
    rows longer than the dataset's fields: the measured rows (3,150) + template (64) = 3,214,
    rounded up to 3,264, within the 4,096 a small model takes on a CPU; a real model on a CPU stays
    within 1,024 (long rows cost hours there), on a GPU within its context. Rows measured shorter
    than the fields' sum (a prompt that is the fields) leave the fields' sum (300 + 64 → 384)."""
    s = scenario()
    s.base_model.context_length = 8192
    s.datasets[0].row_tokens = 250
    assert default_params(s).max_length == 384
    s.datasets[0].row_tokens = 3150
    assert default_params(s).max_length == 3264
    s.base_model.parameters = 7_000_000_000
    assert default_params(s).max_length == 1024
    assert default_params(s.model_copy(update={"hardware": {"gpus": [{"memory_gib": 80}]}})).max_length == 3264


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


def test_grpo_follows_an_sft_experiment_that_leaves_room_to_learn():
    """GRPO from an SFT experiment's weights when its validation score lies in GRPO_SCORE_RANGE
    (sampled answers disagree often enough), once per start: with --rl right after the first SFT
    (the default recipe), without it when the SFT search stalls (the last two SFT experiments did
    not beat the best)."""
    from rdft.loop.proposal import GRPO_SCORE_RANGE

    s = scenario()
    first = propose_offline(s, [], [], rl=True).params
    assert first == default_params(s)
    grpo = propose_offline(s, [(node(0, None, 0.40), first)], [first], rl=True)
    assert (grpo.params.method, grpo.params.start_from, grpo.params.num_generations) == ("grpo", 0, 8)
    assert (grpo.params.learning_rate, grpo.params.epochs, grpo.params.max_samples) == (2e-3, 4, 256)  # tiny
    assert "GRPO from loop 0's weights" in grpo.hypothesis and str(GRPO_SCORE_RANGE) in grpo.reason
    # Right on 95% of items: most groups of answers agree, no signal; the SFT search goes on.
    assert propose_offline(s, [(node(0, None, 0.95), first)], [first], rl=True).params.method == "full"
    # One GRPO per start: after it, the SFT neighbours again (from the best SFT, not the GRPO loop).
    after = propose_offline(
        s, [(node(0, None, 0.40), first), (node(1, 0, 0.60), grpo.params)], [first, grpo.params], rl=True
    )
    assert after.params.method == "full" and after.params.start_from is None

    # Without --rl: three SFT experiments, the last two below the first: stalled, GRPO from loop 0.
    a = default_params(s)
    b, c = a.model_copy(update={"epochs": 4}), a.model_copy(update={"epochs": 2})
    stalled = [(node(0, None, 0.50), a), (node(1, 0, 0.40), b), (node(2, 0, 0.45), c)]
    assert propose_offline(s, stalled, [a, b, c]).params.start_from == 0
    assert propose_offline(s, stalled[:2], [a, b]).params.method == "full"  # two: not yet stalled
