"""The bus between workers: a narrow interface, and its in-memory twin.

A worker subscribes a channel on the bus once, whatever number of its clients want it, and
publishes every message to the bus; the bus hands each message to the workers that
subscribe, never to all. Four operations make the whole interface (publish, subscribe,
unsubscribe, request with a timeout), so the local brokers of a cluster and NATS can take
this twin's place without the worker noticing.

Besides those four, the bus carries two small services whose state must live where every
worker can reach it, so on the bus's far side and not in any worker: presence (each worker
reports its local subscriber count per channel with `set_count`; `presence` sums them over
the cluster) and a key-value store with expiry (`kv_get`, `kv_set`, `kv_delete`), volatile
by design. They are on this interface rather than a second one because they share its
owner and its lifecycle: the brokers keep them (brokerbus.py), NATS would keep them in
JetStream KV, and server code reaches them as `worker.bus.kv_get(key)` whichever runs.

LocalHub is the in-memory twin: any number of LocalBus endpoints (one per worker) in one
process, delivering synchronously. It is what a single-process server runs on, and what
tests use to put several workers in one process. Its KV store reads `clock` (monotonic
seconds by default; a test passes its own to step time).
"""

from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable, Protocol

from .errors import Timeout, Unavailable
from .kv import KVStore
from .packed import Payload

__all__ = ["Bus", "Deliver", "LocalHub", "LocalBus"]

Deliver = Callable[[str, Payload], None]
RequestHandler = Callable[[bytes], Awaitable[bytes] | bytes]


class Bus(Protocol):
    def attach(self, deliver: Deliver) -> None:
        """Where messages for this endpoint's subscriptions go."""

    def subscribe(self, channel: str) -> asyncio.Future[None] | None:
        """Start getting `channel`'s publishes; an awaitable when that takes a round trip
        (it completes once a publish from anywhere would reach this endpoint)."""

    def unsubscribe(self, channel: str) -> None: ...

    def publish(self, channel: str, payload: Payload) -> None: ...

    async def request(self, subject: str, data: bytes, timeout: float) -> bytes:
        """Ask whoever handles `subject`; Timeout when nobody answers in time."""

    def handle(self, subject: str, handler: RequestHandler) -> None:
        """Answer requests on `subject` from this endpoint."""

    def set_count(self, channel: str, count: int) -> None:
        """This endpoint now has `count` local subscribers on `channel` (0: none)."""

    async def presence(self, channel: str) -> int:
        """Subscribers on `channel` over every endpoint (as last reported)."""

    async def kv_get(self, key: str) -> bytes | None: ...

    async def kv_set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """Store `value`; with `ttl` it expires after that many seconds."""

    async def kv_delete(self, key: str) -> bool:
        """Remove `key`; whether it was there."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class LocalHub:
    """The routing table shared by LocalBus endpoints in one process."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.subscribers: dict[str, list["LocalBus"]] = {}
        self.handlers: dict[str, RequestHandler] = {}
        self.endpoints: list["LocalBus"] = []
        self.kv = KVStore()
        self.clock = clock

    def bus(self) -> "LocalBus":
        return LocalBus(self)


class LocalBus:
    def __init__(self, hub: LocalHub | None = None):
        self.hub = hub or LocalHub()
        self.hub.endpoints.append(self)
        self.deliver: Deliver | None = None
        self.channels: set[str] = set()
        # This endpoint's local subscriber counts. Kept here and summed when asked, because
        # set_count runs on every subscribe and presence() is rare.
        self.counts: dict[str, int] = {}

    def attach(self, deliver: Deliver) -> None:
        self.deliver = deliver

    def subscribe(self, channel: str) -> None:
        if channel not in self.channels:
            self.channels.add(channel)
            self.hub.subscribers.setdefault(channel, []).append(self)

    def unsubscribe(self, channel: str) -> None:
        if channel in self.channels:
            self.channels.discard(channel)
            subs = self.hub.subscribers[channel]
            subs.remove(self)
            if not subs:
                del self.hub.subscribers[channel]

    def publish(self, channel: str, payload: Payload) -> None:
        for endpoint in self.hub.subscribers.get(channel, ()):
            if endpoint.deliver is not None:
                endpoint.deliver(channel, payload)

    def handle(self, subject: str, handler: RequestHandler) -> None:
        self.hub.handlers[subject] = handler

    async def request(self, subject: str, data: bytes, timeout: float) -> bytes:
        handler = self.hub.handlers.get(subject)
        if handler is None:
            raise Unavailable(f"nobody handles {subject!r}")
        result = handler(data)
        if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
            try:
                return await asyncio.wait_for(result, timeout)
            except asyncio.TimeoutError:
                raise Timeout(f"no answer on {subject!r} within {timeout} s") from None
        return result  # type: ignore[return-value]

    def set_count(self, channel: str, count: int) -> None:
        if count > 0:
            self.counts[channel] = count
        else:
            self.counts.pop(channel, None)

    async def presence(self, channel: str) -> int:
        return sum(b.counts.get(channel, 0) for b in self.hub.endpoints)

    async def kv_get(self, key: str) -> bytes | None:
        return self.hub.kv.get(key, self.hub.clock())

    async def kv_set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        self.hub.kv.set(key, value, self.hub.clock(), ttl)

    async def kv_delete(self, key: str) -> bool:
        return self.hub.kv.delete(key, self.hub.clock())

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        for channel in list(self.channels):
            self.unsubscribe(channel)
        self.counts.clear()
        if self in self.hub.endpoints:
            self.hub.endpoints.remove(self)
