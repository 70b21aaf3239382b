"""CSRF protection for the back office's forms: a per-session token, checked on every POST.

The token lives in the signed session cookie (so the app needs a ``SECRET_KEY``) and is
compared in constant time; a POST without the right token is refused with 400 before
the view runs.
"""

from __future__ import annotations

import hmac
import secrets

from flask import abort, current_app, request, session

SESSION_KEY = "_cdp_csrf_token"
FORM_FIELD = "csrf_token"


def csrf_token() -> str:
    """The session's token, made on first use (a Jinja global for the forms)."""
    if not current_app.secret_key:
        raise RuntimeError("the cdp back office needs app.config['SECRET_KEY'] for its CSRF protection")
    token = session.get(SESSION_KEY)
    if not token:
        token = session[SESSION_KEY] = secrets.token_urlsafe(32)
    return str(token)


def check_csrf() -> None:
    """Abort with 400 unless a POST carries the session's token."""
    if request.method != "POST":
        return
    expected = session.get(SESSION_KEY, "")
    offered = request.form.get(FORM_FIELD, "")
    if not expected or not hmac.compare_digest(str(expected).encode(), offered.encode()):
        abort(400, description="The form has expired or did not come from this site (CSRF token missing or wrong). Reload the page and try again.")
