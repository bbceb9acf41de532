"""The application API: what server code registers, before anything runs.

    app = App(schemas=[game_schema])

    @app.procedure("add")
    def add(socket, data):
        return data["a"] + data["b"]

    @app.middleware("subscribe")
    def only_members(req):
        if req.socket.token is None:
            raise Blocked("sign in first")

An App holds registrations only: no sockets, no loop, no process state. `tickwire run
module:app` (engine.cli) builds workers that read it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from .limits import Limits
from .middleware import Chain

__all__ = ["App", "Settings", "MIDDLEWARE_KINDS"]

MIDDLEWARE_KINDS = ("handshake", "inbound", "subscribe", "publish_in", "publish_out", "publish_out_socket")

Handler = Callable[..., Any]


@dataclass
class Settings:
    """How a server runs (everything that is not a per-connection limit)."""

    host: str = "0.0.0.0"
    port: int = 8000
    static_dir: str | None = None
    # security
    origins: Sequence[str] | None = None  # allowed Origin values; None allows any
    tls_cert: str | None = None
    tls_key: str | None = None
    # auth: HS256 with auth_key, or RS256 with auth_private_key (PEM) and public keys by kid
    auth_algorithm: str = "HS256"
    auth_key: str | None = None
    auth_private_key: str | None = None
    auth_public_keys: dict[str, str] = field(default_factory=dict)
    auth_key_id: str | None = None
    auth_expiry: float = 24 * 3600.0
    # transport
    compression: bool = False  # permessage-deflate: costs CPU on every frame; game frames are small
    batch_interval: float = 0.0  # 0: flush at the end of the event loop iteration
    shutdown_timeout: float = 5.0
    # memory: freed C heap a server process keeps for the next send tick instead of giving
    # it back and faulting it in again (engine/heap.py); 0 leaves the allocator as it is
    heap_pad: int = 16 << 20
    # young-generation GC every this many container allocations (CPython: 700), so a send
    # tick's temporaries do not run the collector inside it (engine/heap.py); 0: CPython's
    gc_threshold: int = 20_000

    @classmethod
    def from_env(cls, **overrides: Any) -> "Settings":
        s = cls(**overrides)
        env = os.environ
        if s.auth_key is None and env.get("TICKWIRE_AUTH_KEY"):
            s.auth_key = env["TICKWIRE_AUTH_KEY"]
        if s.auth_private_key is None and env.get("TICKWIRE_AUTH_PRIVATE_KEY_FILE"):
            with open(env["TICKWIRE_AUTH_PRIVATE_KEY_FILE"], encoding="ascii") as fh:
                s.auth_private_key = fh.read()
        return s


class App:
    """Registrations: procedures, receivers, middleware, channel types, hooks."""

    def __init__(
        self,
        schemas: Iterable[Any] = (),
        limits: Limits | None = None,
        settings: Settings | None = None,
        name: str = "tickwire",
    ):
        self.name = name
        self.schemas = list(schemas)
        self.limits = limits or Limits()
        self.settings = settings or Settings()
        self.procedures: dict[str, Handler] = {}
        self.receivers: dict[str, Handler] = {}
        self.middleware_chains: dict[str, Chain] = {kind: Chain() for kind in MIDDLEWARE_KINDS}
        self.channel_types: list[tuple[str, type]] = []  # (exact name or "prefix*", record class)
        self.on_start: list[Handler] = []
        self.on_stop: list[Handler] = []
        self.on_connect: list[Handler] = []
        self.on_disconnect: list[Handler] = []
        self.routes: dict[str, Handler] = {}  # extra HTTP GET routes: path -> fn(request) -> Response
        self.room_types: dict[str, type] = {}  # name -> Room subclass

    # -- registration -------------------------------------------------------------------
    def procedure(self, name: str) -> Callable[[Handler], Handler]:
        """A request/response handler: fn(socket, data) -> result (or awaitable)."""

        def register(fn: Handler) -> Handler:
            if name in self.procedures:
                raise ValueError(f"procedure {name!r} is registered twice")
            self.procedures[name] = fn
            return fn

        return register

    def receiver(self, name: str) -> Callable[[Handler], Handler]:
        """An event handler without reply: fn(socket, data)."""

        def register(fn: Handler) -> Handler:
            if name in self.receivers:
                raise ValueError(f"receiver {name!r} is registered twice")
            self.receivers[name] = fn
            return fn

        return register

    def middleware(self, kind: str) -> Callable[[Handler], Handler]:
        """Middleware on handshake, inbound, subscribe, publish_in or publish_out.

        publish_out runs once per message per worker. publish_out_socket runs once per
        message per recipient: it is opt-in because it costs a call per delivery and
        forces a separate encoding for every recipient it transforms.
        """
        if kind not in self.middleware_chains:
            raise ValueError(f"unknown middleware kind {kind!r}; choose from {', '.join(MIDDLEWARE_KINDS)}")

        def register(fn: Handler) -> Handler:
            self.middleware_chains[kind].add(fn)
            return fn

        return register

    def channel_type(self, pattern: str, record: type) -> None:
        """Channels named `pattern` (or starting with it, when it ends with '*') carry `record`."""
        self.channel_types.append((pattern, record))

    def room(self, name: str, room_class: type | None = None) -> Any:
        """Register a Room subclass under a type name: app.room("arena", Arena), or as a decorator."""

        def register(cls: type) -> type:
            if name in self.room_types:
                raise ValueError(f"room type {name!r} is registered twice")
            self.room_types[name] = cls
            return cls

        return register(room_class) if room_class is not None else register

    def route(self, path: str) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            self.routes[path] = fn
            return fn

        return register

    def hook(self, event: str) -> Callable[[Handler], Handler]:
        """on_start(worker), on_stop(worker), on_connect(socket), on_disconnect(socket)."""
        lists = {"start": self.on_start, "stop": self.on_stop, "connect": self.on_connect, "disconnect": self.on_disconnect}
        if event not in lists:
            raise ValueError(f"unknown hook {event!r}; choose from {', '.join(lists)}")

        def register(fn: Handler) -> Handler:
            lists[event].append(fn)
            return fn

        return register

    # -- lookups ------------------------------------------------------------------------
    def chain(self, kind: str) -> Chain:
        return self.middleware_chains[kind]

    def channel_record(self, name: str) -> type | None:
        for pattern, record in self.channel_types:
            if pattern.endswith("*"):
                if name.startswith(pattern[:-1]):
                    return record
            elif name == pattern:
                return record
        return None
