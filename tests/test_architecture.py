"""The house rules of the package layout, checked by reading the source with ``ast`` (nothing is imported).

1. No import cycle between modules of ``gis_planner/``. Every ``import`` / ``from … import`` counts, at module
   level and inside functions, absolute and relative; only imports under ``if TYPE_CHECKING:`` are left out
   (they never run). A cycle is printed as ``a → b → a`` with the line of each import.
2. No module uses another module's private name: neither ``from .x import _y`` nor ``x._y`` on a gis_planner
   module bound by an import. Private *modules* may be imported (``from ._errors import ConfigError``,
   ``from . import _postgis``); dunder names (``__version__``) are public.
3. No module is over :data:`MAX_LINES` lines unless its docstring says why, on a line of its own starting with
   :data:`LENGTH_MARKER`, e.g. ``Length: one MILP model and its three solvers read best side by side.``
4. Bundled data files are read only through ``gis_planner/datafiles.py``: no other module imports ``tomllib``
   or ``importlib.resources`` (``config.py`` may import ``tomllib`` to read the user's plan.toml).

Each check is a function returning its findings (readable strings); the tests assert there are none.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "gis_planner"
MAX_LINES = 1000
LENGTH_MARKER = "Length:"
#: module → what it may import of ``tomllib`` / ``importlib.resources``
DATA_READERS = {"gis_planner.datafiles": {"tomllib", "importlib.resources"}, "gis_planner.config": {"tomllib"}}


@dataclass
class Module:
    """One source file of the package."""

    name: str  # dotted, e.g. "gis_planner.maps" or "gis_planner.io" for io/__init__.py
    path: Path
    tree: ast.Module
    is_package: bool
    where: str  # the file, relative to the folder holding the package ("gis_planner/maps.py")
    imports: list[tuple[str, int]] = field(default_factory=list)  # (target module, line)

    @property
    def package(self) -> str:
        """The package relative imports start from."""
        return self.name if self.is_package else self.name.rpartition(".")[0]


def load_modules(package_dir: Path = PACKAGE_DIR) -> dict[str, Module]:
    """Every ``.py`` file under ``package_dir``, parsed, by dotted module name."""
    root = package_dir.name
    modules: dict[str, Module] = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        name = ".".join([root, *parts])
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        modules[name] = Module(name, path, tree, is_package, path.relative_to(package_dir.parent).as_posix())
    for module in modules.values():
        module.imports = [(target, line) for target, _, line in _imports(module, modules)]
    return modules


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node except the bodies of ``if TYPE_CHECKING:`` blocks."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                stack.extend(child.orelse)
                continue
            stack.append(child)


def _absolute(module: Module, node: ast.ImportFrom) -> str:
    """The absolute module name a ``from … import`` reads from."""
    if not node.level:
        return node.module or ""
    base = module.package.split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _imports(module: Module, modules: dict[str, Module]) -> Iterator[tuple[str, str | None, int]]:
    """``(target module, imported name or None, line)`` for each import of a package module.

    ``from a import b`` targets ``a.b`` when that is a module, else ``a`` with name ``b``.
    """
    root = next(iter(modules)).split(".")[0] if modules else ""
    for node in _runtime_nodes(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == root:
                    yield _closest(alias.name, modules), None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(module, node)
            if source.split(".")[0] != root:
                continue
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                if sub in modules:
                    yield sub, None, node.lineno
                else:
                    yield _closest(source, modules), alias.name, node.lineno


def _closest(name: str, modules: dict[str, Module]) -> str:
    """``name`` or its nearest enclosing package that is a known module."""
    parts = name.split(".")
    while parts and ".".join(parts) not in modules:
        parts.pop()
    return ".".join(parts) or name


# ----------------------------------------------------------------------------------------- 1. cycles
def import_cycles(modules: dict[str, Module]) -> list[str]:
    """One readable cycle per strongly connected group of modules that import each other."""
    graph = {name: sorted({t for t, _ in m.imports if t in modules and t != name}) for name, m in modules.items()}
    lines = {(name, t): line for name, m in modules.items() for t, line in reversed(m.imports)}
    findings = []
    for group in _strongly_connected(graph):
        if len(group) < 2:
            continue
        start = min(group)
        path = _shortest_cycle(graph, start, set(group))
        hops = [f"{a} (line {lines[a, b]})" for a, b in zip(path, path[1:], strict=False)]
        findings.append(" → ".join([*hops, path[-1]]) + f"   [{len(group)} modules in the cycle group: "
                        f"{', '.join(sorted(group))}]")
    return findings


def _strongly_connected(graph: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    groups: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                groups.append(group)
    return groups


def _shortest_cycle(graph: dict[str, list[str]], start: str, group: set[str]) -> list[str]:
    """``[start, …, start]``: the shortest way back to ``start`` inside ``group`` (breadth first)."""
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in graph[node]:
                if child not in group:
                    continue
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    return [start, start]  # pragma: no cover - a group always has a cycle


# ---------------------------------------------------------------------------------- 2. private names
def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_imports(modules: dict[str, Module]) -> list[str]:
    """Uses of another module's private name: ``from .x import _y`` and ``x._y``."""
    findings = []
    for module in modules.values():
        where = module.where
        bound: dict[str, str] = {}  # local name → gis_planner module it is bound to
        for target, name, line in _imports(module, modules):
            if name is not None and _private(name) and target != module.name:
                findings.append(f"{where}:{line}: imports private name {name!r} of {target}")
        for node in _runtime_nodes(module.tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in modules or alias.name.split(".")[0] in modules:
                        local = alias.asname or alias.name.split(".")[0]
                        bound[local] = alias.name if alias.asname else alias.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom):
                source = _absolute(module, node)
                for alias in node.names:
                    if f"{source}.{alias.name}" in modules:
                        bound[alias.asname or alias.name] = f"{source}.{alias.name}"
        for node in _runtime_nodes(module.tree):
            if not isinstance(node, ast.Attribute):
                continue
            chain = _attribute_chain(node)
            if not chain or chain[0] not in bound:
                continue
            current = bound[chain[0]]
            for attr in chain[1:]:
                if f"{current}.{attr}" in modules:
                    current = f"{current}.{attr}"
                    continue
                if _private(attr) and current != module.name:
                    findings.append(f"{where}:{node.lineno}: uses private name {attr!r} of {current}")
                break
    return sorted(set(findings))


