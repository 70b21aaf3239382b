"""The demo shop: a small Flask site with cdp_bridge registered on its own database.

It has a landing page, product pages, a basket and checkout, and a login with a few
demo users; pages show the logged-in user's segments. On first run it creates its
SQLite database in the instance folder, the demo users, the activation's segment group
(``demo_shop``, filled by the CDP's webhook) and a hand-made group (``demo_interests``).
The activation's client secret is generated on first run and kept in the instance
folder, never in the repository. ``wsgi.py`` is its entry point.
"""

from .app import create_app

__all__ = ["create_app"]
