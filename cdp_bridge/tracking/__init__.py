"""Raptor's tracking (SPEC sections 5 and 10).

``helpers`` are the Jinja globals and ``fields`` turn their arguments into Raptor's
p-numbered parameters. For ``CDP_TRACKING_MODE`` server and hybrid, ``wire`` builds
Raptor's server-side request, ``sender`` sends it off the request path, ``cookies`` sets
the visitor cookies, and ``endpoint`` is hybrid's ``POST /cdp/track``.
"""
