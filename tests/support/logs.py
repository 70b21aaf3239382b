"""Every log line of the test session, for the check that no secret is ever logged."""

from __future__ import annotations

import base64
import os
from typing import NoReturn

from tests.support.webhook import ACTIVATION

UNDER_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def missing_tool(message: str) -> NoReturn:
    """Skip a test whose tool or server is not installed; under CI, which installs them
    all (.ci/run), fail instead: nothing an issue requires may be skipped there."""
    import pytest

    if UNDER_CI:
        pytest.fail(message + " (required under CI)")
    pytest.skip(message)

#: Formatted log lines of this test session: in-process records at DEBUG, and the output
#: of the servers and workers the tests started (added with ``remember_output``).
CAPTURED_LOG_LINES: list[str] = []

#: Every secret the tests configure.
KNOWN_SECRETS: set[str] = {
    ACTIVATION["CDP_ACTIVATION_CLIENT_SECRET"],
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "stream-id-secret-1234",
    "load-client-secret-value-0123456789",
    # per-type and scheduled stream ids, and the seed's activation (test_fidelity, test_cli)
    "stream-food", "stream-toys", "stream-article", "scheduled-secret-id", "seed-secret-value",
    "food-stream-secret", "toys-stream-secret",
    # a storage URI's and a metrics token (tests/tracking/test_rate_limits.py, tests/test_metrics.py)
    "hunter2-rate-password", "metrics-token-0123456789abcdef",
}


def remember_output(text: str) -> None:
    """Add a subprocess's output to the lines the secret check reads."""
    CAPTURED_LOG_LINES.extend(text.splitlines())


def secret_forms() -> set[str]:
    """Each known secret, and the Basic-auth header values that carry one."""
    forms = set(KNOWN_SECRETS)
    for client_id, secret in [(ACTIVATION["CDP_ACTIVATION_CLIENT_ID"], ACTIVATION["CDP_ACTIVATION_CLIENT_SECRET"]),
                              ("load-client", "load-client-secret-value-0123456789")]:
        forms.add(base64.b64encode(f"{client_id}:{secret}".encode()).decode())
    return forms


def find_leaks(lines: list[str], secrets: set[str]) -> list[tuple[str, str]]:
    """(the secret's first characters, the line's start) for each line holding a secret."""
    return [(secret[:6] + "…", line[:120]) for line in lines for secret in secrets if secret in line]
