"""A worker's channels: small ids, local subscribers, one encoding per message per worker.

The worker gives every channel a small id, shared by all its connections and announced in
Subscribed, so a delivery costs two bytes of envelope. It subscribes a channel on the bus
when its first local client does and unsubscribes when the last one leaves. A message from
the bus is encoded once per codec in use and the same bytes are queued for every local
subscriber; publish-out middleware runs once per message here, not per subscriber.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from typing import TYPE_CHECKING, Any, Callable

from ._generated import protocol as P
from .bus import Bus
from .errors import LimitExceeded, TickwireError
from .metrics import Metrics
from .middleware import PublishOut, PublishOutSocket
from .packed import Payload

if TYPE_CHECKING:
    from .codec import Codec
    from .socket import Socket

__all__ = ["Channel", "ChannelTable"]

log = logging.getLogger("tickwire.channels")


class Channel:
    # Channels come and go by the thousand per second (SocketCluster's churn benchmark):
    # a new one allocates only what every channel needs; prefixes wait for a delivery.
    __slots__ = ("name", "id", "type_id", "groups", "prefixes", "count", "info", "ready")

    def __init__(self, name: str, channel_id: int, type_id: int):
        self.name = name
        self.id = channel_id
        self.type_id = type_id
        self.info = P.ChannelInfo(name, channel_id, type_id, 0, "")  # what Subscribed says of it
        self.groups: dict[Codec, set[Socket]] = {}  # subscribers by codec
        self.prefixes: dict[Codec, bytes] | None = None
        self.count = 0
        # Pending while the bus declares the channel (a cluster's broker round trip); a
        # subscriber is acknowledged once it is done, so it misses no publish made after.
        self.ready: asyncio.Future[None] | None = None

    def prefix(self, codec: "Codec") -> bytes:
        prefixes = self.prefixes
        if prefixes is None:
            prefixes = self.prefixes = {}
        p = prefixes.get(codec)
        if p is None:
            p = prefixes[codec] = codec.channel_prefix(self.id, self.name)
        return p

    def __repr__(self) -> str:
        return f"Channel({self.name!r}, id={self.id}, subscribers={self.count})"


class ChannelTable:
    def __init__(
        self,
        bus: Bus,
        stats: Metrics,
        type_for: Callable[[str], int],
        max_per_socket: int,
        on_empty: Callable[[str], None] | None = None,
    ):
        self.bus = bus
        self.stats = stats
        self.type_for = type_for
        self.max_per_socket = max_per_socket
        self.by_name: dict[str, Channel] = {}
        self.by_id: dict[int, Channel] = {}
        self._free_ids: list[int] = []
        self._next_id = 1
        self.publish_out: Callable[[PublishOut], None] | None = None
        self.publish_out_socket: Callable[[Any], None] | None = None
        self.to_payload: Callable[[Any], Payload] | None = None
        self.decode: Callable[[Payload], Any] = lambda p: None
        self.on_empty = on_empty

    # -- membership ----------------------------------------------------------------------
    def subscribe(self, sock: "Socket", name: str) -> Channel:
        channels = sock.channels
        ch = self.by_name.get(name)
        if ch is not None and channels is not None and ch.id in channels:
            return ch  # already subscribed: idempotent, as in SocketCluster
        self.check_room(sock)
        if ch is None:
            ch = self.declare(name)
        group = ch.groups.get(sock.codec)
        if group is None:
            group = ch.groups[sock.codec] = set()
        group.add(sock)
        ch.count += 1
        self.bus.set_count(name, ch.count)  # presence: coalesced by the bus
        if channels is None:
            sock.channels = {ch.id: ch}
        else:
            channels[ch.id] = ch
        return ch

    def check_room(self, sock: "Socket", pending: int = 0) -> None:
        """LimitExceeded when `sock` may not take one more channel (besides `pending`
        ones it is waiting for)."""
        if sock.channels is not None and len(sock.channels) + pending >= self.max_per_socket:
            self.stats.limit_errors += 1
            raise LimitExceeded("max_channels_per_connection")

    def declare(self, name: str) -> Channel:
        """The channel `name`, declared on the bus if it is new; nobody is subscribed yet.
        Its `ready` is pending while the bus declares it: a worker subscribes a socket once
        it is done (Worker._subscribe), and releases a channel nobody took."""
        ch = self.by_name.get(name)
        if ch is None:
            ch = Channel(name, self._alloc_id(), self.type_for(name))
            self.by_name[name] = ch
            self.by_id[ch.id] = ch
            ch.ready = self.bus.subscribe(name)
        return ch

    def release(self, ch: Channel) -> None:
        """Undeclare a channel declared for a subscriber that did not take it."""
        if ch.count == 0 and self.by_name.get(ch.name) is ch:
            self._drop(ch)

    def unsubscribe(self, sock: "Socket", ch: Channel) -> None:
        if sock.channels is None or sock.channels.pop(ch.id, None) is None:
            return
        group = ch.groups.get(sock.codec)
        if group is not None and sock in group:
            group.discard(sock)
            ch.count -= 1
            if not group:
                del ch.groups[sock.codec]
            self.bus.set_count(ch.name, ch.count)
        if ch.count == 0:
            self._drop(ch)

    def remove_socket(self, sock: "Socket") -> None:
        if not sock.channels:
            return
        for ch in list(sock.channels.values()):
            self.unsubscribe(sock, ch)

    def _alloc_id(self) -> int:
        if self._free_ids:
            return heapq.heappop(self._free_ids)
        cid = self._next_id
        self._next_id += 1
        return cid

    def _drop(self, ch: Channel) -> None:
        del self.by_name[ch.name]
        del self.by_id[ch.id]
        heapq.heappush(self._free_ids, ch.id)
        self.bus.unsubscribe(ch.name)
        if self.on_empty is not None:
            self.on_empty(ch.name)

    # -- delivery ------------------------------------------------------------------------
    def deliver(self, name: str, payload: Payload) -> None:
        """A message from the bus for a channel this worker subscribes."""
        ch = self.by_name.get(name)
        if ch is None:
            return
        if self.publish_out is not None:
            req = PublishOut(name, payload, self.decode)
            try:
                self.publish_out(req)
            except Exception as exc:
                self._blocked(exc, "publish_out")
                return
            if req._changed:
                assert self.to_payload is not None
                payload = self.to_payload(req._value)
        if self.publish_out_socket is not None:
            self._deliver_each(ch, payload)
            return
        delivered = 0
        for codec, group in ch.groups.items():
            data = codec.channel_message(ch.prefix(codec), payload)
            for sock in group:
                sock.deliver(data)
            delivered += len(group)
        self.stats.deliveries += delivered

    def _blocked(self, exc: BaseException, kind: str) -> None:
        """A delivery middleware refused a message; anything but a TickwireError is a
        bug in the middleware, and its traceback goes to the log."""
        self.stats.middleware_blocks += 1
        if not isinstance(exc, TickwireError):
            log.error("%s middleware failed", kind, exc_info=exc)

    def _deliver_each(self, ch: Channel, payload: Payload) -> None:
        """The opt-in slow path: publish_out_socket middleware once per recipient."""
        assert self.publish_out_socket is not None and self.to_payload is not None
        for codec, group in ch.groups.items():
            shared = codec.channel_message(ch.prefix(codec), payload)
            for sock in list(group):
                req = PublishOutSocket(sock, ch.name, payload, self.decode)
                try:
                    self.publish_out_socket(req)
                except Exception as exc:
                    self._blocked(exc, "publish_out_socket")
                    continue
                if req._changed:
                    sock.deliver(codec.channel_message(ch.prefix(codec), self.to_payload(req._value)))
                else:
                    sock.deliver(shared)
                self.stats.deliveries += 1
