"""The back office under ``/cdp/admin/``: a blueprint nested in ``cdp`` (``admin.views``),
its templates and its stylesheet."""
