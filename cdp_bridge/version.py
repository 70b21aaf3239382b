"""The version of cdp_bridge, written once: ``cdp_bridge.__version__``, the package
metadata (``setup.cfg`` reads it) and ``flask cdp --version`` all take it from here."""

__version__ = "0.2.0"
