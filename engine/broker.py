"""A broker process: a shard of the cluster's channels, request subjects, keys and presence.

Workers connect to every broker's Unix socket (brokerbus.py) and send each channel, subject
and key to the broker that owns it by rendezvous hash. A broker then keeps:

- channel -> the worker links that subscribe it. A publish goes to exactly those links,
  the publisher's own included when it subscribes, never to all; the frame is forwarded
  as it arrived (ipc.py: PUB has the same bytes both ways), so fan-out costs a queue
  append per subscribing WORKER, whatever number of clients sit behind it.
- subject -> the links that handle it. A request goes to one of them, in turn (as a NATS
  queue group would), under a broker-side id mapped back to the asker's when the reply
  comes. A handler that goes away fails its outstanding requests at once (UNAVAILABLE).
- a small key-value store with expiry (kv.py), volatile across a broker restart.
- presence: per channel, the sum of the subscriber counts each worker reports (coalesced,
  brokerbus.py). A worker's counts leave with it, and a restarted broker is rebuilt
  from the counts every worker re-sends when it reconnects.

Broker is the sans-I/O part: peers are anything with `send(frame)` and `offer(frame)`,
time is an argument. `run_broker` is the asyncio adapter and process entry point:

    python -m engine.broker --path /run/tickwire/broker-0.sock --id 0

It listens on the path (refusing to start when another broker is already listening there,
unlinking a stale file left by a killed one), exits 0 on SIGTERM or SIGINT after flushing
its links, and exits when its parent dies: main() sets PR_SET_PDEATHSIG (SIGTERM) on
Linux, and run_broker also checks once a second that its parent process is unchanged, which
covers other systems and the race where the parent dies before prctl runs. stdin is left
alone, so a supervisor may connect it to anything (or /dev/null).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import errno
import json
import logging
import os
import signal
import socket
import sys
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

from . import ipc
from .errors import ErrorCode, LimitExceeded
from .ipc import (
    Counts,
    Handle,
    Hello,
    KvDel,
    KvGet,
    KvSet,
    Link,
    Presence,
    Rep,
    Req,
    Stats,
    Sub,
    Unhandle,
    Unsub,
    rep_frame,
    req_frame,
)
from .kv import MAX_KV_KEYS, MAX_KV_VALUE, KVStore

PUB = ipc.Op.PUB

__all__ = ["BrokerLimits", "Broker", "Peer", "run_broker", "main", "set_parent_death_signal"]

log = logging.getLogger("tickwire.broker")

# Unix socket paths live in a fixed-size sun_path (108 bytes on Linux, NUL included).
MAX_SOCKET_PATH = 107


@dataclass(frozen=True)
class BrokerLimits:
    max_frame: int = ipc.MAX_FRAME  # refused before buffering (ipc.FrameReader)
    max_link_buffer: int = ipc.MAX_BUFFER  # per worker link; publishes past it are dropped
    max_kv_keys: int = MAX_KV_KEYS
    max_kv_value: int = MAX_KV_VALUE
    max_pending_requests: int = 100_000  # requests waiting for a handler's reply
    sweep_interval: float = 1.0  # KV expiry and abandoned requests, seconds


class Peer(Protocol):
    """A worker's link as the broker sees it (ipc.Link; a recording fake in tests)."""

    def send(self, frame: bytes) -> None: ...

    def offer(self, frame: bytes) -> bool: ...


class _PeerState:
    __slots__ = ("name", "channels", "subjects", "counts")

    def __init__(self) -> None:
        self.name = "?"
        self.channels: set[bytes] = set()  # UTF-8 names, as publishes carry them
        self.subjects: set[str] = set()
        self.counts: dict[str, int] = {}


class _Pending:
    __slots__ = ("asker", "rid", "handler", "deadline")

    def __init__(self, asker: Peer, rid: int, handler: Peer, deadline: float):
        self.asker = asker
        self.rid = rid
        self.handler = handler
        self.deadline = deadline


COUNTERS = (
    "publishes",  # PUB frames received
    "deliveries",  # PUB frames queued to subscribing workers
    "drops",  # ... dropped because that worker's link was over max_link_buffer
    "unrouted",  # publishes to a channel no worker subscribes here
    "requests",
    "request_errors",  # answered by the broker: no handler, limit, handler gone
    "request_expired",  # abandoned by the asker's timeout before a reply came
    "late_replies",
    "kv_ops",
    "malformed",  # links closed for bad frames
    "peers_connected",
)


