"""The activation webhook: the HTTP view, body formats, credentials, signatures, the
delivery inbox and the queue workers. Import the modules themselves (``webhook.view``,
``webhook.inbox`` …): this package imports nothing, so the store layers below can use
the inbox without loading the HTTP view."""
