"""The layout is the architecture: each package imports only the layers below it, and no module imports itself back.

The table below is the map a reader needs (README "Architecture" draws it): a module may import from its own
package or from a package of a lower layer, never from a package beside or above it. Every import counts,
those inside functions included, so a lazy import cannot hide a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# package -> layer; a module belongs to the longest package prefix listed here.
LAYERS = {
    # marlin_core: the foundation modules, then the capabilities, the engine, serving, the CLI.
    "marlin_core.errors": 0, "marlin_core.defaults": 0, "marlin_core.contract": 0, "marlin_core.sanitize": 0,
    "marlin_core.queries": 0, "marlin_core.metrics": 0, "marlin_core.review_edits": 0, "marlin_core.windows": 0, "marlin_core.processes": 0, "marlin_core.prefetch": 0,
    "marlin_core.video": 1, "marlin_core.formats": 1, "marlin_core.search": 1,
    "marlin_core.engine": 2,
    "marlin_core.serving": 3,
    "marlin_core.cli": 4, "marlin_core": 4, "marlin_core.__main__": 5,
    # the plugin: FiftyOne adapters, run machinery, App pieces, the operators, the zoo model, registration.
    "operators.adapters": 10, "operators.run": 11, "operators.app": 12, "operators": 13, "zoo": 14, "": 15,
}
# Foundation modules are one job each and may use each other (queries raises errors' exception type).
SHARED_FLOOR = 0


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def source_files() -> list[Path]:
    files = [REPO / "__init__.py"]
    for top in ("marlin_core", "operators", "zoo"):
        files += sorted((REPO / top).rglob("*.py"))
    return files


MODULES = {module_name(path): path for path in source_files()}


def package_of(module: str) -> str:
    """The longest entry of :data:`LAYERS` that ``module`` is or lies under."""
    best = ""
    for package in LAYERS:
        if package and (module == package or module.startswith(package + ".")) and len(package) > len(best):
            best = package
    return best


def imported_modules(module: str) -> set[str]:
    """Project modules that ``module`` imports anywhere in its file (the plugin root is the empty name)."""
    path = MODULES[module]
    is_package = path.name == "__init__.py"
    here = module.split(".") if module else []
    package = here if is_package else here[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from package import submodule` imports the submodule
            names = [f"{target}.{alias.name}".strip(".") for alias in node.names]
            names = [name if name in MODULES else target for name in names]
        else:
            continue
        found |= {name for name in names if name in MODULES and name != module}
    return found


GRAPH = {module: imported_modules(module) for module in MODULES}


def test_the_table_covers_every_package():
    assert {package_of(module) for module in MODULES} <= set(LAYERS)
    # every subpackage of the library and the plugin has its row
    for init in REPO.glob("*/**/__init__.py"):
        if init.parts[len(REPO.parts)] in ("marlin_core", "operators"):
            assert module_name(init) in LAYERS, f"{module_name(init)} needs a row in LAYERS"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_only_downward(module):
    mine = package_of(module)
    for target in sorted(GRAPH[module]):
        theirs = package_of(target)
        if theirs == mine or (LAYERS[theirs] == LAYERS[mine] == SHARED_FLOOR):
            continue
        assert LAYERS[theirs] < LAYERS[mine], (
            f"{module} (layer {LAYERS[mine]}, {mine or 'plugin root'}) imports {target} "
            f"(layer {LAYERS[theirs]}, {theirs or 'plugin root'}): imports go only downward")


def test_no_import_circle():
    """A depth-first walk finds no module that imports itself back through others."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(GRAPH[module]):
            if state.get(target) == 1:
                circle = path[path.index(target):] + [target]
                pytest.fail("import circle: " + " -> ".join(circle))
            if target not in state:
                visit(target, path + [target])
        state[module] = 2

    for module in sorted(MODULES):
        if module not in state:
            visit(module, [module])


def test_the_walk_sees_what_a_circle_would_look_like():
    """The checks above read real imports: the known edges are found (a parser that saw nothing would pass)."""
    assert "operators.run.validation" in GRAPH["operators.app.forms"]
    assert "marlin_core.engine.inputs" in GRAPH["marlin_core.serving.chat_request"]
    assert "marlin_core.engine.confidence" in GRAPH["marlin_core.serving.chat_request"]  # `from ..engine import x`
    assert "marlin_core.queries" in GRAPH["operators.run.validation"]


def test_marlin_core_never_imports_the_plugin():
    for module in MODULES:
        if module.startswith("marlin_core"):
            assert not any(t.startswith(("operators", "zoo")) or t == "" for t in GRAPH[module]), module
