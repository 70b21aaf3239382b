"""A wrapper that keeps secret values out of reprs, logs and error messages."""

from __future__ import annotations

import hmac


class Secret:
    """Holds a secret string; prints as ``Secret('***')`` and compares in constant time."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the one place that must send or compare it."""
        return self._value

    def matches(self, candidate: str | bytes) -> bool:
        """Constant-time comparison with a candidate presented by a caller."""
        if isinstance(candidate, str):
            candidate = candidate.encode("utf-8")
        return hmac.compare_digest(self._value.encode("utf-8"), candidate)

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and self.matches(other._value)

    def __hash__(self) -> int:
        return hash(("Secret", len(self._value)))
