"""`rdft datasets prepare` against a local stand-in for the Hub (the real huggingface_hub
download code runs), and against local copies."""

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import clean_environ, one_line_error
from hub_server import HubServer

PANORAMA = "LG-AI-Research/PANORAMA"
CHEMCOT = "OpenMol/ChemCoTDataset"
DEEPSCALER = "agentica-org/DeepScaleR-Preview-Dataset"


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


@pytest.fixture
def repos(tmp_path) -> dict[str, Path]:
    """Fixture repos in the datasets' real layouts (PANORAMA: per-task train/validation/test)."""
    panorama = tmp_path / "repos" / "panorama"
    per_task = {  # the fields each task's rows hold besides the application's (abridged values)
        "PAR4PC": {"options": {"A": {"title": "t"}}, "gold_answers": ["A"]},
        "PI4PC": {"prior_art_specification": {"title": "t"}, "options": {"3": "p"}, "gold_answers": [3]},
        "NOC4PC": {"prior_art_specifications": [{"title": "t"}], "answer": {"code": "102", "reason": "r"}},
    }
    for task, fields in per_task.items():
        for split in ("train", "validation", "test"):
            rows = [
                {"application_number": f"{split}{i}", "claim_number": i, "context": {"claim": "a claim"}, **fields}
                for i in range(5)
            ]
            write_jsonl(panorama / task / f"{split}.jsonl", rows)
    (panorama / "README.md").write_text("# PANORAMA\n")
    chemcot = tmp_path / "repos" / "chemcot"
    rxn = chemcot / "chemcotbench-cot" / "rxn"
    rxn.mkdir(parents=True)
    (rxn / "rcr.json").write_text(
        json.dumps(
            [
                {
                    "id": "r1",
                    "query": "Which conditions?",
                    "task": "rxn",
                    "subtask": "rcr",
                    "gt": "CCO",
                    "cot_result": '```json\n{"answer": "CCO"}\n```',
                    "meta": {"reactants": "CC=O"},
                },
            ]
        )
    )
    (rxn / "fs.json").write_text(json.dumps([{"id": "f1", "query": "Product?", "struct_cot": "x", "meta": {}}]))
    deepscaler = tmp_path / "repos" / "deepscaler"
    deepscaler.mkdir(parents=True)
    # As large as the real deepscaler.json (21.5 MB): more than two of huggingface_hub's 10 MB chunks.
    problems = [
        {"problem": f"Compute {i} + {i}. " + "x" * 480, "answer": str(2 * i), "solution": ""} for i in range(42000)
    ]
    (deepscaler / "deepscaler.json").write_text(json.dumps(problems))
    return {PANORAMA: panorama, CHEMCOT: chemcot, DEEPSCALER: deepscaler}


def prepared(tmp_path: Path, name: str) -> Path:
    return tmp_path / "ft" / "datasets" / name


def test_prepare_downloads_only_what_is_asked_and_never_evaluation_files(rdft, repos, tmp_path):
    with HubServer(repos) as hub:
        result = rdft("datasets", "prepare", "panorama-par4pc", "chemcot-rxn", env={"HF_ENDPOINT": hub.url})
    assert result.returncode == 0, result.output
    assert "panorama-par4pc: prepared at" in result.stdout and "chemcot-rxn: prepared at" in result.stdout
    fetched = {
        r["path"].split("/resolve/")[1].split("/", 1)[1]
        for r in hub.requests
        if r["method"] == "GET" and "/resolve/" in r["path"]
    }
    # Only the named folders, and PANORAMA's validation/test files are never even downloaded.
    assert fetched == {"PAR4PC/train.jsonl", "chemcotbench-cot/rxn/rcr.json", "chemcotbench-cot/rxn/fs.json"}
    par4pc = prepared(tmp_path, "panorama-par4pc")
    assert sorted(p.relative_to(par4pc).as_posix() for p in par4pc.rglob("*") if p.is_file()) == [
        ".rdft-dataset.json",
        "PAR4PC/train.jsonl",
    ]
    manifest = json.loads((par4pc / ".rdft-dataset.json").read_text())
    assert manifest["repo"] == PANORAMA and manifest["source"] == "hub" and len(manifest["revision"]) == 40

    # ChemCoT's rcr rows get the other subtasks' fields.
    rcr = json.loads((prepared(tmp_path, "chemcot-rxn") / "chemcotbench-cot/rxn/rcr.json").read_text())
    assert rcr == [
        {
            "id": "r1",
            "query": "Which conditions?",
            "task": "rxn",
            "subtask": "rcr",
            "meta": {"reactants": "CC=O", "gt": "CCO"},
            "struct_cot": '{"answer": "CCO"}',
        }
    ]

    info = rdft("datasets", "info", "panorama-par4pc")
    assert f"{par4pc} (1 files," in info.stdout


