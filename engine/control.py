"""The control link between the supervisor and each child process.

A Unix socketpair per child carries rare, small messages: `ready`, periodic `stats`,
questions (`ask`: the cluster's metrics or health) and their answers, and commands
(`drain`, `stop`). Frames are a 4-byte big-endian length and a JSON object; game traffic
never goes this way. For the 'rr' scheduling policy a second socketpair passes accepted
connections to the worker as file descriptors (SCM_RIGHTS).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import struct
from typing import Any, Awaitable, Callable

__all__ = ["ControlLink", "MAX_CONTROL_FRAME", "send_fd", "FdReceiver"]

MAX_CONTROL_FRAME = 16 * 1024 * 1024
_LEN = struct.Struct(">I")

Handler = Callable[[dict[str, Any]], Awaitable[Any] | Any]


class ControlLink:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self.closed = False

    @classmethod
    async def from_socket(cls, sock: socket.socket) -> "ControlLink":
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=MAX_CONTROL_FRAME)
        return cls(reader, writer)

    def send(self, msg: dict[str, Any]) -> None:
        if self.closed or self.writer.is_closing():
            return
        data = json.dumps(msg, separators=(",", ":")).encode()
        self.writer.write(_LEN.pack(len(data)) + data)

    async def recv(self) -> dict[str, Any] | None:
        """The next message, or None when the other side is gone."""
        try:
            (n,) = _LEN.unpack(await self.reader.readexactly(4))
            if n > MAX_CONTROL_FRAME:
                raise ValueError(f"control frame of {n} bytes")
            return json.loads(await self.reader.readexactly(n))
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            self.closed = True
            return None

    async def ask(self, what: str, timeout: float = 5.0, **fields: Any) -> Any:
        """Ask the other side a question; `serve` on that side answers it."""
        qid = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[qid] = fut
        self.send({"op": "ask", "id": qid, "what": what, **fields})
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._waiting.pop(qid, None)

    async def serve(self, handle: Handler) -> None:
        """Read until EOF: answers resolve `ask`, everything else goes to `handle`."""
        while True:
            msg = await self.recv()
            if msg is None:
                for fut in self._waiting.values():
                    if not fut.done():
                        fut.set_exception(ConnectionError("control link closed"))
                return
            if msg.get("op") == "answer":
                fut = self._waiting.get(msg.get("id", 0))
                if fut is not None and not fut.done():
                    fut.set_result(msg.get("body"))
                continue
            result = handle(msg)
            if asyncio.iscoroutine(result):
                await result

    def answer(self, question: dict[str, Any], body: Any) -> None:
        self.send({"op": "answer", "id": question.get("id"), "body": body})

    def close(self) -> None:
        self.closed = True
        self.writer.close()


def send_fd(sock: socket.socket, fd: int) -> None:
    """Pass an accepted connection to a worker (the 'rr' scheduling policy)."""
    socket.send_fds(sock, [b"c"], [fd])


class FdReceiver:
    """The worker's end of the fd-passing socketpair: calls `on_fd(sock)` per connection."""

    def __init__(self, sock: socket.socket, on_sock: Callable[[socket.socket], None]):
        self.sock = sock
        self.sock.setblocking(False)
        self.on_sock = on_sock

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_reader(self.sock.fileno(), self._readable)
        self.loop = loop

    def stop(self) -> None:
        try:
            self.loop.remove_reader(self.sock.fileno())
        except (AttributeError, ValueError, OSError):
            pass

    def _readable(self) -> None:
        while True:
            try:
                msg, fds, _flags, _addr = socket.recv_fds(self.sock, 64, 64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.stop()
                return
            if not msg and not fds:
                self.stop()  # the supervisor is gone
                return
            for fd in fds:
                self.on_sock(socket.socket(fileno=fd))
