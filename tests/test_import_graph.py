"""The modules of ``bora`` import each other without a circle, function-level (lazy) imports included.

A lazy import inside a function hides a circle from Python at import time, not from a reader: the graph here is
built from the source with ``ast``, every ``import`` / ``from ... import`` of a ``bora`` module anywhere in a file
(except under ``if TYPE_CHECKING:``, which never runs). ``from bora.x import y`` imports the submodule ``bora.x.y``
where there is one, else ``bora.x`` itself; importing a package imports its ``__init__``, and importing
``bora.x.y`` counts as importing ``bora.x.y`` only (its package's ``__init__`` importing it is then no circle).
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def module_files(root: Path) -> dict[str, Path]:
    """Module name -> file of every module under the package directory ``root`` (a package: its ``__init__``)."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST):
    """Every import statement in ``tree``, at any depth, except the bodies of ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        children = list(ast.iter_child_nodes(node))
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            children = node.orelse
        stack.extend(children)


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules in ``known`` that the module ``name`` (source file ``path``) imports, itself left out."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()

    def add(dotted: str) -> None:  # the longest known module that ``dotted`` names or lies in
        parts = dotted.split(".")
        for end in range(len(parts), 0, -1):
            if ".".join(parts[:end]) in known:
                targets.add(".".join(parts[:end]))
                return

    for node in _import_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
            continue
        if node.level:  # relative: ``from .x import y`` / ``from .. import y``
            base_parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            base = ".".join(base_parts + ([node.module] if node.module else []))
        else:
            base = node.module
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            add(submodule if submodule in known else base)
    targets.discard(name)
    return targets


def import_graph(root: Path = SRC / "bora") -> dict[str, set[str]]:
    files = module_files(root)
    return {name: imported_modules(name, path, set(files)) for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle (``a -> b -> ... -> a``) through each strongly connected component of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def connect(node: str) -> None:  # Tarjan's algorithm; the graph is a few hundred modules deep at most
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return [_circle(graph, component) for component in components]


def _circle(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest circle from the first module of ``component`` back to it, inside the component."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node] & component):
                if nxt == start:
                    return paths[node] + [start]
                if nxt not in paths:
                    paths[nxt] = paths[node] + [nxt]
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"no circle in the component {sorted(component)}")


# Circles accepted, each as the set of its modules: it must still be there (else drop it here), and no other circle
# may appear. None today.
KNOWN: list[set[str]] = []


def test_bora_imports_without_a_circle():
    graph = import_graph()
    assert "bora.config.schema" in graph and graph["bora.config"]  # the source was found and parsed
    found = cycles(graph)
    new = [circle for circle in found if set(circle) not in KNOWN]
    assert not new, "import circles:\n" + "\n".join(" -> ".join(circle) for circle in new)
    gone = [known for known in KNOWN if known not in [set(circle) for circle in found]]
    assert not gone, f"no longer circles, drop them from KNOWN: {gone}"


def test_the_graph_sees_lazy_relative_and_submodule_imports(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("from pkg.a import f\n")
    (package / "a.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.c\ndef f():\n    from .sub import b\n"
    )
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "b.py").write_text("from .. import c\n")
    (package / "c.py").write_text("import os\n\n\nclass C:\n    def m(self):\n        from pkg import a\n")
    graph = import_graph(package)
    assert graph == {
        "pkg": {"pkg.a"},
        "pkg.a": {"pkg.sub.b"},
        "pkg.sub": set(),
        "pkg.sub.b": {"pkg.c"},
        "pkg.c": {"pkg.a"},
    }
    assert cycles(graph) == [["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]]
