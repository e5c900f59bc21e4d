"""A map that forgets: at most *cap* keys, each for at most *ttl* seconds.

For what a node remembers per request or per peer (nonces, endpoints): whatever arrives,
memory stays bounded. The oldest key goes first when the map is full; a key past its
time reads as absent. Not thread-safe: callers hold their own lock.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

__all__ = ["BoundedMap"]

K = TypeVar("K")
V = TypeVar("V")


class BoundedMap(Generic[K, V]):
    """At most *cap* keys, each kept *ttl* seconds from when it was last set."""

    def __init__(self, cap: int, ttl: float, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if cap < 1 or ttl <= 0:
            raise ValueError("cap >= 1 and ttl > 0")
        self.cap, self.ttl, self._clock = cap, ttl, clock
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def _expire(self, now: float) -> None:
        items = self._items
        while items:
            key, (until, _) = next(iter(items.items()))
            if until > now:
                break
            del items[key]

    def set(self, key: K, value: V) -> None:
        """Keep *key* (moved to the newest place) for the map's ttl from now."""
        now = self._clock()
        self._expire(now)
        self._items.pop(key, None)
        # One ttl for all: insertion order is expiry order, and _expire stops early.
        self._items[key] = (now + self.ttl, value)
        while len(self._items) > self.cap:
            self._items.popitem(last=False)

    def get(self, key: K, default: V | None = None) -> V | None:
        hit = self._items.get(key)
        if hit is None or hit[0] <= self._clock():
            return default
        return hit[1]

    def pop(self, key: K, default: V | None = None) -> V | None:
        hit = self._items.pop(key, None)
        if hit is None or hit[0] <= self._clock():
            return default
        return hit[1]

    def __contains__(self, key: object) -> bool:
        hit = self._items.get(key)  # type: ignore[arg-type]
        return hit is not None and hit[0] > self._clock()

    def __len__(self) -> int:
        self._expire(self._clock())
        return len(self._items)

    def __iter__(self) -> Iterator[K]:
        self._expire(self._clock())
        return iter(list(self._items))

    def items(self) -> list[tuple[K, V]]:
        self._expire(self._clock())
        return [(k, v) for k, (_, v) in self._items.items()]
