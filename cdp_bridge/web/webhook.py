"""``POST /cdp/webhook``: the CDP's activation pushes audiences here (SPEC section 3).

The view only translates HTTP: method, credentials, size, media type, signature, JSON
and body format are checked in that order, each with its own answer (a client address
that keeps presenting wrong credentials is answered 429 for a while: ``rate_limits``); then the parsed
delivery goes to the :class:`~cdp_bridge.deliveries.inbox.DeliveryInbox`, which decides
whether to apply it now or queue it and records it before anything is answered. A database that cannot be reached answers 503 with
``Retry-After`` and leaves nothing half-applied (every write is one transaction).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from ..constants import WEBHOOK_PATH
from ..deliveries.inbox import IncomingDelivery, ReceiveResult, log_outcome
from ..errors import DATABASE_UNREACHABLE, CDPError, PayloadError, SignatureError, ValidationError
from ..identifiers import validate_text_identifier
from ..json_text import UnreadableJSON, read_json
from ..log_text import one_line
from ..metrics import DELIVERIES_RECEIVED, REJECTED_IDS, WEBHOOK_SECONDS
from ..model import ActivationCredentials, ActivationDocument, Outcome
from ..state import CDPState, current_state
from ..store.schema import UPGRADE_COMMAND
from ..webhook.credentials import authenticate
from ..webhook.formats import choose_format
from ..webhook.signatures import verify

log = logging.getLogger("cdp_bridge.webhook")

RETRY_AFTER_SECONDS = 5
BODY_EXCERPT_BYTES = 2048
READ_CHUNK_BYTES = 64 * 1024
REDACTED_HEADERS = frozenset({"authorization", "x-client-secret", "webhook-signature", "cookie", "proxy-authorization"})
ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


#: How Flask-WTF's ``CSRFProtect.exempt`` names this view.
VIEW_LOCATION = f"{__name__}.receive_webhook"


def register_webhook(blueprint: Blueprint) -> None:
    """Add the webhook route to the ``cdp`` blueprint."""
    blueprint.add_url_rule(WEBHOOK_PATH, "webhook", receive_webhook, methods=ALL_METHODS)


def answer(code: int, /, **body: object) -> Response:
    response = jsonify(body)
    response.status_code = code
    return response


def receive_webhook() -> Response:
    """The webhook view, timed for ``cdp_webhook_duration_seconds``."""
    with WEBHOOK_SECONDS.time():
        return _receive()


def _receive() -> Response:
    if request.method != "POST":
        response = answer(405, error="method_not_allowed")
        response.headers["Allow"] = "POST"
        return response
    state = current_state()
    settings = state.settings
    _log_headers()
    activation = authenticate(request.headers, settings.webhook.activations)
    if activation is None:
        refusal = state.rate_limits.failed_authentication(request.remote_addr or "")
        if refusal is not None:
            response = answer(429, error="too_many_failed_authentications", message=refusal.message)
            response.headers["Retry-After"] = str(refusal.retry_after)
            return response
        return _unauthorized("credentials missing or wrong")
    limit = settings.webhook.max_bytes
    if request.content_length is not None and request.content_length > limit:
        return answer(413, error="payload_too_large")
    if request.mimetype != "application/json":
        return answer(415, error="unsupported_media_type")
    try:
        body = _read_body(limit)
    except BrokenBody as exc:
        log.info("webhook: 400 from %s: %s", one_line(str(request.remote_addr)), exc)
        return answer(400, error="invalid_json", message=str(exc))
    if body is None:
        return answer(413, error="payload_too_large")
    _log_body(body)
    signed = bool(settings.webhook.signing_secrets)
    if signed:
        try:
            verify(
                settings.webhook.signing_secrets,
                request.headers.get("webhook-id"),
                request.headers.get("webhook-timestamp"),
                request.headers.get("webhook-signature"),
                body,
                now=time.time(),
            )
        except SignatureError as exc:
            return _unauthorized(str(exc))
    return _accept(state, activation, body, signed)


def _accept(state: CDPState, activation: ActivationCredentials, body: bytes, signed: bool) -> Response:
    raw = read_json(body)
    if isinstance(raw, UnreadableJSON):
        return answer(400, error="invalid_json", message=f"the body is not valid JSON: {raw.detail}")
    try:
        payload_format = choose_format(state.hooks.payload_formats, raw, request.headers)
        document = payload_format.parse(raw)
        request_id = _request_id(document, signed)
    except PayloadError as exc:
        return answer(400, **_payload_error(exc))
    except RecursionError:
        return answer(400, error="invalid_payload", message="the body is nested too deeply")
    started = time.monotonic()
    try:
        if not state.schema_gate.is_current():  # the CDP retries a 503: nothing is lost
            return _unavailable(f"the database's cdp_* tables are behind this code: run {UPGRADE_COMMAND}")
        incoming = IncomingDelivery(activation, document, request_id, payload_format.name)
        result = state.inbox.receive(incoming)
    except DATABASE_UNREACHABLE as exc:
        log.error("webhook: database unavailable, answered 503: %s", type(exc).__name__)
        return _unavailable("the database cannot be reached")
    if result.status not in (Outcome.DUPLICATE, Outcome.SEGMENT_GROUP_MISMATCH):
        DELIVERIES_RECEIVED.labels(activation.client_id).inc()
        REJECTED_IDS.labels(activation.client_id).inc(document.rejected.total)
    if result.status == Outcome.SEGMENT_GROUP_MISMATCH:
        return answer(
            422,
            error="segment_group_mismatch",
            message=f"segment_group_identifier {document.segment_group_identifier!r}"
            " is not this activation's segment group",
        )
    assert result.delivery_id is not None  # recorded: every outcome but a mismatch
    log_outcome(
        delivery_id=result.delivery_id,
        status=result.status,
        client_id=activation.client_id,
        group=activation.segment_group_identifier,
        items=result.items,
        applied=result.applied,
        stale=result.stale,
        rejected=result.rejected.total,
        duration_ms=(time.monotonic() - started) * 1000,
    )
    return _answer_result(state, activation, result)


def _answer_result(state: Any, activation: Any, result: ReceiveResult) -> Response:
    if result.status == Outcome.UNKNOWN_SEGMENT_GROUP:
        return answer(
            422,
            error="unknown_segment_group",
            message=f"segment group {activation.segment_group_identifier!r} does not exist: create it first",
            delivery_id=result.delivery_id,
        )
    if result.status == Outcome.QUEUED:
        state.wake_inline_worker()
        return answer(202, status="queued", delivery_id=result.delivery_id, items=result.items)
    if result.status == Outcome.DUPLICATE:
        return answer(200, status="duplicate", delivery_id=result.delivery_id)
    return answer(
        200,
        status="applied",
        delivery_id=result.delivery_id,
        items=result.items,
        applied=result.applied,
        stale=result.stale,
        rejected=result.rejected.sample_dicts(),
        rejected_count=result.rejected.total,
        rejected_by_reason=result.rejected.by_reason,
    )


def _unauthorized(reason: str) -> Response:
    log.info("webhook: 401 from %s: %s", one_line(str(request.remote_addr)), reason)
    response = answer(401, error="unauthorized")
    response.headers["WWW-Authenticate"] = 'Basic realm="cdp"'
    return response


class BrokenBody(CDPError):
    """The body did not arrive whole: the client hung up, or sent less than it announced."""


def _read_body(limit: int) -> bytes | None:
    """The raw body, or ``None`` when it is longer than ``limit`` (chunked bodies too).

    Raises :class:`BrokenBody` when the body is cut short, so that a half-sent delivery
    is answered 400 and never applied.
    """
    chunks: list[bytes] = []
    total = 0
    try:
        stream = request.stream
        while True:
            chunk = stream.read(min(READ_CHUNK_BYTES, limit + 1 - total))
            if not chunk:
                break
            total += len(chunk)
            if total > limit:
                return None
            chunks.append(chunk)
    except RequestEntityTooLarge:
        return None
    except Exception as exc:  # each WSGI server has its own class for a broken body
        raise BrokenBody(f"the body could not be read whole ({type(exc).__name__}): nothing was applied") from None
    expected = request.content_length
    if expected is not None and total != expected:
        raise BrokenBody(f"the body ended after {total} of the {expected} bytes its Content-Length announced")
    return b"".join(chunks)


def _request_id(document: ActivationDocument, signed: bool) -> str | None:
    """The key that makes a repeated delivery a no-op.

    Unsigned: ``request_id`` from the body, else the ``Idempotency-Key`` or
    ``webhook-id`` header. Signed: only what the signature covers (the body's
    ``request_id``, else ``webhook-id``), so a captured request resent with a fresh,
    unsigned ``Idempotency-Key`` is still recognised as the same delivery.
    """
    candidates = [("request_id", document.request_id)]
    if not signed:
        candidates.append(("Idempotency-Key", request.headers.get("Idempotency-Key")))
    candidates.append(("webhook-id", request.headers.get("webhook-id")))
    for name, value in candidates:
        if value:
            try:
                return validate_text_identifier(value, name)
            except ValidationError as exc:
                raise PayloadError("invalid_payload", str(exc)) from None
    return None


def _unavailable(message: str) -> Response:
    """503: the CDP retries. The message says which (the body of SPEC's 503 plus a message,
    as the other errors have), so whoever reads it knows what to fix."""
    response = answer(503, error="unavailable", message=message)
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def _payload_error(exc: PayloadError) -> dict[str, Any]:
    body: dict[str, Any] = {"error": exc.error, "message": exc.message}
    if exc.details is not None:
        body["details"] = exc.details
    return body


def _log_headers() -> None:
    """Each CDP request at DEBUG, with the headers that carry secrets redacted."""
    if log.isEnabledFor(logging.DEBUG):
        headers = {
            name: ("<redacted>" if name.lower() in REDACTED_HEADERS else value)
            for name, value in request.headers.items()
        }
        log.debug(
            "webhook request %s %s from %s headers=%s",
            request.method, one_line(request.path), one_line(str(request.remote_addr)), headers,
        )


def _log_body(body: bytes) -> None:
    """A bounded excerpt of an authenticated request's body, at DEBUG."""
    if log.isEnabledFor(logging.DEBUG):
        excerpt = one_line(body[:BODY_EXCERPT_BYTES].decode("utf-8", errors="replace"))
        more = f" …(+{len(body) - BODY_EXCERPT_BYTES} bytes)" if len(body) > BODY_EXCERPT_BYTES else ""
        log.debug("webhook body (%s bytes): %s%s", len(body), excerpt, more)
