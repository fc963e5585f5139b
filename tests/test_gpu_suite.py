"""bench/gpu_suite.py cannot rot: its CPU smoke runs every case end to end on tiny shapes, in
the train env's interpreter standing in for a bare GPU host's (torch, transformers, peft and
accelerate, but not rdft's own dependencies, which come as carried wheels)."""

import importlib.metadata
import json
import re
import zipfile
from pathlib import Path

SUITE = Path(__file__).resolve().parents[1] / "bench" / "gpu_suite.py"  # bench/ lives in the tree, not the wheel


def wheel_of_installed(name: str, folder: Path) -> Path:
    """A wheel of a pure-Python package installed here, from its own files: what a user carries
    (`pip download`), made offline."""
    dist = importlib.metadata.distribution(name)
    assert dist.files, f"{name} has no RECORD of its files"
    stem = f"{dist.metadata['Name'].replace('-', '_')}-{dist.version}"
    path = folder / f"{stem}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for file in dist.files:
            if file.suffix != ".pyc" and ".." not in file.parts:
                wheel.write(file.locate(), str(file))
    return path


def test_gpu_suite_cpu_smoke(train_env, tmp_path):
    out, results = tmp_path / "smoke.json", tmp_path / "RESULTS.md"
    bare = train_env.run(["python", "-c", "import pydantic_settings"], echo=False)
    assert not bare.ok and "No module named 'pydantic_settings'" in bare.tail  # rdft cannot run there as it is
    wheels = tmp_path / "wheels"  # carried wheels, installed privately and offline
    wheels.mkdir()
    carried = [wheel_of_installed(name, wheels).name for name in ("pydantic-settings", "python-dotenv")]
    with zipfile.ZipFile(wheels / "probe-0.1-py3-none-any.whl", "w") as wheel:
        wheel.writestr("probe/__init__.py", "VERSION = '0.1'\n")
        wheel.writestr("probe-0.1.dist-info/METADATA", "Metadata-Version: 2.1\nName: probe\nVersion: 0.1\n")
        wheel.writestr("probe-0.1.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                       "Tag: py3-none-any\n")  # fmt: skip
        wheel.writestr("probe-0.1.dist-info/RECORD", "")
    ran = train_env.run(["python", str(SUITE), "--cpu-smoke", "--out", str(out), "--results", str(results),
                         "--wheels", str(wheels)], echo=False, timeout=300)  # fmt: skip
    assert ran.ok, ran.tail
    report = json.loads(out.read_text())
    assert report["smoke"] is True and report["matmul_ceiling_tflops"] > 0
    assert report["wheels"] == sorted([*carried, "probe-0.1-py3-none-any.whl"])
    # The interpreter was adopted as the train env, and every case ran through `rdft env run
    # train`: rdft's runner wrote each case's log, result line included.
    assert report["env"] == f"{train_env.python}, adopted as rdft's train env (cpu)"
    assert f"Interpreter: {train_env.python}, adopted as rdft's train env (cpu)" in results.read_text()
    for case in ("lora", "skewed", "skewed_sdpa", "full", "qlora", "score"):
        log = Path(report[case]["log"])
        assert log == tmp_path / "smoke-logs" / f"{case}.log" and "gpu_suite result: {" in log.read_text()
    for case in ("lora", "skewed"):
        for side in ("baseline", "rdft"):
            # MFU is computed (its value on tiny CPU shapes under a loaded CI host means nothing)
            assert report[case][side]["tokens_per_s"] > 0 and report[case][side]["mfu"] > 0
    # The planner's choice on the smoke's CPU budget: 64 rows of 64 tokens.
    assert report["skewed"]["rdft"]["plan"]["tokens_per_micro_batch"] == 64 * 64
    # Padding wastes much of the baseline's compute on skewed lengths; packing far less.
    base, ours = report["skewed"]["baseline"], report["skewed"]["rdft"]
    wasted_base = 1 - base["effective_tokens_per_s"] / base["tokens_per_s"]
    wasted_ours = 1 - ours["effective_tokens_per_s"] / ours["tokens_per_s"]
    assert wasted_base > 0.3 and wasted_ours < wasted_base - 0.2, (wasted_base, wasted_ours)
    assert report["full"]["rdft"]["tokens_per_s"] > 0
    assert report["qlora"]["skipped"] == "bitsandbytes and a CUDA GPU are needed"
    # On a CPU both sides are SDPA: the case and its ratio only have to run.
    assert "sdpa" in report["skewed_sdpa"]["rdft"]["setup"] and report["ratios"]["skewed_flex_vs_sdpa"] > 0
    assert report["score"]["baseline"]["generated"] == report["score"]["rdft"]["generated"] == 4 * 8
    assert set(report["ratios"]) >= {"lora_tokens_per_s", "skewed_effective_tokens_per_s", "score_rdft_hf"}
    table = results.read_text()
    assert "CPU smoke: figures mean nothing" in table
    assert re.search(r"^\| skewed_effective_tokens_per_s \| [\d.]+× \| ≥ 3.0× \|$", table, re.M)
