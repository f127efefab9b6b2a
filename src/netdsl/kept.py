"""What a process keeps between loads: a bounded map, least recently used dropped first.

A training script loads its spec at start-up, a notebook re-runs the cell that loads it: the
parse (imports.parse) and the checked plan (plancache) of the same input are kept, so the second
load does neither again. Loads may run in threads (a DataLoader's workers, a server): a lock
guards the map.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class Kept(Generic[V]):
    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict[Hashable, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: Hashable, value: V) -> None:
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
