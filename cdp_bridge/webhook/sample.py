"""A realistic, authenticated sample activation, as the CDP would send it.

``flask cdp send-test-activation`` uses it so a new user sees segments appear in a
running site without a CDP account.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import CDPError
from ..model import ActivationCredentials
from ..outbound import Answer, OutboundClient
from ..secret import Secret
from .signatures import sign

#: The site answers a status and a short JSON document.
MAX_ANSWER_BYTES = 64 * 1024


class ActivationNotSent(CDPError):
    """The site could not be reached, or answered with a redirect (never followed: the
    request carries the activation's secret)."""


@dataclass(frozen=True)
class SentActivation:
    """The answer to a sent activation."""

    status_code: int
    body: str


def sample_body(segment_group_identifier: str, user_ids: Sequence[str]) -> dict[str, Any]:
    """Three audiences: an add/remove delta, a full member list, and a deleted one."""
    now = time.time()
    sequence = int(now * 1000)
    return {
        "segment_group_identifier": segment_group_identifier,
        "request_id": uuid.uuid4().hex,
        "audiences": [
            {
                "id": "5d822e81",
                "name": "Cat owners",
                "description": "Bought cat products in the last 90 days",
                "tags": ["pets", "cats"],
                "profile_count": len(user_ids[:2]),
                "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
                "sequence": sequence,
                "add": list(user_ids[:2]),
                "remove": [],
            },
            {"id": "77aa0001", "name": "VIP", "members": list(user_ids[:1]), "sequence": sequence},
            {"id": "0000dead", "deleted": True, "sequence": sequence},
        ],
    }


def send_activation(
    url: str,
    activation: ActivationCredentials,
    body: dict[str, Any],
    signing_secret: Secret | None = None,
    timeout: float = 30.0,
) -> SentActivation:
    """POST ``body`` to ``url`` with the activation's Basic credentials (and a signature)."""
    raw = json.dumps(body).encode()
    headers = activation_headers(activation, raw, signing_secret)
    answer = OutboundClient(timeout=timeout, max_answer_bytes=MAX_ANSWER_BYTES, pool_size=1).request(
        "POST", url, body=raw, headers=headers)
    if not isinstance(answer, Answer):
        raise ActivationNotSent(str(answer))
    return SentActivation(answer.status, answer.text())


def activation_headers(activation: ActivationCredentials, raw: bytes, signing_secret: Secret | None) -> dict[str, str]:
    """The headers the CDP sends with ``raw``: JSON, the activation's Basic credentials,
    and a Standard Webhooks signature when the site requires one."""
    token = base64.b64encode(f"{activation.client_id}:{activation.client_secret.reveal()}".encode()).decode()
    headers = {"Content-Type": "application/json", "Authorization": f"Basic {token}"}
    if signing_secret is not None:
        msg_id, timestamp = f"msg_{uuid.uuid4().hex}", int(time.time())
        headers.update({"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
                        "webhook-signature": sign(signing_secret, msg_id, timestamp, raw)})
    return headers
