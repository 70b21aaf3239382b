"""Which configured activation a webhook request authenticates as.

Credentials come as HTTP Basic or as ``X-Client-Id`` / ``X-Client-Secret`` headers.
Every configured activation is compared, id and secret, in constant time, and the loop
never stops early: how long it takes does not reveal which part was wrong.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Sequence

from ..model import ActivationCredentials, HeaderLookup


def presented_credentials(headers: HeaderLookup) -> tuple[str, str] | None:
    """The (client id, secret) a request presents, or ``None``."""
    authorization = headers.get("Authorization") or ""
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() == "basic" and encoded:
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        client_id, colon, secret = decoded.partition(":")
        return (client_id, secret) if colon else None
    header_id, header_secret = headers.get("X-Client-Id"), headers.get("X-Client-Secret")
    if header_id and header_secret:
        return header_id, header_secret
    return None


def authenticate(
    headers: HeaderLookup, activations: Sequence[ActivationCredentials]
) -> ActivationCredentials | None:
    """The activation whose client id and secret the request presents, or ``None``."""
    presented = presented_credentials(headers)
    if presented is None:
        return None
    client_id, secret = presented[0].encode("utf-8"), presented[1].encode("utf-8")
    found: ActivationCredentials | None = None
    for activation in activations:
        id_matches = hmac.compare_digest(activation.client_id.encode("utf-8"), client_id)
        secret_matches = activation.client_secret.matches(secret)
        if id_matches and secret_matches:
            found = activation
    return found
