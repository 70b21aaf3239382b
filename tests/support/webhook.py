"""Calling the webhook as the CDP would, and reading back what the store holds."""

from __future__ import annotations

import base64
import json
from typing import Any

from flask import Flask

from cdp_bridge import CDP
from cdp_bridge.deliveries.inbox import DeliverySummary

ACTIVATION = {
    "CDP_ACTIVATION_CLIENT_ID": "test-client",
    "CDP_ACTIVATION_CLIENT_SECRET": "test-client-secret-value",
    "CDP_SEGMENT_GROUP_IDENTIFIER": "shop",
}


def cdp_of(app: Flask) -> CDP:
    """A ``CDP`` whose decorators register on ``app``'s hooks (the one that set the app up
    is not kept anywhere a test can reach)."""
    cdp = CDP()
    cdp.hooks = app.extensions["cdp"].hooks
    return cdp


def basic_auth(client_id: str = ACTIVATION["CDP_ACTIVATION_CLIENT_ID"],
               secret: str = ACTIVATION["CDP_ACTIVATION_CLIENT_SECRET"]) -> dict[str, str]:
    token = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def post_webhook(app: Flask, body: Any = None, *, raw: bytes | None = None, headers: dict[str, str] | None = None,
                 content_type: str = "application/json", auth: dict[str, str] | None = None) -> Any:
    """POST to the webhook with the test activation's credentials unless ``auth`` says otherwise."""
    data = raw if raw is not None else json.dumps(body).encode()
    all_headers = {**(basic_auth() if auth is None else auth), **(headers or {})}
    return app.test_client().post("/cdp/webhook", data=data, headers=all_headers, content_type=content_type)


def memberships(app: Flask, group: str = "shop") -> dict[str, set[str]]:
    """Every segment of a group with its members: the whole state to compare against."""
    with app.app_context():
        store = app.extensions["cdp"].store
        return {s.identifier: set(store.members(group, s.identifier)) for s in store.list_segments(group)}


def delivery_rows(app: Flask) -> list[DeliverySummary]:
    with app.app_context():
        summaries: list[DeliverySummary] = app.extensions["cdp"].inbox.summaries(limit=None)
        return summaries
