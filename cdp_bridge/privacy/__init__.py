"""Forgetting a person (SPEC section 14): erase them here at once, keep them out for the
hold window, and ask Raptor's GDPR API to delete them, durably, from the queue workers.
Import the modules themselves (``privacy.erasure``, ``privacy.deletions``)."""
