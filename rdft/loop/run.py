"""`rdft run`: the loop — proposal, coding, running, feedback — with its log and resume.

The log folder's layout is rdft/loop/layout.py's (it draws it).

Every record is written atomically when its step finishes, and a step is done exactly when its
record exists: `--resume` continues at the first step without one, so a kill at any moment loses
no finished step. A failed step writes `failure.json` in its stage folder and the loop goes on
to feedback.
"""

from __future__ import annotations

import datetime
import errno
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import yaml
from filelock import FileLock, Timeout
from rich.console import Console

from rdft.datasets.guard import evaluation_docs
from rdft.datasets.registry import get_dataset
from rdft.envs import EnvManager
from rdft.errors import RdftError
from rdft.evaluation.benchmarks import get_benchmark
from rdft.evaluation.run import regression_split
from rdft.files import write_atomic
from rdft.llm import ChatLLM, InvalidReply, LLMUnavailable
from rdft.loop.budget import Budget, StageClock
from rdft.loop.coding import CodingResult, code
from rdft.loop.feedback import Feedback, base_slices, judge, reference, remember
from rdft.loop.layout import RunLayout, read_json
from rdft.loop.prompts import proposal_messages
from rdft.loop.proposal import Params, Proposal, propose_offline, propose_with_llm
from rdft.loop.records import RunArgs, step, steps, write_json
from rdft.loop.report import LiveReport, summary, write_reports
from rdft.loop.running import SCORING_TIMEOUT, baseline_scores, run_experiment
from rdft.loop.scenario import Scenario, run_scenario
from rdft.loop.trace import Node, Trace
from rdft.loop.tracking import track
from rdft.loop.workspace import Interrupted, StepFailed
from rdft.runner import kill_recorded_groups, track_process_groups
from rdft.settings import Settings
from rdft.sync import sync_after_loop

STAGES = ("direct_exp_gen", "coding", "running", "feedback")
STOPPED_EXIT_CODE = 3  # `rdft run` stopped by its --timeout budget or --step-n: resumable
RUN_ENVS = ("train", "data", "eval")  # the envs every run builds (with_envs)


def llm_configured(settings: Settings) -> bool:
    return bool(settings.openai_api_key or settings.openai_api_base or "chat_model" in settings.model_fields_set)


def redacted_settings(settings: Settings) -> dict:
    """Every setting, with secrets masked (SecretStr dumps as asterisks)."""
    return json.loads(settings.model_dump_json())


def append_chat(path: Path | None, record: dict) -> None:
    """One LLM exchange, appended to the current stage's chat.jsonl (none yet: not kept)."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as handle:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def with_envs(settings: Settings, build: Callable[[], Scenario]) -> Scenario:
    """The scenario `build` makes, with the three envs a first run builds: the train env first (the
    tiny model and the hardware probe need it), the data and eval envs meanwhile in the background
    (mostly downloads and unpacking, while the tiny model trains); steps that need one wait for it
    on its file lock."""
    manager = EnvManager(settings)
    first, *rest = RUN_ENVS
    manager.ensure(first)
    with ThreadPoolExecutor(1) as pool:
        others = pool.submit(manager.ensure_all, rest)
        try:
            scenario = build()
        finally:
            others.result()  # a build failure surfaces here, after the scenario's own error if any
    return scenario


def baseline_splits(scenario: Scenario) -> list[str]:
    """What the base model is scored on: validation, test, and the forgetting check's slices."""
    return ["validation", "test", *map(regression_split, scenario.regression)]


def start_weights(layout: RunLayout, proposal: Proposal | None) -> dict | None:
    """The training record a GRPO proposal starts from (`params.start_from`: an earlier loop of
    this run, scored, so its weights passed the provenance check), else None."""
    loop = proposal.params.start_from if proposal is not None and proposal.params is not None else None
    record = read_json(layout.running(loop, "train")) if loop is not None else None
    return record if isinstance(record, dict) else None


