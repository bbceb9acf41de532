"""A worker: one event loop serving WebSocket and HTTP on a port, running the app.

Data flows socket -> transport -> session -> services -> codec -> socket. The worker is
the services layer: it dispatches what sessions decode (one `match`), runs middleware,
procedures and receivers, routes publishes through the bus and channel deliveries back to
its sockets, and flushes every socket that has something to send ONCE per loop iteration
(or per `batch_interval`), so everything a client gets in one flush travels in one frame.
It also answers plain HTTP (health, metrics, static files) and runs one timer sweep a
second for every session's timers.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import ssl
import time
from collections import deque
from typing import Any, Awaitable, Callable, Iterable, Iterator

from websockets.exceptions import NegotiationError
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.headers import parse_subprotocol
from websockets.http11 import Request
from websockets.server import ServerProtocol

from ._generated import protocol as P
from .app import App, Settings
from .auth import KEY_ENV, Auth, generate_key
from .bus import Bus, LocalBus
from .channels import Channel, ChannelTable
from .codec import PACKED_SUBPROTOCOL, Codec, PackedCodec
from .directory import LocalDirectory
from .errors import BadRequest, ErrorCode, NotFound, TickwireError, Timeout, Unauthenticated, wire_error
from .limits import Limits, TokenBucket
from .metrics import Metrics, prometheus_text, room_metrics_text
from .middleware import HandshakeRequest, InboundRequest, PublishIn, SubscribeRequest
from .packed import NO_PAYLOAD, Codebook, DecodeError, EncodeError, Payload
from .roomservice import RoomService
from .sccodec import ScCodec
from .session import Session
from .socket import Socket
from .transport import Connection
from .web import CLIENT_ENTRY, DEFAULT_STATIC, JS_ROOT, json_response, response, static_file, text_response

__all__ = ["Worker", "auth_from_settings"]

log = logging.getLogger("tickwire.worker")
# websockets logs every connection at INFO; at a game server's connection rates that is
# noise and CPU, so its records go to a logger that only lets warnings through.
ws_log = logging.getLogger("tickwire.transport")
ws_log.setLevel(logging.WARNING)

SWEEP_INTERVAL = 1.0
CLOSE_TIMEOUT = 3.0  # a client that does not finish the closing handshake is cut off


def auth_from_settings(settings: Settings) -> Auth:
    """The token signer every process of a server shares (see auth.py)."""
    if settings.auth_algorithm.startswith("HS"):
        key = settings.auth_key or os.environ.get(KEY_ENV)
        if not key:
            # Single process: generate here. A supervisor generates it before its workers.
            key = os.environ[KEY_ENV] = generate_key()
        return Auth(settings.auth_algorithm, key=key, key_id=settings.auth_key_id, expiry=settings.auth_expiry)
    return Auth(
        settings.auth_algorithm,
        private_key=settings.auth_private_key,
        public_keys=settings.auth_public_keys,
        key_id=settings.auth_key_id,
        expiry=settings.auth_expiry,
    )


class Worker:
    def __init__(
        self,
        app: App,
        *,
        bus: Bus | None = None,
        process: str = "worker-0",
        settings: Settings | None = None,
        limits: Limits | None = None,
        extra_codecs: Iterable[Callable[["Worker"], Codec]] = (),
        directory: Any = None,
        node: str | None = None,
    ):
        self.app = app
        self.process = process  # the name clients and logs see, e.g. "worker-1"
        self.node = node or process  # the identity on the bus: unique per generation
        self.settings = settings or app.settings
        self.limits = limits or app.limits
        self.codebook = Codebook(P, *app.schemas)
        self.ctx = self.codebook.context(
            max_string=self.limits.max_string_length,
            max_vector=self.limits.max_vector_length,
            max_depth=self.limits.max_depth,
        )
        self.packed = PackedCodec(self.codebook)
        # A client offering no subprotocol speaks SocketCluster's JSON (WIRE.md, "Connection").
        self.codecs: dict[str | None, Codec] = {PACKED_SUBPROTOCOL: self.packed, None: ScCodec(self.codebook)}
        for make in extra_codecs:
            codec = make(self)
            self.codecs[codec.subprotocol] = codec
        self.auth = auth_from_settings(self.settings)
        self.stats = Metrics()
        self.bus: Bus = bus or LocalBus()
        self.channels = ChannelTable(
            self.bus, self.stats, self.channel_type, self.limits.max_channels_per_connection
        )
        self.channels.decode = self.payload_value
        self.channels.to_payload = self.codebook.payload
        self.bus.attach(self._from_bus)
        if directory is None:
            directory = LocalDirectory()
        self.directory = directory
        self.rooms = RoomService(self, directory)
        self.routes = self._routes()
        if isinstance(directory, LocalDirectory):
            directory.attach(self.node, self._host_for_directory)
        self._install_publish_out()
        self.inbound = app.chain("inbound")
        self.sockets: set[Socket] = set()
        self.conns: set[Connection] = set()
        self.dirty: list[Socket] = []
        self.flush_pending = False
        self.ip_buckets: dict[str, TokenBucket] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        self.server: asyncio.AbstractServer | None = None
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._sweeper: asyncio.TimerHandle | None = None
        self._socket_seq = 0
        self._stopping = False
        self.static_roots = [r for r in (self.settings.static_dir, DEFAULT_STATIC) if r]
        self.control: Any = None  # the supervisor's control link, in a cluster
        self.ssl_context: ssl.SSLContext | None = None
        self.started_at = time.time()

    def _install_publish_out(self) -> None:
        for kind in ("publish_out", "publish_out_socket"):
            chain = self.app.chain(kind)
            if not chain:
                continue
            if chain.is_async:
                raise TypeError(f"{kind} middleware runs on every delivery and must not be async")
            setattr(self.channels, kind, chain.run)

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(
        self,
        host: str | None = None,
        port: int | None = None,
        *,
        sock: Any = None,
        reuse_port: bool = False,
        ssl_context: ssl.SSLContext | None = None,
        listen: bool = True,
    ) -> None:
        """Start serving: on `sock` (a listening socket handed down by the supervisor), on
        host:port, or (listen=False) only on connections passed to accept_socket()."""
        self.loop = asyncio.get_running_loop()
        settings = self.settings
        if ssl_context is None and settings.tls_cert:
            ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_context.load_cert_chain(settings.tls_cert, settings.tls_key)
        self.ssl_context = ssl_context
        await self.bus.start()
        self.rooms.start()
        for fn in self.app.on_start:
            result = fn(self)
            if inspect.isawaitable(result):
                await result
        if not listen:
            pass
        elif sock is not None:
            self.server = await self.loop.create_server(self._protocol, sock=sock, ssl=ssl_context, backlog=1024)
        else:
            self.server = await self.loop.create_server(
                self._protocol,
                host if host is not None else settings.host,
                port if port is not None else settings.port,
                reuse_port=reuse_port or None,
                ssl=ssl_context,
                backlog=1024,
            )
        self._sweeper = self.loop.call_later(SWEEP_INTERVAL, self._sweep)

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1]

    def accept_socket(self, sock: Any) -> None:
        """Serve a connection accepted elsewhere (the supervisor, in 'rr' scheduling)."""
        if self._stopping:
            sock.close()
            return
        self._spawn(self.loop.connect_accepted_socket(self._protocol, sock, ssl=self.ssl_context))

    async def stop(self, timeout: float | None = None, code: int = 1001, reason: str = "server shutting down") -> None:
        """Stop accepting, close every client with `code` (going away), wait, then stop."""
        if self._stopping:
            return
        self._stopping = True
        timeout = self.settings.shutdown_timeout if timeout is None else timeout
        if self.server is not None:
            self.server.close()
        self.rooms.stop()
        for sock in list(self.sockets):
            sock.close(code, reason)
        for conn in list(self.conns):
            if conn.handler is None:
                conn.abort()
        deadline = self.loop.time() + timeout
        while self.conns and self.loop.time() < deadline:
            await asyncio.sleep(0.02)
        for conn in list(self.conns):
            conn.abort()
        await asyncio.sleep(0)
        if self._sweeper is not None:
            self._sweeper.cancel()
        for task in list(self.tasks):
            task.cancel()
        for fn in self.app.on_stop:
            result = fn(self)
            if inspect.isawaitable(result):
                await result
        await self.bus.close()
        if self.server is not None:
            await self.server.wait_closed()

    async def drain(self, code: int = 1001, reason: str = "server restarting") -> None:
        """Leave gracefully (a rolling restart): stop accepting, move the rooms that can
        move, close the clients so they reconnect elsewhere, let the other rooms finish
        within their drain_timeout, then stop."""
        if self.server is not None:
            self.server.close()  # the listening socket stays open in the supervisor
        await self.rooms.move_all()
        for sock in list(self.sockets):
            sock.close(code, reason)
        timeout = max((r.room.drain_timeout for r in self.rooms.hosted.values()), default=0.0)
        deadline = self.loop.time() + timeout
        while self.rooms.hosted and self.loop.time() < deadline:
            await asyncio.sleep(0.05)
        await self.stop(code=code, reason=reason)

    def _protocol(self) -> Connection:
        extensions = [ServerPerMessageDeflateFactory()] if self.settings.compression else None
        ws = ServerProtocol(
            origins=None,
            extensions=extensions,
            subprotocols=[c for c in self.codecs if c],  # type: ignore[misc]
            select_subprotocol=_select_subprotocol,
            max_size=self.limits.max_frame_size,
            logger=ws_log,
        )
        return Connection(self, ws)

    # -- transport callbacks -----------------------------------------------------------------
    max_frame_size = property(lambda self: self.limits.max_frame_size)

    def connection_made(self, conn: Connection) -> None:
        conn.opened_at = self.loop.time()
        self.conns.add(conn)
        if self._stopping:
            conn.abort()

    def connection_lost(self, conn: Connection) -> None:
        self.conns.discard(conn)

    def request_received(self, conn: Connection, request: Request) -> None:
        if "websocket" in request.headers.get("Upgrade", "").lower():
            self._upgrade(conn, request)
        else:
            self._http(conn, request)

    def _reject(self, conn: Connection, status: int, text: str, retry_after: int | None = None) -> None:
        self.stats.http_rejected += 1
        extra = {"Retry-After": str(retry_after)} if retry_after else None
        conn.respond(text_response(text + "\n", status, extra))

    def _upgrade(self, conn: Connection, request: Request) -> None:
        settings, limits, now = self.settings, self.limits, self.loop.time()
        if self._stopping:
            return self._reject(conn, 503, "server shutting down", 1)
        if settings.origins is not None and request.headers.get("Origin") not in settings.origins:
            return self._reject(conn, 403, "origin not allowed")
        bucket = self.ip_buckets.get(conn.peer)
        if bucket is None:
            bucket = self.ip_buckets[conn.peer] = TokenBucket(
                limits.max_handshakes_per_ip_per_second, limits.handshake_burst, now
            )
        if not bucket.take(now):
            return self._reject(conn, 429, "too many handshakes from this address", 1)
        if len(self.sockets) >= limits.max_connections:
            return self._reject(conn, 503, "server full (max_connections)", 5)
        offered = [p for value in request.headers.get_all("Sec-WebSocket-Protocol") for p in parse_subprotocol(value)]
        codec = self._codec_for(offered, request.path)
        if codec is None:
            return self._reject(conn, 400, f"offer the WebSocket subprotocol {PACKED_SUBPROTOCOL}")
        response = conn.ws.accept(request)
        if response.status_code != 101:
            self.stats.http_rejected += 1
            conn.respond(response)
            return
        self._socket_seq += 1
        session = Session(codec, limits, self.ctx, self.stats, now)
        sock = Socket(self, conn, codec, session, f"{self.process}.{self._socket_seq}")
        self.sockets.add(sock)
        self.stats.connections_opened += 1
        self.stats.connections += 1
        conn.transport.set_write_buffer_limits(high=limits.send_buffer_high_water)  # type: ignore[union-attr]
        conn.accept(request, sock, response)

    def _codec_for(self, offered: list[str], path: str) -> Codec | None:
        for name in offered:
            if name in self.codecs:
                return self.codecs[name]
        if not offered:
            return self.codecs.get(None)  # a codec for clients that offer none (SocketCluster's)
        return None

    def _http(self, conn: Connection, request: Request) -> None:
        self.stats.http_requests += 1
        path = request.path.split("?", 1)[0]
        if path in ("/health", "/metrics"):
            if self.control is not None:
                # In a cluster every worker answers with the figures the supervisor gathers.
                self._spawn(self._cluster_answer(conn, path))
                return None
            if path == "/health":
                return conn.respond(json_response(self.health()))
            labels = {"process": self.process}
            body = prometheus_text([(labels, self.stats.as_dict())])
            body += room_metrics_text((labels, room_id, st) for room_id, st in self.rooms.room_stats().items())
            return conn.respond(text_response(body))
        route = self.app.routes.get(path)
        if route is not None:
            return conn.respond(route(request))
        if path == "/tickwire.js":
            return conn.respond(response(200, CLIENT_ENTRY, "text/javascript; charset=utf-8", {"Cache-Control": "no-cache"}))
        if path.startswith("/tickwire/"):
            return conn.respond(static_file([JS_ROOT], path[len("/tickwire"):]))
        conn.respond(static_file(self.static_roots, path))

    async def _cluster_answer(self, conn: Connection, path: str) -> None:
        try:
            body = await self.control.ask(path.strip("/"))
        except (ConnectionError, asyncio.TimeoutError):
            conn.respond(text_response("supervisor unavailable\n", 503))
            return
        if path == "/health":
            conn.respond(json_response(body, 200 if body.get("status") == "ok" else 503))
        else:
            conn.respond(text_response(body))

    def health(self) -> dict[str, Any]:
        return {
            "status": "stopping" if self._stopping else "ok",
            "process": self.process,
            "pid": os.getpid(),
            "uptime_s": round(time.time() - self.started_at, 3),
            "connections": len(self.sockets),
            "channels": len(self.channels.by_name),
            "stats": self.stats.as_dict(),
        }

    # -- sockets -------------------------------------------------------------------------------
    def socket_closing(self, sock: Socket) -> None:
        sock.conn.closing_at = self.loop.time()

    def socket_closed(self, sock: Socket) -> None:
        if sock not in self.sockets:
            return
        self.sockets.discard(sock)
        self.stats.connections_closed += 1
        self.stats.connections -= 1
        self.channels.remove_socket(sock)
        if sock.rooms:
            self.rooms.socket_closed(sock)
        if sock.session.state != 0:  # it got past the handshake
            for fn in self.app.on_disconnect:
                self._run_hook(fn, sock)

    def mark(self, sock: Socket) -> None:
        """`sock` has output: flush it at the end of this loop iteration."""
        self.dirty.append(sock)
        if not self.flush_pending:
            self.flush_pending = True
            interval = self.settings.batch_interval
            if interval > 0:
                self.loop.call_later(interval, self.flush)
            else:
                self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self.flush_pending = False
        dirty, self.dirty = self.dirty, []
        for sock in dirty:
            sock.flush()

    def _sweep(self) -> None:
        now = self.loop.time()
        wall = time.time()
        try:
            for sock in list(self.sockets):
                session = sock.session
                if session.poll(now):
                    self.mark(sock)
                if session.close_code is not None:
                    sock.finish()
                elif sock.token is not None and self.auth.expired(sock.token, wall):
                    sock.deauthenticate()
            handshake_timeout = self.limits.handshake_timeout
            for conn in list(self.conns):
                if conn.closing_at is not None and now - conn.closing_at > CLOSE_TIMEOUT:
                    conn.abort()
                elif conn.handler is None and now - conn.opened_at > handshake_timeout:
                    conn.abort()  # an HTTP request that never came, or never finished
            if isinstance(self.directory, LocalDirectory):
                self.directory.report(self.node, self.rooms.rooms_info(), len(self.sockets))
            if len(self.ip_buckets) > 1024:
                idle = [ip for ip, b in self.ip_buckets.items() if now - b.stamp > 10]
                for ip in idle:
                    del self.ip_buckets[ip]
        finally:
            self._sweeper = self.loop.call_later(SWEEP_INTERVAL, self._sweep)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = self.loop.create_task(coro)  # type: ignore[arg-type]
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _run_hook(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            result = fn(*args)
            if inspect.isawaitable(result):
                self._spawn(_logged(result, f"hook {fn.__name__}"))
        except Exception:
            log.exception("hook %s failed", getattr(fn, "__name__", fn))

    # -- dispatch ------------------------------------------------------------------------------
    def dispatch(self, sock: Socket, msgs: list[Any]) -> None:
        """Handle a socket's messages in order; an async step holds the ones after it."""
        if sock.waiting is not None:
            sock.waiting.extend(msgs)
            return
        self._run(sock, iter(msgs))

    def _run(self, sock: Socket, msgs: Iterator[Any]) -> None:
        for msg in msgs:
            step = self._handle(sock, msg)
            if step is not None:
                sock.waiting = deque(msgs)
                self._spawn(self._resume(sock, step))
                return

    async def _resume(self, sock: Socket, step: Awaitable[None]) -> None:
        while True:
            try:
                await step
            except Exception:
                log.exception("handling a message from %s failed", sock.id)
            sock.finish()
            waiting = sock.waiting
            step = None
            while waiting and not sock.closed:
                step = self._handle(sock, waiting.popleft())
                if step is not None:
                    break
            if step is None:
                sock.waiting = None
                sock.finish()
                return

    def _handle(self, sock: Socket, msg: Any) -> Awaitable[None] | None:
        if sock.closed:
            return None
        if self.inbound and type(msg) is not P.Handshake:
            req = InboundRequest(sock, msg)
            try:
                pending = self.inbound.run(req)
            except Exception as exc:
                self._refuse(sock, msg, exc)
                return None
            if pending is not None:
                return self._after_inbound(sock, req, pending)
            msg = req.message
        return self._route(sock, msg)

    async def _after_inbound(self, sock: Socket, req: InboundRequest, pending: Awaitable[None]) -> None:
        try:
            await pending
        except Exception as exc:
            self._refuse(sock, req.message, exc)
            return
        step = self._route(sock, req.message)
        if step is not None:
            await step

    def _routes(self) -> dict[type, Callable[[Socket, Any], Awaitable[None] | None]]:
        """Every message a client may send, and its handler: the one place that dispatches.

        A table rather than a `match`: on the churn benchmark the match's class tests
        cost 4 % of the server's time (measured with py-spy)."""
        return {
            P.Publish: self._publish,
            P.Call: self._call,
            P.Emit: self._emit,
            P.Subscribe: self._subscribe,
            P.Unsubscribe: self._unsubscribe,
            P.Input: self.rooms.input,
            P.Handshake: self._handshake,
            P.Authenticate: self._authenticate,
            P.Deauthenticate: self._deauthenticate,
            P.JoinRoom: lambda sock, msg: self._room_request(sock, msg, self.rooms.join(sock, msg)),
            P.LeaveRoom: lambda sock, msg: self._room_request(sock, msg, self.rooms.leave(sock, msg)),
            P.ListRooms: lambda sock, msg: self._room_request(sock, msg, self._list_rooms(sock, msg)),
        }

    def _route(self, sock: Socket, msg: Any) -> Awaitable[None] | None:
        handler = self.routes.get(type(msg))
        if handler is None:
            log.warning("no route for %s", type(msg).__name__)
            return None
        return handler(sock, msg)

    @staticmethod
    def _deauthenticate(sock: Socket, msg: Any) -> None:
        sock.token = None

    async def _room_request(self, sock: Socket, msg: Any, step: Awaitable[None]) -> None:
        try:
            await step
        except Exception as exc:
            code, message = self._error(exc, type(msg).__name__)
            sock.send(P.Error(msg.cid, code, message), urgent=True)

    async def _list_rooms(self, sock: Socket, msg: Any) -> None:
        filters = self.payload_value(msg.filters)
        rooms = await self.directory.listing(msg.room_type, filters)
        public = [{k: v for k, v in r.items() if k != "owner"} for r in rooms]
        sock.send(P.Result(msg.cid, self.codebook.payload(public)), urgent=True)

    async def _host_for_directory(self, owner: str, room_type: str, room_id: str, options: Any) -> dict[str, Any]:
        return await self.rooms.call_owner(owner, "host", type=room_type, room_id=room_id, options=options)

    def _from_bus(self, channel: str, payload: Payload) -> None:
        """Messages from the bus: channel deliveries, or this worker's inbox."""
        if channel[0] == "$":
            if channel == self.rooms_inbox:
                self.rooms.inbox(payload)
            return
        self.channels.deliver(channel, payload)

    @property
    def rooms_inbox(self) -> str:
        return "$inbox." + self.node

    def _refuse(self, sock: Socket, msg: Any, exc: BaseException) -> None:
        """Answer a message that middleware blocked or that failed before its handler."""
        code, message = self._error(exc, f"middleware on {type(msg).__name__}")
        if isinstance(exc, TickwireError):
            self.stats.middleware_blocks += 1
        cid = getattr(msg, "cid", 0)
        if type(msg) is P.Call:
            self._reply(sock, P.Error(cid, code, message))
        else:
            sock.send(P.Error(cid, code, message))

    def _error(self, exc: BaseException, where: str) -> tuple[int, str]:
        if not isinstance(exc, TickwireError):
            log.error("%s failed", where, exc_info=exc)
        return wire_error(exc)

    def payload_value(self, payload: Payload) -> Any:
        return self.codebook.payload_value(payload, self.ctx)

    # -- handshake and auth ---------------------------------------------------------------------
    def _handshake(self, sock: Socket, msg: Any) -> Awaitable[None] | None:
        claims, auth_error = None, ""
        if msg.token:
            try:
                claims = self.auth.verify(msg.token)
            except Unauthenticated as exc:
                auth_error = exc.message
        chain = self.app.chain("handshake")
        if chain:
            request = sock.conn.request
            req = HandshakeRequest(
                sock,
                request.path if request else "",
                request.headers if request else {},
                sock.conn.peer,
                claims,
                auth_error,
            )
            try:
                pending = chain.run(req)
            except Exception as exc:
                self._handshake_refused(sock, exc)
                return None
            if pending is not None:
                return self._handshake_async(sock, req, pending)
            claims, auth_error = req.token, req.auth_error
        self._welcome(sock, claims, auth_error)
        return None

    async def _handshake_async(self, sock: Socket, req: HandshakeRequest, pending: Awaitable[None]) -> None:
        try:
            await pending
        except Exception as exc:
            self._handshake_refused(sock, exc)
            return
        self._welcome(sock, req.token, req.auth_error)

    def _handshake_refused(self, sock: Socket, exc: BaseException) -> None:
        _, message = self._error(exc, "handshake middleware")
        self.stats.middleware_blocks += 1
        sock.session.fail(4008, message)

    def _welcome(self, sock: Socket, claims: dict[str, Any] | None, auth_error: str) -> None:
        sock.token = claims
        limits = self.limits
        sock.send(
            P.Welcome(
                sock.id,
                self.process,
                int(limits.ping_interval * 1000),
                int(limits.ping_timeout * 1000),
                claims is not None,
                auth_error,
            )
        )
        if auth_error:
            sock.send(P.RemoveToken())  # the client drops a token that will never work
        self.stats.handshakes += 1
        for fn in self.app.on_connect:
            self._run_hook(fn, sock)

    def _authenticate(self, sock: Socket, msg: Any) -> None:
        try:
            sock.token = self.auth.verify(msg.token)
        except Unauthenticated as exc:
            sock.send(P.Error(msg.cid, ErrorCode.UNAUTHENTICATED, exc.message))
            return
        sock.send(P.Result(msg.cid, self.codebook.payload({"authenticated": True})))

    # -- procedures and events -----------------------------------------------------------------
    def _call(self, sock: Socket, msg: Any) -> None:
        self.stats.calls += 1
        fn = self.app.procedures.get(msg.procedure)
        if fn is None:
            return self._call_error(sock, msg.cid, NotFound(f"no procedure {msg.procedure!r}"), msg.procedure)
        try:
            data = self.payload_value(msg.data)
        except DecodeError as exc:
            return self._call_error(sock, msg.cid, BadRequest(str(exc)), msg.procedure)
        try:
            result = fn(sock, data)
        except Exception as exc:
            return self._call_error(sock, msg.cid, exc, msg.procedure)
        if inspect.isawaitable(result):
            self._spawn(self._await_call(sock, msg.cid, msg.procedure, result))
            return None
        self._call_result(sock, msg.cid, result, msg.procedure)
        return None

    async def _await_call(self, sock: Socket, cid: int, name: str, pending: Awaitable[Any]) -> None:
        try:
            async with asyncio.timeout(self.limits.call_timeout):
                result = await pending
        except TimeoutError:
            self._call_error(sock, cid, Timeout(f"procedure {name!r} took over {self.limits.call_timeout} s"), name)
        except Exception as exc:
            self._call_error(sock, cid, exc, name)
        else:
            self._call_result(sock, cid, result, name)

    def _call_result(self, sock: Socket, cid: int, result: Any, name: str) -> None:
        try:
            payload = self.codebook.payload(result)
        except EncodeError as exc:
            return self._call_error(sock, cid, exc, name)
        self._reply(sock, P.Result(cid, payload))

    def _call_error(self, sock: Socket, cid: int, exc: BaseException, name: str) -> None:
        self.stats.call_errors += 1
        code, message = self._error(exc, f"procedure {name!r}")
        self._reply(sock, P.Error(cid, code, message))

    def _reply(self, sock: Socket, msg: Any) -> None:
        sock.reply(msg)

    def _emit(self, sock: Socket, msg: Any) -> None:
        self.stats.events += 1
        fn = self.app.receivers.get(msg.event)
        if fn is None:
            sock.send(P.Error(0, ErrorCode.NOT_FOUND, f"no receiver {msg.event!r}"))
            return
        try:
            result = fn(sock, self.payload_value(msg.data))
        except Exception as exc:
            code, message = self._error(exc, f"receiver {msg.event!r}")
            sock.send(P.Error(0, code, message))
            return
        if inspect.isawaitable(result):
            self._spawn(_logged(result, f"receiver {msg.event!r}"))

    # -- channels ------------------------------------------------------------------------------
    def channel_type(self, name: str) -> int:
        record = self.app.channel_record(name)
        if record is None:
            return self.codebook.json_type
        if getattr(record, "TYPE_ID", None) is None:
            raise TypeError(f"channel type {record.__name__} is not a message (it has no msgid)")
        return record.TYPE_ID

    def _check_name(self, name: str) -> None:
        size = len(name) if name.isascii() else len(name.encode())
        if not size or size > self.limits.max_channel_name_length:
            self.stats.limit_errors += 1
            raise BadRequest("channel name is empty or longer than max_channel_name_length")
        if name[0] == "$":
            raise BadRequest("channel names starting with '$' are reserved for the engine")

    def _subscribe(self, sock: Socket, msg: Any) -> Awaitable[None] | None:
        chain = self.app.chain("subscribe")
        if chain.is_async:
            return self._subscribe_async(sock, msg)
        infos: list[Any] = []
        later: list[tuple[str, str, Channel]] = []
        for name in msg.channels:
            try:
                self._check_name(name)
                target = name
                if chain:
                    req = SubscribeRequest(sock, name)
                    chain.run(req)
                    target = req.channel
                infos.append(self._subscribe_one(sock, name, target, later))
            except Exception as exc:
                infos.append(self._refused_channel(name, exc))
        if later:
            return self._subscribe_when_ready(sock, msg.cid, infos, later)
        sock.send(P.Subscribed(msg.cid, infos))
        return None

    async def _subscribe_async(self, sock: Socket, msg: Any) -> None:
        chain = self.app.chain("subscribe")
        infos: list[Any] = []
        later: list[tuple[str, str, Channel]] = []
        for name in msg.channels:
            try:
                self._check_name(name)
                req = SubscribeRequest(sock, name)
                await chain.run(req)  # type: ignore[misc]
                if sock.closed:
                    for *_, ch in later:
                        self.channels.release(ch)
                    return
                infos.append(self._subscribe_one(sock, name, req.channel, later))
            except Exception as exc:
                infos.append(self._refused_channel(name, exc))
        if later:
            await self._subscribe_when_ready(sock, msg.cid, infos, later)
        else:
            sock.send(P.Subscribed(msg.cid, infos))

    def _subscribe_one(self, sock: Socket, name: str, target: str, later: list[tuple[str, str, Channel]]) -> Any:
        """Subscribe `sock` to `target` now and return its ChannelInfo; or, while the bus is
        still declaring the channel (a broker round trip), queue it in `later` for
        _subscribe_when_ready and return None, a placeholder."""
        ch = self.channels.by_name.get(target)
        if ch is None or ch.ready is not None and not ch.ready.done():
            self.channels.check_room(sock, len(later))
            ch = self.channels.declare(target)
            if ch.ready is not None and not ch.ready.done():
                later.append((name, target, ch))
                return None
        return self._channel_info(name, self.channels.subscribe(sock, target))

    @staticmethod
    def _channel_info(name: str, ch: Channel) -> Any:
        """What Subscribed says of `ch`, asked for as `name` (middleware may rename it)."""
        return ch.info if name == ch.name else P.ChannelInfo(name, ch.id, ch.type_id, 0, "")

    async def _subscribe_when_ready(
        self, sock: Socket, cid: int, infos: list[Any], later: list[tuple[str, str, Channel]]
    ) -> None:
        """Subscribe `sock` to the channels the bus was declaring, once it has them all,
        and acknowledge: a publish made after the ack, from any worker, reaches the
        subscriber. Until then the socket is in no channel's group, so no Message can
        reach it before the Subscribed that names its channel; its later messages wait
        (Worker._run). (`wait`, not `gather`: the round trips are shared with other
        subscribers and must not be cancelled with this one.)"""
        await asyncio.wait([ch.ready for *_, ch in later if ch.ready is not None])
        slots = [i for i, info in enumerate(infos) if info is None]
        for slot, (name, target, ch) in zip(slots, later):
            if sock.closed:
                self.channels.release(ch)
                continue
            try:
                # If the channel was dropped and declared again meanwhile (every other
                # subscriber left), this declares it once more and acknowledges without
                # waiting a second time.
                infos[slot] = self._channel_info(name, self.channels.subscribe(sock, target))
            except Exception as exc:
                self.channels.release(ch)
                infos[slot] = self._refused_channel(name, exc)
        if not sock.closed:
            sock.send(P.Subscribed(cid, infos))

    def _refused_channel(self, name: str, exc: BaseException) -> Any:
        if isinstance(exc, TickwireError) and exc.code == ErrorCode.FORBIDDEN:
            self.stats.middleware_blocks += 1
        code, message = self._error(exc, "subscribe")
        return P.ChannelInfo(name, 0, 0, code, message)

    def _unsubscribe(self, sock: Socket, msg: Any) -> None:
        unknown = []
        channels = msg.channels
        for channel in channels.tolist() if hasattr(channels, "tolist") else channels:
            if type(channel) is str:  # by name: JSON clients (SocketCluster's) know no ids
                ch = self.channels.by_name.get(channel)
                if ch is not None and not (sock.channels and sock.channels.get(ch.id) is ch):
                    ch = None
            else:
                ch = sock.channels.get(channel) if sock.channels else None
            if ch is None:
                unknown.append(channel)
            else:
                self.channels.unsubscribe(sock, ch)
        if unknown:
            sock.send(P.Error(msg.cid, ErrorCode.BAD_REQUEST, f"not subscribed to channel {unknown[0]!r}"))
        elif msg.cid:
            sock.send(P.Result(msg.cid, NO_PAYLOAD))

    def _publish(self, sock: Socket, msg: Any) -> Awaitable[None] | None:
        try:
            name, payload = self._check_publish(msg.channel, msg.data, sock.codec.text)
        except Exception as exc:
            code, message = self._error(exc, "publish")
            sock.send(P.Error(msg.cid, code, message))
            return None
        chain = self.app.chain("publish_in")
        if chain:
            req = PublishIn(sock, name, payload, self.payload_value)
            try:
                pending = chain.run(req)
            except Exception as exc:
                self._refuse(sock, msg, exc)
                return None
            if pending is not None:
                return self._publish_async(sock, msg, req, pending)
            return self._publish_in_done(sock, msg, req)
        self.bus.publish(name, payload)
        self.stats.publishes += 1
        if msg.cid:
            sock.send(P.Result(msg.cid, None))
        return None

    async def _publish_async(self, sock: Socket, msg: Any, req: PublishIn, pending: Awaitable[None]) -> None:
        try:
            await pending
        except Exception as exc:
            self._refuse(sock, msg, exc)
            return
        self._publish_in_done(sock, msg, req)

    def _publish_in_done(self, sock: Socket, msg: Any, req: PublishIn) -> None:
        payload = req.payload
        try:
            if req._changed or req.channel != msg.channel:
                self._check_name(req.channel)
                payload = self._typed_payload(req.channel, req._value if req._changed else payload)
        except Exception as exc:
            code, message = self._error(exc, "publish_in middleware")
            sock.send(P.Error(msg.cid, code, message))
            return
        self.bus.publish(req.channel, payload)
        self.stats.publishes += 1
        if msg.cid:
            sock.send(P.Result(msg.cid, None))

    def _check_publish(self, name: str, payload: Payload, from_json: bool = False) -> tuple[str, Payload]:
        """A client's publish must name a channel properly and fit the channel's type (a
        JSON codec's client, which has no other way to say a typed message, in JSON)."""
        self._check_name(name)
        expected = self.channel_type(name)
        if from_json and payload.type_id == self.codebook.json_type and expected != payload.type_id:
            payload = self._typed_from_json(name, expected, payload)
        if payload.type_id != expected:
            want = self.codebook.types[expected].cls.__name__
            got = self.codebook.types[payload.type_id].cls.__name__ if payload.type_id else "nothing"
            raise BadRequest(f"channel {name!r} carries {want}, not {got}")
        try:
            self.codebook.check_payload(payload, self.ctx)
        except DecodeError as exc:
            raise BadRequest(str(exc)) from None
        return name, payload

    def _typed_from_json(self, name: str, expected: int, payload: Payload) -> Payload:
        """JSON for a schema-typed channel (from a SocketCluster client, say), as the
        channel's message: converted once here, so every subscriber gets the typed bytes."""
        try:
            return self.codebook.payload_from_plain(expected, self.payload_value(payload))
        except (DecodeError, EncodeError) as exc:
            want = self.codebook.types[expected].cls.__name__
            raise BadRequest(f"channel {name!r} carries {want}: {exc}") from None

    def _typed_payload(self, name: str, value: Any) -> Payload:
        payload = self.codebook.payload(value)
        return self._check_publish(name, payload)[1]

    def publish(self, channel: str, data: Any) -> None:
        """Publish from server code: every subscriber on every worker gets it."""
        self._check_name(channel)
        self.bus.publish(channel, self._typed_payload(channel, data))
        self.stats.publishes += 1


def _select_subprotocol(protocol: ServerProtocol, offered: list[str]) -> str | None:
    """Pick Tickwire's subprotocol when offered; accept none (a JSON client) otherwise.

    websockets rejects a client that offers no subprotocol unless the server selects one
    itself (SocketCluster's client offers none), so the choice is made here explicitly.
    """
    for name in offered:
        if protocol.available_subprotocols and name in protocol.available_subprotocols:
            return name
    if offered:
        raise NegotiationError(f"unsupported subprotocols {offered}; offer {PACKED_SUBPROTOCOL}")
    return None


async def _logged(aw: Awaitable[Any], what: str) -> None:
    try:
        await aw
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("%s failed", what)
