"""Raptor's tracking (SPEC sections 5 and 10), the domain side: ``events`` (the table of
event types) and ``fields`` turn a helper's arguments into Raptor's p-numbered
parameters, ``modes`` is the table of tracking modes; for server and hybrid modes,
``wire`` builds Raptor's server-side request, ``service`` queues a page's events,
``sender`` sends them off the request path and ``outbox`` keeps buys in the database.
The Jinja helpers are in :mod:`cdp_bridge.templating`, ``/cdp/track`` and the cookies in
:mod:`cdp_bridge.web`.
"""