def train_method(workspace: Path) -> str | None:
    """The loop's training method (train.yaml's method.type, lora by default), once coded."""
    path = workspace / "train.yaml"
    try:
        config = yaml.safe_load(path.read_text()) if path.is_file() else None
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return None
    method = config.get("method") if isinstance(config, dict) else None
    if not isinstance(config, dict) or not isinstance(method or {}, dict):
        return None
    return str((method or {}).get("type", "lora"))


class Run:
    def __init__(self, settings: Settings, log_dir: Path, console: Console):
        self.settings, self.log_dir, self.console = settings, log_dir, console
        self.args = RunArgs.model_validate_json((log_dir / "run.json").read_text())
        self.trace = Trace.load(log_dir / "trace.json")
        self.chat_file: Path | None = None
        self.stopped: str | None = None  # why the run stopped early (budget, --step-n), for the user
        self.finished = False

        self.llm = ChatLLM(settings, chat_log=self.log_chat) if llm_configured(settings) else None
        self.steps = 0
        self.budget = Budget(self.args, log_dir)
        self.layout = RunLayout(log_dir)
        self.live = LiveReport(log_dir, console)  # live.json and report.html, rewritten while the run goes on

    def may_continue(self) -> bool:
        if self.args.step_n is not None and self.steps >= self.args.step_n:
            self.stopped = f"ran {self.steps} step(s) (--step-n)"
            return False
        if self.budget.out_of_budget():
            self.stopped = f"the --timeout budget ({self.args.timeout_s:g} s) is spent"
            return False
        return True

    def log_chat(self, record: dict) -> None:  # into the current stage's chat.jsonl
        append_chat(self.chat_file, record)

    # --- the run -------------------------------------------------------------------------------
    def scenario(self) -> Scenario:
        self.chat_file = self.log_dir / "dataset_selection.jsonl"  # the LLM's choice of datasets, if asked
        return run_scenario(self.settings, self.args, self.layout, self.console, self.llm)

    def baseline(self, scenario: Scenario) -> None:
        directory = self.layout.baseline
        if not (directory / "items.json").exists():
            if not self.may_continue():
                raise _Stop
            self.steps += 1
        step(
            directory,
            "items",
            lambda: {"docs": str(evaluation_docs(self.settings, scenario.benchmark, self.layout.evaluation_items))},
        )
        if not all((directory / f"{split}.json").exists() for split in baseline_splits(scenario)):
            if not self.may_continue():
                raise _Stop
            self.console.print("rdft: scoring the base model on the validation and test splits")
            self.steps += 1
        try:
            records = self._baseline_records(directory, scenario)
        except RdftError:
            if self.budget.out_of_budget():
                self.stopped = f"the --timeout budget ({self.args.timeout_s:g} s) ran out while scoring the base model"
                raise _Stop from None
            raise
        validation = records["validation"]
        self.trace.scoring = scenario.scoring.model_dump(exclude={"limit", "max_gen_toks"})
        self.trace.baseline_validation, self.trace.baseline_validation_ci95 = validation["value"], validation["ci95"]
        self.trace.baseline_flags = (validation.get("diagnostics") or {}).get("flags", [])
        self.trace.baseline_test = records["test"]["value"]
        self.trace.baseline_regression = {b: records[regression_split(b)]["value"] for b in scenario.regression}
        self.save()
        self.track()

    def _baseline_records(self, directory: Path, scenario: Scenario) -> dict[str, dict]:
        return steps(
            directory,
            baseline_splits(scenario),
            lambda splits: baseline_scores(
                self.settings,
                scenario,
                {split: directory / split for split in splits},
                console=self.console,
                timeout=self.budget.deadline(SCORING_TIMEOUT),
            ),
        )

    def loop(self, index: int, scenario: Scenario) -> None:
        loop_dir = self.layout.loop(index)
        node = self.trace.node(index)
        if node is None:
            node = Node(loop=index, **self.trace.next_parent(self.settings.rdft_search, self.llm is None, index))
            self.trace.nodes.append(node)
            self.save()
        for aside in self.layout.set_aside_damaged(index):
            self.console.print(f"rdft: loop {index}: a damaged record; kept aside as {aside}, done again")
        workspace, parent_workspace = self.layout.workspace(index), self.layout.workspace(node.parent)
        failure = self.layout.failed(index)

        proposal = None
        proposal_path = loop_dir / "direct_exp_gen" / "proposal.json"
        if not proposal_path.exists() and failure is None:
            failure = self.stage(
                loop_dir, "direct_exp_gen", node, lambda: self.propose(scenario, node, parent_workspace)
            )
        if proposal_path.exists():
            proposal = Proposal.model_validate_json(proposal_path.read_text())
            node.hypothesis = proposal.hypothesis

        if not (loop_dir / "coding" / "result.json").exists() and failure is None:
            failure = self.stage(
                loop_dir, "coding", node, lambda: self.code(scenario, proposal, workspace, loop_dir, parent_workspace)
            )
        node.method = train_method(workspace)
        outcome = None
        result_path = loop_dir / "running" / "result.json"
        if not result_path.exists() and failure is None:
            failure = self.stage(
                loop_dir,
                "running",
                node,
                lambda: run_experiment(
                    self.settings,
                    scenario,
                    workspace,
                    loop_dir / "running",
                    self.layout.evaluation_items,
                    deadline=self.budget.deadline,
                    console=self.console,
                    start=start_weights(self.layout, proposal),
                ),
            )
        if result_path.exists():
            outcome = json.loads(result_path.read_text())

        if not (loop_dir / "feedback" / "feedback.json").exists():
            self.stage(loop_dir, "feedback", node, lambda: self.feedback(scenario, proposal, outcome, failure, node))
        feedback = Feedback.model_validate_json((loop_dir / "feedback" / "feedback.json").read_text())
        node.status = "failed" if failure or feedback.status == "failed" else "done"
        if failure is None and feedback.error_type:  # the comparison itself failed
            failure = (feedback.error_type, feedback.error or "")
        node.error_type, node.error = (failure[0], failure[1][-2000:]) if failure else (None, None)
        node.confirmed = feedback.decision
        node.flags = feedback.flags
        node.leakage = feedback.leakage
        node.regression, node.forgetting = feedback.regression, feedback.forgetting
        if outcome:
            node.validation, node.validation_ci95 = outcome["validation"]["value"], outcome["validation"]["ci95"]
            node.test = outcome["test"]["value"]
        self.save()
        remember(self.settings, self.layout, scenario, node, self.trace.baseline_validation)
        self.track()
        if self.settings.rdft_remote and not self.args.no_sync:  # after each loop; a failed sync only warns
            write_reports(self.log_dir, self.trace, self.args)
            sync_after_loop(self.settings, self.log_dir, self.console)

    def stage(self, loop_dir: Path, name: str, node: Node, work) -> tuple[str, str] | None:
        """Run one stage: its record on success, failure.json (and the failure) when it fails."""
        if not self.may_continue():
            raise _Stop
        stage_dir = loop_dir / name
        clock = StageClock(loop_dir, name)  # with the earlier sessions' part (read before a redo clears it)
        if name != "running":  # running keeps its finished sub-steps; the others start over
            shutil.rmtree(stage_dir, ignore_errors=True)
        stage_dir.mkdir(parents=True, exist_ok=True)
        self.chat_file = stage_dir / "chat.jsonl"
        best = self.trace.best()
        elapsed = datetime.timedelta(seconds=int(self.budget.spent()))
        score = f"best {best.validation:.4g} (loop {best.loop})" if best else f"base {self.trace.baseline_validation}"
        self.console.rule(f"Loop {node.loop}/{self.args.loop_n} · {name} · {score} · {elapsed}")
        self.steps += 1
        self.live.stage(node.loop, name, clock.started, clock.carried)  # the report shows it under way
        try:
            record = work()
        except Interrupted:
            return self._interrupted(name, clock)
        except OSError as error:
            if error.errno == errno.ENOSPC:  # a full disk is no failed experiment: pause, resumable
                why = f"the disk filled up during {name} ({error.filename or self.log_dir})"
                return self._interrupted(name, clock, why)
            raise
        except StepFailed as failure:
            if self.budget.out_of_budget():  # the budget cut it short: not this experiment's failure
                return self._interrupted(name, clock)
            if disk_full(self.log_dir, str(failure)):  # the step's process ran out of disk, not of ideas
                return self._interrupted(name, clock, f"the disk filled up during {name}; free space and resume")
            return self._fail(stage_dir, node, name, clock, failure.stage, str(failure))
        except (LLMUnavailable, InvalidReply) as error:
            return self._fail(stage_dir, node, name, clock, "llm", str(error))
        if isinstance(record, CodingResult) and not record.ok:
            if self.budget.out_of_budget():
                return self._interrupted(name, clock)
            write_json(stage_dir / "result.json", record.model_dump())
            return self._fail(stage_dir, node, name, clock, "coder", record.error or "the coder gave up")
        node.seconds[name] = clock.done()
        if name == "running":
            write_json(stage_dir / "result.json", record)
        self.save()
        self.live.stage_done(node.loop, name)
        return None

    def _interrupted(self, name: str, clock: StageClock, why: str | None = None):
        """The budget ran out (or the disk filled up) in the middle of a stage: nothing is
        recorded about it (it is no failed experiment, and gets no feedback); a resume redoes it
        (running from its first unfinished sub-step), its clock carrying this session's part."""
        clock.pause()
        self.stopped = why or f"the --timeout budget ({self.args.timeout_s:g} s) ran out during {name}"
        raise _Stop

    def _fail(self, stage_dir: Path, node: Node, name: str, clock: StageClock, kind: str, message: str):
        node.seconds[name] = clock.done()
        write_json(stage_dir / "failure.json", {"stage": name, "type": kind, "error": message})
        self.console.print(f"rdft: {name} failed ({kind}): {message.splitlines()[0] if message else ''}")
        self.save()
        self.live.stage_done(node.loop, name)
        return kind, message

    # --- stage bodies --------------------------------------------------------------------------
    def propose(self, scenario: Scenario, node: Node, parent_workspace: Path | None) -> Proposal:
        if self.llm is not None:
            proposal = propose_with_llm(self.llm, proposal_messages(self, scenario, node))
        else:
            finished = [(n, p) for n in self.trace.nodes if (p := self.params_of(n.loop)) is not None]
            proposal = propose_offline(scenario, finished, self.tried(), rl=self.args.rl)
        directory = self.layout.stage(node.loop, "direct_exp_gen")
        write_atomic(
            directory / "proposal.md",
            f"# Loop {node.loop} proposal ({node.kind}, parent: {node.parent if node.parent is not None else 'base'})"
            f"\n\n**Hypothesis:** {proposal.hypothesis}\n\n**Why:** {proposal.reason}\n\n**Data:** "
            f"{proposal.data_recipe}\n\n**Training:** {proposal.training_recipe}\n",
        )
        write_json(directory / "proposal.json", proposal.model_dump())
        return proposal

    def params_of(self, loop: int | None) -> Params | None:
        if loop is None:
            return None
        path = self.layout.proposal(loop)
        return Proposal.model_validate_json(path.read_text()).params if path.exists() else None

    def tried(self) -> list[Params]:
        return [p for p in (self.params_of(n.loop) for n in self.trace.nodes) if p is not None]

    def code(self, scenario, proposal, workspace, loop_dir, parent_workspace) -> CodingResult:
        if proposal.params is None and self.llm is None:
            raise StepFailed("coder", "the proposal has no recipe parameters and no LLM is configured to code it")
        shutil.rmtree(workspace, ignore_errors=True)
        result = code(
            self.settings,
            scenario,
            proposal,
            workspace,
            loop_dir / "coding",
            parent_workspace=parent_workspace,
            guard_docs=self.layout.evaluation_items,
            llm=self.llm,
            console=self.console,
            measured=self.layout.measured(),
            deadline=self.budget.deadline,
            out_of_budget=self.budget.out_of_budget,
            budget_left=self.budget.remaining,
            source=f"{self.log_dir}#{loop_dir.name}",
            start_from=start_weights(self.layout, proposal),
        )
        if result.ok:
            write_json(loop_dir / "coding" / "result.json", result.model_dump())
        return result

    def feedback(self, scenario, proposal, outcome, failure, node: Node) -> Feedback:
        items, label, by_mean = reference(self.layout, self.trace, node.loop)
        result = judge(
            self.settings, scenario, proposal, outcome, failure, items, llm=self.llm, reference=label, best=by_mean,
            regression_base=base_slices(self.layout, scenario.regression),
        )  # fmt: skip
        directory = self.layout.stage(node.loop, "feedback")
        write_atomic(directory / "feedback.md", result.markdown(node.loop, proposal))
        write_json(directory / "feedback.json", result.model_dump())
        self.console.print(f"rdft: loop {node.loop}: {result.verdict}")
        return result

    def track(self) -> None:
        """Mirror the records into the run's tracker (--track), if any."""
        if self.args.track:
            track(self.settings, self.log_dir, self.args.track, self.console)

    # --- records -------------------------------------------------------------------------------
    def save(self) -> None:
        """The trace, the summary and the time spent, after every step (so a kill -9 loses at
        most the step in flight, whose files still tell when it stopped)."""
        self.trace.save(self.layout.trace_json)
        write_json(self.layout.summary_json, summary(self.trace, self.args))
        self.budget.persist()

    def execute(self) -> bool:
        """Run (or resume) to the end; False when stopped early by --step-n or --timeout."""
        groups = self.layout.processes
        leftovers = kill_recorded_groups(groups)  # what a killed run of this folder left running
        if leftovers:
            self.console.print(f"rdft: stopped {leftovers} process group(s) left running by the interrupted run")
        track_process_groups(groups)
        self.live.start()
        try:
            scenario = with_envs(self.settings, self.scenario)
            self.baseline(scenario)
            for index in range(self.args.loop_n):  # Loop_0, Loop_1, … as in RD-Agent's log tree
                self.loop(index, scenario)
        except _Stop:
            self.stopped = self.stopped or "stopped"
            return False
        except KeyboardInterrupt:
            self.console.print(f"rdft: interrupted; resume with `rdft run --resume {self.log_dir}`")
            raise
        finally:
            track_process_groups(None)
            self.live.end(self.stopped, sys.exc_info()[1])  # before the last report, which then says why
            # At every stop, even one before loop 0: the summary and the report say where it is.
            self.trace.save(self.layout.trace_json)
            write_json(self.layout.summary_json, summary(self.trace, self.args))
            write_reports(self.log_dir, self.trace, self.args)
            self.budget.persist()  # last: the time counted covers every file the run wrote
        return True


