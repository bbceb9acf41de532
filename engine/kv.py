"""A small key-value store with expiry, kept by each broker (and by the in-memory bus twin).

Server code reaches it through the bus (`await worker.bus.kv_get(key)`); keys are owned by
brokers by rendezvous hash, like channels. It is VOLATILE: a broker keeps it in memory
only, so a restarted broker starts empty, and the keys it owned are gone (the other
brokers' keys are untouched). Use it for what a game can rebuild or afford to lose
(matchmaking tickets, short locks, rate counters), not for accounts or progress.

Time is an argument: every operation takes `now` (seconds on the caller's monotonic
clock), so tests step time without sleeping. Expired keys vanish from reads at once and
from memory at the next `expire(now)`, which a broker runs about once a second; a heap of
deadlines makes that sweep proportional to what expires, not to the store's size.
"""

from __future__ import annotations

import heapq

from .errors import LimitExceeded

__all__ = ["KVStore", "MAX_KV_KEYS", "MAX_KV_VALUE"]

MAX_KV_KEYS = 100_000
MAX_KV_VALUE = 64 * 1024


class KVStore:
    __slots__ = ("max_keys", "max_value", "data", "_heap")

    def __init__(self, max_keys: int = MAX_KV_KEYS, max_value: int = MAX_KV_VALUE):
        self.max_keys = max_keys
        self.max_value = max_value
        self.data: dict[str, tuple[bytes, float | None]] = {}  # key -> (value, deadline)
        self._heap: list[tuple[float, str]] = []  # (deadline, key); stale entries skipped

    def __len__(self) -> int:
        return len(self.data)

    def get(self, key: str, now: float) -> bytes | None:
        entry = self.data.get(key)
        if entry is None:
            return None
        value, deadline = entry
        if deadline is not None and deadline <= now:
            del self.data[key]
            return None
        return value

    def set(self, key: str, value: bytes, now: float, ttl: float | None = None) -> None:
        """Store `value`; with `ttl` (seconds) it expires at now + ttl. ttl <= 0 deletes."""
        if len(value) > self.max_value:
            raise LimitExceeded(f"a value of {len(value)} bytes is over max_kv_value ({self.max_value})")
        if ttl is not None and ttl <= 0:
            self.data.pop(key, None)
            return
        if key not in self.data and len(self.data) >= self.max_keys:
            self.expire(now)
            if len(self.data) >= self.max_keys:
                raise LimitExceeded(f"the store holds max_kv_keys ({self.max_keys}) keys")
        deadline = None if ttl is None else now + ttl
        self.data[key] = (bytes(value), deadline)
        if deadline is not None:
            heapq.heappush(self._heap, (deadline, key))
            if len(self._heap) > 2 * len(self.data) + 1024:
                self._compact()

    def delete(self, key: str, now: float) -> bool:
        """Remove `key`; whether it was there (an expired key counts as absent)."""
        entry = self.data.pop(key, None)
        return entry is not None and (entry[1] is None or entry[1] > now)

    def expire(self, now: float) -> int:
        """Drop every key whose deadline has passed; how many were dropped."""
        heap, data = self._heap, self.data
        dropped = 0
        while heap and heap[0][0] <= now:
            deadline, key = heapq.heappop(heap)
            entry = data.get(key)
            # Only the heap entry of the key's current deadline counts: a key set again
            # since left a stale entry behind.
            if entry is not None and entry[1] == deadline:
                del data[key]
                dropped += 1
        return dropped

    def _compact(self) -> None:
        self._heap = [(d, k) for k, (_, d) in self.data.items() if d is not None]
        heapq.heapify(self._heap)
