"""The scenario the agent works in: benchmark, base model, hardware, memory, datasets, budgets.
Built once per run, written to `scenario.json`, rendered as text for the LLM."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, field_validator
from rich.console import Console

from rdft.datasets.prepare import prepare
from rdft.datasets.profiles import profile
from rdft.datasets.registry import get_dataset, registry
from rdft.datasets.toolkit import data_env_variables
from rdft.envs import EnvManager
from rdft.errors import RdftError
from rdft.evaluation.benchmarks import get_benchmark
from rdft.evaluation.generation import model_sampling, samples_for
from rdft.files import write_atomic
from rdft.hardware import probe_in_env
from rdft.llm import ChatLLM, InvalidReply, LLMUnavailable
from rdft.loop.layout import RunLayout
from rdft.loop.provenance import fingerprint
from rdft.loop.records import RunArgs
from rdft.resources import evaluation_dir
from rdft.settings import Settings
from rdft.training.models import TINY_ARCHS, build_tiny_model, shape_from_config
from rdft.training.planner import estimate_gib


def describe(benchmark: str) -> str:
    """What the benchmark asks and how it is scored (the metric from the benchmark table)."""
    entry = get_benchmark(benchmark)
    primary = entry.primary
    better = "higher" if primary.direction == "higher" else "lower"
    text = entry.description or f"{benchmark} ({entry.repo})."  # overridable with --benchmark-description
    if entry.custom:  # a user's benchmark: say what the prompt is and how the answer is read
        spec = entry.custom
        shown = (
            f"the template {spec['prompt_template']!r}"
            if spec.get("prompt_template")
            else f"its {spec['prompt_field']!r}"
        )
        text += (
            f" The user's own benchmark ({entry.n} items): the prompt is {shown}, the gold answer its "
            f"{spec['answer_field']!r}."
        )
    return f"{text} Primary metric: {primary.metric} ({primary.description}; {better} is better)."


class ModelFacts(BaseModel):
    name: str  # as given: a Hub id, a folder or tiny:<arch>
    path: str  # the local folder
    model_type: str | None
    parameters: int | None
    context_length: int | None
    chat_template: bool
    think_tokens: bool
    weights: dict[str, dict] = {}  # file -> {size, mtime_ns, sha256}: what every score must descend from


class DatasetView(BaseModel):
    name: str
    path: str
    description: str
    profile: str
    p99_tokens: int | None = None  # the longest task folder's row: its fields' p99 lengths, summed
    row_tokens: int | None = None  # p99 of the training rows it makes with the benchmark's prompt and answer


class Scoring(BaseModel):
    """How every split of the run is scored (the base model and every loop alike)."""

    items: int | None  # validation items (None: unknown until the docs are written)
    samples: int = 1  # per item: avg@k over sampled answers where the split is small, else greedy
    temperature: float | None = None
    top_p: float | None = None
    limit: int | None = None  # --eval-limit
    max_gen_toks: int | None = None  # --max-gen-toks

    def sampling(self) -> tuple[float, float] | None:
        return (self.temperature, self.top_p) if self.samples > 1 else None


def scoring_plan(
    benchmark: str, model_path: Path, *, limit: int | None, max_gen_toks: int | None, samples: int | None
) -> Scoring:
    """k samples per item where the validation split is small (items × k ≥ ~100), with the
    model's own sampling settings (or 0.6/0.95); greedy for large splits; `samples` overrides."""
    entry = get_benchmark(benchmark)
    items = entry.split_size if entry.split_size is not None else limit
    if limit is not None and items is not None:
        items = min(items, limit)
    k = samples or (samples_for(items) if items else 1)
    temperature, top_p = model_sampling(model_path)
    return Scoring(
        items=items,
        samples=k,
        temperature=temperature if k > 1 else None,
        top_p=top_p if k > 1 else None,
        limit=limit,
        max_gen_toks=max_gen_toks,
    )


