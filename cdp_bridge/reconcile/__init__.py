"""Reconciling the segment store with the CDP API (SPEC section 15): ``flask cdp reconcile``."""
