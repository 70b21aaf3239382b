"""The back office under ``/cdp/admin/``: segment groups, segments, members, a user's
segments and the delivery log (SPEC section 8).

Server-rendered, usable without JavaScript. It answers only when the host registered an
access check with ``@cdp.admin_guard`` (otherwise 404, as if not mounted); everyone the
guard does not admit gets 403; every form carries a CSRF token. No setting, secret or
credential is shown: only identifiers, names, counts and the delivery log.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from .context import current_state as _state
from .csrf import check_csrf, csrf_token
from .deliveries import STATUSES
from .errors import CDPError, ConflictError, NotFoundError, ProtectedGroupError, ValidationError
from .identifiers import validate_group_identifier, validate_name

PAGE_SIZE = 50


def register_admin(blueprint: Blueprint) -> None:
    """Add the back office's routes and checks to the ``cdp`` blueprint."""
    blueprint.before_request(_admit)
    blueprint.context_processor(lambda: {"cdp_csrf_token": csrf_token})
    routes: list[tuple[str, str, Any, list[str]]] = [
        ("/admin/", "admin_home", home, ["GET"]),
        ("/admin/groups", "admin_groups", groups, ["GET", "POST"]),
        ("/admin/groups/<identifier>", "admin_group", group, ["GET"]),
        ("/admin/groups/<identifier>/rename", "admin_rename_group", rename_group, ["POST"]),
        ("/admin/groups/<identifier>/delete", "admin_delete_group", delete_group, ["POST"]),
        ("/admin/groups/<identifier>/segments/<path:segment>", "admin_segment", segment_members, ["GET"]),
        ("/admin/users", "admin_user", user_segments, ["GET"]),
        ("/admin/deliveries", "admin_deliveries", deliveries, ["GET"]),
        ("/admin/deliveries/<int:delivery_id>/replay", "admin_replay", replay, ["POST"]),
    ]
    for rule, endpoint, view, methods in routes:
        blueprint.add_url_rule(rule, endpoint, view, methods=methods)


def _admit() -> None:
    if not (request.endpoint or "").startswith("cdp.admin_"):
        return
    guard = _state().extension.admin_guard_function
    if guard is None:
        abort(404)
    if not guard():
        abort(403)
    check_csrf()


def _page() -> int:
    try:
        return max(1, int(request.args.get("page", "1")))
    except ValueError:
        return 1


def home() -> Response:
    return redirect(url_for("cdp.admin_groups"))


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
                return redirect(url_for("cdp.admin_group", identifier=created.identifier, created=1))
            except ConflictError as exc:
                errors["identifier"] = str(exc)
    status = 400 if errors else 200
    return render_template("cdp/admin/groups.html", groups=store.list_groups(), errors=errors, form=form), status


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
    page = _page()
    segments = store.list_segments(identifier, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE + 1)
    return render_template(
        "cdp/admin/group.html",
        group=found,
        segments=segments[:PAGE_SIZE],
        page=page,
        has_next=len(segments) > PAGE_SIZE,
        error=error,
        created=request.args.get("created") == "1",
    ), status


def rename_group(identifier: str) -> Any:
    try:
        _state().store.rename_group(identifier, request.form.get("name", ""))
    except NotFoundError:
        abort(404)
    except ProtectedGroupError as exc:
        return group(identifier, error=str(exc), status=409)
    except ValidationError as exc:
        return group(identifier, error=str(exc), status=400)
    return redirect(url_for("cdp.admin_group", identifier=identifier))


def delete_group(identifier: str) -> Any:
    try:
        _state().store.delete_group(identifier)
    except NotFoundError:
        abort(404)
    except ProtectedGroupError as exc:
        return group(identifier, error=str(exc), status=409)
    return redirect(url_for("cdp.admin_groups"))


def segment_members(identifier: str, segment: str) -> Any:
    store = _state().store
    page = _page()
    try:
        members = store.members(identifier, segment, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE + 1)
    except (NotFoundError, ValidationError):
        abort(404)
    return render_template(
        "cdp/admin/segment.html", group=identifier, segment=segment, members=members[:PAGE_SIZE], page=page,
        has_next=len(members) > PAGE_SIZE,
    )


def user_segments(*, status: int = 200) -> Any:
    user_id = request.args.get("user_id", "").strip()
    error, segments = None, None
    if user_id:
        try:
            segments = _state().store.segments_for(user_id)
        except ValidationError as exc:
            error, status = str(exc), 400
    return render_template("cdp/admin/user.html", user_id=user_id, segments=segments, error=error), status


def deliveries() -> Any:
    status = request.args.get("status") or None
    if status is not None and status not in STATUSES:
        abort(400, description=f"status must be one of {', '.join(STATUSES)}")
    page = _page()
    rows = _state().inbox.list(status, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE + 1)
    return render_template(
        "cdp/admin/deliveries.html", deliveries=rows[:PAGE_SIZE], status=status, statuses=STATUSES, page=page,
        has_next=len(rows) > PAGE_SIZE, replayed=request.args.get("replayed"),
    )


def replay(delivery_id: int) -> Any:
    state = _state()
    try:
        state.inbox.replay(delivery_id)
    except NotFoundError:
        abort(404)
    except CDPError as exc:
        abort(409, description=str(exc))
    state.wake_inline_worker()
    return redirect(url_for("cdp.admin_deliveries", replayed=delivery_id))
