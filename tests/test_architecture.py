"""The package's shape, checked from its source: no import cycle, every import pointing down.

Imports are read with `ast` from every module, those inside functions included (a lazy import
is still a dependency); imports under `if TYPE_CHECKING:` are not.
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

LAYERS = ("tunelab.models", "tunelab.objectives", "tunelab.search")
"""Bottom to top: a layer imports only the layers before it."""


def package_root(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.submodule_search_locations, name
    return Path(next(iter(spec.submodule_search_locations)))


def modules() -> dict[str, Path]:
    """Every module of the installed package, by dotted name."""
    found = {"tunelab": package_root("tunelab") / "__init__.py"}
    for layer in LAYERS:
        root = package_root(layer)
        for path in root.rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((layer, *parts))] = path
    for path in package_root("tunelab").glob("*.py"):  # the root: __main__, the Python API
        if path.name != "__init__.py":
            found[f"tunelab.{path.stem}"] = path
    return found


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node, skipping the bodies of `if TYPE_CHECKING:`."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in [child, *_runtime_nodes(child)])
            continue
        yield node
        yield from _runtime_nodes(node)


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that module `name` imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                targets.add(submodule if submodule in known else base)
    return {t for t in targets if t in known and t != name}


def import_graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imports_of(name, path, known) for name, path in found.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_the_package():
    graph = import_graph()
    assert {"tunelab.search.cli", "tunelab.objectives.runner", "tunelab.models.cnn"} <= set(graph)
    assert "tunelab.objectives.runner" in graph["tunelab.search.study.run"]
    # a lazy import inside a function counts
    assert "tunelab.search.study.orchestration" in graph["tunelab.search.cli.study"]


def test_no_import_cycle_anywhere_in_the_package():
    assert cycles(import_graph()) == []


def test_cycle_detection_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_package_root_is_the_top_layer():
    """`tunelab` itself and its API use every layer; no layer imports them."""
    graph = import_graph()
    root = {name for name in graph if not name.startswith(LAYERS)}
    assert {"tunelab", "tunelab.api", "tunelab.__main__"} <= root
    assert "tunelab.search.study.orchestration" in graph["tunelab.api"]
    for name, targets in graph.items():
        if name.startswith(LAYERS):
            assert not targets & root, f"{name} imports {sorted(targets & root)}"


@pytest.mark.parametrize("lower", range(len(LAYERS)))
def test_layers_import_only_the_layers_below(lower):
    above = LAYERS[lower + 1 :]
    for name, targets in import_graph().items():
        if name.startswith(LAYERS[lower] + ".") or name == LAYERS[lower]:
            upward = {t for t in targets if t.startswith(above)} if above else set()
            assert not upward, f"{name} imports {sorted(upward)}"


def _external_imports(path: Path) -> set[str]:
    """The top-level names of what a module imports (at run time, as imports_of reads)."""
    names = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_the_python_api_reaches_no_command_line_code():
    """`tunelab.api` and everything it imports, however lazily, use no CLI module and no CLI
    library: the study's orchestration lives below the command line."""
    graph, paths = import_graph(), modules()
    reached, todo = set(), ["tunelab.api"]
    while todo:
        name = todo.pop()
        if name not in reached:
            reached.add(name)
            todo.extend(graph[name])
    assert not {n for n in reached if n.startswith("tunelab.search.cli")}
    assert not {n for n in reached if {"typer", "click"} & _external_imports(paths[n])}


def test_only_the_lineage_record_names_a_trials_lineage():
    """The retry, continuation, pause, owner and reference attributes are read and written by
    `tunelab.search.scheduler.lineage` alone: no other module spells one of their names."""
    from tunelab.search.scheduler import lineage

    names = {
        value
        for key, value in vars(lineage).items()
        if key.startswith("_") and isinstance(value, str) and value.startswith("tunelab.")
    }
    assert {"tunelab.original_trial", "tunelab.paused_at", "tunelab.owner"} <= names
    for module, path in modules().items():
        if module == "tunelab.search.scheduler.lineage":
            continue
        constants = {
            node.value
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
        }
        assert not constants & names, f"{module} names {sorted(constants & names)}"
