"""The package's shape, kept by test: small modules, no import cycles, layers that only import
downwards (trial < data < tasks < pretrain/finetune/matrix < orchestrate < report < cli), and
the two training stages side by side: what both use (training.py, parallel.py) sits below them."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "bertabl"
MAX_LINES = 500
# Packages that must not import orchestrate/ (they run inside trials, or plan without Ray).
BELOW_ORCHESTRATE = ("data", "tasks", "trial", "pretrain", "finetune", "matrix", "paper")
STAGES = ("pretrain", "finetune")


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(REPO).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def _runtime_imports(path: Path, modules: dict[str, Path], types: bool = False) -> set[str]:
    """bertabl modules `path` imports when it runs (imports under TYPE_CHECKING are types:
    counted only with `types`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {
        id(node)
        for block in ast.walk(tree)
        if not types
        and isinstance(block, ast.If)
        and ast.unparse(block.test).endswith("TYPE_CHECKING")
        for node in ast.walk(block)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bertabl"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in modules else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("bertabl")}
    return {m for m in found if m in modules}


def test_no_module_is_over_500_lines():
    long = {
        str(p.relative_to(REPO)): n
        for p in _modules().values()
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}


def test_no_two_modules_share_a_name():
    # A name says one idea: two train.py (or model.py) files read alike in tracebacks and tabs.
    names = Counter(p.name for p in _modules().values() if p.name != "__init__.py")
    assert {name: n for name, n in names.items() if n > 1} == {}


def test_no_import_cycles():
    # Type-only imports count: a module that needs another's types to be read depends on it
    # (matrix/references.py and matrix/schema.py once imported each other that way).
    modules = _modules()
    graph = {m: _runtime_imports(p, modules, types=True) - {m} for m, p in modules.items()}
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for dependency in sorted(graph[module]):
            if state.get(dependency) == "open":
                cycle = path[path.index(dependency) :] + [dependency]
                raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
            if dependency not in state:
                visit(dependency, [*path, dependency])
        state[module] = "closed"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_lower_layers_never_import_orchestrate():
    modules = _modules()
    upward = [
        (module, dependency)
        for module, path in modules.items()
        if module.split(".")[1:2] and module.split(".")[1] in BELOW_ORCHESTRATE
        for dependency in _runtime_imports(path, modules)
        if dependency.startswith("bertabl.orchestrate")
    ]
    assert upward == []


def _package(module: str) -> str:
    """`bertabl.finetune.epoch_loop` -> "finetune"; a top-level module is its own package."""
    return module.split(".")[1] if "." in module else ""


def test_the_training_stages_never_import_each_other():
    modules = _modules()
    across = [
        (module, dependency)
        for module, path in modules.items()
        if _package(module) in STAGES
        for dependency in _runtime_imports(path, modules)
        if _package(dependency) in STAGES and _package(dependency) != _package(module)
    ]
    assert across == []
