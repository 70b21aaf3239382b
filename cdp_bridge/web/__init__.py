"""cdp_bridge's HTTP faces, each a view on the ``cdp`` blueprint: the activation webhook
(``webhook``), hybrid's ``POST /cdp/track`` (``track``), server mode's ``GET /cdp/click``
(``click``), ``GET /cdp/metrics`` (``metrics``), the back office (``admin``), and the
visitor cookies set after each page (``cookies``). The layer above the state: they read
the request and call the domain packages, which never import them."""
