"""The engine's shape, checked: no QGIS, no import cycles, arrows pointing down, files of one screenful of jobs.

Read from the source with ``ast`` (nothing is imported), so a violation is reported by name.
"""

import ast
import re
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parents[2] / "models"
#: capability packages; everything else directly under models/ is a shared module
CAPABILITIES = {p.name for p in ENGINE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
MAX_FILE_LINES = 560      # "about 500"
MAX_FUNCTION_LINES = 100  # "about 80" lines of code, counted here with docstrings and comments


def engine_files():
    return sorted(p for p in ENGINE.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ENGINE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(["models", *parts])


def internal_imports(path: Path) -> set:
    """Engine modules ``path`` imports (relative imports resolved), at any depth of the file."""
    tree = ast.parse(path.read_text())
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
            if node.module:
                found.add(target)
            else:
                found.update(f"{target}.{a.name}" for a in node.names)
    return {m for m in found if m.startswith("models")}


def known(name: str, modules: set) -> str | None:
    """The engine module an import names (``models.x.y`` may be a function y of module x)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def test_the_engine_never_imports_qgis_or_qt():
    for path in engine_files():
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            bad = [n for n in names if n.split(".")[0] in ("qgis", "PyQt5", "PyQt6")]
            assert not bad, f"{path.relative_to(ENGINE)} imports {bad}: the engine stays free of QGIS"


def test_no_import_cycles_and_arrows_point_down():
    modules = {module_name(p) for p in engine_files()}
    graph = {}
    for path in engine_files():
        me = module_name(path)
        graph[me] = {t for t in (known(m, modules) for m in internal_imports(path)) if t and t != me}
        capability = me.split(".")[1] if me.count(".") >= 2 or me.split(".")[-1] in CAPABILITIES else None
        for target in graph[me]:
            parts = target.split(".")
            target_capability = parts[1] if len(parts) > 1 and parts[1] in CAPABILITIES else None
            if capability is None and me != "models":
                assert target_capability is None, f"shared module {me} imports the capability {target}"
            elif target_capability and target_capability != capability:
                assert target == f"models.{target_capability}", \
                    f"{me} reaches into another capability's internals ({target}); use its public API"

    # depth-first search for a cycle, reported as the chain of modules
    state = {}

    def visit(node, chain):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycle = chain[chain.index(nxt):] + [nxt] if nxt in chain else [node, nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, chain + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_every_engine_file_is_small_has_a_docstring_and_short_functions():
    for path in engine_files():
        text = path.read_text()
        rel = path.relative_to(ENGINE)
        assert len(text.splitlines()) <= MAX_FILE_LINES, f"{rel} has {len(text.splitlines())} lines"
        tree = ast.parse(text)
        assert ast.get_docstring(tree), f"{rel} has no module docstring saying its job"
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                assert length <= MAX_FUNCTION_LINES, f"{rel}:{node.lineno} {node.name}() has {length} lines"


def test_every_network_lives_in_the_networks_module():
    for path in engine_files():
        if path.name == "networks.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = [ast.unparse(b) for b in node.bases]
                assert not any(b.endswith("Module") for b in bases), \
                    f"{path.relative_to(ENGINE)} defines the network {node.name}: networks live in networks.py"


def test_both_module_maps_list_every_engine_module():
    """The map in ``models/__init__.py`` and the README's *Design* map name every engine module."""
    readme = (ENGINE.parent / "README.md").read_text()
    design = readme[readme.index("## Design"):readme.index("### Rules the engine keeps")]
    package_doc = ast.get_docstring(ast.parse((ENGINE / "__init__.py").read_text()))
    missing = {"README": [], "models/__init__.py": []}
    for path in engine_files():
        if path.name == "__init__.py":
            continue
        name = path.stem
        if not re.search(rf"\b{re.escape(name)}\b", design):
            missing["README"].append(str(path.relative_to(ENGINE)))
        if not re.search(rf"\b{re.escape(name)}\b", package_doc):
            missing["models/__init__.py"].append(str(path.relative_to(ENGINE)))
    for package in CAPABILITIES - {"pretrained"}:
        assert re.search(rf"\b{package}/", design), f"README's map has no {package}/"
    assert not any(missing.values()), f"modules missing from the maps: {missing}"
