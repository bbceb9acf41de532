"""Middleware: the requests each kind sees, and the chain that runs them.

Kinds (as SocketCluster's): handshake, inbound (every message after the handshake),
subscribe, publish_in (a client's publish), publish_out (once per message per worker) and,
opt-in, publish_out_socket (once per message per recipient: slow, documented as such).

A middleware function takes the request and may:
- return (or return None): allow;
- raise a TickwireError, usually Blocked("why"): block, with the message the client sees;
- change the request's fields (`req.data = ...`, `req.channel = ...`): transform.

Functions may be sync or async. A chain of sync functions runs inline; a chain with any
coroutine function makes the connection wait for it before its next message, so order holds.
Payload data is decoded only when a function reads `req.data`.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from .packed import Payload

if TYPE_CHECKING:
    from .socket import Socket

__all__ = [
    "Chain",
    "HandshakeRequest",
    "InboundRequest",
    "SubscribeRequest",
    "PublishIn",
    "PublishOut",
    "PublishOutSocket",
]


class Chain:
    """Middleware of one kind, in registration order.

    `run(req)` returns None when every function ran synchronously, or an awaitable when
    one of them is a coroutine function, so the common all-sync case costs no task.
    """

    __slots__ = ("funcs", "is_async")

    def __init__(self) -> None:
        self.funcs: list[Callable[[Any], Any]] = []
        self.is_async = False

    def add(self, fn: Callable[[Any], Any]) -> None:
        self.funcs.append(fn)
        self.is_async = self.is_async or inspect.iscoroutinefunction(fn)

    def __bool__(self) -> bool:
        return bool(self.funcs)

    def run(self, req: Any) -> Awaitable[None] | None:
        if self.is_async:
            return self._run_async(req)
        for fn in self.funcs:
            fn(req)
        return None

    async def _run_async(self, req: Any) -> None:
        for fn in self.funcs:
            result = fn(req)
            if inspect.isawaitable(result):
                await result


class HandshakeRequest:
    """A client's handshake: its HTTP request, and the token it presented (if valid)."""

    __slots__ = ("socket", "path", "headers", "remote", "token", "auth_error")

    def __init__(self, socket: "Socket", path: str, headers: Any, remote: str, token: dict | None, auth_error: str):
        self.socket = socket
        self.path = path
        self.headers = headers
        self.remote = remote
        self.token = token
        self.auth_error = auth_error


class InboundRequest:
    """Every message after the handshake; replace `message` to transform it."""

    __slots__ = ("socket", "message")

    def __init__(self, socket: "Socket", message: Any):
        self.socket = socket
        self.message = message


class SubscribeRequest:
    __slots__ = ("socket", "channel")

    def __init__(self, socket: "Socket", channel: str):
        self.socket = socket
        self.channel = channel


class _PayloadRequest:
    """A request carrying a payload, decoded only when middleware reads `data`."""

    __slots__ = ("channel", "payload", "_decode", "_value", "_decoded", "_changed")

    def __init__(self, channel: str, payload: Payload, decode: Callable[[Payload], Any]):
        self.channel = channel
        self.payload = payload
        self._decode = decode
        self._value: Any = None
        self._decoded = False
        self._changed = False

    @property
    def data(self) -> Any:
        if not self._decoded:
            self._value = self._decode(self.payload)
            self._decoded = True
        return self._value

    @data.setter
    def data(self, value: Any) -> None:
        self._value = value
        self._decoded = True
        self._changed = True


class PublishIn(_PayloadRequest):
    __slots__ = ("socket",)

    def __init__(self, socket: "Socket", channel: str, payload: Payload, decode: Callable[[Payload], Any]):
        super().__init__(channel, payload, decode)
        self.socket = socket


class PublishOut(_PayloadRequest):
    """Once per message per worker, before it is encoded for the local subscribers."""

    __slots__ = ()


class PublishOutSocket(_PayloadRequest):
    """Once per message per recipient (opt-in; see the module doc)."""

    __slots__ = ("socket",)

    def __init__(self, socket: "Socket", channel: str, payload: Payload, decode: Callable[[Payload], Any]):
        super().__init__(channel, payload, decode)
        self.socket = socket
