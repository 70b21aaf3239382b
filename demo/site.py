"""A site on its own database, configured by the environment: its secrets, its back
office password, and the proxies in front of it."""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from cdp_bridge import ConfigurationError
from cdp_bridge.settings import secret_problem


def behind_proxies(app: Flask, environment: dict[str, str]) -> None:
    """``PROXY_COUNT`` proxies (a TLS proxy: 1) in front: Werkzeug's ``ProxyFix`` trusts
    that many ``X-Forwarded-For`` / ``-Proto`` / ``-Host`` hops, so the rate limits see the
    visitor's address and every cookie, the session's included, is ``Secure`` on HTTPS.
    ``SESSION_COOKIE_SECURE`` (default: true behind a proxy) may say otherwise."""
    text = environment.get("PROXY_COUNT", "0").strip() or "0"
    if not text.isdigit() or int(text) > 10:
        raise ConfigurationError(f"PROXY_COUNT: expected the number of proxies in front of the site (0-10), not {text!r}")
    count = int(text)
    if count:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=count, x_proto=count, x_host=count)  # type: ignore[method-assign]
    secure = environment.get("SESSION_COOKIE_SECURE", "").strip().lower()
    if secure and secure not in ("true", "1", "yes", "false", "0", "no"):
        raise ConfigurationError(f"SESSION_COOKIE_SECURE: expected true or false, not {secure!r}")
    app.config["SESSION_COOKIE_SECURE"] = secure in ("true", "1", "yes") if secure else count > 0


#: The shortest SECRET_KEY and SHOP_ADMIN_PASSWORD a site starts with.
MIN_SECRET_KEY_LENGTH, MIN_ADMIN_PASSWORD_LENGTH = 32, 12


def site_secret(environment: dict[str, str]) -> str:
    """The site's SECRET_KEY: required, long, and no placeholder left from the README."""
    key = environment.get("SECRET_KEY", "").strip()
    if not key:
        raise ConfigurationError("SECRET_KEY: SQLALCHEMY_DATABASE_URI is set but SECRET_KEY is not: set a long random"
                                 " SECRET_KEY in the environment or the .env file (sessions and CSRF tokens are signed"
                                 " with it)")
    problem = secret_problem(key, MIN_SECRET_KEY_LENGTH)
    if problem:
        raise ConfigurationError(f"SECRET_KEY: {problem}")
    return key


def admin_password(environment: dict[str, str]) -> str | None:
    """SHOP_ADMIN_PASSWORD, if set: long enough and no placeholder (unset: no back office)."""
    password = environment.get("SHOP_ADMIN_PASSWORD", "").strip()
    if not password:
        return None
    problem = secret_problem(password, MIN_ADMIN_PASSWORD_LENGTH)
    if problem:
        raise ConfigurationError(f"SHOP_ADMIN_PASSWORD: {problem}")
    return password
