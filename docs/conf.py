"""Sphinx configuration of cdp_bridge's documentation: the pages of docs/ (Markdown, read
by MyST), the changelog, and an API reference made from the docstrings. Built in CI with
``-W``: a warning fails the build."""

from cdp_bridge import __version__

project = "cdp_bridge"
author = "The cdp_bridge developers"
release = __version__
version = ".".join(__version__.split(".")[:2])
extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build"]
# Pages link to each other's sections by GitHub-style anchors, which GitHub renders and
# Sphinx does not resolve: not an error here.
suppress_warnings = ["myst.header", "myst.xref_missing"]
myst_heading_anchors = 3
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": False}
nitpicky = False
html_theme = "alabaster"
html_title = f"cdp_bridge {release}"