class Scenario(BaseModel):
    benchmark: str
    benchmark_family: str
    description: str
    primary_metric: str
    base_model: ModelFacts
    hardware: dict
    memory: str
    datasets: list[DatasetView]
    upper_data_size_limit: int
    budgets: dict[str, float | None]
    demo: bool = False
    target: str | None = None  # the user's own words for what to improve (--target, FT_USER_TARGET_SCENARIO)
    force_think: bool = False  # FT_FORCE_THINK_TOKEN: answers reason inside <think>…</think>
    scoring: Scoring = Scoring(items=None)
    regression: list[str] = []  # the forgetting check's benchmarks: a slice of each is scored with validation
    regression_items: int = 100
    regression_tolerance: float | None = None  # points lost on one that keep a loop from being confirmed

    def text(self) -> str:
        """What the LLM reads."""
        m = self.base_model
        lines = []
        if self.target:
            lines += ["# The user's target", self.target, f"(scored by the benchmark {self.benchmark})\n"]
        lines += [
            f"# Target benchmark: {self.benchmark} (primary metric: {self.primary_metric}, higher is better)",
            self.description,
            f"\n# Base model: {m.name}",
            f"type {m.model_type}, {m.parameters or '?'} parameters, context {m.context_length or '?'} tokens, "
            f"chat template: {'yes' if m.chat_template else 'no'}, <think> tokens: {'yes' if m.think_tokens else 'no'}",
            "\n# Hardware",
            json.dumps(self.hardware),
            "\n# Memory (estimated peak per GPU, sequence length in tokens, micro-batch 1)",
            self.memory,
            "\n# Budgets (seconds)",
            json.dumps(self.budgets),
            "\n# Scoring",
            f"validation split: {self.scoring.items or '?'} items, "
            + (
                f"{self.scoring.samples} sampled answers per item (avg@{self.scoring.samples}; temperature "
                f"{self.scoring.temperature}, top-p {self.scoring.top_p})"
                if self.scoring.samples > 1
                else "one greedy answer per item"
            )
            + "; the hidden test split is scored the same way for the report only",
            f"\n# Training data: at most {self.upper_data_size_limit} samples per experiment, sampled by code.",
        ]
        if self.regression:
            limit = (f"; a loop that loses more than {self.regression_tolerance:g} points on one is never the "
                     "confirmed best" if self.regression_tolerance is not None else "")  # fmt: skip
            lines.insert(-1, f"\n# Forgetting check: every experiment is also scored on a fixed slice of "
                             f"{self.regression_items} items of {', '.join(self.regression)} against the base "
                             f"model{limit}.")  # fmt: skip

        for dataset in self.datasets:
            lines += [f"\n## Dataset {dataset.name} at {dataset.path}", dataset.description, dataset.profile]
        return "\n".join(lines)


def ensure_base_model(settings: Settings, name: str, console: Console) -> Path:
    """The base model's local folder: tiny:<arch> is built, a folder is checked, a Hub id is
    downloaded into FT_FILE_PATH/models/<org>/<name>."""
    models = settings.ft_file_path.expanduser().resolve() / "models"
    if name.startswith("tiny:"):
        arch = name.removeprefix("tiny:")
        if arch not in TINY_ARCHS:
            raise RdftError(f"--base-model {name} is unknown; use {' or '.join('tiny:' + a for a in TINY_ARCHS)}")
        env = EnvManager(settings).ensure("train")
        return build_tiny_model(env, arch, models / f"tiny-{arch}", console)
    path = Path(name).expanduser()
    if path.exists() or name.startswith((".", "/", "~")):
        if not (path / "config.json").is_file():
            raise RdftError(f"--base-model {path} has no config.json; give a Hugging Face model folder or a Hub id")
        return path.resolve()
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError

    target = models / name
    token = settings.hf_token.get_secret_value() if settings.hf_token else None
    try:
        console.print(f"rdft: downloading {name} into {target}")
        snapshot_download(name, local_dir=target, token=token, endpoint=settings.hf_endpoint)
    except GatedRepoError:
        raise RdftError(f"{name} is gated: accept its terms on the Hub and set HF_TOKEN") from None
    except (HfHubHTTPError, LocalEntryNotFoundError) as error:
        raise RdftError(
            f"cannot get the base model {name} ({type(error).__name__}); check the name, HF_TOKEN and the network, "
            "or give a local folder"
        ) from None
    return target


