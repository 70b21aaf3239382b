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
    assert "cdp_bridge.web.webhook" in graph["cdp_bridge.extension"]
    assert "cdp_bridge.state" in graph["cdp_bridge.web.webhook"]
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


#: The package's layers, lowest first: its folders. A module may import its own layer and
#: the layers below, never one above: the domain knows no request, and the per-app state
#: no view. A module in a folder is in its folder's layer (a new one needs no edit here);
#: the few top-level modules are named.
LAYERS: list[tuple[str, set[str]]] = [
    ("foundation", {"constants", "errors", "secret", "log_text", "identifiers", "model", "outbound", "retries",
                    "version", "migrations", "outage", "metrics", "database_url", "json_text", "export_kinds",
                    "signals"}),
    ("settings", {"settings", "env_check"}),
    ("domain", {"store", "deliveries", "jobs", "privacy", "tracking", "export", "visitors", "recommendations", "api_calls", "webhook",
                "reconcile",
                "rate_limits", "shared_cache", "redis_guard"}),
    ("state", {"state"}),
    ("request and command line", {"web", "templating", "cli", "testing"}),
    ("extension", {"extension", ""}),
]
#: What only the request layer may take from Flask: the request and its globals.
REQUEST_GLOBALS = {"request", "g", "session", "current_app", "has_request_context", "has_app_context"}


def test_the_domain_knows_nothing_of_flask_requests() -> None:
    """Below the state, no module reads the request or Flask's globals (they may use
    Flask's types, e.g. a Blueprint, never ``request``, ``g`` or ``current_app``)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        if layer_of(name) >= layer_of("cdp_bridge.state"):
            continue
        if name == "cdp_bridge.signals":  # names the app as the sender, as Flask's own signals do; reads nothing else
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "flask":
                found += [f"{name} imports flask.{alias.name}" for alias in node.names if alias.name in REQUEST_GLOBALS]
    assert found == []


def layer_of(module: str) -> int:
    """The layer of a module: its folder's (its first name under cdp_bridge)."""
    name = module.removeprefix("cdp_bridge").removeprefix(".").split(".")[0]
    found = [index for index, (_, members) in enumerate(LAYERS) if name in members]
    assert len(found) == 1, f"{module}: its folder or name must be in exactly one layer of tests/test_architecture.py"
    return found[0]


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{name} ({LAYERS[layer_of(name)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
                  for name, targets in graph.items() for target in targets if layer_of(target) > layer_of(name))


def test_layers_import_downward_only() -> None:
    assert upward_imports(import_graph()) == []


def test_an_upward_import_is_caught() -> None:
    """The check itself: the store importing the state (a domain module reaching up) fails it."""
    graph = import_graph()
    graph["cdp_bridge.store.segments"] = graph["cdp_bridge.store.segments"] | {"cdp_bridge.state"}
    graph["cdp_bridge.tracking.sender"] = graph["cdp_bridge.tracking.sender"] | {"cdp_bridge.templating.page"}
    assert upward_imports(graph) == [
        "cdp_bridge.store.segments (domain) imports cdp_bridge.state (state)",
        "cdp_bridge.tracking.sender (domain) imports cdp_bridge.templating.page (request and command line)"]


def test_no_module_below_the_state_imports_it() -> None:
    """What the state is made of never imports it back: only the request and command-line
    layer (views, helpers, commands) and the extension reach for the current app's state."""
    importers = {name for name, targets in import_graph().items() if "cdp_bridge.state" in targets}
    assert all(layer_of(name) > layer_of("cdp_bridge.state") for name in importers), importers


def test_the_tracking_mode_is_asked_only_of_its_table() -> None:
    """One table of tracking modes (tracking/modes.py): no module compares the mode itself,
    so a mode's behaviour is one row, not checks spread over the helpers."""
    import re

    comparisons = re.compile(r"(tracking_mode|\bmode)\s*[!=]=|[!=]=\s*TrackingMode\.")
    found = [f"{path.relative_to(PACKAGE)}:{number}" for path in sorted(PACKAGE.rglob("*.py"))
             if path.name != "modes.py"
             for number, line in enumerate(path.read_text().splitlines(), 1) if comparisons.search(line)]
    assert found == []


def test_every_tracking_mode_has_its_row() -> None:
    from cdp_bridge.model import TrackingMode
    from cdp_bridge.tracking.modes import MODES

    assert set(MODES) == set(TrackingMode) and all(row.mode == mode for mode, row in MODES.items())
    # Exactly one way of sending the page's events in each mode.
    assert all([row.raptor_script_in_page, row.page_events_from_server, row.events_through_site].count(True) == 1
               for row in MODES.values())
