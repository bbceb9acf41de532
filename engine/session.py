"""One connection's protocol state machine, sans I/O.

A Session takes frames and time in, and hands out the messages the services must handle
and the frames to write. It never awaits, never reads a clock and never touches a socket:
the transport adapter moves bytes, and the worker dispatches what `receive()` returns.
It enforces the protocol's rules and the per-connection limits of codecs/WIRE.md:

- the first message must be Handshake, with the schema hash the server serves (4009, 4500);
- malformed frames and unknown or misdirected message types close (4100, 4101);
- messages over `max_messages_per_second` are refused, a flood closes (4102);
- calls beyond `max_pending_calls` are refused;
- timers (`poll(now)`): handshake timeout (4005), ping and ping timeout (4000), a send
  buffer over its high-water mark for too long (4103).

Everything bound for the client in one flush is joined into ONE frame (split only when it
exceeds `max_out_frame_size`, and that split is counted).

What differs between codecs is asked of the codec, never tested by name: its
per-connection side (`codec.connection()`: SocketCluster's ping style and handshake id),
whether pings are frames of their own, whether the client needs pings even when it is
busy, and the close codes its clients expect (SocketCluster's 4001 for a pong timeout).
"""

from __future__ import annotations

from typing import Any, Sequence

from ._generated import protocol as P
from .codec import Codec, Rejected
from .errors import CloseCode, ErrorCode, ProtocolViolation
from .limits import Limits, TokenBucket
from .metrics import Metrics
from .packed import DecodeContext, DecodeError, UnknownType

__all__ = ["Session", "AWAITING", "OPEN", "CLOSING", "CLIENT_MESSAGES"]

AWAITING, OPEN, CLOSING = 0, 1, 2

# What a client may send once the handshake is done; anything else closes with 4101.
CLIENT_MESSAGES = frozenset(
    {
        P.Call, P.Emit, P.Subscribe, P.Unsubscribe, P.Publish, P.Authenticate, P.Deauthenticate,
        P.JoinRoom, P.LeaveRoom, P.Input, P.ListRooms,
    }
)
_PING_FRAME_MSG = P.Ping()
_PONG_MSG = P.Pong()


class _Alone(bytes):
    """Encoded bytes that leave as a frame of their own (a codec's pings_are_frames)."""

    __slots__ = ()


