"""The Python asyncio client: the same surface as the JavaScript one.

    client = Client("ws://localhost:8000/")
    await client.connect()
    total = await client.call("add", {"a": 1, "b": 2})
    chat, = await client.subscribe("chat")
    await client.publish("chat", {"text": "hi"})
    async for message in chat:
        ...

It reconnects by itself with exponential backoff and jitter (unless the server closed with
a code of 4500 or more, or the application closed it), presents its token again, and
resubscribes every channel in one message. Messages queued in one loop iteration leave in
one frame. Tests, bots and the load generator use it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections import deque
from typing import Any, AsyncIterator, Callable, Iterable

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed as WSConnectionClosed

from ._generated import protocol as P
from .codec import PACKED_SUBPROTOCOL
from .errors import ConnectionClosed, RemoteError, Timeout, reconnect_allowed
from .packed import Codebook, DecodeError, Payload

__all__ = ["Client", "Subscription", "ClientRoom", "CLIENT_NAME", "reconnect_delay"]

CLIENT_NAME = "tickwire-py/0.1"
log = logging.getLogger("tickwire.client")


def reconnect_delay(attempt: int, min_backoff: float, max_backoff: float, jitter: float, r: float) -> float:
    """Exponential backoff with jitter: min * 2**attempt, capped, shortened by up to
    `jitter` of itself (r in [0, 1)), so clients that lost the same server spread out."""
    return min(max_backoff, min_backoff * (2 ** min(attempt, 32))) * (1 - jitter * r)


class Subscription:
    """A channel this client subscribes: iterate it for messages (`async for`)."""

    def __init__(self, client: "Client", name: str, max_queue: int):
        self.client = client
        self.name = name
        self.id = 0  # the server's id for it on the current connection
        self.type_id = 0
        self.queue: deque[Any] = deque(maxlen=max_queue)
        self.dropped = 0
        self._waiter: asyncio.Future[None] | None = None
        self.active = True

    def _put(self, value: Any) -> None:
        if len(self.queue) == self.queue.maxlen:
            self.dropped += 1
        self.queue.append(value)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get(self, timeout: float | None = None) -> Any:
        """The next message; Timeout after `timeout` seconds."""
        while not self.queue:
            if not self.active:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(timeout):
                    await self._waiter
            except TimeoutError:
                raise Timeout(f"no message on {self.name!r} within {timeout} s") from None
            finally:
                self._waiter = None
        return self.queue.popleft()

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.get()
        except StopAsyncIteration:
            raise

    def _end(self) -> None:
        self.active = False
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def __repr__(self) -> str:
        return f"Subscription({self.name!r}, id={self.id})"


class ClientRoom:
    """A seat in a room: send inputs, read its state and messages, measure the clock.

    Each send tick the server sends a Tick header; the room keeps the newest tick number and
    room time, the last input sequence the simulation applied, a smoothed round-trip time
    (from the echo of the newest input) and the offset between the room's clock and ours.
    """

    def __init__(self, client: "Client", joined: Any):
        self.client = client
        self.handle = joined.room
        self.id = joined.room_id
        self.type = joined.room_type
        self.player = joined.player
        self.seat = joined.seat
        self.tick_rate = joined.tick_rate
        self.send_rate = joined.send_rate
        self.state: Any = None
        self.messages: deque[Any] = deque(maxlen=client.max_queue)
        self.tick = 0
        self.time_ms = 0
        self.applied_seq = 0
        self.seq = 0
        self.ticks = 0
        self.rtt: float | None = None
        self.clock_offset: float | None = None  # room time (s) minus local time (s)
        self.left: tuple[int, str] | None = None  # (code, reason) once out of the room
        self.world: Any = None  # engine.interest.ClientWorld: the entities in view, when the room syncs them
        self.on_tick: Callable[["ClientRoom"], None] | None = None
        self._sent: dict[int, float] = {}
        self._waiter: asyncio.Future[None] | None = None

    def input(self, data: Any = None) -> int:
        """Send one input for the room's next tick; its sequence number."""
        self.seq += 1
        loop = asyncio.get_running_loop()
        self._sent[self.seq] = loop.time()
        if len(self._sent) > 256:
            for old in sorted(self._sent)[:-128]:
                del self._sent[old]
        self.client._queue(P.Input(self.handle, self.seq, self.client.codebook.payload(data)))
        return self.seq

    async def leave(self) -> None:
        await self.client._request(lambda cid: P.LeaveRoom(cid, self.handle), None)
        self.client.rooms.pop(self.handle, None)
        self.left = (0, "left")

    async def next_message(self, timeout: float | None = None) -> Any:
        async with asyncio.timeout(timeout):
            while not self.messages:
                self._waiter = asyncio.get_running_loop().create_future()
                await self._waiter
        return self.messages.popleft()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _continues(self, msg: Any) -> bool:
        """Whether this Tick repeats the last one: a section the server split over several
        frames (over max_out_frame_size) names its room again at the top of each."""
        return self.ticks > 0 and msg.tick == self.tick and msg.time_ms == self.time_ms

    def _tick(self, msg: Any, now: float) -> None:
        self.tick, self.time_ms, self.applied_seq = msg.tick, msg.time_ms, msg.applied_seq
        self.ticks += 1
        sent = self._sent.get(msg.echo_seq)
        if sent is not None:
            rtt = max(0.0, now - sent - msg.echo_age_ms / 1000)
            self.rtt = rtt if self.rtt is None else self.rtt * 0.8 + rtt * 0.2
        if self.rtt is not None:
            offset = msg.time_ms / 1000 + self.rtt / 2 - now
            self.clock_offset = offset if self.clock_offset is None else self.clock_offset * 0.9 + offset * 0.1
        if self.on_tick is not None:
            self.on_tick(self)
        self._wake()

    def __repr__(self) -> str:
        return f"ClientRoom({self.id!r}, player={self.player}, tick={self.tick})"


