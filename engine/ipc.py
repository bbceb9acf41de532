"""Inter-process framing: workers and brokers talk over Unix sockets in these frames.

A frame is a little-endian u32 length (of what follows it), a one-byte op and the op's
fields. Strings (channels, subjects, keys, names) are a u16 length and UTF-8; an op's last
bytes field (a payload body, request data, a value) runs to the end of the frame, so it
needs no length of its own.

    op        fields after the op byte                              direction
    HELLO     name                                                  worker -> broker
    SUB       channel                                               worker -> broker
    UNSUB     channel                                               worker -> broker
    PUB       u16 len(channel), u32 type_id, channel, body          both ways
    HANDLE    subject                                               worker -> broker
    UNHANDLE  subject                                               worker -> broker
    REQ       u32 rid, u32 timeout_ms, u16 len(subject), subject, data   both ways
    REP       u32 rid, u8 status, data                              both ways
    COUNTS    u32 n, n x (u16 len(channel), u32 count, channel)     worker -> broker
    PRESENCE  u32 rid, channel                                      worker -> broker
    KV_GET    u32 rid, key                                          worker -> broker
    KV_SET    u32 rid, u32 ttl_ms (0: none), u16 len(key), key, value   worker -> broker
    KV_DEL    u32 rid, key                                          worker -> broker
    STATS     u32 rid                                               any client -> broker

A REP's status is 0 for success or an ErrorCode (errors.py) with a UTF-8 message as data,
so failures travel in the one error hierarchy. PUB has the same bytes in both directions:
a broker forwards the frame it received to every subscribing worker without re-encoding.

The codec is pure (`encode`, `decode`, one `*_frame` function per op for hot paths), and
FrameReader is an incremental parser that takes any chunk and returns every complete
frame, checking each declared length against `max_frame` before it buffers a byte of it.

Link is the asyncio adapter. Its writes are coalesced: frames queued during one loop
iteration leave in ONE transport.write (flushed with loop.call_soon). Measured on this
machine kind: a 64-byte message over a Unix socket costs 1.5-2 us when written alone and
0.35 us when written in a batch, so at publish rates the syscall, not Python, would
otherwise set the cost (DESIGN.md, "Numbers to design by").
"""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import Any, NamedTuple, Protocol

__all__ = [
    "MAX_FRAME",
    "MAX_BUFFER",
    "IPCError",
    "FrameTooLarge",
    "Op",
    "Hello",
    "Sub",
    "Unsub",
    "Pub",
    "Handle",
    "Unhandle",
    "Req",
    "Rep",
    "Counts",
    "Presence",
    "KvGet",
    "KvSet",
    "KvDel",
    "Stats",
    "Message",
    "encode",
    "decode",
    "pub_channel",
    "pub_fields",
    "hello_frame",
    "sub_frame",
    "unsub_frame",
    "pub_frame",
    "handle_frame",
    "unhandle_frame",
    "req_frame",
    "rep_frame",
    "counts_frames",
    "presence_frame",
    "kv_get_frame",
    "kv_set_frame",
    "kv_del_frame",
    "stats_frame",
    "FrameReader",
    "LinkOwner",
    "Link",
]

log = logging.getLogger("tickwire.ipc")

# Named limits. A frame carries at most one client publish (64 KiB by default, limits.py)
# or one KV value, so 4 MiB leaves room for server-side publishes while bounding what a
# confused peer can make us buffer. MAX_BUFFER bounds what one link holds for a peer that
# does not read: past it, data frames are dropped and counted (Link.offer).
MAX_FRAME = 4 * 1024 * 1024
MAX_BUFFER = 16 * 1024 * 1024
MAX_STRING = 0xFFFF
MAX_U32 = 0xFFFFFFFF


class IPCError(ValueError):
    """Bytes that are not a valid frame: the link that sent them is closed."""


class FrameTooLarge(IPCError):
    """A frame declared longer than the limit (refused before buffering it)."""


class Op:
    HELLO = 1
    SUB = 2
    UNSUB = 3
    PUB = 4
    HANDLE = 5
    UNHANDLE = 6
    REQ = 7
    REP = 8
    COUNTS = 9
    PRESENCE = 10
    KV_GET = 11
    KV_SET = 12
    KV_DEL = 13
    STATS = 14


# -- messages: small tagged types, dispatched with one `match` by their owner ------------
class Hello(NamedTuple):
    name: str


class Sub(NamedTuple):
    channel: str


