"""``BoundedMemo``: the one bounded memo for values derived from client-chosen keys; and
``ObjectTable``, for values derived from objects that are the same request after request.

A leaf module (no mtlsauth imports), so every layer can use it: the verification cache, CRL
and OCSP memos, the trusted-peer cache, the log limiters.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["BoundedMemo", "ObjectTable"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedMemo(Generic[K, V]):
    """A memo of values derived from client-chosen keys, which a flood cannot empty.

    A new key enters a probation segment; a key asked for again moves to the protected
    segment. Each segment is an LRU of its own (``size`` entries each), so keys seen once, a
    flood of unique inputs, only ever evict each other. ``None`` is not a storable value.

    ``max_key_len`` bounds the memory a key may hold: ``put`` ignores a key (bytes, str)
    longer than that, so a client cannot park megabytes in an entry; such a key is simply
    computed again each time.
    """

    __slots__ = ("_lock", "_max_key_len", "_probation", "_protected", "_size")

    def __init__(self, size: int, *, max_key_len: int | None = None) -> None:
        self._size = size
        self._max_key_len = max_key_len
        self._probation: OrderedDict[K, V] = OrderedDict()
        self._protected: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        value = self._protected.get(key)
        if value is not None:
            try:
                self._protected.move_to_end(key)
            except KeyError:  # evicted by another thread meanwhile
                pass
            return value
        value = self._probation.get(key)
        if value is not None:
            with self._lock:
                if self._probation.pop(key, None) is not None:
                    self._protected[key] = value
                    while len(self._protected) > self._size:
                        self._protected.popitem(last=False)
        return value

    def put(self, key: K, value: V) -> None:
        limit = self._max_key_len
        if limit is not None and len(key) > limit:  # type: ignore[arg-type]
            return
        with self._lock:
            if key in self._protected:
                self._protected[key] = value
                return
            self._probation[key] = value
            self._probation.move_to_end(key)
            while len(self._probation) > self._size:
                self._probation.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._probation.clear()
            self._protected.clear()

    def __contains__(self, key: object) -> bool:
        """Membership without touching the order (the cheapest look-up, for keys that only
        trusted configuration can insert, such as the trusted-peer cache)."""
        return key in self._protected or key in self._probation

    def __len__(self) -> int:
        return len(self._probation) + len(self._protected)


class ObjectTable(dict[int, V]):
    """Values derived from objects, found by the object's ``id()``: ``table.get(id(obj))``.
    Each value must hold its object, and a caller counts a match only when that object
    ``is`` the one it asks about (held, its ``id()`` cannot be reused while in the table).
    ``get`` is the dictionary's own, which is why this is a ``dict``: these tables are read
    several times per verification (the CAs of a chain, the same objects on every request),
    and a memo's Python-level ``get`` costs several times the look-up itself.

    Bounded by starting afresh: ``put`` on a full table empties it first. Unlike
    ``BoundedMemo``, a flood of new objects (certificates a client presents, each parsed
    anew) does empty it; what that costs the objects that keep coming back is one
    computation each per ``size`` new objects, and those objects stay the same (their bytes
    are remembered by a ``BoundedMemo``, which a flood cannot empty).
    """

    __slots__ = ("size",)

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def put(self, key: int, value: V) -> None:
        if len(self) >= self.size:
            self.clear()
        self[key] = value
