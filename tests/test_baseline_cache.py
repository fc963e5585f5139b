"""The base model's cached score is reused only where every input of the score is the same: the
key covers the judge, the chemistry oracles, the eval env's lock, the backend and the scoring
plan, besides the model, the items and the scorer code (issue 27: it left the first four out)."""

import shutil

from conftest import small_scenario

from rdft.loop.running import baseline_key
from rdft.loop.scenario import Scoring
from rdft.resources import env_specs_dir
from rdft.settings import Settings


def test_the_cache_key_covers_what_changes_a_score(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")

    def key(benchmark: str, family: str, hardware: dict | None = None, scoring: Scoring | None = None, **values):
        settings = Settings(_env_file=None, ft_file_path=tmp_path / "ft", rdft_envs_dir=tmp_path / "envs",
                            rdft_torch_variant="cpu", **values)  # fmt: skip
        scenario = small_scenario(model, benchmark, family).model_copy(
            update={"hardware": hardware or {}, "scoring": scoring or Scoring(items=15)}
        )
        return baseline_key(settings, scenario, "validation")

    plain = key("aime25", "aime")
    assert key("aime25", "aime") == plain  # nothing changed: the same key, the cache is reused
    # The judge re-reads aime25's rejected answers: another judge, another score.
    judged = key("aime25", "aime", ft_judge_model="openai/gpt-5")
    assert judged != plain and key("aime25", "aime", ft_judge_model="openai/o3") not in (plain, judged)
    assert key("aime24", "aime", ft_judge_model="openai/gpt-5") == key("aime24", "aime")  # aime24 takes no judge
    # The oracles score mol_opt's activity subtasks: other pickles, another score.
    oracles = tmp_path / "oracles"
    oracles.mkdir()
    (oracles / "drd2_current.pkl").write_bytes(b"one")
    first = key("chemcotbench_mol_opt", "chemcotbench", rdft_chem_oracle_dir=oracles)
    assert first != key("chemcotbench_mol_opt", "chemcotbench")
    (oracles / "drd2_current.pkl").write_bytes(b"two")
    assert key("chemcotbench_mol_opt", "chemcotbench", rdft_chem_oracle_dir=oracles) != first
    assert key("chemcotbench_mol_edit", "chemcotbench", rdft_chem_oracle_dir=oracles) == key(
        "chemcotbench_mol_edit", "chemcotbench"
    )
    # Another eval lock (another lm-eval, transformers, …) scores differently.
    specs = tmp_path / "specs"
    shutil.copytree(env_specs_dir(), specs)
    lock = specs / "eval.cpu.txt"
    lock.write_text(lock.read_text().replace("lm-eval==0.4.13", "lm-eval==0.4.14"))
    assert key("aime25", "aime", rdft_env_specs_dir=specs) != plain
    # The backend: a GPU host generates with another stack than a CPU one.
    assert key("aime25", "aime", hardware={"gpus": [{"index": 0, "memory_gib": 80}]}) != plain
    # The scoring plan: samples, the item limit, the generation budget.
    for plan in (Scoring(items=15, samples=7), Scoring(items=15, limit=3), Scoring(items=15, max_gen_toks=64)):
        assert key("aime25", "aime", scoring=plan) != plain
