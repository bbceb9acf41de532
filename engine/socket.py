"""A client connection as server code sees it.

Handlers and middleware get a Socket: its id, its token, a dict for the application's own
state, and the few things server code does to one client (emit an event, set or remove a
token, close it). The engine side of the same object queues channel deliveries, tracks the
channels it subscribes and drains its session into the transport.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from . import speedups
from ._generated import protocol as P
from .errors import CloseCode
from .session import CLOSING, Session
from .transport import frame_header

if TYPE_CHECKING:
    from .channels import Channel
    from .codec import Codec
    from .transport import Connection
    from .worker import Worker

__all__ = ["Socket", "room_frames"]

log = logging.getLogger("tickwire.socket")


class Socket:
    __slots__ = (
        "worker",
        "conn",
        "session",
        "codec",
        "id",
        "token",
        "data",
        "channels",
        "backlogged",
        "waiting",
        "closed",
        "close_code",
        "rooms",
    )

    def __init__(self, worker: "Worker", conn: "Connection", codec: "Codec", session: Session, socket_id: str):
        self.worker = worker
        self.conn = conn
        self.codec = codec
        self.session = session
        self.id = socket_id
        self.token: dict[str, Any] | None = None  # the verified claims of its auth token
        self.data: dict[str, Any] = {}  # the application's own per-connection state
        self.channels: dict[int, Channel] | None = None
        self.backlogged = False
        self.waiting: deque[Any] | None = None  # messages held while an async step runs
        self.closed = False
        self.close_code: int | None = None
        self.rooms: dict[int, Any] | None = None  # room handle -> Seat, while it holds seats

    # -- what server code calls ------------------------------------------------------------
    @property
    def authenticated(self) -> bool:
        return self.token is not None

    @property
    def remote_address(self) -> str:
        return self.conn.peer

    @property
    def headers(self) -> Any:
        return self.conn.request.headers if self.conn.request is not None else {}

    def emit(self, event: str, data: Any = None) -> None:
        """Send an event to this client (answered by nothing)."""
        self.send(P.Emit(event, self.worker.codebook.payload(data)))

    def set_token(self, claims: dict[str, Any], expiry: float | None = None) -> str:
        """Sign a token with these claims and give it to the client for its next handshake."""
        auth = self.worker.auth
        token = auth.sign(claims, expiry=expiry)
        self.token = auth.verify(token)
        self.send(P.SetToken(token))
        return token

    def deauthenticate(self) -> None:
        """Forget this socket's token, here and on the client."""
        self.token = None
        self.send(P.RemoveToken())

    def kick(self, channel: str, reason: str = "") -> None:
        """Remove this socket from a channel and tell it."""
        ch = self.worker.channels.by_name.get(channel)
        if ch is not None and self.channels and ch.id in self.channels:
            self.worker.channels.unsubscribe(self, ch)
            self.send(P.Kicked(ch.id, reason))

    def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Close after what is already queued for the client."""
        self.session.close(code, reason)
        self.finish()

    # -- engine side -------------------------------------------------------------------------
    def send(self, msg: Any, urgent: bool = False) -> None:
        """Queue a message; it leaves at the end of this loop iteration, or, for a socket
        with a seat in a room, in its room's next frame unless it is urgent."""
        first = self.session.send(msg)
        if (first and self.rooms is None) or (urgent and self.rooms is not None):
            self.worker.mark(self)

    def reply(self, msg: Any) -> None:
        """Answer a Call (Result or Error): releases its pending slot; leaves like send()."""
        if self.session.reply(msg.cid, msg) and self.rooms is None:
            self.worker.mark(self)

    def deliver(self, data: bytes) -> None:
        """A channel message, already encoded once for every subscriber of this worker."""
        if self.backlogged:
            self.worker.stats.drops += 1
            return
        session = self.session
        out = session.out
        if out is None:
            if session.push(data) and self.rooms is None:
                self.worker.mark(self)
        else:
            out.append(data)
            session.out_size += len(data)

    def flush(self) -> None:
        self._write(self.session.take_frames())

    def room_frame(self, header: bytes, shared: Sequence[bytes], private: Sequence[bytes]) -> None:
        """A room's send tick: what was queued, then the room's section (its Tick header,
        the shared messages of its view, its own messages), as ONE frame (several, each
        with the header, only past max_out_frame_size)."""
        if self.closed:
            return
        self._write(self.session.frames_with((header, *shared, *private)))

    def _write(self, frames: Sequence[bytes]) -> None:
        if frames:
            conn = self.conn
            text = self.codec.text
            stats = self.worker.stats
            for frame in frames:
                if conn.send_frame(frame, text):
                    stats.frames_out += 1
                    stats.bytes_out += len(frame)

    def finish(self) -> None:
        """If the session decided to close, write what is queued, then the close frame."""
        session = self.session
        if session.close_code is None or self.closed:
            return
        self.closed = True
        self.close_code = session.close_code
        self.flush()
        self.conn.close(session.close_code, session.close_reason)
        self.worker.socket_closing(self)

    # -- transport callbacks -----------------------------------------------------------------
    def on_frame(self, data: bytes, text: bool) -> None:
        worker = self.worker
        msgs = self.session.receive(data, worker.loop.time(), text)
        if msgs:
            worker.dispatch(self, msgs)
        session = self.session
        if session.close_code is not None:
            self.finish()
        elif session.out is not None and self.rooms is None:
            worker.mark(self)

    def on_close(self, code: int | None) -> None:
        self.closed = True
        if self.close_code is None:
            self.close_code = code
        self.worker.socket_closed(self)

    def on_backlog(self, backlogged: bool) -> None:
        self.backlogged = backlogged
        self.session.set_backlogged(backlogged, self.worker.loop.time())
        if self.rooms:
            self.worker.rooms.backlog(self, backlogged)

    def __repr__(self) -> str:
        return f"Socket({self.id!r}, token={'yes' if self.token else 'no'})"


