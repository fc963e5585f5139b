"""`rdft run`'s rules, in-process: what a new run is asked, what a resume may change, durations.
The CLI only parses; these functions decide (the CLI tests drive the same rules end to end)."""

import pytest

from rdft.errors import RdftError
from rdft.loop.budget import parse_duration
from rdft.loop.records import DEMO, RunArgs, resume_changes
from rdft.settings import Settings

DEFAULTS = {"base_model": None, "benchmark": None, "benchmark_description": None, "target": None, "datasets": (),
            "loop_n": 5, "step_n": None, "timeout": None, "demo": False, "eval_limit": None, "max_gen_toks": None,
            "samples": None, "no_sync": False}  # fmt: skip


def settings(tmp_path, **values) -> Settings:
    return Settings(_env_file=None, ft_file_path=tmp_path, **values)


def new_run(tmp_path, asked: dict, **values) -> RunArgs:
    return RunArgs.for_new_run(settings(tmp_path, **values), {**DEFAULTS, **asked}, set(asked))


def test_durations():
    assert [parse_duration(text) for text in ("12h", "90m", "3600", "45s", "1d", " 2H ")] == [
        43200,
        5400,
        3600,
        45,
        86400,
        7200,
    ]
    for bad, says in (("soon", "is not a duration"), ("0", "must be positive"), ("-5m", "must be positive")):
        with pytest.raises(RdftError, match=says):
            parse_duration(bad)


def test_a_new_run_takes_the_options_then_the_settings(tmp_path):
    given = new_run(tmp_path, {"base_model": "Qwen/Qwen2.5-7B", "benchmark": "aime25", "timeout": "2h"})
    assert (given.base_model, given.benchmark, given.timeout_s, given.loop_n, given.datasets) == (
        "Qwen/Qwen2.5-7B",
        "aime25",
        7200,
        5,
        [],
    )
    # What the options leave out comes from the settings (FT_BASE_MODEL, FT_TARGET_BENCHMARK, ...).
    fallback = new_run(
        tmp_path,
        {},
        ft_base_model="m",
        ft_target_benchmark="aime24",
        ft_dataset="deepscaler",
        ft_benchmark_description="AIME",
        ft_user_target_scenario="math",
    )
    assert (fallback.base_model, fallback.benchmark, fallback.datasets, fallback.description, fallback.target) == (
        "m",
        "aime24",
        ["deepscaler"],
        "AIME",
        "math",
    )
    # An option wins over its setting.
    assert new_run(tmp_path, {"benchmark": "aime25"}, ft_base_model="m", ft_target_benchmark="aime24").benchmark == (
        "aime25"
    )
    with pytest.raises(RdftError, match="no base model: give --base-model"):
        new_run(tmp_path, {"benchmark": "aime25"})
    with pytest.raises(RdftError, match="no benchmark: give --benchmark"):
        new_run(tmp_path, {"base_model": "m"})
    with pytest.raises(RdftError, match="a target needs a benchmark that scores it"):
        new_run(tmp_path, {"base_model": "m", "target": "better at math"})


def test_the_demo_fixes_its_model_and_benchmark(tmp_path):
    demo = new_run(tmp_path, {"demo": True}, ft_base_model="ignored")
    assert (demo.base_model, demo.benchmark, demo.datasets, demo.loop_n, demo.demo) == (
        DEMO["base_model"],
        DEMO["benchmark"],
        DEMO["datasets"],
        DEMO["loop_n"],
        True,
    )
    assert new_run(tmp_path, {"demo": True, "loop_n": 3}).loop_n == 3  # a given --loop-n is kept
    for clash in ("base_model", "benchmark", "datasets", "target", "benchmark_description"):
        with pytest.raises(RdftError, match=f"drop --{clash.replace('_', '-')}, or drop --demo"):
            new_run(tmp_path, {"demo": True, clash: "x"})


def test_a_resume_changes_only_its_budget_and_length():
    options = {**DEFAULTS, "timeout": "30m", "loop_n": 8}
    assert resume_changes(options, {"timeout", "loop_n"}) == {"timeout_s": 1800, "loop_n": 8}
    assert resume_changes(options, set()) == {}  # nothing given: run.json stays as it is
    assert resume_changes({**DEFAULTS, "no_sync": True}, {"no_sync"}) == {"no_sync": True}
    for fixed in ("benchmark", "base_model", "samples", "eval_limit"):
        with pytest.raises(RdftError, match=f"--{fixed.replace('_', '-')} cannot change when resuming"):
            resume_changes({**DEFAULTS, fixed: 1}, {fixed, "loop_n"})


