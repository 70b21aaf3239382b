"""The package's shape: data flows one way, so no module imports one that imports it back.

The graph is read from the source (every ``import`` and ``from … import``, in functions
too), so a lazy import that hides a cycle from Python still counts here.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "cdp_bridge"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                submodules = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in modules]
                # "from . import membership" imports the module; "from .store import X" the package.
                targets = submodules or [base]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            graph[name] |= {target for target in targets if target in modules and target != name}
    return graph


def test_the_graph_is_read() -> None:
    graph = import_graph()
    assert "cdp_bridge.webhook.view" in graph["cdp_bridge.extension"]
    assert "cdp_bridge.state" in graph["cdp_bridge.webhook.view"]
    assert "cdp_bridge.store.membership" in graph["cdp_bridge.store.audiences"]  # "from . import membership"


def test_there_is_no_import_cycle() -> None:
    graph = import_graph()
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(name):] + [name]))
        if name in done:
            return
        for target in sorted(graph[name]):
            # A package's __init__ re-exports its own modules; a module importing its
            # package's sibling does not import the package's __init__ back.
            visit(target, path + [name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


def test_only_the_package_imports_the_extension() -> None:
    importers = {name for name, targets in import_graph().items() if "cdp_bridge.extension" in targets}
    assert importers == {"cdp_bridge"}


def test_the_domain_core_knows_nothing_of_flask_requests() -> None:
    for module in ("store/audiences.py", "store/membership.py", "store/bulk.py", "model.py", "webhook/formats.py"):
        source = (PACKAGE / module).read_text()
        assert "from flask" not in source and "import flask" not in source, module
