"""The packages of src/flowstudio import each other without cycles, and no private name crosses a module.

Reads every module with `ast` (no import runs): each `import flowstudio.x...` / `from flowstudio.x...
import ...` outside an `if TYPE_CHECKING:` block, function-level imports included (a lazy import is
still a dependency), is an edge between the top-level packages (or modules, like `settings`). A cycle
between two or more of them fails with the import lines that make it. A `from flowstudio... import _name`
of another module, and every package `__init__.py` without a one-line docstring, fail too.
"""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "flowstudio"
# Known private imports, each to be made public by the branch that owns the module it comes from
# (issue 11): the group-commit work owns engine/checkpoint.py; nodes/llm.py's call path is shared with
# the provider-permit work. The test fails on any other, and on a listed one that is gone (stale).
KNOWN_PRIVATE = {
    ("engine/children.py", "_fence"),
    ("engine/children.py", "_save_io"),
    ("engine/agent.py", "_fence"),
    ("nodes/agent.py", "_complete"),
}
Edges = dict[str, dict[str, list[str]]]


def type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the nodes inside `if TYPE_CHECKING:` blocks (imports for annotations only)."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            inside |= {id(n) for n in ast.walk(node)}
    return inside


def imports(path: Path) -> list[tuple[ast.ImportFrom | ast.Import, list[str]]]:
    """Every runtime import of a module with the flowstudio modules it names."""
    tree = ast.parse(path.read_text())
    skip = type_checking_nodes(tree)
    found: list[tuple[ast.ImportFrom | ast.Import, list[str]]] = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node, [node.module] + [f"{node.module}.{a.name}" for a in node.names]))
        elif isinstance(node, ast.Import):
            found.append((node, [a.name for a in node.names]))
    return [(n, [m for m in names if m.startswith("flowstudio.")]) for n, names in found]


def top_of(path: Path) -> str:
    return path.relative_to(SRC).parts[0].removesuffix(".py")


def package_edges() -> Edges:
    tops = {p.name.removesuffix(".py") for p in SRC.iterdir() if p.suffix == ".py" or p.is_dir()}
    edges: Edges = {}
    for path in SRC.rglob("*.py"):
        source = top_of(path)
        for node, names in imports(path):
            for name in names:
                target = name.split(".")[1]
                if target in tops and target != source:
                    where = f"{path.relative_to(SRC)}:{node.lineno}"
                    edges.setdefault(source, {}).setdefault(target, []).append(where)
    return edges


def find_cycle(edges: Edges) -> list[str] | None:
    """One cycle of the graph as [a, b, ..., a], or None (depth-first search)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, {})):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_find_cycle_reports_a_cycle_and_accepts_layers() -> None:
    assert find_cycle({"a": {"b": []}, "b": {"c": []}, "c": {"a": []}}) == ["a", "b", "c", "a"]
    assert find_cycle({"api": {"engine": [], "store": []}, "engine": {"store": []}}) is None


def test_no_import_cycle_between_top_level_packages() -> None:
    edges = package_edges()
    assert "store" in edges.get("engine", {}), "the scan found no engine -> store import"
    cycle = find_cycle(edges)
    if cycle:
        lines = [f"{a} -> {b}: {edges[a][b][:3]}" for a, b in itertools.pairwise(cycle)]
        pytest.fail("import cycle " + " -> ".join(cycle) + "\n" + "\n".join(lines))


def test_no_private_name_is_imported_from_another_module() -> None:
    private: set[tuple[str, str]] = set()
    for path in SRC.rglob("*.py"):
        for node, _ in imports(path):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("flowstudio"):
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.endswith("__"):
                        private.add((str(path.relative_to(SRC)), alias.name))
    assert not private - KNOWN_PRIVATE, f"private names imported: {sorted(private - KNOWN_PRIVATE)}"
    assert (
        not KNOWN_PRIVATE - private
    ), f"now public, drop from KNOWN_PRIVATE: {KNOWN_PRIVATE - private}"


def test_every_package_states_its_role_in_its_init() -> None:
    missing = []
    for init in SRC.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        if not doc.strip():
            missing.append(str(init.relative_to(SRC)))
    assert not missing, f"packages without a role docstring: {missing}"
