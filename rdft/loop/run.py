"""`rdft run`: the loop — proposal, coding, running, feedback — with its log and resume.

    log/<UTC timestamp>/
        run.json, settings.json (secrets redacted), scenario.json, scenario.md
        baseline/evaluation_items.jsonl      the validation and test items, whole: what the leakage guard reads
        baseline/{validation,test}/          the base model scored first, with the same flags
        Loop_<i>/direct_exp_gen/             proposal.json, proposal.md, chat.jsonl
        Loop_<i>/coding/                     round_<k>/ (the files + evaluation.json), result.json
        Loop_<i>/running/                    data.json, train.json, validation.json, test.json, result.json,
                                             validation/ and test/ (what scoring wrote)
        Loop_<i>/feedback/                   feedback.json, feedback.md
        Loop_<i>/workspace/                  the experiment: files, data, output/
        trace.json, summary.json, report.md

Every record is written atomically when its step finishes, and a step is done exactly when its
record exists: `--resume` continues at the first step without one, so a kill at any moment loses
no finished step. A failed step writes `failure.json` in its stage folder and the loop goes on
to feedback.
"""

from __future__ import annotations

import datetime
import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pydantic import BaseModel, field_validator
from rich.console import Console

from rdft.datasets.guard import evaluation_docs
from rdft.datasets.registry import get_dataset, registry
from rdft.envs import EnvManager
from rdft.errors import RdftError
from rdft.evaluation.benchmarks import get_benchmark
from rdft.files import write_atomic
from rdft.knowledge import remember_recipe
from rdft.llm import ChatLLM, InvalidReply, LLMUnavailable, structured_messages
from rdft.loop.coding import CODE_FILES, CodeFiles, CodingResult, code, coder_messages
from rdft.loop.feedback import Explanation, Feedback, assess, facts, feedback_messages, judge
from rdft.loop.memory import render_tree
from rdft.loop.proposal import Params, Proposal, proposal_messages, propose_offline, propose_with_llm
from rdft.loop.records import RunArgs, step, steps, write_json
from rdft.loop.report import summary, write_reports
from rdft.loop.running import SCORING_TIMEOUT, baseline_scores, run_experiment
from rdft.loop.scenario import Scenario, build_scenario, default_datasets
from rdft.loop.trace import Node, Trace
from rdft.loop.workspace import Interrupted, StepFailed
from rdft.runner import kill_recorded_groups, track_process_groups
from rdft.settings import Settings

STAGES = ("direct_exp_gen", "coding", "running", "feedback")
STOPPED_EXIT_CODE = 3  # `rdft run` stopped by its --timeout budget or --step-n: resumable
RUN_ENVS = ("train", "data", "eval")  # the envs every run builds (scenario_with_envs)


class DatasetChoice(BaseModel):
    selected: list[str]
    reasoning: str

    @field_validator("selected")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(registry()))
        if unknown or not value:
            raise ValueError(f"choose one or more of {sorted(registry())}; unknown: {unknown}")
        return value


def llm_configured(settings: Settings) -> bool:
    return bool(settings.openai_api_key or settings.openai_api_base or "chat_model" in settings.model_fields_set)


def redacted_settings(settings: Settings) -> dict:
    """Every setting, with secrets masked (SecretStr dumps as asterisks)."""
    return json.loads(settings.model_dump_json())


