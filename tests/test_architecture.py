"""The house's rules, checked on the code itself: every import between rdft's rooms points down
the layers the README's Layout section draws, the CLI stays thin, `Run` tells the loop's story,
and the host never imports torch or the in-env code (recipes/, evaluation/, rdft/datatools, which
cross the wall as a subprocess and files)."""

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "rdft"
# Lower layers first; a module may import its own room and any room of a lower layer.
LAYERS = [
    {"__init__", "errors", "resources", "files"},
    {"settings", "hardware"},
    {"runner", "slurm", "knowledge", "llm", "sync", "catalog"},
    {"envs"},
    {"tables"},
    {"training"},
    {"evaluation"},
    {"datasets"},
    {"loop"},
    {"batch", "doctor"},
    {"cli", "__main__"},
]
IN_ENV = "datatools"  # the data toolkit (`rdft_data` in the data env): no host module imports it
HEAVY = (
    "torch",
    "transformers",
    "peft",
    "accelerate",
    "deepspeed",
    "lm_eval",
    "rdkit",
    "datasets",
    "vllm",
    "rdft_data",
)


def room_of(module: str) -> str:
    """rdft.loop.run -> loop; rdft.files -> files; rdft -> __init__."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer_of(room: str) -> int:
    return next(index for index, rooms in enumerate(LAYERS) if room in rooms)


def host_modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if room_of(name) != IN_ENV:
            found[name] = path
    return found


def imports_of(path: Path) -> list[str]:
    """Every rdft module a file imports, function-local imports included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "rdft":
            found += [node.module] if node.module != "rdft" else [f"rdft.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name.split(".")[0] == "rdft"]
    return found


def test_every_arrow_points_down():
    rooms = {room_of(name) for name in host_modules()}
    assert rooms - {IN_ENV} <= set().union(*LAYERS), f"a room without a layer: {rooms - set().union(*LAYERS)}"
    upward = []
    for name, path in host_modules().items():
        here = layer_of(room_of(name))
        for target in imports_of(path):
            room = room_of(target)
            if room == "__version__":
                continue
            if room == IN_ENV:
                upward.append(f"{name} imports the in-env toolkit {target}")
            elif layer_of(room) > here:
                upward.append(f"{name} (layer {here}) imports {target} (layer {layer_of(room)})")
    assert upward == []


def test_the_host_never_imports_torch_or_the_in_env_code():
    """Importing every host module pulls in none of the in-env stack, and nothing from recipes/
    or evaluation/ (the wings run in their envs: a subprocess and files cross the wall)."""
    names = sorted(name for name in host_modules() if name != "rdft.__main__")  # that one runs the CLI
    probe = (
        "import importlib, json, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        f"heavy = sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))\n"
        f"wings = sorted(m for m, mod in sys.modules.items() if str(getattr(mod, '__file__', '') or '')"
        f".startswith(({str(REPO / 'recipes')!r}, {str(REPO / 'evaluation')!r})))\n"
        "print(json.dumps({'heavy': heavy, 'wings': wings}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == '{"heavy": [], "wings": []}'


def test_the_cli_is_thin_and_run_tells_the_story():
    for path in sorted((PACKAGE / "cli").glob("*.py")):
        assert len(path.read_text().splitlines()) < 250, path.name
    tree = ast.parse((PACKAGE / "loop" / "run.py").read_text())
    run = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "Run")
    assert run.end_lineno - run.lineno + 1 < 320


def test_only_a_familys_folder_names_its_benchmarks():
    """No host module, recipe or evaluation script outside evaluation/tasks/<family>/ compares
    against a shipped benchmark's name: what differs between benchmarks is their rows of
    benchmarks.yaml and their family's functions."""
    import yaml

    names = list(yaml.safe_load((REPO / "evaluation" / "benchmarks.yaml").read_text()))
    offenders = []
    sources = [*PACKAGE.rglob("*.py"), *(REPO / "recipes").glob("*.py"), *(REPO / "evaluation").glob("*.py")]
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                constants = [c.value for c in ast.walk(node) if isinstance(c, ast.Constant)]
                hits = [value for value in constants if value in names]
                if hits:
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno} compares with {hits[0]!r}")
    assert offenders == []


def test_the_installed_package_ships_every_evaluation_and_recipe_file():
    """What git tracks under evaluation/ and recipes/ is in the installed rdft (tox installs the
    wheel: a family's data file left out of package_data, like FinanceIQ's five-shot examples,
    breaks only there)."""
    from rdft.resources import evaluation_dir, recipes_dir

    for folder, installed in (("evaluation", evaluation_dir()), ("recipes", recipes_dir())):
        tracked = subprocess.run(["git", "ls-files", folder], cwd=REPO, capture_output=True, text=True, check=True)
        files = [Path(path) for path in tracked.stdout.split()]
        missing = [str(path) for path in files if not (installed / path.relative_to(folder)).is_file()]
        assert missing == [], f"not in the installed package (setup.cfg package_data): {missing}"