def test_prepare_resumes_a_broken_download_and_then_reuses_it(rdft, repos, tmp_path):
    source = repos[DEEPSCALER] / "deepscaler.json"
    with HubServer(repos) as hub:
        hub.drop_once.add("deepscaler.json")  # the connection dies half-way through the file
        first = rdft("datasets", "prepare", "deepscaler", env={"HF_ENDPOINT": hub.url})
        assert first.returncode == 0, first.output
        gets = hub.downloads("deepscaler.json")
        assert len(gets) == 2 and gets[0]["range"] is None
        assert gets[1]["range"] is not None and int(gets[1]["range"].split("=")[1].split("-")[0]) >= 10 * 1024**2
        assert (prepared(tmp_path, "deepscaler") / "deepscaler.json").read_bytes() == source.read_bytes()

        again = rdft("datasets", "prepare", "deepscaler", env={"HF_ENDPOINT": hub.url})
        assert again.returncode == 0 and "deepscaler: already prepared" in again.stdout
        assert len(hub.downloads("deepscaler.json")) == 2  # nothing fetched again


def test_prepare_killed_mid_download_resumes_with_the_finished_files(rdft, repos, tmp_path):
    with HubServer(repos) as hub:
        hub.stall.add("PI4PC/train.jsonl")
        env = clean_environ(HF_ENDPOINT=hub.url, FT_FILE_PATH=str(tmp_path / "ft"))
        proc = subprocess.Popen(
            ["rdft", "datasets", "prepare", "panorama"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        local = tmp_path / "ft" / "datasets" / ".hub" / "LG-AI-Research--PANORAMA"

        def finished(name):  # huggingface_hub writes its metadata after moving the file in: both mean done
            return (local / name).is_file() and (local / ".cache/huggingface/download" / f"{name}.metadata").is_file()

        names = ("PAR4PC/train.jsonl", "NOC4PC/train.jsonl")
        deadline = time.monotonic() + 60  # the stalled file is requested and another one is finished: kill
        while time.monotonic() < deadline and not (hub.downloads("PI4PC/train.jsonl") and any(map(finished, names))):
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not prepared(tmp_path, "panorama").exists()  # no half dataset under its name
        done_before = {name for name in names if finished(name)}
        assert done_before, "nothing finished before the kill"

        hub.stall.clear()
        result = rdft("datasets", "prepare", "panorama", env={"HF_ENDPOINT": hub.url})
        assert result.returncode == 0, result.output
        for name in done_before:
            assert len(hub.downloads(name)) == 1, f"{name} was fetched again"
    files = sorted(
        p.relative_to(prepared(tmp_path, "panorama")).as_posix()
        for p in prepared(tmp_path, "panorama").rglob("*.jsonl")
    )
    assert files == ["NOC4PC/train.jsonl", "PAR4PC/train.jsonl", "PI4PC/train.jsonl"]


def test_offline_uses_what_is_cached_and_says_so_when_nothing_is(rdft, repos, tmp_path):
    with HubServer(repos) as hub:
        assert rdft("datasets", "prepare", "panorama-pi4pc", env={"HF_ENDPOINT": hub.url}).returncode == 0
        closed = hub.url
    # The Hub is gone: a prepared name is served from disk, a re-prepare from the download folder.
    offline = {"HF_ENDPOINT": closed}
    assert "already prepared" in rdft("datasets", "prepare", "panorama-pi4pc", env=offline).stdout
    forced = rdft("datasets", "prepare", "panorama-pi4pc", "--force", env=offline)
    assert forced.returncode == 0, forced.output
    assert (prepared(tmp_path, "panorama-pi4pc") / "PI4PC" / "train.jsonl").is_file()
    error = one_line_error(rdft("datasets", "prepare", "chemcot-mol_und", env=offline))
    assert "cannot reach the Hub and chemcot-mol_und is not cached" in error and "--source PATH" in error


def test_gated_repo_needs_a_token_and_the_token_stays_out_of_output(rdft, repos, tmp_path):
    token = "hf_test_token_1234567890"
    with HubServer(repos, gated={DEEPSCALER: token}) as hub:
        error = one_line_error(rdft("datasets", "prepare", "deepscaler", env={"HF_ENDPOINT": hub.url}))
        assert "is gated" in error and "set HF_TOKEN" in error and f"huggingface.co/datasets/{DEEPSCALER}" in error
        wrong = one_line_error(
            rdft("datasets", "prepare", "deepscaler", env={"HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_wrong"})
        )
        assert "HF_TOKEN has no access" in wrong
        result = rdft("datasets", "prepare", "deepscaler", env={"HF_ENDPOINT": hub.url, "HF_TOKEN": token})
        assert result.returncode == 0, result.output
        assert token not in result.output
        assert any(r["auth"] == f"Bearer {token}" for r in hub.downloads("deepscaler.json"))
    for path in prepared(tmp_path, "deepscaler").parent.rglob("*"):
        if path.is_file() and path.stat().st_size < 1_000_000:
            assert token not in path.read_text(errors="ignore"), path


def test_disk_full_is_caught_before_downloading(rdft, repos, tmp_path):
    with HubServer(repos) as hub:
        hub.claimed_size["deepscaler.json"] = 2**60  # an exabyte: no disk has that free
        error = one_line_error(rdft("datasets", "prepare", "deepscaler", env={"HF_ENDPOINT": hub.url}))
        assert not hub.downloads("deepscaler.json")
    assert "not enough disk space for deepscaler" in error and "set FT_FILE_PATH to a larger disk" in error


def test_local_copies_stand_in_for_the_hub(rdft, repos, tmp_path):
    # A copy of the whole repo: the folder is picked and the evaluation files are left out.
    result = rdft("datasets", "prepare", "panorama-noc4pc", "--source", str(repos[PANORAMA]))
    assert result.returncode == 0, result.output
    noc = prepared(tmp_path, "panorama-noc4pc")
    assert sorted(p.name for p in (noc / "NOC4PC").iterdir()) == ["train.jsonl"]
    manifest = json.loads((noc / ".rdft-dataset.json").read_text())
    assert manifest["removed"] == ["NOC4PC/test.jsonl", "NOC4PC/validation.jsonl"]
    # The folder itself, and a single file.
    folder = rdft("datasets", "prepare", "chemcot-rxn", "--source", str(repos[CHEMCOT] / "chemcotbench-cot" / "rxn"))
    assert folder.returncode == 0, folder.output
    rcr = json.loads((prepared(tmp_path, "chemcot-rxn") / "chemcotbench-cot/rxn/rcr.json").read_text())
    assert rcr[0]["meta"]["gt"] == "CCO"
    single = rdft("datasets", "prepare", "deepscaler", "--source", str(repos[DEEPSCALER] / "deepscaler.json"))
    assert single.returncode == 0 and (prepared(tmp_path, "deepscaler") / "deepscaler.json").is_file()
    # A copy, not a link: editing the source leaves the prepared dataset as it was.
    copied = prepared(tmp_path, "deepscaler") / "deepscaler.json"
    assert copied.stat().st_nlink == 1 and not copied.samefile(repos[DEEPSCALER] / "deepscaler.json")

    # A file that is not the dataset (another schema) is refused, and nothing is left behind.
    other = tmp_path / "other.jsonl"
    write_jsonl(other, [{"question": "Is 4 even?", "answer": "yes"}])
    refused = one_line_error(rdft("datasets", "prepare", "deepscaler", "--force", "--source", str(other)))
    assert "other.jsonl has no 'problem' field, which deepscaler rows have; give a copy of" in refused
    assert copied.read_bytes() == (repos[DEEPSCALER] / "deepscaler.json").read_bytes()  # the old copy stands
    assert "has no 'prior_art_specifications' field" in one_line_error(
        rdft("datasets", "prepare", "panorama-noc4pc", "--force", "--source", str(repos[PANORAMA] / "PAR4PC"))
    )

    assert "does not exist" in one_line_error(
        rdft("datasets", "prepare", "deepscaler", "--force", "--source", str(tmp_path / "nowhere"))
    )
    assert "one name at a time" in one_line_error(
        rdft("datasets", "prepare", "deepscaler", "chemcot", "--source", str(repos[CHEMCOT]))
    )
    assert "did you mean 'panorama'" in one_line_error(rdft("datasets", "prepare", "panorma"))