class Unsub(NamedTuple):
    channel: str


class Pub(NamedTuple):
    channel: str
    type_id: int
    body: bytes


class Handle(NamedTuple):
    subject: str


class Unhandle(NamedTuple):
    subject: str


class Req(NamedTuple):
    rid: int
    timeout_ms: int
    subject: str
    data: bytes


class Rep(NamedTuple):
    rid: int
    status: int  # 0, or an ErrorCode with a UTF-8 message as data
    data: bytes


class Counts(NamedTuple):
    items: tuple[tuple[str, int], ...]


class Presence(NamedTuple):
    rid: int
    channel: str


class KvGet(NamedTuple):
    rid: int
    key: str


class KvSet(NamedTuple):
    rid: int
    ttl_ms: int  # 0: no expiry
    key: str
    value: bytes


class KvDel(NamedTuple):
    rid: int
    key: str


class Stats(NamedTuple):
    rid: int


Message = Hello | Sub | Unsub | Pub | Handle | Unhandle | Req | Rep | Counts | Presence | KvGet | KvSet | KvDel | Stats

# -- layouts -------------------------------------------------------------------------------
_LEN = struct.Struct("<I")
_STR = struct.Struct("<IBH")  # len, op, u16 string length
_PUB = struct.Struct("<IBHI")  # len, op, channel length, type id
_REQ = struct.Struct("<IBIIH")  # len, op, rid, timeout_ms, subject length
_REP = struct.Struct("<IBIB")  # len, op, rid, status
_RID_STR = struct.Struct("<IBIH")  # len, op, rid, string length
_KV_SET = struct.Struct("<IBIIH")  # len, op, rid, ttl_ms, key length
_RID = struct.Struct("<IBI")  # len, op, rid
_COUNTS = struct.Struct("<IBI")  # len, op, n
_COUNT = struct.Struct("<HI")  # channel length, count


def _text(s: str, what: str) -> bytes:
    b = s.encode()
    if len(b) > MAX_STRING:
        raise IPCError(f"{what} is {len(b)} bytes long; the framing allows {MAX_STRING}")
    return b


def _str_frame(op: int, s: str, what: str) -> bytes:
    b = _text(s, what)
    return _STR.pack(3 + len(b), op, len(b)) + b


def hello_frame(name: str) -> bytes:
    return _str_frame(Op.HELLO, name, "name")


def sub_frame(channel: str) -> bytes:
    return _str_frame(Op.SUB, channel, "channel")


def unsub_frame(channel: str) -> bytes:
    return _str_frame(Op.UNSUB, channel, "channel")


def handle_frame(subject: str) -> bytes:
    return _str_frame(Op.HANDLE, subject, "subject")


def unhandle_frame(subject: str) -> bytes:
    return _str_frame(Op.UNHANDLE, subject, "subject")


def pub_frame(channel: str, type_id: int, body: bytes) -> bytes:
    ch = channel.encode()
    if len(ch) > MAX_STRING:
        raise IPCError(f"channel is {len(ch)} bytes long; the framing allows {MAX_STRING}")
    return _PUB.pack(7 + len(ch) + len(body), Op.PUB, len(ch), type_id) + ch + body


def req_frame(rid: int, timeout_ms: int, subject: str, data: bytes) -> bytes:
    s = _text(subject, "subject")
    return _REQ.pack(11 + len(s) + len(data), Op.REQ, rid, min(timeout_ms, MAX_U32), len(s)) + s + data


def rep_frame(rid: int, status: int, data: bytes = b"") -> bytes:
    return _REP.pack(6 + len(data), Op.REP, rid, status) + data


def counts_frames(items: list[tuple[str, int]], max_frame: int = MAX_FRAME) -> list[bytes]:
    """Subscriber counts, split into as many frames as `max_frame` requires."""
    frames: list[bytes] = []
    parts: list[bytes] = []
    size = 5
    for channel, count in items:
        ch = _text(channel, "channel")
        part = _COUNT.pack(len(ch), min(count, MAX_U32)) + ch
        if parts and size + len(part) > max_frame:
            frames.append(_COUNTS.pack(size, Op.COUNTS, len(parts)) + b"".join(parts))
            parts, size = [], 5
        parts.append(part)
        size += len(part)
    if parts:
        frames.append(_COUNTS.pack(size, Op.COUNTS, len(parts)) + b"".join(parts))
    return frames