class _Stop(Exception):
    """--step-n or --timeout reached: stop cleanly, resumable."""


def new_log_dir(settings: Settings) -> Path:
    if settings.log_trace_path is not None:
        return settings.log_trace_path.expanduser().resolve()
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d_%H-%M-%S-%f")
    return (Path("log") / stamp).resolve()


def start(settings: Settings, args: RunArgs, console: Console) -> Run:
    get_benchmark(args.benchmark)  # user errors stop here, before anything is written
    for name in args.datasets:
        get_dataset(name)
    local = Path(args.base_model).expanduser()
    if args.base_model.startswith((".", "/", "~")) and not (local / "config.json").is_file():
        raise RdftError(f"--base-model {local} has no config.json; give a Hugging Face model folder or a Hub id")
    log_dir = new_log_dir(settings)
    if (log_dir / "run.json").exists():
        raise RdftError(f"{log_dir} already holds a run; resume it with `rdft run --resume {log_dir}`")
    log_dir.mkdir(parents=True, exist_ok=True)
    write_json(log_dir / "run.json", args.model_dump())
    write_json(log_dir / "settings.json", redacted_settings(settings))
    return resume(settings, log_dir, console)


def open_run(settings: Settings, log_dir: Path, console: Console) -> Run:
    """The run in `log_dir`, read (not executed)."""
    if not (log_dir / "run.json").is_file():
        raise RdftError(f"{log_dir} is not an rdft run folder (no run.json); give the folder `rdft run` printed")
    try:
        return Run(settings, log_dir, console)
    except (OSError, ValueError) as error:
        raise RdftError(
            f"cannot read the run in {log_dir} ({type(error).__name__}); give an intact run folder"
        ) from None


