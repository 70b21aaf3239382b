"""The back office under ``/cdp/admin/``: the dashboard (:mod:`.dashboard`), segment
groups, segments, members, a user's segments and the delivery log (SPEC section 8).

It is a blueprint of its own, nested in the ``cdp`` blueprint, so its ``before_request``
guards every view it holds whatever name and prefix the host mounts ``cdp`` under, and
its links are relative (``url_for(".groups")``). It answers only when the host
registered an access check with ``@cdp.admin_guard`` (otherwise 404, as if not
mounted); everyone the guard does not admit gets 403; every POST must carry Flask-WTF's
CSRF token (400 without it), the same token a host's own ``CSRFProtect`` accepts. No
setting, secret or credential is shown: only identifiers, names, counts and the log.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, abort, redirect, request, url_for
from flask_wtf.csrf import CSRFError, generate_csrf, validate_csrf
from wtforms.validators import ValidationError as CSRFValidationError

from ...errors import DATABASE_UNREACHABLE, CDPError, ConflictError, NotFoundError, ProtectedGroupError, ValidationError
from ...identifiers import validate_group_identifier, validate_name, validate_user_id
from ...model import DeliveryStatus
from ...reconcile.runner import last_reconciles
from ...state import current_state as _state
from ...store.schema import UPGRADE_COMMAND
from .dashboard import dashboard, dashboard_csv
from .pages import Pager, page_number, show

log = logging.getLogger("cdp_bridge.web.admin")

PAGE_SIZE = 50
#: Largest delivery id a URL may name (the column is a 64-bit integer).
MAX_DELIVERY_ID = 2**63 - 1
CSRF_FIELD = "csrf_token"
STATUS_VALUES = frozenset(status.value for status in DeliveryStatus)


def admin_blueprint() -> Blueprint:
    """The back office, to be nested in the ``cdp`` blueprint at ``/admin``."""
    admin = Blueprint(
        "admin", __name__, template_folder="templates", static_folder="static", static_url_path="/static"
    )
    admin.before_request(_admit)
    for unreachable in DATABASE_UNREACHABLE:
        admin.register_error_handler(unreachable, _database_unreachable)
    admin.context_processor(lambda: {
        "cdp_csrf_token": generate_csrf,
        "cdp_site_url": _state().settings.site.admin_site_url,
    })
    routes: list[tuple[str, str, Any, list[str]]] = [
        ("/", "home", dashboard, ["GET"]),
        ("/dashboard.csv", "dashboard_csv", dashboard_csv, ["GET"]),
        ("/groups", "groups", groups, ["GET", "POST"]),
        ("/groups/<identifier>", "group", group, ["GET"]),
        ("/groups/<identifier>/rename", "rename_group", rename_group, ["POST"]),
        ("/groups/<identifier>/delete", "delete_group", delete_group, ["POST"]),
        ("/groups/<identifier>/members", "segment", segment_members, ["GET"]),
        ("/users", "user", user_segments, ["GET"]),
        ("/deliveries", "deliveries", deliveries, ["GET"]),
        (f"/deliveries/<int(max={MAX_DELIVERY_ID}):delivery_id>", "delivery", delivery, ["GET"]),
        (f"/deliveries/<int(max={MAX_DELIVERY_ID}):delivery_id>/replay", "replay", replay, ["POST"]),
        ("/erasures", "erasures", erasures, ["GET"]),
    ]
    for rule, endpoint, view, methods in routes:
        admin.add_url_rule(rule, endpoint, view, methods=methods)
    return admin


#: Seconds a browser (or a person) is asked to wait before trying again.
RETRY_AFTER_SECONDS = 30


def _database_unreachable(exc: Exception) -> Response:
    """A database outage: a 503 page that says so and to try again, never a 500; one
    ERROR line naming the failure's class (its text may carry the database's address)."""
    log.error("back office: database unreachable, answered 503: %s", type(exc).__name__)
    response = show("cdp/admin/unavailable.html", 503, retry_after=RETRY_AFTER_SECONDS)
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def _admit() -> None:
    """Every view of this blueprint: the guard first, then the CSRF token of a POST."""
    state = _state()
    guard = state.hooks.admin_guard
    if guard is None:
        abort(404)
    if not guard():
        abort(403)
    if not state.schema_gate.is_current():
        abort(503, description=f"cdp_bridge's tables need an upgrade: run {UPGRADE_COMMAND}, then reload this page.")
    if request.method == "POST":
        try:
            validate_csrf(request.form.get(CSRF_FIELD))
        except CSRFValidationError as exc:
            raise CSRFError(
                f"{exc} The form has expired or did not come from this site: reload the page and try again."
            ) from None


def groups() -> Any:
    """List groups; POST creates one (errors shown beside the fields)."""
    store = _state().store
    errors: dict[str, str] = {}
    form = {"identifier": "", "name": ""}
    if request.method == "POST":
        form = {"identifier": request.form.get("identifier", "").strip(), "name": request.form.get("name", "").strip()}
        errors = _group_form_errors(form)
        if not errors:
            try:
                created = store.create_group(form["identifier"], form["name"] or None)
                return redirect(url_for(".group", identifier=created.identifier, created=1))
            except ConflictError as exc:
                errors["identifier"] = str(exc)
    status = 400 if errors else 200
    return show("cdp/admin/groups.html", status, groups=store.list_groups(), errors=errors, form=form)


def _group_form_errors(form: dict[str, str]) -> dict[str, str]:
    """Each field's problem, so the page can show it beside that field."""
    errors = {}
    for field, check in (("identifier", validate_group_identifier), ("name", _optional_name)):
        try:
            check(form[field])
        except ValidationError as exc:
            errors[field] = str(exc)
    return errors


