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


#: The package's layers, lowest first. A module may import its own layer and the layers
#: below, never one above: the domain core knows no request, and the per-app state no
#: view. Every module is in exactly one layer.
LAYERS: list[tuple[str, set[str]]] = [
    ("foundation", {"constants", "errors", "secret", "log_text", "identifiers", "model", "outbound", "retries",
                    "export.kinds", "version", "migrations", "outage", "metrics", "database_url", "json_text"}),
    ("settings", {"settings", "env_check"}),
    ("domain", {"store", "store.tables", "store.schema", "store.segments", "store.user_segments", "store.membership", "store.bulk",
                "store.audiences", "store.senders", "store.upgrade_lock", "deliveries", "deliveries.inbox", "deliveries.worker",
                "visitors", "visitors.client", "visitors.service", "shared_cache", "redis_guard",
                "api_calls", "api_calls.breaker", "api_calls.cached",
                "recommendations", "recommendations.answer", "recommendations.client", "recommendations.service",
                "tracking", "tracking.fields", "tracking.events", "tracking.modes", "tracking.wire", "tracking.sender", "tracking.outbox",
                "rate_limits", "tracking.service",
                "export", "export.sources", "export.runner", "export.streaming",
                "webhook", "webhook.formats", "webhook.signatures", "webhook.credentials", "webhook.sample"}),
    ("state", {"state"}),
    ("request and command line", {"page", "tracking.helpers", "tracking.endpoint", "tracking.cookies",
                                  "tracking.server_events", "tracking.consent_banner", "webhook.view", "admin", "admin.views", "metrics_endpoint",
                                  "recommendations.helpers", "recommendations.click",
                                  "cli", "cli.group", "cli.commands", "cli.export", "cli.health",
                                  "testing", "testing.stand_in", "testing.activation", "testing.plugin"}),
    ("extension", {"extension", ""}),
]


def layer_of(module: str) -> int:
    name = module.removeprefix("cdp_bridge").removeprefix(".")
    if name.startswith("migrations"):  # revision snapshots: they import nothing of cdp_bridge
        name = "migrations"
    found = [index for index, (_, members) in enumerate(LAYERS) if name in members]
    assert len(found) == 1, f"{module} must be in exactly one layer of tests/test_architecture.py"
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
    assert upward_imports(graph) == ["cdp_bridge.store.segments (domain) imports cdp_bridge.state (state)"]


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
