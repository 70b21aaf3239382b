"""The demo's extension objects, shared by its modules (the Flask convention)."""

from __future__ import annotations

from flask_sqlalchemy import SQLAlchemy

from cdp_bridge import CDP

db = SQLAlchemy()
cdp = CDP()
