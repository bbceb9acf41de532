"""The transport: TCP bytes to WebSocket frames and HTTP requests, and back.

An asyncio Protocol per connection drives websockets' sans-I/O ServerProtocol: no task,
no queue and no future per connection, so an idle connection costs little memory and a
frame costs no await. The HTTP request that opens a connection is handed to the `Host`
(the worker), which answers it (health, static files) or accepts the WebSocket upgrade;
frames go to the connection's handler (the worker's Socket).

Writing is the hot path. A server frame is unmasked and, without compression, its bytes
are a fixed header and the payload (RFC 6455, 5.2), so `send_frame` writes them directly
instead of building a websockets Frame per write; the close handshake and anything with an
extension still go through websockets. The interface a handler sees is small (send_frame,
close, buffered size, peer) so that another engine (picows) can stand behind it.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Protocol

from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import OPEN
from websockets.server import ServerProtocol

__all__ = ["Connection", "Host", "Handler", "frame_header"]

OP_BINARY, OP_CONT, OP_TEXT = Opcode.BINARY, Opcode.CONT, Opcode.TEXT

_SMALL_BIN = [bytes((0x82, n)) for n in range(126)]
_SMALL_TEXT = [bytes((0x81, n)) for n in range(126)]
_H16 = struct.Struct("!BBH")
_H64 = struct.Struct("!BBQ")


def frame_header(n: int, text: bool = False) -> bytes:
    """The header of an unmasked, final, uncompressed server frame of n bytes."""
    if n < 126:
        return (_SMALL_TEXT if text else _SMALL_BIN)[n]
    first = 0x81 if text else 0x82
    if n < 65536:
        return _H16.pack(first, 126, n)
    return _H64.pack(first, 127, n)


class Handler(Protocol):
    """What a connection calls once its WebSocket is open."""

    def on_frame(self, data: bytes, text: bool) -> None: ...

    def on_close(self, code: int | None) -> None: ...

    def on_backlog(self, backlogged: bool) -> None: ...


class Host(Protocol):
    """What a connection calls before it has a handler (the worker)."""

    max_frame_size: int

    def connection_made(self, conn: "Connection") -> None: ...

    def request_received(self, conn: "Connection", request: Request) -> None: ...

    def connection_lost(self, conn: "Connection") -> None: ...


class Connection(asyncio.Protocol):
    __slots__ = (
        "host",
        "transport",
        "ws",
        "handler",
        "peer",
        "request",
        "fragments",
        "fragments_text",
        "opened_at",
        "closing_at",
        "fast",
        "writable",
    )

    def __init__(self, host: Host, ws: ServerProtocol):
        self.host = host
        self.ws = ws
        self.transport: asyncio.Transport | None = None
        self.handler: Handler | None = None
        self.peer = ""
        self.request: Request | None = None
        self.fragments: list[bytes] | None = None
        self.fragments_text = False
        self.opened_at = 0.0
        self.closing_at: float | None = None
        self.fast = True  # False once an extension (compression) is negotiated
        # The WebSocket is open and frames may be written. A plain attribute, because
        # websockets' `state` is a property and send_frame runs once per frame sent.
        self.writable = False

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if isinstance(peer, tuple) else str(peer or "")
        self.host.connection_made(self)

    def data_received(self, data: bytes) -> None:
        ws = self.ws
        ws.receive_data(data)
        for event in ws.events_received():
            if type(event) is Frame:
                op = event.opcode
                if op is OP_BINARY or op is OP_TEXT:
                    if event.fin:
                        if self.handler is not None:
                            self.handler.on_frame(event.data, op is OP_TEXT)
                    else:
                        self.fragments = [event.data]
                        self.fragments_text = op is OP_TEXT
                elif op is OP_CONT and self.fragments is not None:
                    self.fragments.append(event.data)
                    if event.fin:
                        data_all = b"".join(self.fragments)
                        text = self.fragments_text
                        self.fragments = None
                        if self.handler is not None:
                            self.handler.on_frame(data_all, text)
            elif isinstance(event, Request):
                self.request = event
                self.host.request_received(self, event)
        if self.writable and ws.state is not OPEN:
            self.writable = False  # a close frame arrived, or the parser failed the connection
        self.write_pending()

    def eof_received(self) -> bool | None:
        self.ws.receive_eof()
        self.write_pending()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.writable = False
        self.ws.receive_eof()
        handler = self.handler
        self.handler = None
        if handler is not None:
            handler.on_close(self.ws.close_code)
        self.host.connection_lost(self)

    def pause_writing(self) -> None:
        if self.handler is not None:
            self.handler.on_backlog(True)

    def resume_writing(self) -> None:
        if self.handler is not None:
            self.handler.on_backlog(False)

    # -- what handlers and the host call -----------------------------------------------------
    def accept(self, request: Request, handler: Handler | None, response: Response) -> None:
        """Send the handshake response; with a 101, frames now go to `handler`."""
        self.ws.send_response(response)
        if response.status_code == 101:
            self.handler = handler
            self.fast = not self.ws.extensions
            self.writable = True
        self.write_pending()

    def respond(self, response: Response) -> None:
        """Answer a plain HTTP request; the connection closes after it."""
        if self.transport is None or self.transport.is_closing():
            return
        self.ws.send_response(response)
        self.write_pending()

    def send_frame(self, data: bytes, text: bool = False) -> bool:
        """Write one complete frame now; False when the connection is no longer open."""
        if not self.writable:
            return False
        if self.fast:
            n = len(data)
            if n < 4096:
                self.transport.write(frame_header(n, text) + data)  # type: ignore[union-attr]
            else:
                self.transport.writelines((frame_header(n, text), data))  # type: ignore[union-attr]
            return True
        if text:
            self.ws.send_text(data)
        else:
            self.ws.send_binary(data)
        self.write_pending()
        return True

    def close(self, code: int, reason: str = "") -> None:
        """Start the closing handshake; the host aborts the connection if it never ends."""
        ws = self.ws
        self.writable = False
        if ws.state is OPEN:
            ws.send_close(code, reason[:120])
            self.write_pending()
        elif self.transport is not None and self.handler is None and ws.state is not OPEN:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def buffered(self) -> int:
        return self.transport.get_write_buffer_size() if self.transport is not None else 0

    def write_pending(self) -> None:
        transport = self.transport
        if transport is None:
            return
        for data in self.ws.data_to_send():
            if data:
                transport.write(data)
            else:
                # websockets asks for EOF: a server closes the TCP connection right away.
                transport.close()
                return
