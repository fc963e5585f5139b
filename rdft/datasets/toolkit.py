"""The data toolkit as data scripts import it: `rdft_data`, assembled from this package's
sources (rdft/datatools/, the leakage guard, and the benchmarks' answer reader) into a folder
that rdft puts on PYTHONPATH for every command in the `data` env.

The data env never sees the rest of rdft (or the host's site-packages): only this folder."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from rdft.resources import evaluation_dir

PACKAGE = "rdft_data"


def toolkit_sources() -> dict[str, Path]:
    """File name in `rdft_data` → its source."""
    sources = {path.name: path for path in sorted((Path(__file__).parents[1] / "datatools").glob("*.py"))}
    sources["leakage.py"] = Path(__file__).with_name("leakage.py")
    sources["answers.py"] = evaluation_dir() / "tasks" / "answers.py"
    return sources


def toolkit_path(root: Path) -> Path:
    """A folder holding `rdft_data/` (under `root`, named after the sources' hash); put it on
    PYTHONPATH. Built once per version of the sources, published by an atomic rename."""
    sources = toolkit_sources()
    digest = hashlib.sha256()
    for name, path in sources.items():
        digest.update(name.encode() + b"\0" + path.read_bytes())
    target = root / digest.hexdigest()[:12]
    if (target / PACKAGE / "__init__.py").exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=".building-"))
    try:
        (staging / PACKAGE).mkdir()
        for name, path in sources.items():
            shutil.copy2(path, staging / PACKAGE / name)
        os.rename(staging, target)
    except OSError:
        if not (target / PACKAGE / "__init__.py").exists():  # not another process winning the race
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def data_script_environment(settings, *, with_secrets: bool) -> dict[str, str]:
    """What a data script sees besides the env itself: the toolkit, the model pools, the worker
    count and the response cache (RD-Agent's variable names, so its scripts run unchanged) and,
    only when asked, the key. The key never goes anywhere else."""
    import json

    variables = {
        **data_env_variables(settings.envs_dir),
        "STRONG_MODEL_POOL": json.dumps(settings.ft_strong_models),
        "WEAK_MODEL_POOL": json.dumps(settings.ft_weak_models),
        "FT_API_MAX_WORKERS": str(settings.ft_api_max_workers),
        "RDFT_LLM_TIMEOUT": f"{settings.rdft_llm_timeout:g}",
        "RDFT_TASKS_DIR": str(evaluation_dir() / "tasks"),  # prompts and scorers, no evaluation items
        "RDFT_LLM_CACHE": str(settings.ft_file_path.expanduser().resolve() / "llm-cache"),
    }
    if settings.openai_api_base:
        variables["OPENAI_BASE_URL"] = settings.openai_api_base
    if with_secrets and settings.openai_api_key:
        variables["OPENAI_API_KEY"] = settings.openai_api_key.get_secret_value()
    return variables


def data_env_variables(envs_dir: Path) -> dict[str, str]:
    """The environment entries that make `import rdft_data` work in the data env."""
    path = str(toolkit_path(envs_dir / ".toolkit"))
    existing = os.environ.get("PYTHONPATH")
    return {"PYTHONPATH": path + (os.pathsep + existing if existing else "")}


def toolkit_reference() -> str:
    """Every public name of `rdft_data` (its `__all__`) with its signature and docstring, read
    from the sources with `ast` (the main env does not import the data env's modules): what the
    coder is told, generated from the code so it cannot drift."""
    import ast

    sources = toolkit_sources()
    init = ast.parse(sources["__init__.py"].read_text())
    public: list[str] = []
    where: dict[str, str] = {}
    for node in init.body:
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            for alias in node.names:
                where[alias.asname or alias.name] = f"{node.module}.py"
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            public = [element.value for element in node.value.elts]
    trees = {name: ast.parse(path.read_text()) for name, path in sources.items()}

    def definition(name: str, module: str):
        """The def or class of `name`, following `from .other import name` re-exports."""
        for node in trees[module].body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == name:
                return node, module
            if isinstance(node, ast.ImportFrom) and node.level == 1 and any(a.name == name for a in node.names):
                return definition(name, f"{node.module}.py")
        raise LookupError(f"rdft_data.{name} has no definition in {module}")

    lines = [f"rdft_data ({len(public)} public names; `from rdft_data import NAME`):"]
    for name in public:
        node, module = definition(name, where[name])
        lines.append(_describe(node, f"rdft_data.{module.removesuffix('.py')}"))
    return "\n".join(lines)


def _signature(function, skip_self: bool = False) -> str:
    import ast

    args = function.args
    if skip_self and args.args and args.args[0].arg in ("self", "cls"):
        args = ast.arguments(
            posonlyargs=args.posonlyargs,
            args=args.args[1:],
            vararg=args.vararg,
            kwonlyargs=args.kwonlyargs,
            kw_defaults=args.kw_defaults,
            kwarg=args.kwarg,
            defaults=args.defaults,
        )
    returns = f" -> {ast.unparse(function.returns)}" if function.returns else ""
    return f"({ast.unparse(args)}){returns}"


def _doc(node, indent: str) -> str:
    import ast

    text = ast.get_docstring(node) or ""
    return "".join(f"\n{indent}{line}" for line in text.splitlines() if line.strip())


def _describe(node, module: str) -> str:
    import ast

    if isinstance(node, ast.FunctionDef):
        return f"- {node.name}{_signature(node)}  [{module}]{_doc(node, '    ')}"
    lines = [f"- class {node.name}  [{module}]{_doc(node, '    ')}"]
    for member in node.body:
        if isinstance(member, ast.AnnAssign) and isinstance(member.target, ast.Name):
            if not member.target.id.startswith("_"):
                lines.append(f"    field {member.target.id}: {ast.unparse(member.annotation)}")
        elif isinstance(member, ast.FunctionDef) and (member.name == "__init__" or not member.name.startswith("_")):
            if any(isinstance(d, ast.Name) and d.id == "property" for d in member.decorator_list):
                returns = f": {ast.unparse(member.returns)}" if member.returns else ""
                lines.append(f"    .{member.name}{returns} (property){_doc(member, '        ')}")
                continue
            shown = node.name if member.name == "__init__" else f".{member.name}"
            lines.append(f"    {shown}{_signature(member, skip_self=True)}{_doc(member, '        ')}")
    return "\n".join(lines)