def model_facts(name: str, path: Path) -> ModelFacts:
    config = json.loads((path / "config.json").read_text())
    text = config.get("text_config", config)
    try:
        parameters = shape_from_config(path / "config.json").params
    except RdftError:
        parameters = None
    tokenizer_config = path / "tokenizer_config.json"
    template = (path / "chat_template.jinja").is_file() or (
        tokenizer_config.is_file() and "chat_template" in json.loads(tokenizer_config.read_text())
    )
    tokenizer = path / "tokenizer.json"
    think = tokenizer.is_file() and "<think>" in tokenizer.read_text(errors="ignore")
    return ModelFacts(
        name=name,
        path=str(path),
        model_type=text.get("model_type"),
        parameters=parameters,
        context_length=text.get("max_position_embeddings"),
        chat_template=template,
        think_tokens=think,
    )


def memory_table(path: Path, hardware: dict) -> str:
    """Estimated peak GiB of full, LoRA and QLoRA training at a few lengths, against the device."""
    try:
        shape = shape_from_config(path / "config.json")
    except RdftError as error:
        return f"unknown ({error})"
    gpus = hardware.get("gpus") or []
    device = "cuda" if gpus else "cpu"
    available = min(g["memory_gib"] for g in gpus) if gpus else hardware.get("ram_gib", 8) / 2
    rows = [
        f"device memory {available:.0f} GiB ({'GPU' if gpus else 'CPU RAM, half'})",
        "method  " + "  ".join(f"{n:>8}" for n in (512, 2048, 8192)),
    ]
    for method, dtype in (("full", "bfloat16"), ("lora", "bfloat16"), ("qlora", "bfloat16")):
        cells = []
        for tokens in (512, 2048, 8192):
            gib = estimate_gib(
                shape, method=method, dtype=dtype, lora_r=16, tokens=tokens, checkpointing=True, device=device
            )
            cells.append(f"{gib:7.1f}{'!' if gib > available else ' '}")
        rows.append(f"{method:<7} " + "  ".join(cells))
    rows.append("(! = does not fit; gradient checkpointing on; ZeRO-3 divides weights and states by the GPUs)")
    return "\n".join(rows) + f"\nparameters: {shape.params / 1e9:.3f} B"


def build_scenario(
    settings: Settings,
    *,
    base_model: str,
    benchmark: str,
    description: str | None,
    datasets: list[str],
    budgets: dict[str, float | None],
    workspace: Path,
    console: Console,
    demo: bool = False,
    target: str | None = None,
    eval_limit: int | None = None,
    max_gen_toks: int | None = None,
    samples: int | None = None,
) -> Scenario:
    entry = get_benchmark(benchmark)
    for name in datasets:
        get_dataset(name)  # unknown names stop the run before anything is downloaded
    model_path = ensure_base_model(settings, base_model, console)
    hardware = probe_in_env(EnvManager(settings).ensure("train"), workspace)
    views = []
    for name in datasets:
        dataset = get_dataset(name)
        path, _ = prepare(dataset, settings)
        shown = profile(dataset, settings, str(model_path))
        views.append(
            DatasetView(
                name=name,
                path=str(path),
                description=dataset.description,
                profile=shown["text"],
                p99_tokens=row_p99(shown),
                row_tokens=measured_row_tokens(settings, path, model_path, benchmark),
            )
        )
    return Scenario(
        benchmark=benchmark,
        benchmark_family=entry.family,
        description=description or describe(benchmark),
        primary_metric=entry.primary.metric,
        base_model=model_facts(base_model, model_path).model_copy(update={"weights": fingerprint(model_path)}),
        hardware=hardware,
        memory=memory_table(model_path, hardware),
        datasets=views,
        upper_data_size_limit=settings.ft_upper_data_size_limit,
        budgets=budgets,
        demo=demo,
        target=target,
        force_think=settings.ft_force_think_token,
        scoring=scoring_plan(benchmark, model_path, limit=eval_limit, max_gen_toks=max_gen_toks, samples=samples),
    )


# Runs in the data env: the training rows a dataset makes with the benchmark's prompt, in tokens.
_ROW_TOKENS = "import sys\nfrom rdft_data.benchmark import row_tokens\nprint(row_tokens(*sys.argv[1:5]))"


