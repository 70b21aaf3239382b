"""The back office under ``/cdp/admin/``: a blueprint nested in ``cdp`` (``web.admin.views``),
its templates and its stylesheet."""