@contextmanager
def owned(log_dir: Path) -> Iterator[None]:
    """The run folder for this session alone: an exclusive lock (released by the OS when the
    process ends, kill -9 included) and the owner's process id beside it. A second session on
    the same folder would kill the first one's steps as leftovers and record a failure."""
    layout = RunLayout(log_dir)
    lock = FileLock(str(layout.lock))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        owner = layout.owner.read_text().strip() if layout.owner.is_file() else "unknown"
        raise RdftError(
            f"{log_dir} is in use by another rdft run (process {owner}); let it finish or stop it, then resume"
        ) from None
    try:
        write_atomic(layout.owner, f"{os.getpid()}\n")
        yield
    finally:
        layout.owner.unlink(missing_ok=True)
        lock.release()


def resume(settings: Settings, log_dir: Path, console: Console, changes: dict | None = None) -> Run:
    """Open the run in `log_dir`, apply what --resume may change (`changes`: timeout_s, loop_n,
    step_n, no_sync), and run it to its end or its next stop. A new --timeout is a new budget
    from now; --loop-n may extend a finished run. One session at a time (`owned`)."""
    if not (log_dir / "run.json").is_file():
        open_run(settings, log_dir, console)  # says what the folder is not
    with owned(log_dir):
        return _resume(settings, log_dir, console, changes)


