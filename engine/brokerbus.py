"""BrokerBus: the Bus (bus.py) of a worker in a cluster, over the brokers' Unix sockets.

Every channel, request subject and KV key has one owning broker, chosen by rendezvous
(highest random weight) hashing of its name over the broker ids: each broker scores the
name, the highest score owns it. Adding a broker moves to it only the names it now wins,
about 1/(M+1) of them, and moves nothing between the old brokers.

The bus connects to every broker and keeps what it has declared (subscribed channels,
handled subjects, local subscriber counts) so that it can declare it again: when a broker
dies the link drops, the bus retries with a jittered exponential backoff
(`reconnect_min`..`reconnect_max`), and the moment a restarted broker accepts, it re-sends
every subscription, handler and count that broker owns, in one coalesced write, before
anything else can use the link. Publishes for a broker that is down are dropped and
counted (`stats.dropped_down`), never queued: a game's messages are stale within a tick,
and an unbounded queue would turn a broker restart into a memory problem for every worker.
Requests, presence and KV calls for a down broker fail at once with Unavailable.

Presence counts are coalesced: `set_count()` records the worker's local count and marks
the channel; every `presence_interval` the marked channels' counts go to their owners in
one COUNTS frame each. `presence()` flushes pending counts first (the same link keeps
order), so a worker reads its own changes.

Mapping to NATS (the many-host backend, DESIGN.md "Many hosts"): a channel is a subject
(publish = PUB, subscribe once per worker = SUB, unsubscribe = UNSUB); request/handle are
NATS request-reply with a queue group per subject (what brokers do with their round-robin
handler lists), and "no responders" maps to Unavailable; KV maps to a JetStream KV bucket
(TTL per bucket or per message); presence maps to each worker putting its counts in a KV
bucket under `presence.<channel>.<worker>` (with a TTL refreshed while alive) and
`presence()` summing them. Rendezvous hashing and re-declaration disappear: NATS routes by
subject and the client library resubscribes after reconnecting.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
import math
import os
import random
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping, Sequence

from .bus import Deliver, RequestHandler
from .errors import (
    BadRequest,
    ErrorCode,
    Forbidden,
    InternalError,
    LimitExceeded,
    NotFound,
    RemoteError,
    TickwireError,
    Timeout,
    Unauthenticated,
    Unavailable,
    wire_error,
)
from .ipc import (
    MAX_BUFFER,
    MAX_FRAME,
    IPCError,
    Link,
    Op,
    Rep,
    Req,
    counts_frames,
    decode,
    handle_frame,
    hello_frame,
    kv_del_frame,
    kv_get_frame,
    kv_set_frame,
    presence_frame,
    pub_fields,
    pub_frame,
    rep_frame,
    req_frame,
    sub_frame,
    unsub_frame,
)
from .packed import Payload

__all__ = ["BrokerBus", "BusSettings", "BusStats", "owner", "parse_brokers", "format_brokers", "BROKERS_ENV"]

log = logging.getLogger("tickwire.bus")
PUB = Op.PUB

BROKERS_ENV = "TICKWIRE_BROKERS"  # "0=/path/broker-0.sock,1=/path/broker-1.sock"


def owner(name: str, broker_ids: Sequence[int]) -> int:
    """The broker that owns `name` (a channel, subject or key): rendezvous hashing.

    blake2b, not hash(): every process must agree, and str hashes are salted per process.
    """
    if len(broker_ids) == 1:
        return broker_ids[0]
    key = name.encode()
    best_id, best = broker_ids[0], -1
    for bid in broker_ids:
        weight = int.from_bytes(hashlib.blake2b(b"%d\x00" % bid + key, digest_size=8).digest(), "little")
        if weight > best or (weight == best and bid > best_id):
            best_id, best = bid, weight
    return best_id


def parse_brokers(spec: str) -> dict[int, str]:
    """'0=/run/a.sock,1=/run/b.sock' -> {0: '/run/a.sock', 1: '/run/b.sock'}."""
    brokers: dict[int, str] = {}
    for item in spec.split(","):
        if not item.strip():
            continue
        bid, sep, path = item.partition("=")
        if not sep or not path:
            raise ValueError(f"broker spec {item!r} is not ID=PATH")
        brokers[int(bid)] = path
    return brokers


def format_brokers(brokers: Mapping[int, str]) -> str:
    return ",".join(f"{bid}={path}" for bid, path in sorted(brokers.items()))


@dataclass(frozen=True)
class BusSettings:
    # Retries after a broker drops: reconnect_min, doubling up to reconnect_max, each
    # jittered x0.5-1.5. The cap is low on purpose: a refused connect to a local Unix socket
    # costs microseconds, and the cap bounds how long publishes are still lost after a
    # restarted broker listens again (the last retry can come up to 1.5 x cap later).
    reconnect_min: float = 0.02
    reconnect_max: float = 0.1
    start_timeout: float = 5.0  # start() waits this long for every broker, then goes on retrying
    presence_interval: float = 0.05  # counts are coalesced over this long
    call_timeout: float = 2.0  # kv_* and presence()
    max_frame: int = MAX_FRAME
    max_buffer: int = MAX_BUFFER  # per broker link; publishes past it are dropped and counted
    owner_cache: int = 65536  # names whose owner is remembered (cleared when full)


class BusStats:
    __slots__ = (
        "published",
        "dropped_down",
        "dropped_full",
        "received",
        "requests",
        "request_timeouts",
        "served",
        "connects",
        "disconnects",
    )

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


_ERRORS: dict[int, type[TickwireError]] = {
    cls.code: cls
    for cls in (BadRequest, NotFound, Forbidden, Timeout, LimitExceeded, InternalError, Unauthenticated, Unavailable)
}


def _error(status: int, data: bytes) -> TickwireError:
    message = data.decode(errors="replace")
    cls = _ERRORS.get(status)
    return cls(message) if cls is not None else RemoteError(status, message)


Connector = Callable[[Callable[[], Link], str], Awaitable[Any]]


class _Remote:
    """One broker as the bus sees it."""

    __slots__ = ("id", "path", "link", "ready", "gone", "task", "connections", "settling")

    def __init__(self, broker_id: int, path: str):
        self.id = broker_id
        self.path = path
        self.link: Link | None = None
        self.ready = asyncio.Event()  # set at the first connection
        self.gone: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None
        self.connections = 0
        self.settling: asyncio.Task[None] | None = None  # the barrier this tick's SUBs wait on


class BrokerBus:
    """A worker's Bus over the brokers `brokers`: {broker id: Unix socket path}, or a list
    of paths whose positions are the ids (ids may arrive as strings, from JSON).

    `name` identifies the worker in the brokers' logs. `connect(factory, path)` opens a
    connection (default: loop.create_unix_connection); a test can inject one that fails or
    delays. `jitter()` returns [0, 1) for the backoff.
    """

    def __init__(
        self,
        brokers: Mapping[int, str] | Mapping[str, str] | Sequence[str],
        name: str = "worker",
        *,
        settings: BusSettings | None = None,
        connect: Connector | None = None,
        jitter: Callable[[], float] = random.random,
    ):
        if isinstance(brokers, str):
            brokers = parse_brokers(brokers)
        items = brokers.items() if isinstance(brokers, Mapping) else enumerate(brokers)
        paths = {int(bid): str(path) for bid, path in items}
        if not paths:
            raise ValueError("a BrokerBus needs at least one broker")
        self.name = name
        self.settings = settings or BusSettings()
        self.remotes: dict[int, _Remote] = {bid: _Remote(bid, path) for bid, path in sorted(paths.items())}
        self._ids = tuple(self.remotes)
        self._owners: dict[str, _Remote] = {}
        self._connect = connect
        self._jitter = jitter
        self.deliver: Deliver | None = None
        self.channels: set[str] = set()
        self.handlers: dict[str, RequestHandler] = {}
        self.counts: dict[str, int] = {}
        self._dirty: set[str] = set()
        self._count_timer: asyncio.TimerHandle | None = None
        self._pending: dict[int, tuple[asyncio.Future[tuple[int, bytes]], _Remote]] = {}
        self._next_rid = 0
        self._links: dict[Link, _Remote] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stats = BusStats()

    @classmethod
    def from_env(cls, name: str = "worker", env: Mapping[str, str] | None = None, **kwargs: Any) -> "BrokerBus":
        """The bus a supervisor describes in TICKWIRE_BROKERS."""
        spec = (env if env is not None else os.environ).get(BROKERS_ENV, "")
        return cls(parse_brokers(spec), name=name, **kwargs)

    def owner_of(self, name: str) -> int:
        return self._remote_for(name).id

    def _remote_for(self, name: str) -> _Remote:
        r = self._owners.get(name)
        if r is None:
            if len(self._owners) >= self.settings.owner_cache:
                self._owners.clear()  # publishes may name any channel: keep the cache bounded
            r = self._owners[name] = self.remotes[owner(name, self._ids)]
        return r

    # -- Bus: channels -----------------------------------------------------------------------
    def attach(self, deliver: Deliver) -> None:
        self.deliver = deliver

    def subscribe(self, channel: str) -> asyncio.Future[None] | None:
        """Declare `channel` to its owner; the returned awaitable completes once the owner
        has the SUB, so a publish made anywhere after that reaches this worker. None when
        the channel was declared before, or its owner is down (it gets every channel when
        it is back)."""
        if channel in self.channels:
            return None
        self.channels.add(channel)
        r = self._remote_for(channel)
        if r.link is None:
            return None
        r.link.send(sub_frame(channel))
        if r.settling is None:
            r.settling = asyncio.ensure_future(self._settle(r))
        return r.settling

    def unsubscribe(self, channel: str) -> None:
        if channel not in self.channels:
            return
        self.channels.discard(channel)
        link = self._remote_for(channel).link
        if link is not None:
            link.send(unsub_frame(channel))

    def publish(self, channel: str, payload: Payload) -> None:
        link = self._remote_for(channel).link
        if link is None:
            self.stats.dropped_down += 1
            return
        frame = pub_frame(channel, payload.type_id, payload.body)
        if len(frame) - 4 > self.settings.max_frame:
            raise LimitExceeded(f"a publish of {len(frame)} bytes is over the bus's max_frame")
        if link.offer(frame):
            self.stats.published += 1
        else:
            self.stats.dropped_full += 1

    # -- Bus: requests -----------------------------------------------------------------------
    def handle(self, subject: str, handler: RequestHandler) -> None:
        new = subject not in self.handlers
        self.handlers[subject] = handler
        if new:
            link = self._remote_for(subject).link
            if link is not None:
                link.send(handle_frame(subject))

    async def request(self, subject: str, data: bytes, timeout: float) -> bytes:
        self.stats.requests += 1
        timeout_ms = max(1, math.ceil(timeout * 1000))
        status, body = await self._ask(
            self._remote_for(subject), lambda rid: req_frame(rid, timeout_ms, subject, data), timeout, subject
        )
        if status:
            raise _error(status, body)
        return body

    # -- Bus: presence and KV ----------------------------------------------------------------
    def set_count(self, channel: str, count: int) -> None:
        if count > 0:
            self.counts[channel] = count
        else:
            self.counts.pop(channel, None)
        self._dirty.add(channel)
        if self._count_timer is None and self.loop is not None and not self._closing:
            self._count_timer = self.loop.call_later(self.settings.presence_interval, self._send_counts)

    async def presence(self, channel: str) -> int:
        if self._dirty:
            self._send_counts()  # read-your-writes: the counts precede the query on the link
        status, body = await self._ask(
            self._remote_for(channel), lambda rid: presence_frame(rid, channel), self.settings.call_timeout, channel
        )
        if status:
            raise _error(status, body)
        return int.from_bytes(body[:4], "little")

    async def kv_get(self, key: str) -> bytes | None:
        status, body = await self._ask(
            self._remote_for(key), lambda rid: kv_get_frame(rid, key), self.settings.call_timeout, key
        )
        if status == ErrorCode.NOT_FOUND:
            return None
        if status:
            raise _error(status, body)
        return body

    async def kv_set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """Store `value` under `key`, expiring after `ttl` seconds (None: never)."""
        if ttl is not None and ttl <= 0:
            await self.kv_delete(key)
            return
        if len(value) + len(key) + 64 > self.settings.max_frame:
            raise LimitExceeded(f"a value of {len(value)} bytes is over the bus's max_frame")
        ttl_ms = 0 if ttl is None else max(1, math.ceil(ttl * 1000))
        status, body = await self._ask(
            self._remote_for(key), lambda rid: kv_set_frame(rid, ttl_ms, key, bytes(value)), self.settings.call_timeout, key
        )
        if status:
            raise _error(status, body)

    async def kv_delete(self, key: str) -> bool:
        """Remove `key`; whether it was there."""
        status, body = await self._ask(
            self._remote_for(key), lambda rid: kv_del_frame(rid, key), self.settings.call_timeout, key
        )
        if status:
            raise _error(status, body)
        return body == b"\x01"

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._closing = False
        for r in self.remotes.values():
            r.task = self.loop.create_task(self._keep_connected(r))
        try:
            async with asyncio.timeout(self.settings.start_timeout):
                for r in self.remotes.values():
                    await r.ready.wait()
        except TimeoutError:
            down = [r.id for r in self.remotes.values() if r.link is None]
            log.warning("%s: brokers %s not reachable yet; retrying in the background", self.name, down)
        if self._dirty and self._count_timer is None:
            self._count_timer = self.loop.call_later(self.settings.presence_interval, self._send_counts)

    async def close(self) -> None:
        self._closing = True
        if self._count_timer is not None:
            self._count_timer.cancel()
            self._count_timer = None
        tasks = [r.task for r in self.remotes.values() if r.task is not None] + list(self._tasks)
        for task in tasks:
            task.cancel()
        for r in self.remotes.values():
            if r.link is not None:
                r.link.close()  # flushed first; the broker forgets this worker's state
        self._fail_pending(None, "the bus is closed")
        await asyncio.gather(*tasks, return_exceptions=True)

    def is_connected(self, broker_id: int | None = None) -> bool:
        remotes = self.remotes.values() if broker_id is None else (self.remotes[broker_id],)
        return all(r.link is not None for r in remotes)

    # -- connection management ---------------------------------------------------------------
    async def _keep_connected(self, r: _Remote) -> None:
        loop = self.loop
        assert loop is not None
        s = self.settings
        delay = s.reconnect_min
        while not self._closing:
            link = Link(self, max_frame=s.max_frame, max_buffer=s.max_buffer, name=f"{self.name}->broker-{r.id}")
            self._links[link] = r
            r.gone = loop.create_future()
            try:
                if self._connect is not None:
                    await self._connect(lambda: link, r.path)
                else:
                    await loop.create_unix_connection(lambda: link, r.path)
            except OSError:
                self._links.pop(link, None)
                await asyncio.sleep(delay * (0.5 + self._jitter()))
                delay = min(delay * 2, s.reconnect_max)
                continue
            delay = s.reconnect_min
            await r.gone  # set by lost(); then reconnect

    def opened(self, link: Link) -> None:
        """A broker accepted us: declare everything it owns, before anything else."""
        r = self._links[link]
        r.link = link
        r.connections += 1
        self.stats.connects += 1
        link.send(hello_frame(self.name))
        remote_for = self._remote_for
        for channel in self.channels:
            if remote_for(channel) is r:
                link.send(sub_frame(channel))
        for subject in self.handlers:
            if remote_for(subject) is r:
                link.send(handle_frame(subject))
        counts = [(ch, n) for ch, n in self.counts.items() if remote_for(ch) is r]
        for frame in counts_frames(counts, self.settings.max_frame):
            link.send(frame)
        if r.connections > 1:
            log.info("%s: reconnected to broker %d, re-declared %d channels", self.name, r.id, len(self.channels))
        r.ready.set()

    def lost(self, link: Link, exc: Exception | None) -> None:
        r = self._links.pop(link, None)
        if r is None:
            return
        if r.link is link:
            r.link = None
            self.stats.disconnects += 1
            if not self._closing:
                log.warning("%s: lost broker %d (%s); reconnecting", self.name, r.id, exc or "closed")
            self._fail_pending(r, f"broker {r.id} went away")
        if r.gone is not None and not r.gone.done():
            r.gone.set_result(None)

    def _fail_pending(self, r: _Remote | None, message: str) -> None:
        for rid, (fut, rr) in list(self._pending.items()):
            if r is None or rr is r:
                del self._pending[rid]
                if not fut.done():
                    fut.set_result((ErrorCode.UNAVAILABLE, message.encode()))

    # -- what brokers send -------------------------------------------------------------------
    def received(self, link: Link, frames: list[bytes]) -> None:
        deliver = self.deliver
        channels = self.channels
        stats = self.stats
        for frame in frames:
            if frame[4] == PUB:
                # The hot path, before the match: no message object (see ipc.pub_fields).
                channel, type_id, body = pub_fields(frame)
                stats.received += 1
                if deliver is not None and channel in channels:
                    try:
                        deliver(channel, Payload(type_id, body))
                    except Exception:
                        log.exception("%s: delivering on %r failed", self.name, channel)
                continue
            msg = decode(frame)
            match msg:
                case Rep(rid, status, data):
                    entry = self._pending.pop(rid, None)
                    if entry is not None and not entry[0].done():
                        entry[0].set_result((status, data))
                case Req(bid, timeout_ms, subject, data):
                    self._serve(link, bid, timeout_ms, subject, data)
                case _:
                    raise IPCError(f"a broker may not send {type(msg).__name__}")

    def _serve(self, link: Link, bid: int, timeout_ms: int, subject: str, data: bytes) -> None:
        self.stats.served += 1
        handler = self.handlers.get(subject)
        if handler is None:
            link.send(rep_frame(bid, ErrorCode.UNAVAILABLE, f"nobody handles {subject!r} here".encode()))
            return
        try:
            result = handler(data)
        except Exception as exc:
            link.send(self._error_rep(bid, exc, subject))
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(self._serve_async(link, bid, timeout_ms / 1000, subject, result))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        link.send(self._result_rep(bid, result, subject))

    async def _serve_async(self, link: Link, bid: int, timeout: float, subject: str, pending: Awaitable[Any]) -> None:
        try:
            async with asyncio.timeout(timeout):
                result = await pending
        except TimeoutError:
            return  # the asker has given up too
        except Exception as exc:
            link.send(self._error_rep(bid, exc, subject))
            return
        link.send(self._result_rep(bid, result, subject))

    def _result_rep(self, bid: int, result: Any, subject: str) -> bytes:
        if isinstance(result, (bytes, bytearray, memoryview)):
            return rep_frame(bid, 0, bytes(result))
        log.error("%s: the handler of %r returned %s, not bytes", self.name, subject, type(result).__name__)
        return rep_frame(bid, ErrorCode.INTERNAL, InternalError.default_message.encode())

    def _error_rep(self, bid: int, exc: BaseException, subject: str) -> bytes:
        if not isinstance(exc, TickwireError):
            log.error("%s: the handler of %r failed", self.name, subject, exc_info=exc)
        code, message = wire_error(exc)
        return rep_frame(bid, code, message.encode())

    # -- helpers -----------------------------------------------------------------------------
    async def _ask(self, r: _Remote, make: Callable[[int], bytes], timeout: float, what: str) -> tuple[int, bytes]:
        """Send a frame carrying a fresh request id to `r`; (status, data) of its reply."""
        link = r.link
        if link is None or link.closed:
            raise Unavailable(f"broker {r.id} (owner of {what!r}) is not connected")
        self._next_rid = rid = (self._next_rid + 1) & 0xFFFFFFFF
        fut: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = (fut, r)
        link.send(make(rid))
        try:
            async with asyncio.timeout(timeout):
                return await fut
        except TimeoutError:
            self.stats.request_timeouts += 1
            raise Timeout(f"no answer about {what!r} within {timeout} s") from None
        finally:
            self._pending.pop(rid, None)

    async def _settle(self, r: _Remote) -> None:
        """One round trip to `r` after every SUB sent to it in this loop iteration: the
        link is ordered and the broker handles frames in order, so its answer means it has
        them all. A failure is logged, not raised: the subscription stands and is declared
        again when the broker is back."""
        r.settling = None  # from here on a SUB waits on the next round trip
        try:
            # Any request answers as well, the link being ordered: a presence query of no
            # channel is the cheapest one a broker answers without side effects, so the
            # protocol needs no op of its own for this.
            await self._ask(r, lambda rid: presence_frame(rid, ""), self.settings.call_timeout, "subscriptions")
        except TickwireError as exc:
            log.warning("%s: broker %d did not confirm subscriptions: %s", self.name, r.id, exc)

    def _send_counts(self) -> None:
        if self._count_timer is not None:
            self._count_timer.cancel()
            self._count_timer = None
        dirty, self._dirty = self._dirty, set()
        by_remote: dict[_Remote, list[tuple[str, int]]] = {}
        for channel in dirty:
            r = self._remote_for(channel)
            if r.link is not None:  # a down broker gets every count when it is back
                by_remote.setdefault(r, []).append((channel, self.counts.get(channel, 0)))
        for r, items in by_remote.items():
            for frame in counts_frames(items, self.settings.max_frame):
                r.link.send(frame)  # type: ignore[union-attr]
