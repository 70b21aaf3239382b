"""Exporting the site's records to Raptor's Streaming API: what is exported
(``export.sources``), batching and sending (``export.runner``), the HTTP client
(``export.streaming``)."""
