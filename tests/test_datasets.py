"""The dataset registry, `rdft datasets list|info`, and the leakage guard."""

import re

from conftest import one_line_error

from rdft.datasets.leakage import drop_overlaps
from rdft.datasets.registry import registry
from rdft.evaluation.benchmarks import benchmarks

GUIDE_NAMES = {
    "deepscaler", "panorama-par4pc", "panorama-pi4pc", "panorama-noc4pc", "chemcot-mol_und",
    "chemcot-mol_edit", "chemcot-mol_opt", "chemcot-rxn", "panorama", "chemcot",
}  # fmt: skip
DEMO_NAMES = {"demo-parity"}  # shipped with rdft for `rdft run --demo`


def test_registry_is_well_formed():
    table = registry()
    assert set(table) == GUIDE_NAMES | DEMO_NAMES
    for entry in table.values():
        assert re.fullmatch(r"[\w.-]+/[\w.-]+", entry.repo), entry.repo
        assert entry.license and entry.description and entry.match_fields
        assert entry.benchmarks
    # Every benchmark has training data, and PANORAMA's evaluation files never reach training.
    served = {b for entry in table.values() for b in entry.benchmarks}
    assert served == set(benchmarks())
    assert all(
        {"*validation*", "*test*"} <= set(e.remove) for e in table.values() if e.repo == "LG-AI-Research/PANORAMA"
    )


def test_list_and_info(rdft):
    listed = rdft("datasets", "list")
    assert listed.returncode == 0, listed.output
    for entry in registry().values():
        line = next(line for line in listed.stdout.splitlines() if line.startswith(entry.name + " "))
        assert entry.source in line and ", ".join(entry.benchmarks) in line
    info = rdft("datasets", "info", "chemcot-rxn")
    assert info.returncode == 0, info.output
    assert "https://huggingface.co/datasets/OpenMol/ChemCoTDataset (folder chemcotbench-cot/rxn)" in info.stdout
    assert re.search(r"^serves\s+chemcotbench_reaction$", info.stdout, re.M)
    assert re.search(r"^local copy\s+not downloaded", info.stdout, re.M)
    assert "did you mean 'deepscaler'" in one_line_error(rdft("datasets", "info", "deepscalar"))


def test_leakage_guard_drops_planted_overlaps():
    evaluation = [
        {"id": "2024-I-1", "Problem": "Every morning Aya goes for a  9-kilometer-long walk.", "Answer": 204},
        {"id": "2024-I-2", "Problem": "There exist real numbers x and y.", "Answer": 25},
    ]
    train = [
        {"problem": "every morning aya goes for a 9-kilometer-long walk.", "answer": "204"},  # case, spaces
        {"problem": "There exist real numbers x and y.\n", "answer": "25"},  # trailing newline
        {"problem": "There exist real numbers x, y and z.", "answer": "7"},  # a different problem
        {"problem": "", "answer": "1"},  # nothing to match on: kept
    ]
    kept, dropped = drop_overlaps(train, evaluation, registry()["deepscaler"].match_fields)
    assert dropped == 2 and [row["answer"] for row in kept] == ["7", "1"]

    patents = [{"application_number": "15091542", "claim_number": 1}]
    claims = [
        {"application_number": "15091542", "claim_number": 1, "context": {}},
        {"application_number": "15091542", "claim_number": 2, "context": {}},
    ]
    kept, dropped = drop_overlaps(claims, patents, registry()["panorama-noc4pc"].match_fields)
    assert dropped == 1 and kept[0]["claim_number"] == 2