def room_frames(
    sockets: Mapping[str, Socket], shared: Sequence[bytes], views: Sequence[Sequence[int]], sections: Iterable[Any], stats: Any
) -> None:
    """Socket.room_frame for each (…, socket id, header, view, private) section of a send
    tick (RoomService.deliver): its frame is its header, the messages `shared[i]` for i in
    `views[view]`, and its private messages.

    This runs once per player per tick, so it does the usual case itself, with no call but
    the write: a socket with nothing queued and nothing of its own, open, on a codec whose
    frames are their messages back to back, over a plain WebSocket (transport.py's
    send_frame fast path). Its frame is then the header and the view's bytes (joined once
    per view), joined with the WebSocket frame header in one copy. Anything else goes
    through room_frame. The C extension's room_frames runs this loop when it is there;
    _room_frames is its reference.
    """
    tails = [b"".join([shared[i] for i in v]) for v in views]
    native = speedups.native
    if native is None:
        frames, nbytes = _room_frames(sockets, shared, views, tails, sections)
    else:
        frames, nbytes = native.room_frames(
            sockets, tails, sections, CLOSING,
            lambda sock, header, view, private: sock.room_frame(header, [shared[i] for i in views[view]], private),
        )
    stats.frames_out += frames
    stats.bytes_out += nbytes


def _room_frames(
    sockets: Mapping[str, Socket], shared: Sequence[bytes], views: Sequence[Sequence[int]], tails: list[bytes],
    sections: Iterable[Any],
) -> tuple[int, int]:
    """room_frames' loop in Python: (frames, bytes) written on the fast path."""
    sizes = [len(t) for t in tails]
    get = sockets.get
    heads: dict[int, bytes] = {}  # frame headers by payload size: views make few sizes
    frames = nbytes = 0
    for _, _, socket_id, header, view, private in sections:
        sock = get(socket_id)
        if sock is None:
            continue
        session = sock.session
        conn = sock.conn
        n = len(header) + sizes[view]
        if (
            private
            or sock.closed
            or session.out is not None
            or session.state == CLOSING
            or not (conn.writable and conn.fast and getattr(sock.codec, "concatenates", False))
            or n > session.limits.max_out_frame_size
        ):
            sock.room_frame(header, [shared[i] for i in views[view]], private)
            continue
        head = heads.get(n)
        if head is None:
            head = heads[n] = frame_header(n)
        conn.transport.write(b"".join((head, header, tails[view])))
        frames += 1
        nbytes += n
    return frames, nbytes
