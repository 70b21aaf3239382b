"""Raptor's event types favorite, searchclick and searchresult are known, and movable with CDP_TRACKING_PARAMETERS."""

from __future__ import annotations

import pytest
from flask import Flask, render_template_string

from cdp_bridge import CDP
from tests.support.seed import SEED_ACCOUNT


@pytest.fixture
def tracking_site(sqlite_url: str) -> Flask:
    app = Flask("tracking_fidelity")
    app.config.update(SQLALCHEMY_DATABASE_URI=sqlite_url, CDP_INLINE_WORKER=False, CDP_ACCOUNT_NUMBER=SEED_ACCOUNT,
                      CDP_TRACKING_PARAMETERS={"searchclick": {"id": "p9"}, "favorite": {"name": "p30"}})
    CDP(app)
    return app


@pytest.mark.parametrize(("template", "pushed"), [
    ("{{ cdp_track_event('favorite', id='42', name='Cat tree') }}", '{"p1":"favorite","p2":"42","p30":"Cat tree"}'),
    ("{{ cdp_track_event('searchclick', id='42') }}", '{"p1":"searchclick","p9":"42"}'),
    ("{{ cdp_track_event('searchresult', id='42', p9='cat food') }}", '{"p1":"searchresult","p2":"42","p9":"cat food"}'),
])
def test_favorite_searchclick_and_searchresult_are_known_and_movable(tracking_site: Flask, template: str,
                                                                     pushed: str) -> None:
    with tracking_site.test_request_context("/"):
        html = render_template_string(template)
    assert f'window.raptor.push("trackEvent",{pushed});' in html