class Broker:
    def __init__(self, broker_id: int, limits: BrokerLimits | None = None):
        self.id = broker_id
        self.limits = limits or BrokerLimits()
        self.peers: dict[Peer, _PeerState] = {}
        self.subs: dict[bytes, set[Peer]] = {}  # keyed by UTF-8 name: see receive()
        self.handlers: dict[str, list[Peer]] = {}
        self._turn: dict[str, int] = {}
        self.pending: dict[int, _Pending] = {}
        self._next_rid = 0
        self.presence: dict[str, int] = {}  # channel -> total count over workers
        self.kv = KVStore(self.limits.max_kv_keys, self.limits.max_kv_value)
        self.stats: dict[str, int] = dict.fromkeys(COUNTERS, 0)

    # -- peers -----------------------------------------------------------------------------
    def connected(self, peer: Peer) -> None:
        self.peers[peer] = _PeerState()
        self.stats["peers_connected"] += 1

    def disconnected(self, peer: Peer) -> None:
        state = self.peers.pop(peer, None)
        if state is None:
            return
        for channel in state.channels:
            self._unsubscribe(peer, channel)
        for subject in state.subjects:
            self._unhandle(peer, subject)
        for channel, count in state.counts.items():
            self._add_presence(channel, -count)
        for bid, p in list(self.pending.items()):
            if p.asker is peer:
                del self.pending[bid]
            elif p.handler is peer:
                del self.pending[bid]
                self.stats["request_errors"] += 1
                p.asker.send(rep_frame(p.rid, ErrorCode.UNAVAILABLE, b"the handling worker went away"))
        log.info("broker %d: %s disconnected", self.id, state.name)

    # -- messages --------------------------------------------------------------------------
    def receive(self, peer: Peer, frames: list[bytes], now: float) -> None:
        """Frames from `peer`, in order. Raises ipc.IPCError for a malformed one."""
        state = self.peers.get(peer)
        if state is None:
            return
        stats = self.stats
        subs = self.subs
        decode = ipc.decode
        pub_channel = ipc.pub_channel
        for frame in frames:
            if frame[4] == PUB:
                # The hot path, before the match: a publish is routed on its raw channel
                # name and forwarded as the same bytes (see ipc.pub_channel).
                stats["publishes"] += 1
                targets = subs.get(pub_channel(frame))
                if not targets:
                    stats["unrouted"] += 1
                    continue
                sent = 0
                for target in targets:
                    if target.offer(frame):
                        sent += 1
                stats["deliveries"] += sent
                stats["drops"] += len(targets) - sent
                continue
            msg = decode(frame)
            match msg:
                case Sub(channel):
                    key = channel.encode()
                    if key not in state.channels:
                        state.channels.add(key)
                        subs.setdefault(key, set()).add(peer)
                case Unsub(channel):
                    key = channel.encode()
                    if key in state.channels:
                        state.channels.discard(key)
                        self._unsubscribe(peer, key)
                case Req(rid, timeout_ms, subject, data):
                    self._request(peer, rid, timeout_ms, subject, data, now)
                case Rep(bid, status, data):
                    p = self.pending.get(bid)
                    if p is None or p.handler is not peer:
                        stats["late_replies"] += 1
                        continue
                    del self.pending[bid]
                    p.asker.send(rep_frame(p.rid, status, data))
                case Counts(items):
                    for channel, count in items:
                        old = state.counts.pop(channel, 0)
                        if count:
                            state.counts[channel] = count
                        if count != old:
                            self._add_presence(channel, count - old)
                case Presence(rid, channel):
                    peer.send(rep_frame(rid, 0, self.presence.get(channel, 0).to_bytes(4, "little")))
                case KvGet(rid, key):
                    stats["kv_ops"] += 1
                    value = self.kv.get(key, now)
                    if value is None:
                        peer.send(rep_frame(rid, ErrorCode.NOT_FOUND, b""))
                    else:
                        peer.send(rep_frame(rid, 0, value))
                case KvSet(rid, ttl_ms, key, value):
                    stats["kv_ops"] += 1
                    try:
                        self.kv.set(key, value, now, ttl_ms / 1000 if ttl_ms else None)
                    except LimitExceeded as exc:
                        peer.send(rep_frame(rid, exc.code, exc.message.encode()))
                    else:
                        peer.send(rep_frame(rid, 0, b""))
                case KvDel(rid, key):
                    stats["kv_ops"] += 1
                    peer.send(rep_frame(rid, 0, b"\x01" if self.kv.delete(key, now) else b"\x00"))
                case Handle(subject):
                    if subject not in state.subjects:
                        state.subjects.add(subject)
                        self.handlers.setdefault(subject, []).append(peer)
                case Unhandle(subject):
                    if subject in state.subjects:
                        state.subjects.discard(subject)
                        self._unhandle(peer, subject)
                case Hello(name):
                    state.name = name
                    log.info("broker %d: %s connected", self.id, name)
                case Stats(rid):
                    peer.send(rep_frame(rid, 0, json.dumps(self.snapshot()).encode()))
                case _:
                    raise ipc.IPCError(f"a worker may not send {type(msg).__name__}")

    def _request(self, peer: Peer, rid: int, timeout_ms: int, subject: str, data: bytes, now: float) -> None:
        self.stats["requests"] += 1
        handlers = self.handlers.get(subject)
        if not handlers:
            self.stats["request_errors"] += 1
            peer.send(rep_frame(rid, ErrorCode.UNAVAILABLE, f"nobody handles {subject!r}".encode()))
            return
        if len(self.pending) >= self.limits.max_pending_requests:
            self.stats["request_errors"] += 1
            message = f"broker {self.id} has max_pending_requests waiting"
            peer.send(rep_frame(rid, ErrorCode.LIMIT_EXCEEDED, message.encode()))
            return
        turn = self._turn.get(subject, 0)
        handler = handlers[turn % len(handlers)]
        self._turn[subject] = turn + 1
        self._next_rid = bid = (self._next_rid + 1) & ipc.MAX_U32
        self.pending[bid] = _Pending(peer, rid, handler, now + timeout_ms / 1000)
        handler.send(req_frame(bid, timeout_ms, subject, data))

    def _unsubscribe(self, peer: Peer, channel: bytes) -> None:
        targets = self.subs.get(channel)
        if targets is not None:
            targets.discard(peer)
            if not targets:
                del self.subs[channel]

    def _unhandle(self, peer: Peer, subject: str) -> None:
        handlers = self.handlers.get(subject)
        if handlers is not None and peer in handlers:
            handlers.remove(peer)
            if not handlers:
                del self.handlers[subject]
                self._turn.pop(subject, None)

    def _add_presence(self, channel: str, delta: int) -> None:
        total = self.presence.get(channel, 0) + delta
        if total > 0:
            self.presence[channel] = total
        else:
            self.presence.pop(channel, None)

    # -- time ------------------------------------------------------------------------------
    def sweep(self, now: float) -> None:
        """Expire keys, and forget requests whose asker has stopped waiting."""
        self.kv.expire(now)
        expired = [bid for bid, p in self.pending.items() if p.deadline <= now]
        for bid in expired:
            del self.pending[bid]
        self.stats["request_expired"] += len(expired)

    def snapshot(self) -> dict[str, Any]:
        """Counters and gauges, for the supervisor's /metrics (the STATS op)."""
        return {
            "broker": self.id,
            "pid": os.getpid(),
            **self.stats,
            "peers": len(self.peers),
            "channels": len(self.subs),
            "subjects": len(self.handlers),
            "pending_requests": len(self.pending),
            "kv_keys": len(self.kv),
        }