def _rid_str_frame(op: int, rid: int, s: str, what: str) -> bytes:
    b = _text(s, what)
    return _RID_STR.pack(7 + len(b), op, rid, len(b)) + b


def presence_frame(rid: int, channel: str) -> bytes:
    return _rid_str_frame(Op.PRESENCE, rid, channel, "channel")


def kv_get_frame(rid: int, key: str) -> bytes:
    return _rid_str_frame(Op.KV_GET, rid, key, "key")


def kv_del_frame(rid: int, key: str) -> bytes:
    return _rid_str_frame(Op.KV_DEL, rid, key, "key")


def kv_set_frame(rid: int, ttl_ms: int, key: str, value: bytes) -> bytes:
    k = _text(key, "key")
    return _KV_SET.pack(11 + len(k) + len(value), Op.KV_SET, rid, min(ttl_ms, MAX_U32), len(k)) + k + value


def stats_frame(rid: int) -> bytes:
    return _RID.pack(5, Op.STATS, rid)


def encode(msg: Message) -> bytes:
    """One message as one frame (the `*_frame` functions do the same without the match)."""
    match msg:
        case Pub(channel, type_id, body):
            return pub_frame(channel, type_id, body)
        case Sub(channel):
            return sub_frame(channel)
        case Unsub(channel):
            return unsub_frame(channel)
        case Req(rid, timeout_ms, subject, data):
            return req_frame(rid, timeout_ms, subject, data)
        case Rep(rid, status, data):
            return rep_frame(rid, status, data)
        case Counts(items):
            frames = counts_frames(list(items), MAX_U32)
            return frames[0] if frames else _COUNTS.pack(5, Op.COUNTS, 0)
        case Hello(name):
            return hello_frame(name)
        case Handle(subject):
            return handle_frame(subject)
        case Unhandle(subject):
            return unhandle_frame(subject)
        case Presence(rid, channel):
            return presence_frame(rid, channel)
        case KvGet(rid, key):
            return kv_get_frame(rid, key)
        case KvSet(rid, ttl_ms, key, value):
            return kv_set_frame(rid, ttl_ms, key, value)
        case KvDel(rid, key):
            return kv_del_frame(rid, key)
        case Stats(rid):
            return stats_frame(rid)
    raise TypeError(f"not an IPC message: {msg!r}")


# -- decoding ------------------------------------------------------------------------------
def _str_at(frame: bytes, start: int, n: int) -> str:
    stop = start + n
    if stop > len(frame):
        raise IPCError(f"a string of {n} bytes runs past the end of a {len(frame)}-byte frame")
    try:
        return frame[start:stop].decode()
    except UnicodeDecodeError:
        raise IPCError("a string is not valid UTF-8") from None


def _need(frame: bytes, size: int, op: int) -> None:
    if len(frame) < size:
        raise IPCError(f"op {op} needs at least {size} bytes, the frame has {len(frame)}")


def pub_channel(frame: bytes) -> bytes:
    """The channel of a PUB frame as raw bytes: all a broker needs to route it.

    Measured: a full decode() of a 64-byte publish costs about 1 us, a third of what the
    broker spends per message; routing on the raw name skips it (and its UTF-8 check: a
    name that is not valid UTF-8 matches no subscription, which are keyed by encoded names).
    """
    size = len(frame)
    if size < 11:
        raise IPCError("PUB needs at least 11 bytes")
    stop = 11 + (frame[5] | frame[6] << 8)
    if stop > size:
        raise IPCError("the channel runs past the end of the frame")
    return frame[11:stop]


def pub_fields(frame: bytes) -> tuple[str, int, bytes]:
    """(channel, type_id, body) of a PUB frame, checked as decode() checks it.

    A worker's hot path: building a Pub and matching it costs about 0.6 us more per
    delivered message than this plain tuple (measured, 64-byte publishes).
    """
    size = len(frame)
    if size < 11:
        raise IPCError("PUB needs at least 11 bytes")
    n, op, cl, type_id = _PUB.unpack_from(frame)
    stop = 11 + cl
    if n != size - 4 or stop > size or op != 4:
        raise IPCError("PUB's lengths disagree with the frame")
    try:
        channel = frame[11:stop].decode()
    except UnicodeDecodeError:
        raise IPCError("a string is not valid UTF-8") from None
    return channel, type_id, frame[stop:]


