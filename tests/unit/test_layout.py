"""The architecture's rules, checked on the source: the SDK never imports the
collector (not even lazily), and no module imports another that imports it back."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SDK = ROOT / "sdk" / "aitrail"
COLLECTOR = ROOT / "collector" / "aitrail_collector"


def _module_name(path: Path) -> str:
    rel = path.relative_to(SDK.parent if path.is_relative_to(SDK) else COLLECTOR.parent)
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import statement, at any depth (lazy ones too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return found


def _sources(*roots: Path) -> list[Path]:
    return sorted(p for root in roots for p in root.rglob("*.py") if "v1" not in p.parts)


def test_the_sdk_never_imports_the_collector():
    offenders = [f"{p.relative_to(ROOT)}:{line}: {mod}" for p in _sources(SDK)
                 for line, mod in _imports(p)
                 if mod == "aitrail_collector" or mod.startswith("aitrail_collector.")]
    assert not offenders, "the SDK imports the collector:\n" + "\n".join(offenders)


def test_the_check_itself_sees_a_lazy_import(tmp_path):
    """The walk looks inside functions too, where a lazy import would hide."""
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from aitrail_collector.store import client\n")
    assert (2, "aitrail_collector.store") in _imports(src)


def _graph() -> dict[str, set[str]]:
    """Module -> project modules it imports at module level (what can form a cycle
    at import time)."""
    files = _sources(SDK, COLLECTOR)
    names = {_module_name(p): p for p in files}
    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        deps: set[str] = set()
        for node in tree.body:  # module level only: lazy imports cannot loop at import
            mods: list[str] = []
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                mods = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for mod in mods:
                if mod in names and mod != name:
                    deps.add(mod)
        graph[name] = deps
    return graph


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    # A package's __init__ importing its own submodules is not a cycle worth naming.
    real = [c for c in cycles if not all(m.startswith(c[0] + ".") or m == c[0] for m in c)]
    assert not real, "import cycles:\n" + "\n".join(" -> ".join(c) for c in real)


def test_the_json_api_does_not_import_the_console():
    """The API's routers share nothing with the HTML console but the Services they get."""
    api = COLLECTOR / "web" / "api"
    offenders = [f"{p.relative_to(ROOT)}:{line}: {mod}" for p in _sources(api)
                 for line, mod in _imports(p) if mod.startswith("aitrail_collector.web.console")]
    assert not offenders, "\n".join(offenders)


def test_the_web_layer_gets_services_not_the_collector():
    web = COLLECTOR / "web"
    offenders = [f"{p.relative_to(ROOT)}:{line}: {mod}" for p in _sources(web)
                 for line, mod in _imports(p) if mod.startswith("aitrail_collector.app")]
    assert not offenders, "\n".join(offenders)


def test_every_package_is_installed():
    """pyproject lists its packages by hand: a new one missing there works from a
    checkout and is absent from `pip install aitrail` (aitrail.otel once was)."""
    import tomllib
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    on_disk = {_module_name(p.parent / "__init__.py") for root in (SDK, COLLECTOR)
               for p in root.rglob("__init__.py") if "__pycache__" not in p.parts}
    assert on_disk - listed == set()
