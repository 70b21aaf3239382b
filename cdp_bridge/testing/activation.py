"""Posting an activation to an app's webhook as the CDP would, through Flask's test client."""

from __future__ import annotations

import json
import uuid
from typing import Any

from flask import Flask

from ..constants import EXTENSION_KEY, WEBHOOK_PATH
from ..errors import ConfigurationError
from ..webhook.sample import activation_headers


def send_activation(app: Flask, audiences: list[dict[str, Any]], request_id: str | None = None) -> Any:
    """POST ``{"segment_group_identifier", "request_id", "audiences"}`` to the app's webhook
    with its first activation's credentials (and a signature when signing secrets are
    configured) through ``app.test_client()``; the test client's response."""
    state = app.extensions.get(EXTENSION_KEY)
    if state is None or not state.settings.webhook.activations:
        raise ConfigurationError("send_activation needs an app with cdp_bridge and an activation (CDP_ACTIVATION_CLIENT_ID,"
                                 " CDP_ACTIVATION_CLIENT_SECRET, CDP_SEGMENT_GROUP_IDENTIFIER)")
    activation = state.settings.webhook.activations[0]
    body = {"segment_group_identifier": activation.segment_group_identifier,
            "request_id": request_id or uuid.uuid4().hex, "audiences": audiences}
    raw = json.dumps(body).encode()
    secrets = state.settings.webhook.signing_secrets
    path = f"{(state.url_prefix or '/cdp').rstrip('/')}{WEBHOOK_PATH}"
    return app.test_client().post(path, data=raw, headers=activation_headers(activation, raw,
                                                                             secrets[0] if secrets else None))
