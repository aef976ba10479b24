"""No package import cycles: the package-level import graph of bonjourgrid/ and cli/, built
from the AST, has no cycle, and no CE backend imports another.

A node is a top-level package (``bonjourgrid.coordinator``, ``bonjourgrid.daemon``, ...,
``cli``). Every import counts — at module level and inside functions — except those under
``if TYPE_CHECKING:`` (they never run; they name a type, not a dependency at run time).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BACKENDS = ("embedded", "condor", "boinc")


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_pkg: bool) -> list[tuple[str, int]]:
    """(imported module, line) for every import that runs, TYPE_CHECKING blocks skipped."""
    out: list[tuple[str, int]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            out.extend((a.name, node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_pkg else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append((target, node.lineno))
            # ``from pkg import sub`` imports the submodule pkg.sub
            out.extend((f"{target}.{a.name}", node.lineno) for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return out


def _modules() -> list[tuple[str, Path, bool]]:
    found = []
    for top in ("bonjourgrid", "cli"):
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            is_pkg = parts[-1] == "__init__"
            if is_pkg:
                parts = parts[:-1]
            found.append((".".join(parts), path, is_pkg))
    return found


def _package(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] == "cli":
        return "cli"
    if parts[0] == "bonjourgrid" and len(parts) > 1:
        return f"bonjourgrid.{parts[1]}"
    return None


def _backend(module: str) -> str | None:
    parts = module.split(".")
    if parts[:2] == ["bonjourgrid", "ce_backends"] and len(parts) > 2 and parts[2] in BACKENDS:
        return parts[2]
    return None


def _edges() -> dict[tuple[str, str], list[str]]:
    """(from package, to package) -> where ("path:line") the import is."""
    known = {m for m, _, _ in _modules()}
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for module, path, is_pkg in _modules():
        src = _package(module)
        for target, line in _imports(ast.parse(path.read_text()), module, is_pkg):
            if target not in known:
                continue  # a name imported from a module, or outside the tree
            dst = _package(target)
            if src and dst and src != dst:
                edges[(src, dst)].append(f"{path.relative_to(ROOT)}:{line}")
    return edges


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return out


def _describe(comp: list[str], edges: dict[tuple[str, str], list[str]]) -> str:
    lines = [" <-> ".join(comp)]
    for (a, b), where in sorted(edges.items()):
        if a in comp and b in comp:
            lines.append(f"  {a} -> {b}: {', '.join(where[:5])}")
    return "\n".join(lines)


def test_the_package_graph_has_no_cycle() -> None:
    edges = _edges()
    graph: dict[str, set[str]] = defaultdict(set)
    for a, b in edges:
        graph[a].add(b)
    cycles = _cycles(graph)
    assert not cycles, "package import cycles:\n" + "\n".join(_describe(c, edges) for c in cycles)


def test_no_backend_imports_another() -> None:
    bad = []
    for module, path, is_pkg in _modules():
        mine = _backend(module)
        if mine is None:
            continue
        for target, line in _imports(ast.parse(path.read_text()), module, is_pkg):
            other = _backend(target)
            if other is not None and other != mine:
                bad.append(f"{path.relative_to(ROOT)}:{line} ({mine} imports {other})")
    assert not bad, "backends importing other backends:\n" + "\n".join(bad)


def test_the_checker_finds_a_cycle() -> None:
    """The detector itself: a two-package loop and a three-package loop are found, a chain
    is not, and a TYPE_CHECKING import does not count."""
    assert _cycles({"a": {"b"}, "b": {"a"}}) == [["a", "b"]]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": {"c"}}) == []
    src = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import x.y\n"
        "def f():\n    import z\n"
    )
    assert [t for t, _ in _imports(ast.parse(src), "m", False)] == [
        "typing",
        "typing.TYPE_CHECKING",
        "z",
    ]
