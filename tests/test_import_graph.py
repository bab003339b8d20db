"""The package's imports form no circle: a module graph built from the source with `ast`.

Every `import`/`from ... import` of a deco module counts, at module level or inside a function (a
deferred import still ties the two modules together for a reader), except under `if TYPE_CHECKING:`.
`from deco.pkg import Name` where the package exports Name lazily (`_EXPORTS` in its __init__, see
deco.lazy) is an edge to the module that defines Name, as it is at run time.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"


def module_files(src: Path = SRC) -> dict[str, Path]:
    out = {}
    for file in (src / "deco").rglob("*.py"):
        parts = file.relative_to(src).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = file
    return out


def lazy_exports(files: dict[str, Path]) -> dict[str, dict[str, str]]:
    """{package: {exported name: defining module}} from each package's `_EXPORTS = {...}`."""
    out: dict[str, dict[str, str]] = {}
    for name, file in files.items():
        if file.name != "__init__.py":
            continue
        for node in ast.parse(file.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_EXPORTS" for t in node.targets):
                table = ast.literal_eval(node.value)
                out[name] = {k: f"{name}.{v}" for k, v in table.items()}
    return out


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING"


def _imports(nodes: list[ast.stmt], package: str, files: dict[str, Path], lazy: dict[str, dict[str, str]]) -> set[str]:
    deps: set[str] = set()
    for node in nodes:
        if _is_type_checking(node):
            continue
        if isinstance(node, ast.Import):
            deps.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                deps.add(full if full in files else lazy.get(base, {}).get(alias.name, base))
        deps |= _imports([c for c in ast.iter_child_nodes(node) if isinstance(c, ast.stmt)], package, files, lazy)
    return deps


def import_graph(files: dict[str, Path]) -> dict[str, set[str]]:
    lazy = lazy_exports(files)
    graph: dict[str, set[str]] = {}
    for name, file in files.items():
        package = name if file.name == "__init__.py" else name.rpartition(".")[0]
        deps = _imports(ast.parse(file.read_text(encoding="utf-8")).body, package, files, lazy)
        graph[name] = {d for d in deps if d in files and d != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return found


def test_the_package_has_no_import_circles():
    found = cycles(import_graph(module_files()))
    assert not found, "import circles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_demo_core_imports_no_scene_kind():
    """The demo's shared core knows none of its kinds (issue 29): each kind hands it a SceneKind."""
    graph = import_graph(module_files())
    kinds = ("deco.demo.images", "deco.demo.video")
    found = [f"{m} -> {d}" for m in sorted(graph) if m == "deco.demo.core" or m.startswith("deco.demo.core.")
             for d in sorted(graph[m]) if any(d == k or d.startswith(f"{k}.") for k in kinds)]
    assert not found, "the demo core imports a kind:\n" + "\n".join(found)


def test_the_check_finds_a_circle(tmp_path):
    pkg = tmp_path / "deco" / "pkg"
    pkg.mkdir(parents=True)
    (tmp_path / "deco" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text('_EXPORTS = {"Thing": "a"}\n')
    (pkg / "a.py").write_text("def f():\n    from deco.pkg.b import g\n")
    (pkg / "b.py").write_text("from deco.pkg import Thing\n")  # lazily from a: a -> b -> a
    assert cycles(import_graph(module_files(tmp_path))) == [["deco.pkg.a", "deco.pkg.b"]]
    (pkg / "b.py").write_text("import os\n")
    assert cycles(import_graph(module_files(tmp_path))) == []