def measured_row_tokens(settings: Settings, dataset: Path, model: Path, benchmark: str) -> int | None:
    """How long the training rows the dataset makes are, the benchmark's prompt (instructions,
    few-shot examples, option lists) and answer included, measured on the rows themselves; None
    when it cannot be (the planner then sizes rows by the dataset's fields alone)."""
    from rdft.loop.workspace import benchmark_spec_variable

    variables = {**data_env_variables(settings.envs_dir), **benchmark_spec_variable(benchmark)}
    tasks = evaluation_dir() / "tasks"
    command = ["python", "-c", _ROW_TOKENS, str(dataset), str(model), benchmark, str(tasks)]
    result = EnvManager(settings).ensure("data").run(command, extra_env=variables, echo=False, timeout=600)
    lines = result.tail.strip().splitlines() if result.ok else []
    return int(lines[-1]) if lines and lines[-1].isdigit() and int(lines[-1]) > 0 else None


def row_p99(profile: dict) -> int | None:
    """The longest task folder's row length: the sum of its fields' p99 lengths (an upper bound)."""
    sums = [sum(f.get("p99", 0) for f in task["fields"].values()) for task in profile.get("tasks", {}).values()]
    return max(sums) if sums else None


def default_datasets(benchmark: str) -> list[str]:
    """The datasets that serve `benchmark`, narrowest first (used when neither --dataset nor an
    LLM picks them): the per-task folder rather than the whole repo."""
    serving = [entry for entry in registry().values() if benchmark in entry.benchmarks]
    serving.sort(key=lambda entry: (len(entry.benchmarks), entry.name))
    return [serving[0].name] if serving else []


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


def choose_datasets(llm: ChatLLM | None, benchmark: str, description: str | None, console: Console) -> list[str]:
    """The LLM's choice of training datasets for the benchmark in one call (offline, or when the
    call fails: the benchmark's own)."""
    if llm is None:
        return default_datasets(benchmark)
    table = "\n".join(f"- {e.name} (serves {', '.join(e.benchmarks)}): {e.description}" for e in registry().values())
    ask = (
        f"Target benchmark: {benchmark}. {description or ''}\nDatasets:\n{table}\n"
        "Choose the datasets whose data can train for it; prefer including one too many over missing one."
    )
    try:
        return llm.structured([{"role": "user", "content": ask}], DatasetChoice, purpose="dataset_selection").selected
    except (LLMUnavailable, InvalidReply) as error:
        console.print(f"rdft: dataset selection by the LLM failed ({error}); using the benchmark's own")
        return default_datasets(benchmark)


def run_scenario(
    settings: Settings, args: RunArgs, layout: RunLayout, console: Console, llm: ChatLLM | None
) -> Scenario:
    """The run's scenario: read back from scenario.json, or built once (the datasets chosen, the
    base model fetched and probed) and written there with its text (scenario.md)."""
    if layout.scenario_json.exists():
        return Scenario.model_validate_json(layout.scenario_json.read_text())
    datasets = args.datasets or choose_datasets(llm, args.benchmark, args.description, console)
    workspace = layout.root / "probe"
    workspace.mkdir(exist_ok=True)
    budgets = {"total": args.timeout_s, "full_training": settings.ft_full_timeout,
               "data_processing": settings.ft_data_processing_timeout}  # fmt: skip
    scenario = build_scenario(
        settings,
        base_model=args.base_model,
        benchmark=args.benchmark,
        description=args.description,
        datasets=datasets,
        workspace=workspace,
        console=console,
        budgets=budgets,
        demo=args.demo,
        target=args.target,
        eval_limit=args.eval_limit,
        max_gen_toks=args.max_gen_toks,
        samples=args.samples,
    ).model_copy(update={"regression": args.regression, "regression_items": args.regression_items,
                         "regression_tolerance": args.regression_tolerance})  # fmt: skip
    write_atomic(layout.root / "scenario.md", scenario.text() + "\n")
    write_atomic(layout.scenario_json, json.dumps(scenario.model_dump(), indent=1, default=str))
    return scenario
