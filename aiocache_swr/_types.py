"""The public type of a decorated function: :class:`SWRFunction`.

A protocol, not a class, because what the decorator returns has two shapes
(see :func:`aiocache_swr._function.decorated`): an ``async def`` function for
a function, and an :class:`~aiocache_swr._function.Engine` instance for a
method defined in a class body (it binds to the instance).  Both have every
member below, so ``isinstance(f, SWRFunction)`` holds for either.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    ParamSpec,
    Protocol,
    TypeVar,
    overload,
    runtime_checkable,
)

if TYPE_CHECKING:
    from ._cache import SWRCache
    from ._function import BoundSWRFunction
    from ._info import CacheInfo

__all__ = ["SWRFunction"]

P = ParamSpec("P")
T_co = TypeVar("T_co", covariant=True)
Q = ParamSpec("Q")  # a method's parameters after the first
S = TypeVar("S")  # a method's first parameter: the instance it is bound to
R = TypeVar("R")


@runtime_checkable
class SWRFunction(Protocol[P, T_co]):
    """A coroutine function wrapped by ``swr_cached`` / ``SWRCache.cached``.

    Await it exactly like the original.  It also has ``refresh``,
    ``invalidate``, ``cache_clear`` and ``cache_info``; ``cache`` is the
    :class:`~aiocache_swr.SWRCache` that owns its background work and
    ``namespace`` names its entries in a store.

    ``isinstance(f, SWRFunction)`` checks that ``f`` has these members (a
    runtime-checkable protocol), not how it was made.
    """

    cache: SWRCache
    namespace: str
    __name__: str
    __qualname__: str

    @property
    def __wrapped__(self) -> Callable[P, Awaitable[T_co]]:
        """The function that was decorated."""
        ...

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, T_co]:
        """The cached call (SPEC section 2)."""
        ...

    async def refresh(self, *args: P.args, **kwargs: P.kwargs) -> T_co:
        """Recompute now (inline), store and return the new value."""
        ...

    async def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """Drop the entry of these arguments from memory and the store."""
        ...

    async def cache_clear(self) -> None:
        """Drop every entry of this function, from memory and the store."""
        ...

    def cache_info(self) -> CacheInfo:
        """A snapshot of this function's counters."""
        ...

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> SWRFunction[P, T_co]: ...
    @overload
    def __get__(
        self: SWRFunction[Concatenate[S, Q], R], instance: S, owner: type | None = None
    ) -> BoundSWRFunction[Q, R]: ...
    def __get__(self, instance: object, owner: type | None = None) -> object:
        """Used as a method: bound to ``instance``, which is then part of the key.

        Read on the class (``Repo.method``), it is the function itself, taking
        the instance as its first argument.
        """
        ...
