"""No module of the dhkd package imports itself back, directly or through others.

Every `import dhkd...` / `from dhkd... import ...` / relative import counts, including those
inside functions (lazy imports); imports under `if TYPE_CHECKING:` do not, as they never run.
An import of a package's name counts as an import of the package's __init__ only.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dhkd"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the nodes inside `if TYPE_CHECKING:` (or typing.TYPE_CHECKING) blocks."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
            if name == "TYPE_CHECKING":
                skipped.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skipped


def _resolve(name: str, modules: set[str]) -> str | None:
    """The longest prefix of dotted `name` that is a module of the package."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """Package modules that the module at `path` imports (anywhere but TYPE_CHECKING blocks)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    skipped = _type_checking_nodes(tree)
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [  # a submodule if `alias` names one, else a name defined by `base`
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                for alias in node.names
            ]
        else:
            continue
        for name in names:
            target = _resolve(name, modules)
            if target is not None and target != here:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imports_of(p, modules) for p in paths}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for root in sorted(graph):
        if state.get(root):
            continue
        path, stack = [root], [iter(sorted(graph[root]))]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def test_the_dhkd_package_has_no_import_cycle():
    graph = import_graph()
    assert "dhkd.methods.registry" in graph and "dhkd.study.tracking.operations" in graph
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_lazy_imports_count_and_type_checking_imports_do_not(tmp_path):
    graph = import_graph()
    assert "dhkd.training.fit" in graph["dhkd.study.driver.trainable"]  # imported inside run_trial
    sample = PACKAGE / "methods" / "registry.py"
    assert "dhkd.methods.dhkd" in imports_of(sample, set(graph))


@pytest.mark.parametrize(
    ("graph", "cycle"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
        ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
        ({"a": {"b", "c"}, "b": {"c"}, "c": set(), "d": {"d2"}, "d2": {"d"}}, ["d", "d2", "d"]),
    ],
)
def test_find_cycle(graph, cycle):
    assert find_cycle(graph) == cycle


@pytest.mark.parametrize(("importer", "imported"), [("study", "report"), ("report", "study")])
def test_study_and_report_do_not_import_each_other(importer, imported):
    """The report reads a study through MLflow and dhkd.runs, never through dhkd.study, and the
    study never reaches into the report: no import either way, lazy ones included."""
    graph = import_graph()

    def within(name: str, package: str) -> bool:
        return name == f"dhkd.{package}" or name.startswith(f"dhkd.{package}.")

    found = sorted(
        f"{module} -> {target}"
        for module, targets in graph.items()
        if within(module, importer)
        for target in targets
        if within(target, imported)
    )
    assert any(within(m, importer) for m in graph)
    assert found == []
