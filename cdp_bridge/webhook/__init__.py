"""The activation webhook's domain side: body formats, credentials, signatures and the
sample activation. The HTTP view is :mod:`cdp_bridge.web.webhook`; the deliveries it
records live in :mod:`cdp_bridge.deliveries`. Import the modules themselves: this package
imports nothing."""