def test_a_killed_sessions_work_counts_and_idle_time_does_not(tmp_path):
    """The budget adds what a killed session did after it last recorded its time (its step
    files' times), never what was written between sessions: the report, a sync's state."""
    import os

    from rdft.loop.budget import Budget
    from rdft.loop.records import write_json

    log = tmp_path / "log"
    write_json(log / "run.json", RunArgs(base_model="m", benchmark="aime25", spent_s=100.0).model_dump())
    recorded = (log / "run.json").stat().st_mtime

    def touch(relative: str, after: float) -> None:
        path = log / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
        os.utime(path, (recorded + after, recorded + after))

    touch("Loop_0/running/data.json", 30)  # the killed session's last step finished 30 s later
    touch("report.html", 3600)  # `rdft report` an hour after the stop
    touch(".rdft-sync.json", 7200)  # `rdft logs sync up` two hours after
    touch(".session.owner", 9000)
    budget = Budget(RunArgs.model_validate_json((log / "run.json").read_text()), log)
    assert budget.spent_before == pytest.approx(130.0)


def test_a_stage_is_timed_over_every_session_that_worked_on_it(tmp_path):
    """A stage killed with -9 (its clock never paused), then paused by the budget, then finished:
    its seconds are the three sessions' parts — the killed one up to the last file its work
    wrote — never only the last session's (the battery's F6: 63.6 s for a 105 s training)."""
    import json
    import os

    from rdft.loop.budget import StageClock

    loop = tmp_path / "Loop_0"
    loop.mkdir()
    killed = StageClock(loop, "running")
    started = json.loads((loop / ".running.clock.json").read_text())["started"]
    metrics = loop / "running" / "metrics.jsonl"  # what the killed training wrote, 40 s in
    metrics.parent.mkdir()
    metrics.write_text("{}")
    os.utime(metrics, (started + 40, started + 40))
    os.utime(killed.path, (started, started))
    del killed  # kill -9: no pause, no done

    paused = StageClock(loop, "running")
    assert paused.carried == pytest.approx(40, abs=0.2)
    paused.started -= 25  # this session worked 25 s before the budget stopped it
    paused.pause()
    assert json.loads(paused.path.read_text()) == {"carried": pytest.approx(65, abs=0.2), "started": None}

    finished = StageClock(loop, "running")
    assert finished.carried == pytest.approx(65, abs=0.2)  # a paused session is not counted again
    finished.started -= 10
    assert finished.done() == pytest.approx(75, abs=0.2) and not finished.path.exists()
    assert StageClock(loop, "running").carried == 0  # a finished stage's next run starts at zero


def test_a_full_disk_pauses_the_run_and_records_no_failed_experiment(tmp_path):
    """A step that runs out of disk (its process says so, or Python's own write fails with
    ENOSPC) stops the run resumably; an ordinary failure is the experiment's (issue 27, item 10)."""
    import errno

    from rich.console import Console

    from rdft.loop.records import write_json
    from rdft.loop.run import Run, _Stop
    from rdft.loop.trace import Node
    from rdft.loop.workspace import StepFailed

    log = tmp_path / "log"
    write_json(log / "run.json", RunArgs(base_model="m", benchmark="demo_letter").model_dump())
    run = Run(Settings(_env_file=None, ft_file_path=tmp_path / "ft"), log, Console(quiet=True))
    node = Node(loop=0, parent=None, kind="draft")
    run.trace.nodes.append(node)

    def fails(error: Exception):
        def work():
            raise error

        return work

    with pytest.raises(_Stop):  # Python's own write ran out of disk
        run.stage(log / "Loop_0", "running", node, fails(OSError(errno.ENOSPC, "No space left", str(log / "x"))))
    assert "the disk filled up during running" in run.stopped
    assert not (log / "Loop_0" / "running" / "failure.json").exists()  # no failed experiment recorded
    # The words alone, with the run's disk far from full (a full /dev/shm, a cache elsewhere), are
    # the experiment's failure: pausing would pause every resume again.
    elsewhere = "OSError: [Errno 28] No space left on device: '/dev/shm/torch_123'"
    assert run.stage(log / "Loop_0", "running", node, fails(StepFailed("train", elsewhere))) == ("train", elsewhere)
    failed = run.stage(log / "Loop_0", "running", node, fails(StepFailed("train", "CUDA error: device-side assert")))
    assert failed == ("train", "CUDA error: device-side assert")
    assert (log / "Loop_0" / "running" / "failure.json").is_file()