class Run:
    def __init__(self, settings: Settings, log_dir: Path, console: Console):
        self.settings, self.log_dir, self.console = settings, log_dir, console
        self.args = RunArgs.model_validate_json((log_dir / "run.json").read_text())
        self.trace = Trace.load(log_dir / "trace.json")
        self.chat_file: Path | None = None
        self.stopped: str | None = None  # why the run stopped early (budget, --step-n), for the user
        self.finished = False
        self.llm = ChatLLM(settings, chat_log=self._log_chat) if llm_configured(settings) else None
        self.steps = 0
        self.started = time.monotonic()
        self.spent_before = self.args.spent_s + self._unrecorded_seconds()

    def _unrecorded_seconds(self) -> float:
        """Work after the last time run.json recorded the spent time: a run killed with -9 never
        wrote it, but the files its last step wrote carry the time it stopped."""
        recorded = (self.log_dir / "run.json").stat().st_mtime
        latest = recorded
        for path in self.log_dir.rglob("*"):
            if path.is_file() and ".processes" not in path.parts:
                latest = max(latest, path.stat().st_mtime)
        return max(0.0, latest - recorded)

    # --- budget --------------------------------------------------------------------------------
    def spent(self) -> float:
        return self.spent_before + (time.monotonic() - self.started)

    def remaining(self) -> float | None:
        """Seconds left of the --timeout budget (counted from when it was given), or None."""
        if self.args.timeout_s is None:
            return None
        return self.args.timeout_s - (self.spent() - self.args.budget_from_s)

    def deadline(self, seconds: float) -> float:
        """A step's own timeout, capped by what is left of the run's budget."""
        left = self.remaining()
        return seconds if left is None else max(1.0, min(seconds, left))

    def out_of_budget(self) -> bool:
        left = self.remaining()
        return left is not None and left <= 1.0

    def may_continue(self) -> bool:
        if self.args.step_n is not None and self.steps >= self.args.step_n:
            self.stopped = f"ran {self.steps} step(s) (--step-n)"
            return False
        if self.out_of_budget():
            self.stopped = f"the --timeout budget ({self.args.timeout_s:g} s) is spent"
            return False
        return True

    def _log_chat(self, record: dict) -> None:
        if self.chat_file is not None:
            self.chat_file.parent.mkdir(parents=True, exist_ok=True)
            with open(self.chat_file, "a") as handle:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")

    # --- the run -------------------------------------------------------------------------------
    def scenario(self) -> Scenario:
        path = self.log_dir / "scenario.json"
        if path.exists():
            return Scenario.model_validate_json(path.read_text())
        datasets = self.args.datasets or self.choose_datasets()
        workspace = self.log_dir / "probe"
        workspace.mkdir(exist_ok=True)
        scenario = build_scenario(
            self.settings,
            base_model=self.args.base_model,
            benchmark=self.args.benchmark,
            description=self.args.description,
            datasets=datasets,
            workspace=workspace,
            console=self.console,
            budgets={
                "total": self.args.timeout_s,
                "full_training": self.settings.ft_full_timeout,
                "data_processing": self.settings.ft_data_processing_timeout,
            },
            demo=self.args.demo,
            target=self.args.target,
            eval_limit=self.args.eval_limit,
            max_gen_toks=self.args.max_gen_toks,
            samples=self.args.samples,
        )
        write_atomic(self.log_dir / "scenario.md", scenario.text() + "\n")
        write_json(path, scenario.model_dump())
        return scenario

    def scenario_with_envs(self) -> Scenario:
        """The scenario, with the three envs a first run builds: the train env first (the tiny
        model and the hardware probe need it), the data and eval envs meanwhile in the background
        (mostly downloads and unpacking, while the tiny model trains); steps that need one wait
        for it on its file lock."""
        manager = EnvManager(self.settings)
        first, *rest = RUN_ENVS
        manager.ensure(first)
        with ThreadPoolExecutor(1) as pool:
            others = pool.submit(manager.ensure_all, rest)
            try:
                scenario = self.scenario()
            finally:
                others.result()  # a build failure surfaces here, after the scenario's own error if any
        return scenario

    def choose_datasets(self) -> list[str]:
        if self.llm is None:
            return default_datasets(self.args.benchmark)
        self.chat_file = self.log_dir / "dataset_selection.jsonl"
        table = "\n".join(
            f"- {e.name} (serves {', '.join(e.benchmarks)}): {e.description}" for e in registry().values()
        )
        ask = (
            f"Target benchmark: {self.args.benchmark}. {self.args.description or ''}\nDatasets:\n{table}\n"
            "Choose the datasets whose data can train for it; prefer including one too many over missing one."
        )
        try:
            choice = self.llm.structured([{"role": "user", "content": ask}], DatasetChoice, purpose="dataset_selection")
            return choice.selected
        except (LLMUnavailable, InvalidReply) as error:
            self.console.print(f"rdft: dataset selection by the LLM failed ({error}); using the benchmark's own")
            return default_datasets(self.args.benchmark)

    def guard_docs(self) -> Path:
        return self.log_dir / "baseline" / "evaluation_items.jsonl"

    def baseline(self, scenario: Scenario) -> None:
        directory = self.log_dir / "baseline"
        if not (directory / "items.json").exists():
            if not self.may_continue():
                raise _Stop
            self.steps += 1
        step(
            directory,
            "items",
            lambda: {"docs": str(evaluation_docs(self.settings, scenario.benchmark, self.guard_docs()))},
        )
        if not all((directory / f"{split}.json").exists() for split in ("validation", "test")):
            if not self.may_continue():
                raise _Stop
            self.console.print("rdft: scoring the base model on the validation and test splits")
            self.steps += 1
        try:
            records = self._baseline_records(directory, scenario)
        except RdftError:
            if self.out_of_budget():
                self.stopped = f"the --timeout budget ({self.args.timeout_s:g} s) ran out while scoring the base model"
                raise _Stop from None
            raise
        validation = records["validation"]
        self.trace.scoring = scenario.scoring.model_dump(exclude={"limit", "max_gen_toks"})
        self.trace.baseline_validation, self.trace.baseline_validation_ci95 = validation["value"], validation["ci95"]
        self.trace.baseline_flags = (validation.get("diagnostics") or {}).get("flags", [])
        self.trace.baseline_test = records["test"]["value"]
        self.save()

    def _baseline_records(self, directory: Path, scenario: Scenario) -> dict[str, dict]:
        return steps(
            directory,
            ["validation", "test"],
            lambda splits: baseline_scores(
                self.settings,
                scenario,
                {split: directory / split for split in splits},
                console=self.console,
                timeout=self.deadline(SCORING_TIMEOUT),
            ),
        )

    def loop(self, index: int, scenario: Scenario) -> None:
        loop_dir = self.log_dir / f"Loop_{index}"
        node = self.trace.node(index)
        if node is None:
            node = Node(loop=index, **self.next_parent(index))
            self.trace.nodes.append(node)
            self.save()
        workspace = loop_dir / "workspace"
        parent_workspace = self.log_dir / f"Loop_{node.parent}" / "workspace" if node.parent is not None else None
        failure = self.failure(loop_dir)

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
                    self.guard_docs(),
                    deadline=self.deadline,
                    console=self.console,
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
        if outcome:
            node.validation, node.validation_ci95 = outcome["validation"]["value"], outcome["validation"]["ci95"]
            node.test = outcome["test"]["value"]
        self.save()
        self.remember(scenario, node, workspace)
        self.sync()

    def remember(self, scenario: Scenario, node: Node, workspace: Path) -> None:
        """An experiment that beat the base model teaches the knowledge store its recipe (once:
        a resumed loop does not add it again)."""
        marker = self.log_dir / f"Loop_{node.loop}" / "feedback" / "remembered"
        base = self.trace.baseline_validation
        if node.status != "done" or node.validation is None or base is None or node.validation <= base:
            return
        if marker.exists() or node.flags:  # degenerate answers teach nothing worth repeating
            return
        files = {name: (workspace / name).read_text() for name in CODE_FILES if (workspace / name).is_file()}
        remember_recipe(self.settings, family=scenario.benchmark_family, benchmark=scenario.benchmark,
                        base_model=scenario.base_model.name, gain=node.validation - base, validation=node.validation,
                        files=files, hypothesis=node.hypothesis, source=f"{self.log_dir}#Loop_{node.loop}")  # fmt: skip
        write_atomic(marker, "")

    def next_parent(self, index: int) -> dict:
        """{parent, kind} of a new loop: the search's choice, or, for the offline planner, the
        best scored experiment (its local search centres there)."""
        if self.llm is None:
            best = self.trace.best_scored()
            return {"parent": best.loop, "kind": "improve"} if best else {"parent": None, "kind": "draft"}
        parent, kind = self.trace.choose_parent(self.settings.rdft_search, index)
        return {"parent": parent, "kind": kind}

    def sync(self) -> None:
        """After each loop, the log goes to RDFT_REMOTE (unless --no-sync); a failed sync only warns."""
        if not self.settings.rdft_remote or self.args.no_sync:
            return
        from rdft.sync import sync_up

        write_reports(self.log_dir, self.trace, self.args)
        try:
            stats = sync_up(self.log_dir, self.settings.rdft_remote, self.settings)
            self.console.print(f"rdft: synced the log to {self.settings.rdft_remote} ({stats.sent} file(s) sent)")
        except (RdftError, OSError) as error:
            self.console.print(f"rdft: log sync to {self.settings.rdft_remote} failed ({error}); the run goes on")

    def stage(self, loop_dir: Path, name: str, node: Node, work) -> tuple[str, str] | None:
        """Run one stage: its record on success, failure.json (and the failure) when it fails."""
        if not self.may_continue():
            raise _Stop
        stage_dir = loop_dir / name
        if name != "running":  # running keeps its finished sub-steps; the others start over
            shutil.rmtree(stage_dir, ignore_errors=True)
        stage_dir.mkdir(parents=True, exist_ok=True)
        self.chat_file = stage_dir / "chat.jsonl"
        best = self.trace.best()
        elapsed = datetime.timedelta(seconds=int(self.spent_before + time.monotonic() - self.started))
        score = f"best {best.validation:.4g} (loop {best.loop})" if best else f"base {self.trace.baseline_validation}"
        self.console.rule(f"Loop {node.loop}/{self.args.loop_n} · {name} · {score} · {elapsed}")
        start = time.monotonic()
        self.steps += 1
        try:
            record = work()
        except Interrupted:
            return self._interrupted(name)
        except StepFailed as failure:
            if self.out_of_budget():  # the budget cut it short: not this experiment's failure
                return self._interrupted(name)
            return self._fail(stage_dir, node, name, start, failure.stage, str(failure))
        except (LLMUnavailable, InvalidReply) as error:
            return self._fail(stage_dir, node, name, start, "llm", str(error))
        node.seconds[name] = round(time.monotonic() - start, 1)
        if isinstance(record, CodingResult) and not record.ok:
            if self.out_of_budget():
                return self._interrupted(name)
            write_json(stage_dir / "result.json", record.model_dump())
            return self._fail(stage_dir, node, name, start, "coder", record.error or "the coder gave up")
        if name == "running":
            write_json(stage_dir / "result.json", record)
        self.save()
        return None

    def _interrupted(self, name: str):
        """The budget ran out in the middle of a stage: nothing is recorded about it (it is no
        failed experiment, and gets no feedback); a resume redoes it (running from its first
        unfinished sub-step)."""
        self.stopped = f"the --timeout budget ({self.args.timeout_s:g} s) ran out during {name}"
        raise _Stop

    def _fail(self, stage_dir: Path, node: Node, name: str, start: float, kind: str, message: str):
        node.seconds[name] = round(time.monotonic() - start, 1)
        write_json(stage_dir / "failure.json", {"stage": name, "type": kind, "error": message})
        self.console.print(f"rdft: {name} failed ({kind}): {message.splitlines()[0] if message else ''}")
        self.save()
        return kind, message

    @staticmethod
    def failure(loop_dir: Path) -> tuple[str, str] | None:
        for name in STAGES[:3]:
            path = loop_dir / name / "failure.json"
            if path.exists():
                record = json.loads(path.read_text())
                return record["type"], record["error"]
        return None

    # --- stage bodies --------------------------------------------------------------------------
    def proposal_messages(self, scenario: Scenario, node: Node) -> list[dict]:
        """The proposal call's messages for `node`: the history of the loops before it."""
        parent = self.trace.node(node.parent) if node.parent is not None else None
        parent_workspace = self.log_dir / f"Loop_{node.parent}" / "workspace" if node.parent is not None else None
        files = {}
        if parent_workspace is not None:
            files = {n: (parent_workspace / n).read_text() for n in ("process_data.py", "train.yaml")
                     if (parent_workspace / n).is_file()}  # fmt: skip
        history = render_tree(self.log_dir, self.trace, node)
        return proposal_messages(scenario, history, node, parent, files)

    def propose(self, scenario: Scenario, node: Node, parent_workspace: Path | None) -> Proposal:
        if self.llm is not None:
            proposal = propose_with_llm(self.llm, self.proposal_messages(scenario, node))
        else:
            finished = [(n, p) for n in self.trace.nodes if (p := self.params_of(n.loop)) is not None]
            proposal = propose_offline(scenario, finished, self.tried())
        directory = self.log_dir / f"Loop_{node.loop}" / "direct_exp_gen"
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
        path = self.log_dir / f"Loop_{loop}" / "direct_exp_gen" / "proposal.json"
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
            guard_docs=self.guard_docs(),
            llm=self.llm,
            console=self.console,
            measured=self.measured(),
            deadline=self.deadline,
            out_of_budget=self.out_of_budget,
            budget_left=self.remaining,
            source=f"{self.log_dir}#{loop_dir.name}",
        )
        if result.ok:
            write_json(loop_dir / "coding" / "result.json", result.model_dump())
        return result

    def reference(self) -> tuple[Path, str, str]:
        """(the confirmed best's validation items, its label, the best by mean's label): what a
        loop is compared with for confirmation, and what it is measured against for the search."""
        confirmed = self.trace.confirmed_best()
        if confirmed is None:
            record, label = self.log_dir / "baseline" / "validation.json", "the base model (the confirmed best)"
        else:
            record = self.log_dir / f"Loop_{confirmed.loop}" / "running" / "validation.json"
            label = f"loop {confirmed.loop} (the confirmed best)"
        best = self.trace.best()
        by_mean = (
            f"loop {best.loop} ({best.validation})" if best else f"the base model ({self.trace.baseline_validation})"
        )
        return Path(json.loads(record.read_text())["items"]), label, by_mean

    def feedback(self, scenario, proposal, outcome, failure, node: Node) -> Feedback:
        items, label, by_mean = self.reference()
        result = judge(self.settings, scenario, proposal, outcome, failure, items, llm=self.llm, reference=label,
                       best=by_mean)  # fmt: skip
        directory = self.log_dir / f"Loop_{node.loop}" / "feedback"
        write_atomic(directory / "feedback.md", result.markdown(node.loop, proposal))
        write_json(directory / "feedback.json", result.model_dump())
        self.console.print(f"rdft: loop {node.loop}: {result.verdict}")
        return result

    def measured(self) -> dict | None:
        """What the newest debug run of this run measured (rows, seconds, API cost, tokens/s)."""
        latest, found = -1.0, None
        for path in self.log_dir.glob("Loop_*/coding/round_*/evaluation.json"):
            record = json.loads(path.read_text())
            if record.get("measured") and path.stat().st_mtime > latest:
                latest, found = path.stat().st_mtime, record["measured"]
        return found

    # --- what each stage's LLM call sends (`rdft prompt`) ---------------------------------------
    def messages(self, stage: str, loop: int | None) -> tuple[list[dict], str]:
        """(the messages, "sent" or "would send") of `stage`'s LLM call in `loop` (default: the
        next loop): the ones logged when the call was made, else rendered as the run would."""
        index = len(self.trace.nodes) if loop is None else loop
        directory = {"proposal": "direct_exp_gen", "coding": "coding", "feedback": "feedback"}[stage]
        chat = self.log_dir / f"Loop_{index}" / directory / "chat.jsonl"
        if chat.is_file():
            sent = [json.loads(line) for line in chat.read_text().splitlines() if line.strip()]
            sent = [record for record in sent if record.get("messages")]
            if sent:
                return sent[-1]["messages"], "sent"
        scenario_path = self.log_dir / "scenario.json"
        if not scenario_path.is_file():
            raise RdftError(f"{self.log_dir} has no scenario yet (the run stopped before it); resume it first")
        scenario = Scenario.model_validate_json(scenario_path.read_text())
        node = self.trace.node(index)
        if node is None:
            if index > len(self.trace.nodes):
                count = len(self.trace.nodes)
                raise RdftError(f"the run has {count} loop(s); give --loop {count} (the next) or less")
            node = Node(loop=index, **self.next_parent(index))
        loop_dir = self.log_dir / f"Loop_{index}"
        if stage == "proposal":
            return structured_messages(self.proposal_messages(scenario, node), Proposal), "would send"
        proposal_path = loop_dir / "direct_exp_gen" / "proposal.json"
        if not proposal_path.is_file():
            raise RdftError(f"loop {index} has no proposal yet; see its proposal with --stage proposal")
        proposal = Proposal.model_validate_json(proposal_path.read_text())
        if stage == "coding":
            parent_workspace = self.log_dir / f"Loop_{node.parent}" / "workspace" if node.parent is not None else None
            current = {}
            if parent_workspace is not None:
                current = {n: (parent_workspace / n).read_text() for n in CODE_FILES
                           if (parent_workspace / n).is_file()}  # fmt: skip
            messages = coder_messages(self.settings, scenario, proposal, current, None, measured=self.measured(),
                                      with_judge=True, budget_left=self.remaining())  # fmt: skip
            return structured_messages(messages, CodeFiles), "would send"
        failure = self.failure(loop_dir)
        result_path = loop_dir / "running" / "result.json"
        outcome = json.loads(result_path.read_text()) if result_path.is_file() else None
        if failure is None and outcome is None:
            raise RdftError(f"loop {index} has neither a result nor a failure yet; resume the run first")
        feedback_path = loop_dir / "feedback" / "feedback.json"
        items, label, by_mean = self.reference()
        if feedback_path.is_file():  # the numbers it was given, as recorded
            result = Feedback.model_validate_json(feedback_path.read_text())
        else:
            result = assess(self.settings, scenario, outcome, failure, items)
        text = facts(scenario, result, outcome, label, by_mean)
        return structured_messages(feedback_messages(scenario, proposal, text), Explanation), "would send"

    # --- records -------------------------------------------------------------------------------
    def save(self) -> None:
        """The trace, the summary and the time spent, after every step (so a kill -9 loses at
        most the step in flight, whose files still tell when it stopped)."""
        self.trace.save(self.log_dir / "trace.json")
        write_json(self.log_dir / "summary.json", summary(self.trace, self.args))
        self._persist_spent()

    def execute(self) -> bool:
        """Run (or resume) to the end; False when stopped early by --step-n or --timeout."""
        groups = self.log_dir / ".processes"
        leftovers = kill_recorded_groups(groups)  # what a killed run of this folder left running
        if leftovers:
            self.console.print(f"rdft: stopped {leftovers} process group(s) left running by the interrupted run")
        track_process_groups(groups)
        try:
            scenario = self.scenario_with_envs()
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
            write_reports(self.log_dir, self.trace, self.args)
            self._persist_spent()  # last: the time counted covers every file the run wrote
        return True

    def _persist_spent(self) -> None:
        self.args.spent_s = round(self.spent(), 1)
        write_json(self.log_dir / "run.json", self.args.model_dump())


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


def resume(settings: Settings, log_dir: Path, console: Console, changes: dict | None = None) -> Run:
    """Open the run in `log_dir`, apply what --resume may change (`changes`: timeout_s, loop_n,
    step_n, no_sync), and run it to its end or its next stop. A new --timeout is a new budget
    from now; --loop-n may extend a finished run."""
    run = open_run(settings, log_dir, console)
    for key, value in (changes or {}).items():
        if key == "timeout_s":
            run.args.budget_from_s = round(run.spent(), 1)  # the new budget starts now
        if key == "loop_n" and value < len(run.trace.nodes):
            raise RdftError(
                f"the run already started {len(run.trace.nodes)} loop(s); give --loop-n {len(run.trace.nodes)} "
                "or more to extend it"
            )
        setattr(run.args, key, value)
    if changes:
        run._persist_spent()  # records the new limits
    mode = "the LLM " + settings.chat_model if run.llm else "the offline planner (no LLM configured)"
    console.print(f"rdft: run in {log_dir}, proposals by {mode}")
    run.finished = run.execute()
    return run