def decode(frame: bytes) -> Message:
    """One frame (length prefix included, as FrameReader returns them) as a message."""
    size = len(frame)
    if size < 5:
        raise IPCError("a frame needs a length and an op")
    op = frame[4]
    if op == Op.PUB:
        return Pub(*pub_fields(frame))
    n = _LEN.unpack_from(frame)[0]
    if n != size - 4:
        raise IPCError(f"the frame declares {n} bytes and holds {size - 4}")
    if op == Op.REP:
        _need(frame, 10, op)
        _, _, rid, status = _REP.unpack_from(frame)
        return Rep(rid, status, frame[10:])
    if op == Op.REQ:
        _need(frame, 15, op)
        _, _, rid, timeout_ms, sl = _REQ.unpack_from(frame)
        return Req(rid, timeout_ms, _str_at(frame, 15, sl), frame[15 + sl :])
    if op in _STRING_OPS:
        _need(frame, 7, op)
        _, _, sl = _STR.unpack_from(frame)
        if 7 + sl != len(frame):
            raise IPCError(f"op {op}: the string does not fill the frame")
        return _STRING_OPS[op](_str_at(frame, 7, sl))
    if op == Op.COUNTS:
        _need(frame, 9, op)
        _, _, count = _COUNTS.unpack_from(frame)
        # Each entry takes at least 6 bytes: refuse a count the frame cannot hold before
        # building anything for it.
        if count * 6 > len(frame) - 9:
            raise IPCError(f"COUNTS declares {count} entries in {len(frame)} bytes")
        items = []
        at = 9
        for _ in range(count):
            _need(frame, at + 6, op)
            cl, value = _COUNT.unpack_from(frame, at)
            items.append((_str_at(frame, at + 6, cl), value))
            at += 6 + cl
        if at != len(frame):
            raise IPCError("COUNTS has trailing bytes")
        return Counts(tuple(items))
    if op in _RID_STRING_OPS:
        _need(frame, 11, op)
        _, _, rid, sl = _RID_STR.unpack_from(frame)
        if 11 + sl != len(frame):
            raise IPCError(f"op {op}: the string does not fill the frame")
        return _RID_STRING_OPS[op](rid, _str_at(frame, 11, sl))
    if op == Op.KV_SET:
        _need(frame, 15, op)
        _, _, rid, ttl_ms, kl = _KV_SET.unpack_from(frame)
        return KvSet(rid, ttl_ms, _str_at(frame, 15, kl), frame[15 + kl :])
    if op == Op.STATS:
        if len(frame) != 9:
            raise IPCError("STATS is 9 bytes long")
        return Stats(_RID.unpack_from(frame)[2])
    raise IPCError(f"unknown op {op}")


_STRING_OPS: dict[int, Any] = {
    Op.HELLO: Hello,
    Op.SUB: Sub,
    Op.UNSUB: Unsub,
    Op.HANDLE: Handle,
    Op.UNHANDLE: Unhandle,
}
_RID_STRING_OPS: dict[int, Any] = {Op.PRESENCE: Presence, Op.KV_GET: KvGet, Op.KV_DEL: KvDel}


class FrameReader:
    """Incremental parser: `feed(chunk)` returns every frame the bytes so far complete.

    Frames are returned whole (length prefix included) so that a broker can forward one
    without re-encoding it. A declared length of zero or over `max_frame` raises
    FrameTooLarge/IPCError as soon as its four length bytes have arrived, before any of it
    is buffered; after an error the reader is unusable and its link is closed.
    """

    __slots__ = ("max_frame", "_buf", "_need")

    def __init__(self, max_frame: int = MAX_FRAME):
        self.max_frame = max_frame
        self._buf = bytearray()
        self._need = 0  # total bytes the buffered partial frame needs (0: nothing buffered)

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        if self._buf:
            # A partial frame is waiting: append (amortised O(1)) until it can complete,
            # so a big frame arriving in many chunks is not copied once per chunk.
            self._buf += data
            if len(self._buf) < self._need:
                return []
            data = bytes(self._buf)
            self._buf = bytearray()
            self._need = 0
        frames: list[bytes] = []
        end = len(data)
        at = 0
        max_frame = self.max_frame
        unpack = _LEN.unpack_from
        while end - at >= 4:
            (n,) = unpack(data, at)
            if n == 0:
                raise IPCError("a frame of length 0 has no op")
            if n > max_frame:
                raise FrameTooLarge(f"a frame of {n} bytes is over max_frame ({max_frame})")
            stop = at + 4 + n
            if stop > end:
                self._need = 4 + n
                break
            frames.append(data[at:stop])
            at = stop
        else:
            if at < end:
                self._need = 4  # a partial length prefix
        if at < end:
            self._buf = bytearray(data[at:])
        return frames