# -- the process ---------------------------------------------------------------------------
class _Service:
    """Glues Links to the Broker: reads the clock, counts malformed links."""

    def __init__(self, broker: Broker, loop: asyncio.AbstractEventLoop):
        self.broker = broker
        self.loop = loop
        self.links: set[Link] = set()

    def make_link(self) -> Link:
        limits = self.broker.limits
        return Link(self, max_frame=limits.max_frame, max_buffer=limits.max_link_buffer, name=f"broker-{self.broker.id}")

    def opened(self, link: Link) -> None:
        self.links.add(link)
        self.broker.connected(link)

    def received(self, link: Link, frames: list[bytes]) -> None:
        self.broker.receive(link, frames, self.loop.time())

    def lost(self, link: Link, exc: Exception | None) -> None:
        self.links.discard(link)
        if link.malformed:
            self.broker.stats["malformed"] += 1
        self.broker.disconnected(link)


def _claim_path(path: str) -> None:
    """Make `path` free to bind: refuse a live broker there, remove a dead one's file."""
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise ValueError(f"socket path {path!r} is over {MAX_SOCKET_PATH} bytes (sun_path)")
    if not os.path.exists(path):
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise
        os.unlink(path)  # left behind by a broker that was killed
    else:
        raise RuntimeError(f"another process is listening on {path}")
    finally:
        probe.close()


