"""deploy/prometheus-alerts.yml: valid rules (``promtool check rules``), each alert firing
on the series that should raise it (``promtool test rules`` with
deploy/prometheus-alerts.test.yml), and every figure they name one that cdp_bridge serves."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.logs import missing_tool
from tests.support.metrics import samples
from tests.support.webhook import ACTIVATION

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
RULES = DEPLOY / "prometheus-alerts.yml"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        missing_tool("promtool not found: apt-get install prometheus")
    return found


@pytest.mark.parametrize("command", [["check", "rules", "prometheus-alerts.yml"],
                                     ["test", "rules", "prometheus-alerts.test.yml"]], ids=["check", "unit tests"])
def test_promtool_accepts_the_rules(command: list[str]) -> None:
    result = subprocess.run([promtool(), *command], cwd=DEPLOY, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_figure_the_alerts_name_is_served(make_app) -> None:
    """A renamed metric would leave an alert that can never fire: the names must match a scrape."""
    app = make_app(CDP_METRICS_TOKEN="metrics-token-0123456789abcdef", **ACTIVATION)
    text = app.test_client().get("/cdp/metrics", headers={"Authorization": "Bearer metrics-token-0123456789abcdef"}).text
    served = {name for name, _ in samples(text)}
    # Counters with labels appear once incremented; their HELP lines are there from the start.
    served |= set(re.findall(r"^# HELP (\S+)", text, flags=re.MULTILINE))
    served |= {name + "_total" for name in served}
    named = set(re.findall(r"\bcdp_[a-z_]+", RULES.read_text())) - {"cdp_bridge"}
    assert named and named <= served, named - served
