"""The activation webhook: the HTTP view, body formats, credentials and signatures. The
deliveries it records live in :mod:`cdp_bridge.deliveries`. Import the modules themselves
(``webhook.view``, ``webhook.formats`` …): this package imports nothing."""
