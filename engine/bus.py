"""The bus between workers: a narrow interface, and its in-memory twin.

A worker subscribes a channel on the bus once, whatever number of its clients want it, and
publishes every message to the bus; the bus hands each message to the workers that
subscribe, never to all. Four operations make the whole interface (publish, subscribe,
unsubscribe, request with a timeout), so the local brokers of a cluster and NATS can take
this twin's place without the worker noticing.

LocalHub is the in-memory twin: any number of LocalBus endpoints (one per worker) in one
process, delivering synchronously. It is what a single-process server runs on, and what
tests use to put several workers in one process.
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Protocol

from .errors import Timeout, Unavailable
from .packed import Payload

__all__ = ["Bus", "Deliver", "LocalHub", "LocalBus"]

Deliver = Callable[[str, Payload], None]
RequestHandler = Callable[[bytes], Awaitable[bytes] | bytes]


class Bus(Protocol):
    def attach(self, deliver: Deliver) -> None:
        """Where messages for this endpoint's subscriptions go."""

    def subscribe(self, channel: str) -> None: ...

    def unsubscribe(self, channel: str) -> None: ...

    def publish(self, channel: str, payload: Payload) -> None: ...

    async def request(self, subject: str, data: bytes, timeout: float) -> bytes:
        """Ask whoever handles `subject`; Timeout when nobody answers in time."""

    def handle(self, subject: str, handler: RequestHandler) -> None:
        """Answer requests on `subject` from this endpoint."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class LocalHub:
    """The routing table shared by LocalBus endpoints in one process."""

    def __init__(self) -> None:
        self.subscribers: dict[str, list["LocalBus"]] = {}
        self.handlers: dict[str, RequestHandler] = {}

    def bus(self) -> "LocalBus":
        return LocalBus(self)


class LocalBus:
    def __init__(self, hub: LocalHub | None = None):
        self.hub = hub or LocalHub()
        self.deliver: Deliver | None = None
        self.channels: set[str] = set()

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

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        for channel in list(self.channels):
            self.unsubscribe(channel)