class Client:
    def __init__(
        self,
        url: str,
        *,
        schemas: Iterable[Any] = (),
        token: str | None = None,
        reconnect: bool = True,
        min_backoff: float = 0.2,
        max_backoff: float = 10.0,
        jitter: float = 0.5,
        call_timeout: float = 10.0,
        connect_timeout: float = 10.0,
        max_queue: int = 10000,
        max_frame_size: int = 16 * 1024 * 1024,
        max_send_frame_size: int = 64 * 1024,
        ssl: Any = None,
        origin: str | None = None,
        on_frame: Callable[[bytes], None] | None = None,
        rng: Callable[[], float] = random.random,
    ):
        self.url = url
        self.codebook = Codebook(P, *schemas)
        self.token = token
        self.reconnect = reconnect
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.jitter = jitter
        self.call_timeout = call_timeout
        self.connect_timeout = connect_timeout
        self.max_queue = max_queue
        self.max_frame_size = max_frame_size
        self.max_send_frame_size = max_send_frame_size  # the server's max_frame_size default
        self.ssl = ssl
        self.origin = origin
        self.on_frame = on_frame  # test seam: every frame received, raw
        self.rng = rng
        self.welcome: Any = None
        self.subscriptions: dict[str, Subscription] = {}
        self.rooms: dict[int, ClientRoom] = {}  # by handle on the current connection
        self.handlers: dict[str, list[Callable[[Any], Any]]] = {}
        self.connects = 0  # successful handshakes, including reconnections
        self.frames_received = 0
        self.bytes_received = 0
        self.close_code: int | None = None
        self.close_reason = ""
        self._ws: ClientConnection | None = None
        self._ctx = self.codebook.context(max_string=1 << 20, max_vector=1 << 20)
        self._by_id: dict[int, Subscription] = {}
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._subscribing: dict[int, list[Subscription]] = {}  # by cid
        self._joining: dict[int, ClientRoom | None] = {}  # by cid: None for a new seat
        self._cids = itertools.count(1)
        self._out: list[bytes] = []
        self._out_event = asyncio.Event()
        self._connected = asyncio.Event()
        self._closing = False
        self._runner: asyncio.Task[None] | None = None
        self._first: asyncio.Future[Any] | None = None

    # -- connection ------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def process(self) -> str:
        """The server process holding this connection (from Welcome)."""
        return self.welcome.process if self.welcome else ""

    @property
    def socket_id(self) -> str:
        return self.welcome.socket_id if self.welcome else ""

    async def connect(self) -> Any:
        """Connect and handshake; raises if the first attempt fails. Returns Welcome."""
        if self._runner is not None:
            await self.wait_connected()
            return self.welcome
        self._closing = False
        self._first = asyncio.get_running_loop().create_future()
        self._runner = asyncio.create_task(self._run())
        return await self._first

    async def wait_connected(self, timeout: float | None = None) -> None:
        async with asyncio.timeout(timeout if timeout is not None else self.connect_timeout):
            await self._connected.wait()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self._closing = True
        ws = self._ws
        if ws is not None:
            await ws.close(code, reason)
        if self._runner is not None:
            try:
                await asyncio.wait_for(self._runner, 5)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                self._runner.cancel()
            self._runner = None
        self._fail_pending(ConnectionClosed(code, reason))

    async def __aenter__(self) -> "Client":
        await self.connect()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def _run(self) -> None:
        attempt = 0
        while not self._closing:
            try:
                ws = await self._open()
            except Exception as exc:
                if self._first is not None and not self._first.done():
                    self._first.set_exception(exc)
                    self._runner = None
                    return
                log.debug("connect failed: %s", exc)
                if isinstance(exc, WSConnectionClosed) and not reconnect_allowed(self.close_code):
                    return
            else:
                attempt = 0
                if self._first is not None and not self._first.done():
                    self._first.set_result(self.welcome)
                await self._read(ws)
            self._connected.clear()
            self._fail_pending(ConnectionClosed(self.close_code, self.close_reason))
            if self._closing or not self.reconnect or not reconnect_allowed(self.close_code):
                break
            delay = reconnect_delay(attempt, self.min_backoff, self.max_backoff, self.jitter, self.rng())
            attempt += 1
            await asyncio.sleep(delay)
        for sub in self.subscriptions.values():
            if self._closing:
                sub._end()

    async def _open(self) -> ClientConnection:
        self.close_code = None
        ws = await connect(
            self.url,
            subprotocols=[PACKED_SUBPROTOCOL],  # type: ignore[list-item]
            open_timeout=self.connect_timeout,
            ping_interval=None,  # the protocol pings (WIRE.md); no second keepalive
            max_size=self.max_frame_size,
            ssl=self.ssl,
            origin=self.origin,  # type: ignore[arg-type]
            compression=None,
        )
        try:
            handshake = P.Handshake(self.codebook.hash, self.token or "", CLIENT_NAME)
            await ws.send(self.codebook.encode(handshake))
            async with asyncio.timeout(self.connect_timeout):
                while True:
                    frame = await ws.recv()
                    welcome = self._frame(frame, until_welcome=True)
                    if welcome is not None:
                        break
        except WSConnectionClosed as exc:
            self.close_code = exc.rcvd.code if exc.rcvd else None
            self.close_reason = exc.rcvd.reason if exc.rcvd else ""
            raise
        except BaseException:
            await ws.close()
            raise
        self.welcome = welcome
        self._ws = ws
        self._by_id.clear()
        self.connects += 1
        self._out = []
        writer = asyncio.create_task(self._write(ws))
        ws.writer = writer  # type: ignore[attr-defined]
        if self.subscriptions:
            await self._subscribe_all(list(self.subscriptions.values()), wait=False)
        rooms, self.rooms = list(self.rooms.values()), {}
        for room in rooms:
            self._retake_seat(room)
        self._connected.set()
        return ws

    async def _read(self, ws: ClientConnection) -> None:
        timeout = (self.welcome.ping_timeout_ms / 1000) if self.welcome and self.welcome.ping_timeout_ms else None
        try:
            while True:
                async with asyncio.timeout(timeout):
                    frame = await ws.recv()
                self._frame(frame)
        except WSConnectionClosed as exc:
            if exc.rcvd is not None:
                self.close_code, self.close_reason = exc.rcvd.code, exc.rcvd.reason
            elif exc.sent is not None:
                self.close_code, self.close_reason = exc.sent.code, exc.sent.reason
            else:
                self.close_code = 1006
        except TimeoutError:
            self.close_code, self.close_reason = 4000, "server ping timeout"
            await ws.close(4000, "ping timeout")
        except DecodeError as exc:
            log.error("server sent a malformed frame: %s", exc)
            self.close_code, self.close_reason = 4100, "malformed frame from server"
            await ws.close(4100, "malformed frame")
        finally:
            writer = getattr(ws, "writer", None)
            if writer is not None:
                writer.cancel()
            if self._ws is ws:
                self._ws = None

    async def _write(self, ws: ClientConnection) -> None:
        try:
            while True:
                await self._out_event.wait()
                self._out_event.clear()
                parts, self._out = self._out, []
                frame: list[bytes] = []
                size = 0
                for part in parts:
                    if frame and size + len(part) > self.max_send_frame_size:
                        await ws.send(b"".join(frame))
                        frame, size = [], 0
                    frame.append(part)
                    size += len(part)
                if frame:
                    await ws.send(b"".join(frame))
        except (WSConnectionClosed, asyncio.CancelledError):
            pass

    def _queue(self, msg: Any) -> None:
        if self._ws is None:
            raise ConnectionClosed(self.close_code, "not connected")
        self._out.append(self.codebook.encode(msg))
        self._out_event.set()

    # -- inbound ---------------------------------------------------------------------------
    def _frame(self, frame: bytes | str, until_welcome: bool = False) -> Any:
        if isinstance(frame, str):
            raise DecodeError("text frame from a Tickwire server")
        self.frames_received += 1
        self.bytes_received += len(frame)
        if self.on_frame is not None:
            self.on_frame(frame)
        welcome = None
        room: ClientRoom | None = None  # the room whose section of the frame this is
        now = asyncio.get_running_loop().time()
        for msg in self.codebook.iter_frame(frame, self._ctx):
            match msg:
                case P.Tick():
                    room = self.rooms.get(msg.room)
                    if room is not None and not room._continues(msg):
                        room._tick(msg, now)
                case P.RoomState():
                    if room is not None:
                        room.state = self.codebook.payload_value(msg.data, self._ctx)
                case P.RoomMessage():
                    if room is not None:
                        room.messages.append(self.codebook.payload_value(msg.data, self._ctx))
                        room._wake()
                case P.RoomJoined():
                    # Register the seat now: the room's first section may follow in
                    # this very frame (its state, EntitySyncInfo, snapshots).
                    room = self._seated(msg)
                    self._resolve(msg.cid, room)
                case P.EntitySyncInfo():
                    target = self.rooms.get(msg.room)
                    if target is not None:
                        target.world = self._entity_world(msg)
                case P.EntitySync():
                    if room is not None and room.world is not None:
                        from .interest import apply_entity_sync

                        apply_entity_sync(room.world, msg.data)
                case P.RoomLeft():
                    left = self.rooms.pop(msg.room, None)
                    if left is not None:
                        left.left = (msg.code, msg.reason)
                        left._wake()
                case P.Welcome():
                    welcome = msg
                case P.Message():
                    sub = self._by_id.get(msg.channel)
                    if sub is not None:
                        sub._put(self.codebook.payload_value(msg.payload, self._ctx))
                case P.Result():
                    self._resolve(msg.cid, msg.data)
                case P.Error():
                    if msg.cid:
                        self._reject(msg.cid, RemoteError(msg.code, msg.message))
                    else:
                        log.warning("server error %s: %s", msg.code, msg.message)
                        self._dispatch_event("#error", {"code": msg.code, "message": msg.message})
                case P.Subscribed():
                    # Map the ids now: Messages on them may follow in this very frame.
                    subs = self._subscribing.pop(msg.cid, [])
                    self._resolve(msg.cid, self._subscribed(subs, msg.channels))
                case P.Emit():
                    self._dispatch_event(msg.event, self.codebook.payload_value(msg.data, self._ctx))
                case P.SetToken():
                    self.token = msg.token
                case P.RemoveToken():
                    self.token = None
                case P.Kicked():
                    sub = self._by_id.pop(msg.channel, None)
                    if sub is not None:
                        self._ctx.channel_types.pop(msg.channel, None)
                        self.subscriptions.pop(sub.name, None)
                        sub._end()
                case P.Ping():
                    if not until_welcome:
                        self._queue(P.Pong())
                case _:
                    pass
        return welcome

    def _entity_world(self, info: Any) -> Any:
        """An empty world for a room's entities, read with the schema struct it names."""
        from .interest import ClientWorld, SyncLayout

        for mod in self.codebook.schemas:
            struct = getattr(mod, "TYPES", {}).get(info.struct_name)
            if struct is not None:
                fields = {k: getattr(info, k) for k in info.__slots__}
                return ClientWorld(SyncLayout.from_info(struct, fields))
        log.warning("room syncs entities of %r, which this client's schemas lack", info.struct_name)
        return None

    def _resolve(self, cid: int, value: Any) -> None:
        fut = self._pending.pop(cid, None)
        if fut is not None and not fut.done():
            fut.set_result(value)

    def _reject(self, cid: int, exc: BaseException) -> None:
        fut = self._pending.pop(cid, None)
        if fut is not None and not fut.done():
            fut.set_exception(exc)

    def _fail_pending(self, exc: BaseException) -> None:
        pending, self._pending = self._pending, {}
        self._subscribing.clear()
        self._joining.clear()
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(exc)

    def _dispatch_event(self, event: str, data: Any) -> None:
        for fn in self.handlers.get(event, ()):
            try:
                result = fn(data)
                if asyncio.iscoroutine(result):
                    asyncio.ensure_future(result)
            except Exception:
                log.exception("handler for %r failed", event)

    # -- requests --------------------------------------------------------------------------
    async def _request(self, make: Callable[[int], Any], timeout: float | None) -> Any:
        timeout = self.call_timeout if timeout is None else timeout
        async with asyncio.timeout(timeout):
            if not self._connected.is_set():
                await self._connected.wait()
            cid = next(self._cids)
            fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._pending[cid] = fut
            try:
                self._queue(make(cid))
                return await fut
            finally:
                self._pending.pop(cid, None)

    async def call(self, procedure: str, data: Any = None, timeout: float | None = None) -> Any:
        """Call a procedure; its result, or RemoteError, Timeout, ConnectionClosed."""
        payload = self.codebook.payload(data)
        try:
            result = await self._request(lambda cid: P.Call(cid, procedure, payload), timeout)
        except TimeoutError:
            raise Timeout(f"no answer to {procedure!r} in time") from None
        return self.codebook.payload_value(result, self._ctx)

    def emit(self, event: str, data: Any = None) -> None:
        """Send an event to a server receiver (no answer)."""
        self._queue(P.Emit(event, self.codebook.payload(data)))

    def on(self, event: str, handler: Callable[[Any], Any]) -> None:
        """Call `handler(data)` for every event the server emits with this name."""
        self.handlers.setdefault(event, []).append(handler)

    async def publish(self, channel: str, data: Any, ack: bool = True, timeout: float | None = None) -> None:
        payload = self.codebook.payload(data)
        if not ack:
            self._queue(P.Publish(0, channel, payload))
            return
        try:
            await self._request(lambda cid: P.Publish(cid, channel, payload), timeout)
        except TimeoutError:
            raise Timeout(f"no acknowledgement of the publish to {channel!r}") from None

    async def subscribe(self, *names: str, timeout: float | None = None) -> list[Subscription]:
        """Subscribe to channels in one message; one Subscription per name, in order."""
        subs = []
        new = []
        for name in names:
            sub = self.subscriptions.get(name)
            if sub is None:
                sub = Subscription(self, name, self.max_queue)
                new.append(sub)
            subs.append(sub)
        if new:
            try:
                await self._subscribe_all(new, wait=True, timeout=timeout)
            except RemoteError:
                raise  # the refused channels are dropped; the accepted ones stay subscribed
            except BaseException:
                for sub in new:
                    self.subscriptions.pop(sub.name, None)
                raise
        return subs

    async def _subscribe_all(self, subs: list[Subscription], wait: bool, timeout: float | None = None) -> None:
        names = [s.name for s in subs]
        for s in subs:
            self.subscriptions[s.name] = s

        def make(cid: int) -> Any:
            self._subscribing[cid] = subs
            return P.Subscribe(cid, names)

        if not wait:
            # Resubscribing after a reconnect: the answer is applied when it comes.
            cid = next(self._cids)
            self._pending[cid] = asyncio.get_running_loop().create_future()
            self._queue(make(cid))
            return
        try:
            errors = await self._request(make, timeout)
        except TimeoutError:
            raise Timeout("no answer to subscribe in time") from None
        if errors:
            raise errors[0]

    def _subscribed(self, subs: list[Subscription], infos: list[Any]) -> list[RemoteError]:
        errors = []
        by_name = {s.name: s for s in subs}
        for info in infos:
            sub = by_name.get(info.name)
            if sub is None:
                continue
            if info.error:
                self.subscriptions.pop(sub.name, None)
                errors.append(RemoteError(info.error, f"{info.name}: {info.message}"))
                continue
            sub.id, sub.type_id = info.id, info.type_id
            self._by_id[info.id] = sub
            self._ctx.channel_types[info.id] = info.type_id
        return errors

    async def unsubscribe(self, *names: str, timeout: float | None = None) -> None:
        ids = []
        for name in names:
            sub = self.subscriptions.pop(name, None)
            if sub is None:
                continue
            sub._end()
            if sub.id and self._by_id.pop(sub.id, None) is not None:
                ids.append(sub.id)
        if ids and self.connected:
            await self._request(lambda cid: P.Unsubscribe(cid, ids), timeout)
            for channel_id in ids:
                self._ctx.channel_types.pop(channel_id, None)

    async def join_room(
        self,
        room_type: str = "",
        options: Any = None,
        *,
        room_id: str = "",
        create: bool = False,
        seat: str = "",
        timeout: float | None = None,
    ) -> ClientRoom:
        """Join the fullest joinable room of a type (creating one if none), or a room by
        id, or take a reserved or dropped seat by its token."""
        payload = self.codebook.payload(options)

        def make(cid: int) -> Any:
            self._joining[cid] = None
            return P.JoinRoom(cid, room_type, room_id, create, seat, payload)

        try:
            return await self._request(make, timeout)
        except TimeoutError:
            raise Timeout("no answer to join_room in time") from None

    def _seated(self, joined: Any) -> ClientRoom | None:
        """A RoomJoined: a new ClientRoom, or the one that took its seat back."""
        if joined.cid not in self._joining:
            return None
        room = self._joining.pop(joined.cid)
        if room is None:
            room = ClientRoom(self, joined)
        else:
            room.handle, room.seat = joined.room, joined.seat
            room.world = None  # a new connection: the view comes again from scratch
        self.rooms[room.handle] = room
        return room

    def _retake_seat(self, room: ClientRoom) -> None:
        """After a reconnect: the same seat again, with the token (within the grace period)."""
        cid = next(self._cids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[cid] = fut
        self._joining[cid] = room

        def done(f: asyncio.Future[Any]) -> None:
            if f.cancelled() or f.exception() is not None:
                self._joining.pop(cid, None)
                room.left = (0, f"could not take the seat back: {f.exception() if not f.cancelled() else 'cancelled'}")
                room._wake()

        fut.add_done_callback(done)
        self._queue(P.JoinRoom(cid, "", "", False, room.seat, self.codebook.payload(None)))

    async def list_rooms(self, room_type: str = "", filters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        result = await self._request(lambda cid: P.ListRooms(cid, room_type, self.codebook.payload(filters)), None)
        return self.codebook.payload_value(result, self._ctx)

    async def authenticate(self, token: str, timeout: float | None = None) -> None:
        await self._request(lambda cid: P.Authenticate(cid, token), timeout)
        self.token = token

    def deauthenticate(self) -> None:
        self.token = None
        if self._ws is not None:
            self._queue(P.Deauthenticate())

    def send_raw(self, frame: bytes) -> None:
        """Test seam: write one frame of arbitrary bytes (malformed-input tests)."""
        if self._ws is None:
            raise ConnectionClosed(self.close_code, "not connected")
        asyncio.ensure_future(self._ws.send(frame))

    def payload(self, value: Any) -> Payload:
        return self.codebook.payload(value)
