"""Raptor's tracking in a site's pages: the Jinja helpers (``tracking.helpers``) and the
formatting of their fields (``tracking.fields``)."""