def _attribute_chain(node: ast.Attribute) -> list[str]:
    """``a.b.c`` → ``["a", "b", "c"]``; [] when the chain does not start at a plain name."""
    parts: list[str] = []
    current: ast.AST = node
    while isinstance(current, ast.Attribute):
        parts.append(current.attr)
        current = current.value
    return [current.id, *reversed(parts)] if isinstance(current, ast.Name) else []


# ---------------------------------------------------------------------------------------- 3. length
def long_modules(modules: dict[str, Module], max_lines: int = MAX_LINES) -> list[str]:
    """Modules over ``max_lines`` lines whose docstring has no ``Length: <reason>`` line."""
    findings = []
    for module in modules.values():
        n = len(module.path.read_text(encoding="utf-8").splitlines())
        if n <= max_lines:
            continue
        doc = ast.get_docstring(module.tree) or ""
        reasons = [line.strip()[len(LENGTH_MARKER):].strip() for line in doc.splitlines()
                   if line.strip().startswith(LENGTH_MARKER)]
        if not any(reasons):
            findings.append(f"{module.name}: {n} lines (> {max_lines}) and no '{LENGTH_MARKER} <reason>' line in "
                            "its docstring")
    return findings


# ------------------------------------------------------------------------------------ 4. data files
def data_file_readers(modules: dict[str, Module]) -> list[str]:
    """Modules that import ``tomllib`` / ``importlib.resources`` without being allowed to."""
    findings = []
    for module in modules.values():
        allowed = DATA_READERS.get(module.name, set())
        used: dict[str, int] = {}
        for node in _runtime_nodes(module.tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in ("tomllib", "importlib.resources"):
                        used.setdefault(alias.name, node.lineno)
            elif isinstance(node, ast.ImportFrom) and not node.level:
                if node.module == "tomllib":
                    used.setdefault("tomllib", node.lineno)
                elif node.module == "importlib.resources" or (
                        node.module == "importlib" and any(a.name == "resources" for a in node.names)):
                    used.setdefault("importlib.resources", node.lineno)
            elif isinstance(node, ast.Attribute) and _attribute_chain(node)[:2] == ["importlib", "resources"]:
                used.setdefault("importlib.resources", node.lineno)
        for name, line in sorted(used.items()):
            if name not in allowed:
                findings.append(f"{module.name} (line {line}): uses {name}; read bundled data through "
                                "gis_planner.datafiles (load_toml / read_text / default_setting)")
    return findings


# ------------------------------------------------------------------------------------------ the tests
def _report(findings: list[str], rule: str) -> str:
    return f"{len(findings)} violation(s) of: {rule}\n  " + "\n  ".join(findings)


def test_no_import_cycle():
    findings = import_cycles(load_modules())
    assert not findings, _report(findings, "no import cycle between gis_planner modules")


def test_no_private_name_of_another_module():
    findings = private_imports(load_modules())
    assert not findings, _report(findings, "no module uses another module's private (_name) names")


def test_modules_are_short_or_say_why():
    findings = long_modules(load_modules())
    assert not findings, _report(findings, f"a module over {MAX_LINES} lines says why ('{LENGTH_MARKER} …')")


def test_bundled_data_is_read_only_through_datafiles():
    findings = data_file_readers(load_modules())
    assert not findings, _report(findings, "only datafiles.py reads bundled data (config.py: plan.toml)")


# ------------------------------------------------------------------- the checks find what they should
def _fake_package(tmp_path: Path, files: dict[str, str]) -> dict[str, Module]:
    pkg = tmp_path / "gis_planner"
    for name, text in {"__init__.py": "", **files}.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(text, encoding="utf-8")
    return load_modules(pkg)


def test_checks_find_cycles_through_function_level_and_relative_imports(tmp_path):
    modules = _fake_package(tmp_path, {
        "a.py": "from . import b\n",
        "b.py": "def f():\n    from gis_planner.sub import c\n",
        "sub/__init__.py": "",
        "sub/c.py": "from ..a import thing\n",
        "d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .e import E\n",
        "e.py": "from .d import D\n",
    })
    findings = import_cycles(modules)
    assert len(findings) == 1
    assert findings[0].startswith("gis_planner.a (line 1) → gis_planner.b (line 2) → gis_planner.sub.c (line 1) → "
                                  "gis_planner.a")


def test_checks_find_private_names_long_modules_and_data_reads(tmp_path):
    modules = _fake_package(tmp_path, {
        "_errors.py": "class ConfigError(Exception):\n    pass\n",
        "x.py": "def _helper():\n    pass\n",
        "ok.py": "from ._errors import ConfigError\nfrom . import _errors, x\nx.helper = x.__name__\n",
        "bad.py": "from .x import _helper\nimport gis_planner.x as gx\ngx._helper()\n",
        "long.py": '"""Long.\n\nLength: one reason.\n"""\n' + "a = 1\n" * 1001,
        "longer.py": '"""No reason."""\n' + "a = 1\n" * 1001,
        "reader.py": "import tomllib\nfrom importlib import resources\n",
        "config.py": "import tomllib\n",
    })
    assert private_imports(modules) == ["gis_planner/bad.py:1: imports private name '_helper' of gis_planner.x",
                                        "gis_planner/bad.py:3: uses private name '_helper' of gis_planner.x"]
    assert [f.split(":")[0] for f in long_modules(modules)] == ["gis_planner.longer"]
    assert [f.split(" ")[0] for f in data_file_readers(modules)] == ["gis_planner.reader", "gis_planner.reader"]