async def run_broker(
    path: str,
    broker_id: int,
    *,
    limits: BrokerLimits | None = None,
    stop: asyncio.Event | None = None,
    ready: Callable[[], None] | None = None,
    broker: Broker | None = None,
    watch_parent: bool = True,
    handle_signals: bool = False,
) -> None:
    """Serve as broker `broker_id` on the Unix socket `path` until stopped.

    Stops when `stop` is set, on SIGTERM/SIGINT if `handle_signals` (main() asks for it; a
    supervisor's child entry point that handles signals itself leaves it off), or when the
    parent process changes (`watch_parent`). `ready()` runs once it listens. Pass `broker`
    to keep a reference to it (for `broker.snapshot()` figures). On the way out it flushes
    and closes every link and removes the socket file.
    """
    loop = asyncio.get_running_loop()
    broker = broker or Broker(broker_id, limits)
    service = _Service(broker, loop)
    stop = stop or asyncio.Event()
    _claim_path(path)
    server = await loop.create_unix_server(service.make_link, path, backlog=256)
    os.chmod(path, 0o600)  # only this user's processes talk to the broker
    log.info("broker %d listening on %s (pid %d)", broker_id, path, os.getpid())
    if handle_signals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    parent = os.getppid()

    def tick() -> None:
        nonlocal timer
        broker.sweep(loop.time())
        if watch_parent and os.getppid() != parent:
            log.warning("broker %d: parent %d is gone, exiting", broker_id, parent)
            stop.set()
        timer = loop.call_later(broker.limits.sweep_interval, tick)

    timer = loop.call_later(broker.limits.sweep_interval, tick)
    if ready is not None:
        ready()
    try:
        await stop.wait()
    finally:
        timer.cancel()
        server.close()
        for link in list(service.links):
            link.close()
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        await asyncio.sleep(0)  # let the transports write what they hold
        log.info("broker %d stopped", broker_id)


def set_parent_death_signal(sig: int = signal.SIGTERM) -> bool:
    """Ask Linux to send `sig` to this process when its parent dies (PR_SET_PDEATHSIG).

    The signal follows the parent THREAD that forked this process: a supervisor must start
    brokers from a thread that lives as long as it does (its main thread).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(1, int(sig), 0, 0, 0) == 0  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return False


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.broker", description="Run one Tickwire broker.")
    parser.add_argument("--path", required=True, help="Unix socket path to listen on")
    parser.add_argument("--id", type=int, required=True, help="this broker's id (its place in the rendezvous hash)")
    parser.add_argument("--max-frame", type=int, default=ipc.MAX_FRAME)
    parser.add_argument("--max-link-buffer", type=int, default=ipc.MAX_BUFFER)
    parser.add_argument("--max-kv-keys", type=int, default=MAX_KV_KEYS)
    parser.add_argument("--max-kv-value", type=int, default=MAX_KV_VALUE)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    parent = os.getppid()
    set_parent_death_signal()
    if os.getppid() != parent:  # the parent died before prctl took effect
        return 0
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=args.log_level.upper(),
            format=f"%(asctime)s broker-{args.id} %(levelname)s %(name)s: %(message)s",
        )
    limits = BrokerLimits(
        max_frame=args.max_frame,
        max_link_buffer=args.max_link_buffer,
        max_kv_keys=args.max_kv_keys,
        max_kv_value=args.max_kv_value,
    )
    try:
        import uvloop

        runner: Callable[[Any], Any] = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency
        runner = asyncio.run
    try:
        runner(run_broker(args.path, args.id, limits=limits, handle_signals=True))
    except (RuntimeError, ValueError, OSError) as exc:
        log.error("broker %d cannot start: %s", args.id, exc)
        return 1
    return 0


def __getattr__(name: str) -> Any:
    # The worker's side lives in brokerbus.py; `from engine.broker import BrokerBus` works
    # too, without making a broker process import what only workers need.
    if name == "BrokerBus":
        from .brokerbus import BrokerBus

        return BrokerBus
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    sys.exit(main())