def _resume(settings: Settings, log_dir: Path, console: Console, changes: dict | None) -> Run:
    run = open_run(settings, log_dir, console)
    for key, value in (changes or {}).items():
        if key == "timeout_s":
            run.args.budget_from_s = round(run.budget.spent(), 1)  # the new budget starts now
        if key == "loop_n" and value < len(run.trace.nodes):
            raise RdftError(
                f"the run already started {len(run.trace.nodes)} loop(s); give --loop-n {len(run.trace.nodes)} "
                "or more to extend it"
            )
        setattr(run.args, key, value)
    if changes:
        run.budget.persist()  # records the new limits
    mode = "the LLM " + settings.chat_model if run.llm else "the offline planner (no LLM configured)"
    console.print(f"rdft: run in {log_dir}, proposals by {mode}")
    run.finished = run.execute()
    return run


NO_SPACE = "No space left on device"  # what every tool prints for ENOSPC
MIN_FREE_BYTES = 64 * 2**20


def disk_full(folder: Path, message: str) -> bool:
    """Whether a failed step ran out of the disk the run writes to rather than failed as an
    experiment: under 64 MiB left there, or its output says so with under 1 GiB left (the words
    alone may be about /dev/shm or a cache elsewhere, and would pause every resume again)."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return False
    return free < MIN_FREE_BYTES or (NO_SPACE in message and free < 2**30)


def result_lines(run: Run) -> list[str]:
    """What a finished or stopped run says last: the confirmed best (its validation and hidden
    test scores, where its weights are), else that no loop beat the base model."""
    confirmed = run.trace.confirmed_best()
    if confirmed is None:
        base = run.trace.baseline_validation
        return [f"result: no loop was confirmed better than the base model (validation {base})"]
    trained = read_json(run.layout.running(confirmed.loop, "train")) or {}
    # GRPO's and DPO's adapter is relative to its start's weights: the merge is what scored.
    weights = trained.get("merged_dir") or trained.get("adapter_dir") or trained.get("model_dir") or "?"
    return [
        f"result: loop {confirmed.loop} is the confirmed best: validation {confirmed.validation:.4g} "
        f"(base {run.trace.baseline_validation}), hidden test "
        + (f"{confirmed.test:.4g}" if confirmed.test is not None else "not scored"),
        f"weights: {weights}",
    ]
