"""The back office guarded and CSRF-protected wherever the host mounts it, under any blueprint name."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask import Flask

from cdp_bridge import CDP
from tests.support.webhook import cdp_of


def csrf_from(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)

def group_identifiers(app: Flask) -> list[str]:
    with app.app_context():
        return [g.identifier for g in app.extensions["cdp"].store.list_groups()]


@pytest.fixture
def crm_app(tmp_path: Path, database_url: str) -> Flask:
    """cdp_bridge placed by the host as blueprint ``crm`` at ``/crm``."""
    app = Flask("crm_site", instance_path=str(tmp_path / "instance"))
    app.config.update(TESTING=True, SQLALCHEMY_DATABASE_URI=database_url, SECRET_KEY="test", CDP_INLINE_WORKER=False)
    cdp = CDP(app, register_blueprint=False)
    app.register_blueprint(cdp.blueprint, name="crm", url_prefix="/crm")
    with app.app_context():
        cdp.create_tables()
        cdp.store.create_group("shop", "Shop")
    yield app
    with app.app_context():
        app.extensions["cdp"].db.engine.dispose()


CRM_PAGES = ["/crm/admin/", "/crm/admin/groups", "/crm/admin/groups/shop", "/crm/admin/users?user_id=1",
             "/crm/admin/deliveries", "/crm/admin/groups/shop/members?segment=x", "/crm/admin/static/cdp/admin.css"]


def test_under_another_name_without_a_guard_the_back_office_is_not_served(crm_app: Flask) -> None:
    client = crm_app.test_client()
    for path in CRM_PAGES:
        assert client.get(path).status_code == 404, path
    assert client.post("/crm/admin/groups", data={"identifier": "sneaky"}).status_code == 404
    assert group_identifiers(crm_app) == ["shop"]


def test_under_another_name_a_refusing_guard_answers_403(crm_app: Flask) -> None:
    cdp_of(crm_app).admin_guard(lambda: False)
    client = crm_app.test_client()
    for path in CRM_PAGES:
        assert client.get(path).status_code == 403, path
    assert client.post("/crm/admin/groups", data={"identifier": "sneaky"}).status_code == 403
    assert client.post("/crm/admin/groups/shop/delete").status_code == 403
    assert group_identifiers(crm_app) == ["shop"]


def test_under_another_name_a_post_needs_the_csrf_token_and_links_stay_relative(crm_app: Flask) -> None:
    cdp_of(crm_app).admin_guard(lambda: True)
    client = crm_app.test_client()
    assert client.post("/crm/admin/groups", data={"identifier": "sneaky"}).status_code == 400
    assert client.post("/crm/admin/groups", data={"identifier": "sneaky", "csrf_token": "forged"}).status_code == 400
    assert group_identifiers(crm_app) == ["shop"]
    page = client.get("/crm/admin/groups").get_data(as_text=True)
    assert 'href="/crm/admin/groups/shop"' in page and 'action="/crm/admin/groups"' in page
    assert '"/cdp/' not in page
    created = client.post("/crm/admin/groups", data={"identifier": "news", "csrf_token": csrf_from(page)})
    assert created.status_code == 302 and created.headers["Location"].startswith("/crm/admin/groups/news")
    assert group_identifiers(crm_app) == ["news", "shop"]
