"""What a page's templates use: :class:`~.page.Page` (the current request as the helpers
see it: user, visitor, consent, nonce, campaign ids), the tracking helpers
(``tracking``), the consent banner, the recommendation blocks (``recommendations``) and
``cdp.track`` from Python (``server_events``). The layer above the state, beside
:mod:`cdp_bridge.web`."""
