"""A host that uses Flask-WTF's CSRFProtect still receives deliveries."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask import Flask
from flask_wtf import CSRFProtect

from cdp_bridge import CDP
from tests.support.webhook import ACTIVATION, post_webhook


def csrf_from(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)

def group_identifiers(app: Flask) -> list[str]:
    with app.app_context():
        return [g.identifier for g in app.extensions["cdp"].store.list_groups()]


@pytest.mark.parametrize("order", ["csrfprotect-first", "cdp-first"])
def test_a_host_with_flask_wtf_csrfprotect_still_receives_deliveries(tmp_path: Path, sqlite_url: str,
                                                                     order: str) -> None:
    app = Flask("wtf_site", instance_path=str(tmp_path / "instance"))
    app.config.update(SQLALCHEMY_DATABASE_URI=sqlite_url, SECRET_KEY="test", CDP_INLINE_WORKER=False, **ACTIVATION)
    if order == "csrfprotect-first":
        CSRFProtect(app)
        cdp = CDP(app)
    else:
        cdp = CDP(app)
        CSRFProtect(app)

    @app.post("/contact")
    def contact() -> str:
        return "sent"

    @cdp.admin_guard
    def everyone() -> bool:
        return True

    with app.app_context():
        cdp.create_tables()
        cdp.store.create_group("shop", "Shop")
    answer = post_webhook(app, {"audiences": [{"id": "vip", "add": ["1"]}]})
    assert answer.status_code == 200 and answer.get_json()["status"] == "applied"
    client = app.test_client()
    assert client.post("/contact").status_code == 400  # the host's own forms stay protected
    token = csrf_from(client.get("/cdp/admin/groups").get_data(as_text=True))
    created = client.post("/cdp/admin/groups", data={"identifier": "news", "csrf_token": token})
    assert created.status_code == 302  # one token satisfies the host's CSRFProtect and the back office
    assert client.post("/contact", data={"csrf_token": token}).get_data(as_text=True) == "sent"
    assert group_identifiers(app) == ["news", "shop"]