class Session:
    __slots__ = (
        "codec",
        "wire",
        "alone",
        "limits",
        "ctx",
        "stats",
        "state",
        "opened_at",
        "last_heard",
        "last_ping",
        "rate",
        "over_rate_since",
        "last_refused",
        "last_rate_error",
        "pending_calls",
        "out",
        "out_size",
        "backlog_since",
        "close_code",
        "close_reason",
    )

    def __init__(self, codec: Codec, limits: Limits, ctx: DecodeContext, stats: Metrics, now: float):
        self.codec = codec
        self.wire = codec.connection()  # decode, encode, join for this connection
        self.alone = 0  # how many queued parts are frames of their own
        self.limits = limits
        self.ctx = ctx
        self.stats = stats
        self.state = AWAITING
        self.opened_at = now
        self.last_heard = now
        self.last_ping = now
        self.rate = TokenBucket(limits.max_messages_per_second, limits.message_burst, now)
        self.over_rate_since: float | None = None
        self.last_refused = -1e9
        self.last_rate_error = -1e9
        self.pending_calls = 0
        self.out: list[bytes] | None = None
        self.out_size = 0
        self.backlog_since: float | None = None
        self.close_code: int | None = None
        self.close_reason = ""

    # -- inbound ---------------------------------------------------------------------------
    def receive(self, frame: bytes, now: float, text: bool = False) -> list[Any]:
        """The messages in one inbound frame that the services must handle, in order."""
        if self.state == CLOSING:
            return []
        stats = self.stats
        stats.frames_in += 1
        stats.bytes_in += len(frame)
        self.last_heard = now
        if len(frame) > self.limits.max_frame_size:
            self.fail(CloseCode.MESSAGE_TOO_BIG, "frame over max_frame_size")
            return []
        if text is not self.codec.text:
            self.fail(CloseCode.MALFORMED, "text frame for a binary codec" if text else "binary frame for a text codec")
            return []
        try:
            msgs = self.wire.decode(frame, self.ctx)
        except ProtocolViolation as exc:
            self.fail(exc.close_code, exc.reason)
            return []
        except UnknownType as exc:
            self.fail(CloseCode.UNKNOWN_TYPE, str(exc))
            return []
        except DecodeError as exc:
            self.fail(CloseCode.MALFORMED, str(exc))
            return []
        stats.messages_in += len(msgs)
        events: list[Any] = []
        for msg in msgs:
            kind = type(msg)
            if self.state == AWAITING:
                if kind is not P.Handshake:
                    self.fail(CloseCode.MESSAGE_BEFORE_HANDSHAKE, "the first message must be Handshake")
                    return []
                if not self.codec.schema_ok(msg.schema_hash):
                    self.fail(CloseCode.SCHEMA_MISMATCH, "client schema does not match the server's")
                    return []
                # The services decide (token, middleware): welcome() or fail(4008).
                self.state = OPEN
                events.append(msg)
                continue
            if kind is P.Pong:
                continue
            if kind is P.Ping:
                self._control(_PONG_MSG)
                continue
            if kind is Rejected:
                stats.rejected += 1
                if not self.rate.take(now):
                    if self._over_rate(msg, now):
                        return []
                    continue
                if msg.cid:
                    self.send(P.Error(msg.cid, ErrorCode.BAD_REQUEST, msg.reason))
                continue
            if kind not in CLIENT_MESSAGES:
                self.fail(CloseCode.UNKNOWN_TYPE, f"a client may not send {kind.__name__}")
                return []
            if not self.rate.take(now):
                if self._over_rate(msg, now):
                    return []
                continue
            if kind is P.Call:
                if self.pending_calls >= self.limits.max_pending_calls:
                    stats.limit_errors += 1
                    self.send(P.Error(msg.cid, ErrorCode.LIMIT_EXCEEDED, "max_pending_calls"))
                    continue
                self.pending_calls += 1
            events.append(msg)
        return events

    def _over_rate(self, msg: Any, now: float) -> bool:
        """Refuse one message over the rate; True when the flood closed the connection."""
        stats = self.stats
        stats.rate_limited += 1
        # A flood is refusals that keep coming: one quiet second ends it.
        if self.over_rate_since is None or now - self.last_refused > 1.0:
            self.over_rate_since = now
        self.last_refused = now
        if now - self.over_rate_since > self.limits.flood_close_after:
            self.fail(CloseCode.FLOOD, "max_messages_per_second exceeded for too long")
            return True
        cid = getattr(msg, "cid", 0)
        # Requests get their answer; otherwise one notice a second, so a flood is not echoed.
        if cid or now - self.last_rate_error >= 1.0:
            self.last_rate_error = now
            self.send(P.Error(cid, ErrorCode.LIMIT_EXCEEDED, "max_messages_per_second"))
        return False

    # -- outbound --------------------------------------------------------------------------
    def send(self, msg: Any) -> bool:
        """Queue a protocol record; True when the queue was empty (a flush is due)."""
        data = self.wire.encode(msg)
        if not data:
            return False  # nothing on this codec's wire (SocketCluster: an answer nobody asked for)
        return self.push(data)

    def _control(self, msg: Any) -> bool:
        """Queue a ping or pong: a message in the frame, or a frame of its own."""
        if not self.codec.pings_are_frames:
            return self.send(msg)
        if self.state == CLOSING:
            return False
        self.alone += 1
        return self.push(_Alone(self.wire.encode(msg)))

    def push(self, data: bytes) -> bool:
        """Queue encoded bytes; True when the queue was empty (a flush is due)."""
        if self.state == CLOSING:
            return False
        if self.out is None:
            self.out = [data]
            self.out_size = len(data)
            return True
        self.out.append(data)
        self.out_size += len(data)
        return False

    def reply(self, cid: int, msg: Any) -> bool:
        """Answer a Call (msg is Result or Error) and release its pending slot."""
        self.pending_calls -= 1
        return self.send(msg)

    def frames_with(self, section: Sequence[bytes]) -> Sequence[bytes]:
        """take_frames() after pushing a room's section at its send tick: `section[0]` is
        its Tick header, the rest its messages. When nothing else is queued, the usual
        case, the frame is the section joined, without the queue.

        A section over max_out_frame_size is split at message boundaries like the rest,
        and each frame that continues it starts with its Tick header again: a message
        belongs to the room of the Tick before it in the same frame (protocol.fbs), so
        without it the client would drop what the later frames carry."""
        if self.out is None and self.state != CLOSING:
            data = self.wire.join(section)
            if len(data) <= self.limits.max_out_frame_size:
                return (data,)
        start = len(self.out) if self.out is not None else 0
        for part in section:
            self.push(part)
        return self.take_frames(section=(start, section[0]))

    def take_frames(self, section: tuple[int, bytes] | None = None) -> Sequence[bytes]:
        """Everything queued since the last flush, as frames: one unless over the limit.
        `section`: (index in the queue, header) of a room section that ends the queue;
        frames that continue it repeat its header."""
        out = self.out
        if out is None:
            return ()
        size = self.out_size
        self.out = None
        self.out_size = 0
        limit = self.limits.max_out_frame_size
        join = self.wire.join
        if size <= limit and not self.alone:
            return (join(out),)
        header_at, header = section if section is not None else (len(out), b"")
        frames: list[bytes] = []
        current: list[bytes] = []
        current_size = 0
        split = 0
        for i, part in enumerate(out):
            if type(part) is _Alone:
                if current:
                    frames.append(join(current))
                    current, current_size = [], 0
                frames.append(bytes(part))
                continue
            if current and current_size + len(part) > limit:
                if i == header_at + 1:  # the header would end this frame alone: move it on
                    current.pop()
                    current_size -= len(header)
                if current:
                    frames.append(join(current))
                    split += 1
                current, current_size = [], 0
                if i > header_at:  # the section goes on in the next frame: its room first
                    current, current_size = [header], len(header)
            current.append(part)
            current_size += len(part)
        if current:
            frames.append(join(current))
        self.alone = 0
        self.stats.frames_split += split
        return frames

    # -- time ------------------------------------------------------------------------------
    def poll(self, now: float) -> bool:
        """Run the timers; True when something was queued (a flush is due)."""
        if self.state == CLOSING:
            return False
        limits = self.limits
        if self.state == AWAITING:
            if now - self.opened_at > limits.handshake_timeout:
                self.fail(CloseCode.HANDSHAKE_TIMEOUT, "no handshake in time")
            return False
        if self.backlog_since is not None and now - self.backlog_since > limits.slow_reader_timeout:
            self.fail(CloseCode.SLOW_READER, "send buffer stayed over its high-water mark")
            return False
        silent = now - self.last_heard
        if silent > limits.ping_timeout:
            self.fail(CloseCode.PING_TIMEOUT, "no answer to ping")
            return False
        if (silent > limits.ping_interval or self.codec.ping_always) and now - self.last_ping > limits.ping_interval:
            self.last_ping = now
            return self._control(_PING_FRAME_MSG)
        return False

    def set_backlogged(self, backlogged: bool, now: float) -> None:
        self.backlog_since = now if backlogged else None

    # -- closing ---------------------------------------------------------------------------
    def fail(self, code: int, reason: str) -> None:
        """Close for a protocol or limit violation; the adapter sends the close frame."""
        if self.state == CLOSING:
            return
        code = self.codec.close_code(code)
        self.stats.count_close(code)
        self.close(code, reason)
        self.out = None  # what was queued for a client that broke the rules is dropped
        self.out_size = 0
        self.alone = 0

    def close(self, code: int, reason: str = "") -> None:
        """Close after what is queued: the adapter writes the queued frames, then the close."""
        if self.state == CLOSING:
            return
        self.state = CLOSING
        self.close_code = code
        self.close_reason = reason
