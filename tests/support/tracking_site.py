"""A tracking site for the tests: a Flask app with cdp_bridge in a tracking mode, its
product page, and visitors who consented."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from flask import Flask, render_template_string

from cdp_bridge import CDP
from tests.support.fake_tracking_host import FakeTrackingHost

VISITOR = "0b6f7c2e-5a3d-4e1f-9c8b-7a6d5e4f3a2b"
SESSION = "1c7a8d3f-6b4e-4f2a-8d9c-8b7e6f5a4b3c"
PRODUCT_PAGE = """<html><head>{{ cdp_head_script() }}</head><body><h1>{{ name }}</h1>
{{ cdp_main_script() }}{{ cdp_set_user() }}
{{ cdp_track_visit("cat-tree", name=name, price=price, currency="EUR", category_path=[("pets", "Pets"), ("cats", "Cats")]) }}
</body></html>"""


def tracking_sites(tmp_path: Path, host: FakeTrackingHost) -> Iterator[Callable[..., Flask]]:
    """Yields ``make(mode="server", cdp=None, **config)``; stops every site's sender at the end."""
    apps: list[Flask] = []

    def make(mode: str = "server", cdp: CDP | None = None, **config: Any) -> Flask:
        app = Flask("tracking_site", instance_path=str(tmp_path / f"instance{len(apps)}"))
        app.config.update(TESTING=True, SECRET_KEY="x", SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path}/site{len(apps)}.sqlite3",
                          CDP_ACCOUNT_NUMBER="123456", CDP_CONSENT_COOKIE="consent", CDP_TRACKING_MODE=mode,
                          CDP_SERVER_TRACKING_URL=host.url, CDP_INLINE_WORKER=False)
        app.config.update(config)
        site_cdp = cdp or CDP()
        site_cdp.init_app(app)
        with app.app_context():
            site_cdp.create_tables()

        @app.get("/product")
        def product() -> str:
            return render_template_string(PRODUCT_PAGE, name="Cat tree \"Sky\" & co", price="89.9")

        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["cdp"].tracking.sender.stop()


def consenting_client(app: Flask, **cookies: str):
    client = app.test_client()
    client.set_cookie("consent", "1")
    for name, value in cookies.items():
        client.set_cookie(name, value)
    return client


def post_event(client, body, **headers):
    headers = {"Sec-Fetch-Site": "same-origin", **headers}
    return client.post("/cdp/track", json=body, headers=headers)


VISIT = {"params": {"p1": "visit", "p2": "cat-tree", "p3": "Cat tree"}, "url": "http://localhost/product"}
