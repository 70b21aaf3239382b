"""The session-wide secret scan (``no_secret_in_any_log_line`` in conftest.py) finds a
secret wherever it stands in a line, in its plain and its Basic-auth forms."""

from __future__ import annotations

import base64

from tests.support.logs import find_leaks, secret_forms
from tests.support.webhook import ACTIVATION


def test_a_planted_secret_is_found_in_any_form() -> None:
    secret = ACTIVATION["CDP_ACTIVATION_CLIENT_SECRET"]
    basic = base64.b64encode(f"test-client:{secret}".encode()).decode()
    lines = ["cdp_bridge.webhook DEBUG clean line", f"127.0.0.1 - {secret} [29/Nov/2026] \"POST /cdp/webhook\"",
             f"headers={{'Authorization': 'Basic {basic}'}}"]
    leaks = find_leaks(lines, secret_forms())
    assert [line for _, line in leaks] == [lines[1][:120], lines[2][:120]]


def test_clean_lines_have_no_leaks() -> None:
    assert find_leaks(["webhook request POST /cdp/webhook headers={'Authorization': '<redacted>'}"], secret_forms()) == []
