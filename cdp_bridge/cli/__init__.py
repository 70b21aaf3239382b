"""``flask cdp``: the command group with every command registered on it.

Registered by ``CDP.init_app`` and through the ``flask.commands`` entry point.
"""

from . import commands, export  # noqa: F401 - importing them registers their commands
from .group import cdp_cli

__all__ = ["cdp_cli"]
