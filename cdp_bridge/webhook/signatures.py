"""Standard Webhooks signature verification (https://www.standardwebhooks.com/).

The signed content is ``"{webhook-id}.{webhook-timestamp}.{raw body}"``; the key is the
base64 part of a ``whsec_…`` secret; ``webhook-signature`` holds one or more
space-separated ``v1,<base64 HMAC-SHA256>`` entries, any of which may match any
configured secret (secrets rotate). The timestamp must be within the tolerance of now,
both ways, so a captured request cannot be replayed later.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence

from ..errors import SignatureError
from ..secret import Secret

TOLERANCE_SECONDS = 300
SECRET_PREFIX = "whsec_"


def sign(secret: Secret, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,…`` signature of a message (for senders and tests)."""
    key = base64.b64decode(secret.reveal()[len(SECRET_PREFIX) :])
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(
    secrets: Sequence[Secret],
    msg_id: str | None,
    timestamp: str | None,
    signature_header: str | None,
    body: bytes,
    now: float,
    tolerance: int = TOLERANCE_SECONDS,
) -> None:
    """Return if one signature matches one secret; raise :class:`SignatureError` otherwise."""
    if not msg_id or not timestamp or not signature_header:
        raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise SignatureError("webhook-timestamp is not a whole number of seconds") from None
    if abs(now - sent_at) > tolerance:
        raise SignatureError("webhook-timestamp is outside the tolerance")
    offered = [entry.partition(",")[2] for entry in signature_header.split() if entry.startswith("v1,")]
    matched = False
    for secret in secrets:
        expected = sign(secret, msg_id, sent_at, body).partition(",")[2].encode()
        for candidate in offered:
            # Compare every pair: the time taken does not tell which one matched.
            matched |= hmac.compare_digest(expected, candidate.encode())
    if not matched:
        raise SignatureError("no signature matches")