def _optional_name(name: str) -> None:
    if name:
        validate_name(name, "segment group name")


def group(identifier: str, *, error: str | None = None, status: int = 200) -> Any:
    """One group: rename and delete forms, its segments with metadata and member counts."""
    store = _state().store
    try:
        found = store.get_group(identifier)
    except (NotFoundError, ValidationError):
        abort(404)
    page = page_number()
    segments = store.list_segments(identifier, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE + 1)
    return show(
        "cdp/admin/group.html",
        status,
        group=found,
        segments=segments[:PAGE_SIZE],
        reconciles=last_reconciles(_state().engine, _state().tables, identifier),
        pager=Pager(page, len(segments) > PAGE_SIZE, ".group", {"identifier": identifier}),
        error=error,
        created=request.args.get("created") == "1",
    )


def rename_group(identifier: str) -> Any:
    try:
        _state().store.rename_group(identifier, request.form.get("name", ""))
    except NotFoundError:
        abort(404)
    except ProtectedGroupError as exc:
        return group(identifier, error=str(exc), status=409)
    except ValidationError as exc:
        return group(identifier, error=str(exc), status=400)
    return redirect(url_for(".group", identifier=identifier))


def delete_group(identifier: str) -> Any:
    """Delete a group, once the form's confirmation box was ticked (no JavaScript needed)."""
    if request.form.get("confirm") != "yes":
        return group(identifier, error="Tick the box to confirm the deletion: nothing was deleted.", status=400)
    try:
        _state().store.delete_group(identifier)
    except NotFoundError:
        abort(404)
    except ProtectedGroupError as exc:
        return group(identifier, error=str(exc), status=409)
    return redirect(url_for(".groups"))


#: The members page's keys, in the order they are honoured when several are given.
MEMBER_KEYS = ("at", "after", "before")


def segment_members(identifier: str) -> Any:
    """A segment's members, a page at a time by user id (``?after=``, ``?before=``, or
    ``?at=`` to jump to a user id), so a page deep in a million members costs what the
    first one does. The segment id is a query argument: ids may hold ``/`` or ``..``,
    which a path segment could not carry to the right page."""
    store = _state().store
    segment = request.args.get("segment", "")
    key = next((name for name in MEMBER_KEYS if request.args.get(name)), None)
    start: dict[str, str] = {}
    if key is not None:
        try:
            start[key] = validate_user_id(request.args[key])
        except ValidationError as exc:
            abort(400, description=f"{key}: {exc}")
    try:
        page = store.members_page(identifier, segment, limit=PAGE_SIZE, **start)
    except (NotFoundError, ValidationError):
        abort(404)
    arguments: dict[str, Any] = {"identifier": identifier, "segment": segment}
    return show(
        "cdp/admin/segment.html",
        group=identifier,
        segment=page.segment,
        members=page.members,
        # past the last member (a jump beyond it): back to the first page
        previous_url=(url_for(".segment", **arguments, before=page.members[0]) if page.members
                      else url_for(".segment", **arguments)) if page.has_previous else None,
        next_url=url_for(".segment", **arguments, after=page.members[-1]) if page.has_next and page.members else None,
        jumped_to=start.get("at"),
    )


def user_segments() -> Any:
    user_id = request.args.get("user_id", "").strip()
    error, segments, status = None, None, 200
    if user_id:
        try:
            segments = _state().store.segments_for(user_id)
        except ValidationError as exc:
            error, status = str(exc), 400
    return show("cdp/admin/user.html", status, user_id=user_id, segments=segments, error=error)


def deliveries() -> Any:
    """The log, newest first: summaries only (no payloads, no rejection lists)."""
    given = request.args.get("status") or None
    if given is not None and given not in STATUS_VALUES:
        abort(400, description=f"status must be one of {', '.join(DeliveryStatus)}")
    status = DeliveryStatus(given) if given is not None else None
    page = page_number()
    rows = _state().inbox.summaries(status, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE + 1)
    replayed = request.args.get("replayed", "")
    return show(
        "cdp/admin/deliveries.html",
        deliveries=rows[:PAGE_SIZE],
        status=status,
        statuses=list(DeliveryStatus),
        pager=Pager(page, len(rows) > PAGE_SIZE, ".deliveries", {"status": status}),
        replayed=replayed if replayed.isdecimal() else None,
    )


def delivery(delivery_id: int) -> Any:
    """One delivery with its sample of rejections and their count per reason."""
    try:
        found = _state().inbox.get(delivery_id)
    except NotFoundError:
        abort(404)
    return show("cdp/admin/delivery.html", delivery=found)


def replay(delivery_id: int) -> Any:
    state = _state()
    try:
        state.inbox.replay(delivery_id)
    except NotFoundError:
        abort(404)
    except CDPError as exc:
        abort(409, description=str(exc))
    state.wake_inline_worker()
    return redirect(url_for(".deliveries", replayed=delivery_id))


def erasures() -> Any:
    """The erasure requests, newest first: a hash prefix, never an identifier."""
    found = _state().erasures_or_none()
    return show("cdp/admin/erasures.html", erasures=found.summaries(limit=PAGE_SIZE) if found is not None else [],
                 configured=found is not None)
