"""The dataset registry and `rdft datasets list|info`."""

import re

from conftest import one_line_error

from rdft.datasets.registry import registry
from rdft.evaluation.benchmarks import benchmarks

GUIDE_NAMES = {
    "deepscaler", "panorama-par4pc", "panorama-pi4pc", "panorama-noc4pc", "chemcot-mol_und",
    "chemcot-mol_edit", "chemcot-mol_opt", "chemcot-rxn", "panorama", "chemcot",
}  # fmt: skip
# The training datasets of the benchmarks RD-Agent's fine-tuning scenario maps beyond its guide's.
UPSTREAM_NAMES = {
    "mmlu-auxiliary-train", "mbpp", "tableinstruct", "bioprobench", "bioprobench-pqa", "bioprobench-ord",
    "bioprobench-err", "bioprobench-gen", "financeiq",
}  # fmt: skip
DEMO_NAMES = {"demo-letter"}  # shipped with rdft for `rdft run --demo`


def test_registry_is_well_formed():
    table = registry()
    assert set(table) == GUIDE_NAMES | UPSTREAM_NAMES | DEMO_NAMES
    for entry in table.values():
        assert re.fullmatch(r"[\w.-]+/[\w.-]+", entry.repo), entry.repo
        assert entry.license and entry.description
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
    assert re.search(
        r"^guard \(chemcotbench\)\s+drops training rows holding a validation or test item of it: "
        r"the input molecule",
        info.stdout,
        re.M,
    )
    assert "did you mean 'deepscaler'" in one_line_error(rdft("datasets", "info", "deepscalar"))