# -- asyncio adapter -----------------------------------------------------------------------
class LinkOwner(Protocol):
    """What a Link reports to: the broker's peer table, or a worker's bus."""

    def opened(self, link: "Link") -> None: ...

    def received(self, link: "Link", frames: list[bytes]) -> None:
        """Complete frames, in order; raising IPCError closes the link as malformed."""

    def lost(self, link: "Link", exc: Exception | None) -> None: ...


class Link(asyncio.Protocol):
    """One Unix-socket connection between a worker and a broker, either end.

    `send(frame)` queues a control frame (subscriptions, requests, replies): always kept,
    since losing one would silently desynchronise the two ends; such frames are bounded by
    the subscriptions and pending requests that produce them. `offer(frame)` queues a data
    frame (a publish) and drops it, counted, when the peer has stopped reading and
    `max_buffer` bytes are already waiting: broadcast never waits for the slowest reader.
    Either way the frame leaves with everything else queued in this loop iteration, in one
    write.

    The transport is whatever asyncio hands `connection_made`, so tests inject a recording
    transport through the Protocol API itself.
    """

    def __init__(
        self,
        owner: LinkOwner,
        *,
        max_frame: int = MAX_FRAME,
        max_buffer: int = MAX_BUFFER,
        name: str = "",
    ):
        self.owner = owner
        self.name = name
        self.reader = FrameReader(max_frame)
        self.max_buffer = max_buffer
        self.transport: asyncio.WriteTransport | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.closed = False
        self._queue: list[bytes] = []
        self._queued = 0
        self._scheduled = False
        self._paused = False  # the transport's buffer is over max_buffer
        # counters
        self.frames_in = 0
        self.frames_out = 0
        self.writes = 0
        self.bytes_out = 0
        self.dropped = 0
        self.malformed = 0

    # -- sending ---------------------------------------------------------------------------
    def send(self, frame: bytes) -> None:
        if self.closed:
            return
        self._queue.append(frame)
        self._queued += len(frame)
        if not self._scheduled:
            self._scheduled = True
            self.loop.call_soon(self.flush)  # type: ignore[union-attr]

    def offer(self, frame: bytes) -> bool:
        if self.closed or self._paused or self._queued + len(frame) > self.max_buffer:
            self.dropped += 1
            return False
        self._queue.append(frame)
        self._queued += len(frame)
        if not self._scheduled:
            self._scheduled = True
            self.loop.call_soon(self.flush)  # type: ignore[union-attr]
        return True

    def flush(self) -> None:
        """Write everything queued, in one write (runs once per loop iteration)."""
        self._scheduled = False
        queue = self._queue
        if not queue or self.closed:
            return
        self._queue = []
        self._queued = 0
        data = queue[0] if len(queue) == 1 else b"".join(queue)
        self.frames_out += len(queue)
        self.bytes_out += len(data)
        self.writes += 1
        self.transport.write(data)  # type: ignore[union-attr]

    def close(self) -> None:
        """Flush what is queued, then close (the transport sends its buffer first)."""
        if self.closed or self.transport is None:
            return
        self.flush()
        self.closed = True
        self.transport.close()

    def abort(self) -> None:
        if self.transport is not None and not self.closed:
            self.closed = True
            self._queue.clear()
            self.transport.abort()  # type: ignore[attr-defined]

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.loop = asyncio.get_running_loop()
        try:
            # pause_writing() past max_buffer bytes in the kernel-side buffer: offer() drops.
            transport.set_write_buffer_limits(high=self.max_buffer)  # type: ignore[attr-defined]
        except (AttributeError, NotImplementedError):
            pass
        self.owner.opened(self)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            frames = self.reader.feed(data)
            if frames:
                self.frames_in += len(frames)
                self.owner.received(self, frames)
        except IPCError as exc:
            self.malformed += 1
            log.warning("closing link %s: %s", self.name or "?", exc)
            self.abort()
        except Exception:
            # A bug in dispatch must not take the process down; the peer reconnects and
            # re-declares, which rebuilds a consistent state on both ends.
            log.exception("closing link %s after an error in its dispatch", self.name or "?")
            self.abort()

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._queue.clear()
        self._queued = 0
        self.owner.lost(self, exc)

    def __repr__(self) -> str:
        return f"Link({self.name!r}{', closed' if self.closed else ''})"
