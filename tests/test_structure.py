"""Package structure: no import cycle between the modules of au_transfer, and no module grows too long."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "au_transfer"

#: The most lines a module may have.
MAX_LINES = 500
#: Modules (relative to src/au_transfer) allowed to be longer.
LONG_MODULES_ALLOWED = {
    "backbones/dlib_resnet.py",  # a port of dlib's network, kept whole to compare it with dlib's source
}


# --------------------------------------------------------------------------------------------- import graph
def module_names(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every module under ``root / package`` (a package is its ``__init__``)."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _known(name: str, modules: dict[str, Path]) -> str | None:
    """The longest dotted prefix of ``name`` that is one of ``modules`` (``a.b.f`` -> ``a.b`` if f is a name)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def imports_of(module: str, path: Path, modules: dict[str, Path], package: str,
               unresolved: list[str] | None = None) -> set[str]:
    """Modules of ``package`` that ``module`` imports anywhere (module level, in functions, under TYPE_CHECKING).

    ``import a.b`` imports module ``a.b``; ``from a import b`` imports submodule ``a.b`` when there is one, else
    (a name defined in it) module ``a``, i.e. a package's ``__init__``. Relative imports are resolved against the
    importing module's package. Imports of the package's modules that do not exist are appended to ``unresolved``.
    """
    is_package = path.name == "__init__.py"
    here = module.split(".") if is_package else module.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == package or alias.name.startswith(package + "."):
                    if alias.name not in modules and unresolved is not None:
                        unresolved.append(f"{path}:{node.lineno}: import {alias.name}")
                    target = _known(alias.name, modules)
                    if target is not None:
                        found.add(target)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if node.level > len(here):
                    raise ValueError(f"{path}:{node.lineno}: relative import beyond the top-level package")
                base_parts = here[: len(here) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if not (base == package or base.startswith(package + ".")):
                continue
            if base not in modules and unresolved is not None:
                unresolved.append(f"{path}:{node.lineno}: from {'.' * node.level}{node.module or ''} ({base})")
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                target = sub if sub in modules else _known(base, modules)
                if target is not None:
                    found.add(target)
    found.discard(module)
    return found


def import_graph(root: Path = SRC, package: str = PACKAGE,
                 unresolved: list[str] | None = None) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (imports of modules that do not exist go to ``unresolved``)."""
    modules = module_names(root, package)
    return {m: imports_of(m, p, modules, package, unresolved) for m, p in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) for each strongly connected component with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan; the package has few modules, recursion depth is no concern
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)

    cycles = []
    for comp in components:  # a shortest cycle through the component's first module (breadth-first search)
        members, start = set(comp), comp[0]
        parent: dict[str, str] = {}
        queue, cycle = [start], None
        while queue and cycle is None:
            v = queue.pop(0)
            for w in sorted(graph[v] & members):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    cycle = [start, *reversed(path[:-1]), start]
                    break
                if w not in parent:
                    parent[w] = v
                    queue.append(w)
        cycles.append(cycle)
    return cycles


def test_no_import_cycle():
    unresolved: list[str] = []
    graph = import_graph(unresolved=unresolved)
    assert not unresolved, "imports of modules that do not exist:\n" + "\n".join(unresolved)
    assert f"{PACKAGE}.cli" in graph and f"{PACKAGE}.backbones.registry" in graph, sorted(graph)
    cycles = find_cycles(graph)
    assert not cycles, "import cycles in src/au_transfer:\n" + "\n".join("  " + " -> ".join(c) for c in cycles)


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def test_import_graph_resolution(tmp_path):
    """The graph builder itself: relative / absolute / function-level imports, submodules vs package names."""
    _write(tmp_path, {
        "pkg/__init__.py": "from .a import f\nfrom .sub import g\n",
        "pkg/a.py": "from . import b\nimport os\n",  # `from package import submodule` -> the submodule
        "pkg/b.py": "def h():\n    import pkg.sub.c\n",  # function level; `import a.b.c` -> module a.b.c
        "pkg/sub/__init__.py": "from .c import g\n",
        "pkg/sub/c.py": "from .. import a\nfrom ..a import f\nfrom pkg.sub import d\nfrom pkg import VERSION\n",
        "pkg/sub/d.py": "",
        "pkg/sub/bad.py": "def k():\n    from ..io import w\n    import pkg.nothing\n",  # neither exists
    })
    unresolved: list[str] = []
    graph = import_graph(tmp_path, "pkg", unresolved)
    bad = tmp_path / "pkg" / "sub" / "bad.py"
    assert unresolved == [f"{bad}:2: from ..io (pkg.io)", f"{bad}:3: import pkg.nothing"]
    assert graph == {
        "pkg": {"pkg.a", "pkg.sub"},
        "pkg.a": {"pkg.b"},
        "pkg.b": {"pkg.sub.c"},
        "pkg.sub": {"pkg.sub.c"},
        "pkg.sub.c": {"pkg.a", "pkg.sub.d", "pkg"},
        "pkg.sub.d": set(),
        "pkg.sub.bad": {"pkg"},  # what does not exist counts as its nearest existing package
    }
    # a -> b -> sub.c -> a, and sub.c -> pkg (its __init__) -> sub -> sub.c: one component, a shortest cycle shown
    assert find_cycles(graph) == [["pkg", "pkg.sub", "pkg.sub.c", "pkg"]]
    graph["pkg.sub.c"] = {"pkg.a", "pkg.sub.d"}
    assert find_cycles(graph) == [["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]]
    graph["pkg.sub.c"] = {"pkg.sub.d"}
    assert find_cycles(graph) == []


# ---------------------------------------------------------------------------------------------- module size
def long_modules(root: Path = SRC / PACKAGE, limit: int = MAX_LINES) -> dict[str, int]:
    """Modules under ``root`` longer than ``limit`` lines and not allowed to be, with their line counts."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        n = len(path.read_text().splitlines())
        if n > limit and rel not in LONG_MODULES_ALLOWED:
            out[rel] = n
    return out


def test_no_module_too_long():
    long = long_modules()
    assert not long, f"modules longer than {MAX_LINES} lines (split them): {long}"


@pytest.mark.parametrize(("n", "flagged"), [(MAX_LINES, False), (MAX_LINES + 1, True)])
def test_long_module_check(tmp_path, n, flagged):
    _write(tmp_path, {"x/m.py": "pass\n" * n, "backbones/dlib_resnet.py": "pass\n" * (n + 10)})
    assert long_modules(tmp_path) == ({"x/m.py": n} if flagged else {})
