"""Brokers and the BrokerBus: the pure broker, rendezvous ownership, the KV store, then real
broker processes on real Unix sockets with real workers, including SIGKILL and restart."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import App, BadRequest, Limits, Timeout, Unavailable, Worker
from engine.broker import Broker, BrokerLimits
from engine.brokerbus import BrokerBus, BusSettings, format_brokers, owner, parse_brokers
from engine.bus import LocalHub
from engine.errors import ErrorCode, LimitExceeded
from engine.ipc import (
    Counts,
    FrameReader,
    IPCError,
    Rep,
    decode,
    encode,
    handle_frame,
    kv_del_frame,
    kv_get_frame,
    kv_set_frame,
    presence_frame,
    pub_frame,
    rep_frame,
    req_frame,
    stats_frame,
    sub_frame,
    unsub_frame,
)
from engine._generated import protocol as P
from engine.kv import KVStore
from engine.packed import Payload

from helpers import ROOT, arun, client
from test_ipc import messages

# -- the pure broker -----------------------------------------------------------------------


class FakePeer:
    """A worker link as the broker sees it: records what it is sent."""

    def __init__(self, name: str, room: bool = True):
        self.name = name
        self.room = room
        self.frames: list[bytes] = []

    def send(self, frame: bytes) -> None:
        self.frames.append(frame)

    def offer(self, frame: bytes) -> bool:
        if not self.room:
            return False
        self.frames.append(frame)
        return True

    def take(self) -> list[Any]:
        out = [decode(f) for f in self.frames]
        self.frames.clear()
        return out

    def __repr__(self) -> str:
        return self.name


def broker_with(*names: str, **limits: Any) -> tuple[Broker, list[FakePeer]]:
    broker = Broker(0, BrokerLimits(**limits))
    peers = [FakePeer(n) for n in names]
    for p in peers:
        broker.connected(p)
    return broker, peers


def test_a_publish_reaches_exactly_the_subscribing_workers_as_the_same_bytes():
    broker, (a, b, c) = broker_with("a", "b", "c")
    broker.receive(a, [sub_frame("x")], 0.0)
    broker.receive(b, [sub_frame("x"), sub_frame("x")], 0.0)  # twice: still once
    frame = pub_frame("x", 3, b"hi")
    broker.receive(a, [frame], 0.0)  # the publisher subscribes: it gets its own message
    assert a.frames == [frame] and b.frames == [frame] and c.frames == []
    broker.receive(c, [pub_frame("nobody", 1, b"")], 0.0)
    broker.receive(b, [unsub_frame("x")], 0.0)
    broker.receive(c, [frame], 0.0)
    assert len(a.frames) == 2 and len(b.frames) == 1
    assert broker.stats["publishes"] == 3 and broker.stats["deliveries"] == 3 and broker.stats["unrouted"] == 1
    broker.disconnected(a)
    assert b"x" not in broker.subs


def test_a_worker_that_stopped_reading_loses_messages_counted_not_others():
    broker, (a, slow) = broker_with("a", "slow")
    slow.room = False
    for p in (a, slow):
        broker.receive(p, [sub_frame("x")], 0.0)
    broker.receive(a, [pub_frame("x", 1, b"")] * 3, 0.0)
    assert len(a.frames) == 3 and broker.stats["drops"] == 3


def test_requests_go_to_handlers_in_turn_and_replies_back_to_the_asker():
    broker, (asker, h1, h2) = broker_with("asker", "h1", "h2")
    broker.receive(h1, [handle_frame("s")], 0.0)
    broker.receive(h2, [handle_frame("s")], 0.0)
    broker.receive(asker, [req_frame(100, 1000, "s", b"q1"), req_frame(101, 1000, "s", b"q2")], 0.0)
    (r1,) = h1.take()
    (r2,) = h2.take()
    assert (r1.subject, r1.data, r2.data) == ("s", b"q1", b"q2")
    broker.receive(h2, [rep_frame(r2.rid, 0, b"a2")], 0.1)
    broker.receive(h1, [rep_frame(r1.rid, 0, b"a1")], 0.1)
    assert asker.take() == [Rep(101, 0, b"a2"), Rep(100, 0, b"a1")]
    broker.receive(h1, [rep_frame(r1.rid, 0, b"again")], 0.1)  # a reply nobody waits for
    assert asker.take() == [] and broker.stats["late_replies"] == 1
    # Askers choose their ids independently: two may use the same one at once.
    other = FakePeer("other")
    broker.connected(other)
    broker.receive(other, [req_frame(100, 1000, "s", b"q3")], 0.2)
    broker.receive(asker, [req_frame(100, 1000, "s", b"q4")], 0.2)
    (r3,) = h1.take()
    (r4,) = h2.take()
    broker.receive(h2, [rep_frame(r4.rid, 0, b"a4")], 0.3)
    broker.receive(h1, [rep_frame(r3.rid, 0, b"a3")], 0.3)
    assert asker.take() == [Rep(100, 0, b"a4")] and other.take() == [Rep(100, 0, b"a3")]
    assert not broker.pending


def test_requests_without_handler_or_whose_handler_leaves_fail_at_once():
    broker, (asker, h) = broker_with("asker", "h")
    broker.receive(asker, [req_frame(1, 1000, "none", b"")], 0.0)
    (rep,) = asker.take()
    assert rep.status == ErrorCode.UNAVAILABLE and b"none" in rep.data
    broker.receive(h, [handle_frame("s")], 0.0)
    broker.receive(asker, [req_frame(2, 1000, "s", b"")], 0.0)
    broker.disconnected(h)
    assert asker.take() == [Rep(2, ErrorCode.UNAVAILABLE, b"the handling worker went away")]
    assert "s" not in broker.handlers and not broker.pending


def test_abandoned_requests_are_forgotten_at_their_deadline_and_pending_is_bounded():
    broker, (asker, h) = broker_with("asker", "h", max_pending_requests=2)
    broker.receive(h, [handle_frame("s")], 0.0)
    broker.receive(asker, [req_frame(i, 500, "s", b"") for i in range(3)], 0.0)
    assert asker.take()[0].status == ErrorCode.LIMIT_EXCEEDED
    broker.sweep(0.4)
    assert len(broker.pending) == 2
    broker.sweep(0.5)
    assert not broker.pending and broker.stats["request_expired"] == 2


def test_presence_sums_what_workers_report_and_forgets_a_worker_that_leaves():
    broker, (a, b) = broker_with("a", "b")
    broker.receive(a, [encode(Counts((("room", 3), ("hall", 1))))], 0.0)
    broker.receive(b, [encode(Counts((("room", 2),)))], 0.0)
    broker.receive(a, [presence_frame(1, "room"), presence_frame(2, "hall"), presence_frame(3, "none")], 0.0)
    assert [int.from_bytes(r.data, "little") for r in a.take()] == [5, 1, 0]
    broker.receive(a, [encode(Counts((("room", 1), ("hall", 0))))], 0.0)
    assert broker.presence == {"room": 3}
    broker.disconnected(b)
    assert broker.presence == {"room": 1}


def test_kv_through_the_broker_with_stepped_time():
    broker, (a,) = broker_with("a", max_kv_value=10)
    broker.receive(a, [kv_set_frame(1, 1000, "k", b"v"), kv_get_frame(2, "k")], 10.0)
    broker.receive(a, [kv_get_frame(3, "k")], 10.999)
    broker.receive(a, [kv_get_frame(4, "k")], 11.0)
    assert a.take() == [Rep(1, 0, b""), Rep(2, 0, b"v"), Rep(3, 0, b"v"), Rep(4, ErrorCode.NOT_FOUND, b"")]
    broker.receive(a, [kv_set_frame(5, 0, "p", b"x"), kv_del_frame(6, "p"), kv_del_frame(7, "p")], 12.0)
    broker.receive(a, [kv_set_frame(8, 0, "big", b"x" * 11)], 12.0)
    reps = a.take()
    assert [r.data for r in reps[1:3]] == [b"\x01", b"\x00"]
    assert reps[3].status == ErrorCode.LIMIT_EXCEEDED


def test_stats_and_a_worker_that_sends_what_only_brokers_send():
    broker, (a,) = broker_with("a")
    broker.receive(a, [stats_frame(9)], 0.0)
    (rep,) = a.take()
    assert json.loads(rep.data)["broker"] == 0
    with pytest.raises(IPCError):
        broker.receive(a, [b"\x01\x00\x00\x00\x63"], 0.0)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_a_broker_fed_random_bytes_raises_only_ipc_error(data):
    broker, (a, b) = broker_with("a", "b")
    broker.receive(b, [sub_frame("x"), handle_frame("s")], 0.0)
    try:
        broker.receive(a, FrameReader(max_frame=512).feed(data), 0.0)
    except IPCError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), messages), max_size=40))
def test_any_sequence_of_messages_keeps_the_tables_consistent(script):
    broker, peers = broker_with("a", "b", "c")
    for now, (who, msg) in enumerate(script):
        broker.receive(peers[who], [encode(msg)], float(now))
    for channel, total in broker.presence.items():
        assert total == sum(state.counts.get(channel, 0) for state in broker.peers.values()) > 0
    for p in peers:
        broker.disconnected(p)
    assert not broker.subs and not broker.handlers and not broker.pending and not broker.presence


# -- the KV store --------------------------------------------------------------------------


def test_kv_store_expiry_with_injected_time():
    kv = KVStore(max_keys=3, max_value=100)
    kv.set("a", b"1", now=0.0, ttl=1.0)
    kv.set("b", b"2", now=0.0)
    assert kv.get("a", 0.99) == b"1" and kv.get("a", 1.0) is None  # gone from reads at once
    kv.set("c", b"3", now=0.0, ttl=1.0)
    kv.set("c", b"3", now=0.5, ttl=1.0)  # set again: the first deadline no longer counts
    assert kv.expire(1.2) == 0 and kv.get("c", 1.2) == b"3"
    assert kv.expire(1.5) == 1 and len(kv) == 1
    kv.set("d", b"", now=2.0, ttl=0)  # ttl <= 0 deletes
    assert kv.get("d", 2.0) is None
    assert kv.delete("b", 2.0) is True and kv.delete("b", 2.0) is False
    for key in "xyz":
        kv.set(key, b"", now=3.0, ttl=1.0)
    with pytest.raises(LimitExceeded):
        kv.set("w", b"", now=3.5)
    kv.set("w", b"", now=4.0)  # expired keys make room
    with pytest.raises(LimitExceeded):
        kv.set("big", b"x" * 101, now=4.0)


def test_kv_store_heap_stays_bounded_under_rewrites():
    kv = KVStore()
    for i in range(10_000):
        kv.set("hot", b"%d" % i, now=float(i), ttl=1e6)
    assert len(kv._heap) <= 2 * len(kv) + 1025


# -- ownership -----------------------------------------------------------------------------


def test_rendezvous_ownership_is_stable_balanced_and_moves_only_the_new_brokers_share():
    keys = [f"room.{i}" for i in range(3000)]
    two = {k: owner(k, (0, 1)) for k in keys}
    three = {k: owner(k, (0, 1, 2)) for k in keys}
    assert two == {k: owner(k, (1, 0)) for k in keys}  # order of ids does not matter
    moved = [k for k in keys if two[k] != three[k]]
    assert all(three[k] == 2 for k in moved)  # nothing moves between the old brokers
    assert 800 < len(moved) < 1200  # about a third
    assert 1300 < sum(1 for k in keys if two[k] == 0) < 1700
    assert owner("anything", (7,)) == 7


def test_broker_spec_round_trip():
    brokers = {0: "/tmp/a.sock", 1: "/tmp/b.sock"}
    assert parse_brokers(format_brokers(brokers)) == brokers
    assert BrokerBus.from_env(env={"TICKWIRE_BROKERS": "0=/x.sock"}).remotes[0].path == "/x.sock"
    with pytest.raises(ValueError):
        parse_brokers("0:/x")
    # what a supervisor may hand over: a list (positions are ids) or JSON's string keys
    assert BrokerBus(["/a", "/b"], "w").remotes[1].path == "/b"
    assert BrokerBus({"3": "/x"}).remotes[3].path == "/x"


# -- the in-memory twin has the same presence and KV ---------------------------------------


def test_local_bus_presence_and_kv():
    now = [100.0]
    hub = LocalHub(clock=lambda: now[0])
    a, b = hub.bus(), hub.bus()

    async def scenario():
        a.set_count("room", 2)
        b.set_count("room", 3)
        assert await a.presence("room") == 5
        await a.kv_set("k", b"v", ttl=1.0)
        assert await b.kv_get("k") == b"v"
        now[0] += 1.0
        assert await b.kv_get("k") is None
        await a.kv_set("p", b"1")
        assert await b.kv_delete("p") is True
        await b.close()
        assert await a.presence("room") == 2

    arun(scenario())


# -- real broker processes -----------------------------------------------------------------


class Brokers:
    """Broker subprocesses on Unix sockets in a private temporary directory."""

    def __init__(self, n: int):
        # /tmp, not pytest's tmp_path: a socket path must fit in 107 bytes
        self.dir = tempfile.mkdtemp(prefix="tw-")
        self.paths = {i: os.path.join(self.dir, f"broker-{i}.sock") for i in range(n)}
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def spawn(self, i: int) -> subprocess.Popen[bytes]:
        log = open(os.path.join(self.dir, f"broker-{i}.log"), "ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "engine.broker", "--path", self.paths[i], "--id", str(i), "--log-level", "WARNING"],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        log.close()
        self.procs[i] = proc
        return proc

    def listening(self, i: int) -> bool:
        with socket.socket(socket.AF_UNIX) as s:
            try:
                s.connect(self.paths[i])
                return True
            except OSError:
                return False

    def start_all(self, timeout: float = 15.0) -> "Brokers":
        for i in self.paths:
            self.spawn(i)
        deadline = time.monotonic() + timeout
        for i in self.paths:
            while not self.listening(i):
                assert self.procs[i].poll() is None, self.log(i)
                assert time.monotonic() < deadline, "broker did not start"
                time.sleep(0.02)
        return self

    async def restart(self, i: int, timeout: float = 15.0) -> None:
        """Start broker i again, without blocking the loop (a publisher keeps running)."""
        proc = self.spawn(i)
        deadline = time.monotonic() + timeout
        while not self.listening(i):
            assert proc.poll() is None, self.log(i)
            assert time.monotonic() < deadline, "broker did not restart"
            await asyncio.sleep(0.005)

    def kill(self, i: int, sig: int = signal.SIGKILL) -> int:
        proc = self.procs[i]
        proc.send_signal(sig)
        return proc.wait(10)

    def log(self, i: int) -> str:
        with open(os.path.join(self.dir, f"broker-{i}.log"), errors="replace") as f:
            return f.read()

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def brokers():
    made: list[Brokers] = []

    def start(n: int) -> Brokers:
        b = Brokers(n).start_all()
        made.append(b)
        return b

    yield start
    for b in made:
        b.close()


FAST = BusSettings(reconnect_min=0.01, reconnect_max=0.2, start_timeout=10.0)


def names_owned(paths: dict[int, str], prefix: str) -> dict[int, str]:
    """One name per broker id, owned by that broker."""
    found: dict[int, str] = {}
    i = 0
    while len(found) < len(paths):
        name = f"{prefix}{i}"
        found.setdefault(owner(name, tuple(sorted(paths))), name)
        i += 1
    return found


async def eventually(check, timeout: float = 5.0, step: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            try:
                result = await result
            except Unavailable:
                result = False
        if result:
            return
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(step)


def make_app() -> App:
    app = App()

    @app.procedure("publish")
    def publish(sock, data):
        sock.worker.publish(data["channel"], data["value"])

    return app


async def start_workers(n: int, paths: dict[int, str], settings: BusSettings = FAST) -> list[Worker]:
    workers = []
    for i in range(n):
        w = Worker(make_app(), bus=BrokerBus(paths, name=f"worker-{i}", settings=settings), process=f"worker-{i}")
        await w.start("127.0.0.1", 0)
        workers.append(w)
    return workers


async def stop_workers(workers: list[Worker]) -> None:
    for w in workers:
        await w.stop(timeout=1.0)


def test_clients_on_different_workers_exchange_publishes_through_two_brokers(brokers):
    procs = brokers(2)

    async def scenario():
        workers = await start_workers(3, procs.paths)
        w0, w1, w2 = workers
        channels = names_owned(procs.paths, "room.")  # one channel on each broker
        try:
            async with client(w0) as a1, client(w0) as a2, client(w1) as b, client(w2) as c:
                assert {a1.process, b.process, c.process} == {"worker-0", "worker-1", "worker-2"}
                subs = {}
                for bid, ch in channels.items():
                    subs[bid] = [(await x.subscribe(ch))[0] for x in (a1, a2, b)]
                for n in range(10):
                    for ch in channels.values():
                        await c.publish(ch, {"n": n})  # from the worker that subscribes nothing
                await a1.publish(channels[0], "own")  # w0 subscribes: it gets its own publish
                for bid in channels:
                    for sub in subs[bid]:
                        got = [await sub.get(timeout=5) for _ in range(10)]
                        assert got == [{"n": n} for n in range(10)]
                for sub in subs[0]:
                    assert await sub.get(timeout=5) == "own"
                # Deliveries per worker: one per message per subscribing worker, whatever
                # number of its clients subscribe; none for the worker that subscribes nothing.
                assert w0.bus.stats.received == 21 and w1.bus.stats.received == 21
                assert w2.bus.stats.received == 0 and w2.bus.stats.published == 20
                # presence: the workers' ChannelTables report their local counts
                for ch in channels.values():
                    await eventually(lambda ch=ch: _equals(w2.bus.presence(ch), 3), timeout=3)
                await b.unsubscribe(*channels.values())
                # An unsubscribe is local at once (b gets nothing more) and reaches the broker
                # later, over w1's own link; a round trip on that link orders it before the
                # publish below, so the broker no longer sends w1 the message at all.
                await w1.bus.presence(channels[1])
                await c.publish(channels[1], "after")
                assert await subs[1][0].get(timeout=5) == "after"
                await asyncio.sleep(0.05)
                assert w1.bus.stats.received == 21
                await eventually(lambda: _equals(w2.bus.presence(channels[1]), 2), timeout=3)
        finally:
            await stop_workers(workers)

    arun(scenario())


def delaying_connector(delay: float, tasks: set[asyncio.Task[Any]]):
    """A BrokerBus `connect` whose worker-to-broker bytes arrive `delay` s late, in order:
    a slow path between one worker and its brokers."""

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, wait: float) -> None:
        try:
            while data := await reader.read(65536):
                if wait:
                    await asyncio.sleep(wait)
                writer.write(data)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def connect(factory, path: str) -> None:
        loop = asyncio.get_running_loop()
        to_broker_r, to_broker_w = await asyncio.open_unix_connection(path)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        await loop.create_unix_connection(factory, sock=ours)
        from_worker_r, from_worker_w = await asyncio.open_unix_connection(sock=theirs)
        for job in (pump(from_worker_r, to_broker_w, delay), pump(to_broker_r, from_worker_w, 0.0)):
            task = loop.create_task(job)
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    return connect


@contextlib.asynccontextmanager
async def slow_and_fast_workers(paths: dict[int, str], fast_app: App | None = None):
    """(w0, its bus, w1): w0's bytes to the brokers arrive 0.2 s late, w1's at once."""
    tasks: set[asyncio.Task[Any]] = set()
    slow = BrokerBus(paths, name="worker-0", settings=FAST, connect=delaying_connector(0.2, tasks))
    w0 = Worker(make_app(), bus=slow, process="worker-0")
    w1 = Worker(fast_app or make_app(), bus=BrokerBus(paths, name="worker-1", settings=FAST), process="worker-1")
    try:
        await w0.start("127.0.0.1", 0)
        await w1.start("127.0.0.1", 0)
        yield w0, slow, w1
    finally:
        await stop_workers([w0, w1])
        for task in list(tasks):
            task.cancel()


def test_a_subscribe_is_acknowledged_only_once_the_broker_has_it(brokers):
    # w0's SUBs reach the broker 0.2 s late. Were the ack sent at once, b's publish (from w1,
    # whose link is fast) would reach the broker first and be lost to a.
    procs = brokers(1)

    async def scenario():
        async with slow_and_fast_workers(procs.paths) as (w0, slow, w1):
            async with client(w0) as a, client(w0) as a2, client(w1) as b:
                for i in range(3):
                    subs = await a.subscribe(f"late.{i}", f"late.{i}.b")  # two new channels
                    for sub in subs:
                        await b.publish(sub.name, i)
                        assert await sub.get(timeout=5) == i
                (again,) = await a2.subscribe("late.0")  # declared by this worker already
                await b.publish("late.0", "x")
                assert await again.get(timeout=5) == "x"
                assert slow.stats.dropped_down == 0
                # A subscriber that leaves while its channel is being declared leaves no
                # channel behind, on the worker or on the bus.
                a2._queue(P.Subscribe(99, ["late.left"]))
                await asyncio.sleep(0.05)
                assert "late.left" in w0.channels.by_name
                await a2.close()
                await eventually(lambda: "late.left" not in w0.channels.by_name and "late.left" not in slow.channels)

    arun(scenario())


def test_a_busy_channel_sends_nothing_to_a_subscriber_before_its_ack(brokers):
    # A Message names its channel by the id that Subscribed announces: one that arrived
    # first would be undecodable, and the client would close (4100). While w0 waits for
    # the broker to confirm its SUB, w1's client keeps publishing; what the broker
    # forwards meanwhile must not reach the new subscriber ahead of its ack.
    procs = brokers(1)

    async def scenario():
        stop = asyncio.Event()

        async def flood(c) -> None:
            for n in range(200_000):  # about 20,000 a second, until stopped (10 s at most)
                if stop.is_set():
                    return
                await c.publish(f"busy.{n % 3}", n, ack=False)
                if n % 20 == 0:
                    await asyncio.sleep(0.001)

        flooding = App(limits=Limits(max_messages_per_second=1e6, message_burst=10**6))
        async with slow_and_fast_workers(procs.paths, flooding) as (w0, _, w1):
            async with client(w0) as a, client(w1) as b:
                pub = asyncio.create_task(flood(b))
                try:
                    await asyncio.sleep(0.05)
                    subs = await a.subscribe("busy.0", "busy.1", "busy.2")
                    for sub in subs:
                        assert isinstance(await sub.get(timeout=5), int)
                finally:
                    stop.set()
                    await pub
                assert w0.stats.protocol_errors == 0 and a.connected

    arun(scenario())


def test_requests_between_workers_round_robin_errors_and_timeouts(brokers):
    procs = brokers(2)

    async def scenario():
        buses = [BrokerBus(procs.paths, name=f"w{i}", settings=FAST) for i in range(3)]
        for bus in buses:
            await bus.start()
        asker, h1, h2 = buses
        try:
            for bus in (h1, h2):
                bus.handle("who", lambda data, name=bus.name: name.encode() + data)

            async def slow(data: bytes) -> bytes:
                await asyncio.sleep(float(data))
                return b"late"

            def refuse(data: bytes) -> bytes:
                raise BadRequest("no thanks")

            h1.handle("slow", slow)
            h1.handle("refuse", refuse)
            await asyncio.sleep(0.05)  # HANDLE frames are on their way
            answers = [await asker.request("who", b"!", timeout=2) for _ in range(4)]
            assert sorted(answers) == [b"w1!", b"w1!", b"w2!", b"w2!"]
            assert await asker.request("slow", b"0.01", timeout=2) == b"late"
            t0 = time.monotonic()
            with pytest.raises(Timeout):
                await asker.request("slow", b"1.0", timeout=0.1)
            assert time.monotonic() - t0 < 0.5
            with pytest.raises(BadRequest, match="no thanks"):
                await asker.request("refuse", b"", timeout=2)
            with pytest.raises(Unavailable):
                await asker.request("nobody", b"", timeout=2)
            assert asker.stats.request_timeouts == 1
        finally:
            for bus in buses:
                await bus.close()

    arun(scenario())


def test_kv_end_to_end_with_expiry_on_both_brokers(brokers):
    procs = brokers(2)

    async def scenario():
        a = BrokerBus(procs.paths, name="a", settings=FAST)
        b = BrokerBus(procs.paths, name="b", settings=FAST)
        await a.start()
        await b.start()
        try:
            keys = names_owned(procs.paths, "key.")
            for key in keys.values():
                await a.kv_set(key, b"forever")
                await a.kv_set(key + ".short", b"brief", ttl=0.2)
                assert await b.kv_get(key) == b"forever"
                assert await b.kv_get(key + ".short") == b"brief"
            t0 = time.monotonic()
            for key in keys.values():
                await eventually(lambda key=key: _is_none(b.kv_get(key + ".short")), timeout=3.0)
                assert await b.kv_get(key) == b"forever"
            assert 0.15 < time.monotonic() - t0 < 3.0
            assert await b.kv_delete(keys[0]) is True and await b.kv_delete(keys[0]) is False
            with pytest.raises(LimitExceeded):
                await a.kv_set("huge", b"x" * (64 * 1024 + 1))
            # Volatile, as documented: a restarted broker starts empty, the other keeps its keys.
            procs.kill(1)
            await procs.restart(1)
            await eventually(lambda: a.is_connected(1), timeout=5)
            assert await a.kv_get(keys[1]) is None
        finally:
            await a.close()
            await b.close()

    arun(scenario())


async def _is_none(aw) -> bool:
    return (await aw) is None


def test_presence_counts_across_workers_and_after_a_broker_restart(brokers):
    procs = brokers(2)

    async def scenario():
        buses = [BrokerBus(procs.paths, name=f"w{i}", settings=FAST) for i in range(3)]
        for bus in buses:
            await bus.start()
        try:
            rooms = names_owned(procs.paths, "lobby.")
            for bus, n in zip(buses, (3, 2, 0)):
                for room in rooms.values():
                    bus.set_count(room, n)
            for room in rooms.values():
                await eventually(lambda room=room: _equals(buses[2].presence(room), 5), timeout=3)
            buses[1].set_count(rooms[0], 4)
            assert await buses[1].presence(rooms[0]) == 7  # read-your-writes: flushed first

            procs.kill(0)
            await eventually(lambda: not buses[2].is_connected(0), timeout=3)
            with pytest.raises(Unavailable):
                await buses[2].presence(rooms[0])
            assert await buses[2].presence(rooms[1]) == 5  # the other broker is untouched
            buses[0].set_count(rooms[0], 1)  # changed while its broker is down
            await procs.restart(0)
            # every worker re-sends its counts to the restarted broker
            await eventually(lambda: _equals(buses[2].presence(rooms[0]), 5), timeout=5)
            await buses[1].close()
            await eventually(lambda: _equals(buses[2].presence(rooms[0]), 1), timeout=3)
            await eventually(lambda: _equals(buses[2].presence(rooms[1]), 3), timeout=3)
        finally:
            for bus in buses:
                await bus.close()

    arun(scenario())


async def _equals(aw, value) -> bool:
    return (await aw) == value


def test_broker_sigkill_loses_publishes_for_a_bounded_window_then_channels_work(brokers, record_property):
    procs = brokers(2)
    interval = 0.005
    restart_after = 0.3  # the supervisor's restart delay, played by the test

    async def scenario():
        loop = asyncio.get_running_loop()
        workers = await start_workers(2, procs.paths, BusSettings())  # the default backoff
        w0, w1 = workers
        channels = names_owned(procs.paths, "tick.")  # channels[0] dies with broker 0
        sent_at: list[float] = []
        stop = asyncio.Event()

        async def publisher():
            seq = 0
            while not stop.is_set():
                sent_at.append(loop.time())
                for ch in channels.values():
                    w0.publish(ch, seq)
                seq += 1
                await asyncio.sleep(interval)

        try:
            async with client(w1) as sub:
                subs = {bid: (await sub.subscribe(ch))[0] for bid, ch in channels.items()}
                # A subscribe is acknowledged by the worker; its SUB reaches the broker a
                # moment later. Publish only once both brokers have it.
                await asyncio.sleep(0.3)
                task = asyncio.create_task(publisher())
                await asyncio.sleep(0.5)
                killed_at = loop.time()
                await asyncio.to_thread(procs.kill, 0)
                await asyncio.sleep(restart_after)
                await procs.restart(0)
                listening_at = loop.time()
                await asyncio.sleep(1.5)
                stop.set()
                await task
                await asyncio.sleep(0.3)
                got = {bid: set(s.queue) for bid, s in subs.items()}
                total = len(sent_at)
                assert got[1] == set(range(total))  # the surviving broker's channel lost nothing
                missing = sorted(set(range(total)) - got[0])
                assert missing, "a SIGKILLed broker loses what is in flight"
                assert missing == list(range(missing[0], missing[-1] + 1)), "one contiguous gap"
                window = sent_at[missing[-1]] - sent_at[missing[0]] + interval
                after_back = sent_at[missing[-1]] + interval - listening_at
                record_property("publish_loss_window_s", round(window, 3))
                record_property("loss_after_broker_listening_s", round(after_back, 3))
                print(
                    f"\nbroker SIGKILL: {len(missing)} of {total} publishes lost over {window * 1000:.0f} ms "
                    f"(broker down {1000 * (listening_at - killed_at):.0f} ms, of which {restart_after * 1000:.0f} ms "
                    f"restart delay; lost after it listened again: {after_back * 1000:.0f} ms); "
                    f"publisher dropped {w0.bus.stats.dropped_down} while its broker was down"
                )
                assert sent_at[missing[0]] >= killed_at - 0.2  # nothing lost well before the kill
                assert window < (listening_at - killed_at) + 1.0  # bounded: down time + reconnect
                assert after_back < 1.0
        finally:
            await stop_workers(workers)

    arun(scenario(), timeout=60)


def test_requests_to_a_dead_broker_fail_fast_and_work_again_after_restart(brokers):
    procs = brokers(1)

    async def scenario():
        asker = BrokerBus(procs.paths, name="asker", settings=FAST)
        handler = BrokerBus(procs.paths, name="handler", settings=FAST)
        await asker.start()
        await handler.start()
        try:
            handler.handle("echo", lambda data: data)
            await eventually(lambda: _equals(asker.request("echo", b"1", timeout=1), b"1"))
            waiting = asyncio.ensure_future(asker.request("never", b"", timeout=5))
            procs.kill(0)
            with pytest.raises(Unavailable):
                await asyncio.wait_for(waiting, 2)  # failed when the link dropped, not at 5 s
            with pytest.raises(Unavailable):
                await asker.request("echo", b"", timeout=1)
            await procs.restart(0)
            # the handler re-declared itself on the new broker
            await eventually(lambda: _equals(asker.request("echo", b"2", timeout=1), b"2"), timeout=5)
        finally:
            await asker.close()
            await handler.close()

    arun(scenario())


def _raw_rep(path: str, frame: bytes) -> Rep:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(path)
        s.sendall(frame)
        reader = FrameReader()
        while True:
            frames = reader.feed(s.recv(65536))
            if frames:
                return decode(frames[0])  # type: ignore[return-value]


def test_a_peer_sending_garbage_is_cut_off_and_the_broker_carries_on(brokers):
    procs = brokers(1)
    path = procs.paths[0]
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(path)
        s.sendall(struct.pack("<I", 0xFFFFFFF0))  # a 4 GiB frame: refused from its length
        assert s.recv(10) == b""  # closed by the broker
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(path)
        s.sendall(b"\x01\x00\x00\x00\x63")  # unknown op
        assert s.recv(10) == b""
    stats = json.loads(_raw_rep(path, stats_frame(1)).data)
    assert stats["malformed"] == 2 and procs.procs[0].poll() is None


def test_broker_exits_cleanly_on_sigterm_and_refuses_a_live_path(brokers):
    procs = brokers(1)
    path = procs.paths[0]
    second = subprocess.run(
        [sys.executable, "-m", "engine.broker", "--path", path, "--id", "0"], cwd=ROOT, capture_output=True, timeout=20
    )
    assert second.returncode == 1 and b"another process is listening" in second.stderr
    assert procs.kill(0, signal.SIGTERM) == 0
    assert not os.path.exists(path)


def test_broker_exits_when_its_parent_dies(brokers):
    procs = brokers(0)
    path = os.path.join(procs.dir, "orphan.sock")
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time\n"
            f"p = subprocess.Popen([sys.executable, '-m', 'engine.broker', '--path', {path!r}, '--id', '0', "
            "'--log-level', 'WARNING'])\n"
            "print(p.pid, flush=True)\n"
            "time.sleep(60)\n",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )
    try:
        broker_pid = int(parent.stdout.readline())  # type: ignore[union-attr]
        deadline = time.monotonic() + 15
        while not os.path.exists(path):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        parent.kill()
        parent.wait(5)
        deadline = time.monotonic() + 5
        while _alive(broker_pid):
            assert time.monotonic() < deadline, "the orphaned broker kept running"
            time.sleep(0.02)
        assert not os.path.exists(path)  # it shut down properly (SIGTERM), not killed
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")  # a zombie has exited; reaping it is init's business


def test_publish_to_a_down_broker_is_dropped_and_counted_not_queued(brokers):
    procs = brokers(1)

    async def scenario():
        bus = BrokerBus(procs.paths, name="w", settings=FAST)
        await bus.start()
        try:
            procs.kill(0)
            await eventually(lambda: not bus.is_connected(), timeout=3)
            for _ in range(1000):
                bus.publish("x", Payload(1, b"lost"))
            assert bus.stats.dropped_down == 1000 and bus.stats.published == 0
            await procs.restart(0)
            await eventually(lambda: bus.is_connected(), timeout=5)
            with pytest.raises(LimitExceeded):  # refused here rather than cutting the link
                bus.publish("x", Payload(1, b"x" * (5 * 1024 * 1024)))
            bus.publish("x", Payload(1, b"fits"))
            assert bus.stats.published == 1
        finally:
            await bus.close()

    arun(scenario())
