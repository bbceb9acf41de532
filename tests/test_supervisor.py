"""The cluster for real: a supervisor with worker and broker processes, killed with SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from typing import Any


from engine import Client
from engine.supervisor import RestartPolicy

from helpers import ROOT, Cluster, arun, eventually

APP = "tests.cluster_app:app"


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def clients_on_each_worker(url: str, workers: int, **kwargs: Any) -> dict[str, Client]:
    """Connect until every worker holds one of our clients (bounded)."""
    by_process: dict[str, Client] = {}
    spare = []
    for _ in range(60):
        c = Client(url, min_backoff=0.05, max_backoff=0.5, **kwargs)
        await c.connect()
        if c.process in by_process:
            spare.append(c)
        else:
            by_process[c.process] = c
        if len(by_process) == workers:
            break
    for c in spare:
        await c.close()
    assert len(by_process) == workers, f"could not reach every worker: {list(by_process)}"
    return by_process


async def client_on(url: str, process: str) -> Client:
    """A client connected to a given worker (kernel hashing decides: retry, bounded)."""
    for _ in range(60):
        c = Client(url)
        await c.connect()
        if c.process == process:
            return c
        await c.close()
    raise AssertionError(f"never reached {process}")


def test_restart_policy_backs_off_and_holds_down_storms():
    p = RestartPolicy(first_delay=0.05, max_delay=1.0, storm_limit=5, storm_hold=30)
    assert [p.delay(n) for n in range(7)] == [0.0, 0.05, 0.1, 0.2, 0.4, 30, 30]


def test_clients_on_different_workers_share_channels_and_procedures():
    with Cluster(workers=2, brokers=2) as cluster:
        async def scenario():
            clients = await clients_on_each_worker(cluster.url(), 2)
            a, b = clients["worker-0"], clients["worker-1"]
            assert a.process != b.process
            (chat_a,) = await a.subscribe("chat")
            (chat_b,) = await b.subscribe("chat")
            await a.publish("chat", "from worker-0")
            await b.publish("chat", "from worker-1")
            for sub in (chat_a, chat_b):
                got = {await sub.get(timeout=5), await sub.get(timeout=5)}
                assert got == {"from worker-0", "from worker-1"}
            assert await a.call("where") == "worker-0" and await b.call("where") == "worker-1"
            # A procedure that publishes: the server-side publish crosses workers too.
            await b.call("announce", "hello all")
            assert await chat_a.get(timeout=5) == "announce: hello all"
            for c in clients.values():
                await c.close()

        arun(scenario())


def test_worker_killed_under_load_is_back_quickly_and_others_see_nothing():
    with Cluster(workers=2, brokers=1) as cluster:
        async def scenario():
            clients = await clients_on_each_worker(cluster.url(), 2)
            victim, bystander = clients["worker-0"], clients["worker-1"]
            (v_sub,) = await victim.subscribe("ticks")
            (b_sub,) = await bystander.subscribe("ticks")
            publisher = await client_on(cluster.url(), "worker-1")  # off the victim
            seq = 0
            stop = asyncio.Event()

            async def publish() -> None:
                nonlocal seq
                while not stop.is_set():
                    seq += 1
                    await publisher.publish("ticks", seq)
                    await asyncio.sleep(0.01)

            task = asyncio.create_task(publish())
            await asyncio.sleep(0.3)
            old_pid = cluster.pids()["worker-0"]
            t0 = time.monotonic()
            os.kill(old_pid, signal.SIGKILL)
            await eventually(lambda: cluster.pids()["worker-0"] not in (old_pid, None) and cluster.health()["status"] == "ok", timeout=10)
            back_after = time.monotonic() - t0
            # Its own client reconnects and resubscribes by itself.
            await victim.wait_connected(timeout=10)
            await eventually(lambda: victim.connects >= 2 and len(v_sub.queue) > 0, timeout=10)
            await asyncio.sleep(0.3)
            stop.set()
            await task
            await asyncio.sleep(0.3)
            # The bystander saw every message, in order, and never reconnected.
            got = [b_sub.queue.popleft() for _ in range(len(b_sub.queue))]
            assert got == list(range(1, seq + 1))
            assert bystander.connects == 1
            assert back_after < 5, f"worker came back after {back_after:.2f} s"
            print(f"worker-0 back after {back_after:.3f} s")
            for c in [*clients.values(), publisher]:
                await c.close()

        arun(scenario(), timeout=60)
        restarts = [r for r in cluster.records() if "exited with signal SIGKILL" in r.get("msg", "")]
        assert restarts and restarts[0]["process"] == "supervisor"


def test_broker_killed_is_restarted_and_channels_work_again():
    with Cluster(workers=2, brokers=1) as cluster:
        async def scenario():
            clients = await clients_on_each_worker(cluster.url(), 2)
            a, b = clients["worker-0"], clients["worker-1"]
            (sub,) = await b.subscribe("ticks")
            seq, sent_at = 0, {}
            stop = asyncio.Event()

            async def publish() -> None:
                nonlocal seq
                while not stop.is_set():
                    seq += 1
                    sent_at[seq] = time.monotonic()
                    await a.publish("ticks", seq, ack=False)
                    await asyncio.sleep(0.005)

            task = asyncio.create_task(publish())
            await asyncio.sleep(0.5)
            os.kill(cluster.pids()["broker-0"], signal.SIGKILL)
            await asyncio.sleep(0.2)
            await eventually(lambda: cluster.health()["status"] == "ok", timeout=10)
            await asyncio.sleep(1.0)
            stop.set()
            await task
            await asyncio.sleep(0.5)
            got = set(sub.queue)
            lost = sorted(set(range(1, seq + 1)) - got)
            assert lost, "killing the broker lost nothing? then the test did not kill it"
            window = sent_at[lost[-1]] - sent_at[lost[0]]
            print(f"publishes lost for {window * 1000:.0f} ms ({len(lost)} of {seq})")
            assert window < 5.0
            assert max(got) == seq  # channels work again after the restart
            for c in clients.values():
                await c.close()

        arun(scenario(), timeout=60)


def test_rolling_restart_keeps_serving():
    with Cluster("--pid-file", "/tmp/tickwire-test-rolling.pid", workers=2, brokers=1) as cluster:
        async def scenario():
            clients = await clients_on_each_worker(cluster.url(), 2)
            subs = {name: (await c.subscribe("ticks"))[0] for name, c in clients.items()}
            publisher = Client(cluster.url(), min_backoff=0.05)
            await publisher.connect()
            seq = 0
            sent_at: dict[int, float] = {}
            stop = asyncio.Event()

            async def publish() -> None:
                nonlocal seq
                while not stop.is_set():
                    try:
                        t = time.monotonic()
                        await publisher.publish("ticks", seq + 1, timeout=2)
                        seq += 1  # only acknowledged publishes count as published
                        sent_at[seq] = t
                    except Exception:
                        pass
                    await asyncio.sleep(0.01)

            task = asyncio.create_task(publish())
            await asyncio.sleep(0.3)
            before = cluster.pids()
            subprocess.run([sys.executable, "-m", "engine.cli", "restart", "--pid-file", "/tmp/tickwire-test-rolling.pid"], check=True, cwd=ROOT)
            # The service answers throughout: HTTP and new connections keep working.
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                assert cluster.get("/health")
                now = cluster.pids()
                if all(now[w] != before[w] for w in ("worker-0", "worker-1")) and cluster.health()["status"] == "ok":
                    break
                probe = Client(cluster.url(), reconnect=False)
                await probe.connect()
                await probe.close()
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the rolling restart did not finish")
            for c in clients.values():
                await c.wait_connected(timeout=10)
            await asyncio.sleep(0.5)
            stop.set()
            await task
            await asyncio.sleep(0.5)
            for name, sub in subs.items():
                got = sorted(set(sub.queue))
                missing = sorted(set(range(1, seq + 1)) - set(got))
                # A subscriber misses only what was published while its own connection was
                # being moved off a worker being replaced: one window per reconnection
                # (a client that reconnects onto the next worker to be replaced moves twice).
                missing_set = set(missing)
                starts = [n for n in missing if n - 1 not in missing_set]
                windows = []
                for start in starts:
                    end = start
                    while end + 1 in missing_set:
                        end += 1
                    windows.append((sent_at[end] - sent_at[start]) * 1000)
                reconnects = clients[name].connects - 1
                print(f"{name}: missed {len(missing)} of {seq} publishes, windows {[round(w) for w in windows]} ms, {reconnects} reconnection(s)")
                assert max(got) == seq
                assert len(windows) <= reconnects and all(w < 5000 for w in windows)
            for c in [*clients.values(), publisher]:
                await c.close()
            assert any("rolling restart done" in r.get("msg", "") for r in cluster.records())

        arun(scenario(), timeout=90)


def test_metrics_never_go_backwards_when_a_worker_dies():
    with Cluster(workers=2, brokers=1) as cluster:
        def total(name: str) -> int:
            text = cluster.get("/metrics").decode()
            return sum(int(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(f"tickwire_{name}_total{{"))

        async def scenario():
            clients = await clients_on_each_worker(cluster.url(), 2)
            for _ in range(10):
                for c in clients.values():
                    await c.call("where")
            await asyncio.sleep(1.5)  # one stats report
            before = total("calls")
            assert before >= 20
            os.kill(cluster.pids()["worker-0"], signal.SIGKILL)
            seen = []
            for _ in range(20):
                seen.append(total("calls"))
                await asyncio.sleep(0.1)
            assert seen == sorted(seen) and seen[0] >= before
            text = cluster.get("/metrics").decode()
            assert 'tickwire_restarts_total{process="worker-0"} 1' in text
            for c in clients.values():
                await c.close()

        arun(scenario(), timeout=60)


def test_presence_and_kv_from_server_code():
    with Cluster(workers=2, brokers=2) as cluster:
        async def scenario():
            clients = await clients_on_each_worker(cluster.url(), 2)
            a, b = clients["worker-0"], clients["worker-1"]
            await a.subscribe("lobby")
            await b.subscribe("lobby")
            await eventually_async(lambda: a.call("presence", "lobby"), 2)
            await a.call("kv_set", {"key": "k", "value": "v", "ttl": 0.5})
            assert await b.call("kv_get", "k") == "v"
            await asyncio.sleep(1.0)
            assert await b.call("kv_get", "k") is None
            for c in clients.values():
                await c.close()

        arun(scenario(), timeout=60)


async def eventually_async(get: Any, expected: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        value = await get()
        if value == expected:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{value!r} != {expected!r}")
        await asyncio.sleep(0.05)


def test_rr_scheduling_alternates_workers():
    with Cluster("--scheduling", "rr", workers=2, brokers=1) as cluster:
        async def scenario():
            seen = []
            for _ in range(4):
                c = Client(cluster.url())
                await c.connect()
                seen.append(c.process)
                await c.close()
            assert sorted(set(seen)) == ["worker-0", "worker-1"]

        arun(scenario())


def test_one_log_stream_tagged_by_process_with_uncaught_errors():
    with Cluster(workers=2, brokers=1) as cluster:
        async def scenario():
            c = Client(cluster.url())
            await c.connect()
            c.emit("boom", None)  # a receiver that raises in a background task
            await asyncio.sleep(0.5)
            await c.close()

        arun(scenario())
    records = cluster.records()
    processes = {r.get("process") for r in records}
    assert {"supervisor", "worker-0", "worker-1", "broker-0"} <= processes
    boom = [r for r in records if "kaboom" in (r.get("exc") or "")]
    assert boom and boom[0]["process"].startswith("worker-") and boom[0]["level"] == "ERROR"


def test_shutdown_leaves_no_orphans_and_second_sigint_forces():
    # Each cluster is a context manager, so a failing assertion still stops it.
    with Cluster(workers=2, brokers=1) as cluster:
        sup = cluster.proc
        assert sup is not None
        kids = children_of(sup.pid)
        assert len(kids) == 3
        sup.send_signal(signal.SIGTERM)
        assert sup.wait(40) == 0
        time.sleep(0.2)
        assert not any(alive(pid) for pid in kids)
    # Killing the supervisor outright: its children follow it (parent-death signal).
    with Cluster(workers=2, brokers=1) as cluster:
        assert cluster.proc is not None
        kids = children_of(cluster.proc.pid)
        cluster.proc.kill()
        cluster.proc.wait()
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in kids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(alive(pid) for pid in kids)
    # A second SIGINT does not wait for a slow drain.
    with Cluster(app="tests.slow_shutdown_app:app", workers=1, brokers=0) as cluster:
        assert cluster.proc is not None
        kids = children_of(cluster.proc.pid)
        cluster.proc.send_signal(signal.SIGINT)
        time.sleep(0.5)
        assert cluster.proc.poll() is None
        cluster.proc.send_signal(signal.SIGINT)
        assert cluster.proc.wait(5) != 0
        time.sleep(0.3)
        assert not any(alive(pid) for pid in kids)


async def room_on_both(cluster: Cluster, room_type: str) -> tuple[dict[str, Client], dict[str, Any], str]:
    clients = await clients_on_each_worker(cluster.url(), 2)
    rooms = {}
    for name, c in clients.items():
        rooms[name] = await c.join_room(room_type)
    ids = {r.id for r in rooms.values()}
    assert len(ids) == 1
    room_id = ids.pop()
    owner = None
    for name, c in clients.items():
        if await c.call("host_of", room_id):
            owner = name
    assert owner is not None
    return clients, rooms, owner


def test_room_on_one_worker_serves_players_on_both_one_frame_per_send_tick():
    with Cluster(workers=2, brokers=1) as cluster:
        async def scenario():
            clients, rooms, owner = await room_on_both(cluster, "tally")
            other = next(n for n in clients if n != owner)
            frames: list[bytes] = []
            clients[other].on_frame = frames.append
            for name, room in rooms.items():
                room.input(1 if name == owner else 10)
            await eventually(lambda: all(r.state == {"total": 11} for r in rooms.values()), timeout=5)
            frames.clear()
            start = rooms[other].ticks
            await asyncio.sleep(1.0)
            ticks = rooms[other].ticks - start
            assert len(frames) == ticks and 15 <= ticks <= 25  # 20 Hz, one frame each
            from engine._generated import protocol as P
            from helpers import CODEBOOK

            for f in frames:
                msgs = CODEBOOK.decode_frame(f, clients[other]._ctx)
                assert sum(isinstance(m, P.Tick) for m in msgs) == 1
            for c in clients.values():
                await c.close()

        arun(scenario(), timeout=60)


def test_players_are_told_when_the_owner_dies_and_recreate_policy():
    with Cluster(workers=2, brokers=1) as cluster:
        async def scenario():
            clients, rooms, owner = await room_on_both(cluster, "tally")
            survivor = next(n for n in clients if n != owner)
            os.kill(cluster.pids()[owner], signal.SIGKILL)
            await eventually(lambda: rooms[survivor].left is not None, timeout=10)
            code, reason = rooms[survivor].left
            assert code == 8 and "closed" in reason
            for c in clients.values():
                await c.close()
            await eventually(lambda: cluster.health()["status"] == "ok", timeout=10)
            clients, rooms, owner = await room_on_both(cluster, "phoenix")
            survivor = next(n for n in clients if n != owner)
            room_id = rooms[survivor].id
            os.kill(cluster.pids()[owner], signal.SIGKILL)
            await eventually(lambda: rooms[survivor].left is not None, timeout=10)
            assert "recreated" in rooms[survivor].left[1]
            again = await clients[survivor].join_room(room_id=room_id)
            assert again.id == room_id
            for c in clients.values():
                await c.close()

        arun(scenario(), timeout=60)


def test_rolling_restart_moves_a_room_that_serialises_itself():
    with Cluster("--pid-file", "/tmp/tickwire-test-move.pid", workers=2, brokers=1) as cluster:
        async def scenario():
            clients, rooms, owner = await room_on_both(cluster, "tally")
            for r in rooms.values():
                r.input(5)
            await eventually(lambda: all(r.state == {"total": 10} for r in rooms.values()), timeout=5)
            room_id = rooms[owner].id
            subprocess.run([sys.executable, "-m", "engine.cli", "restart", "--pid-file", "/tmp/tickwire-test-move.pid"], check=True, cwd=ROOT)
            await eventually(lambda: any("rolling restart done" in r.get("msg", "") for r in cluster.records()), timeout=60)
            # Both players are back in the same room (one reconnected, took its seat again),
            # and the state survived the move.
            for name, c in clients.items():
                await c.wait_connected(timeout=10)
            await eventually(lambda: all(r.left is None and r.handle in r.client.rooms for r in rooms.values()), timeout=15)
            for r in rooms.values():
                r.input(1)
            await eventually(lambda: all(r.state == {"total": 12} for r in rooms.values()), timeout=10)
            assert any(f"room {room_id} moved" in r.get("msg", "") for r in cluster.records())
            for c in clients.values():
                await c.close()

        arun(scenario(), timeout=90)


def test_simultaneous_joins_across_workers_share_one_new_room():
    # Each join asks the supervisor over a control link, and the owner over another:
    # without the matchmaker's lock per type, all of them found no room and made one each.
    with Cluster(workers=2, brokers=1) as cluster:
        async def scenario():
            clients = [Client(cluster.url()) for _ in range(6)]
            for c in clients:
                await c.connect()
            rooms = await asyncio.gather(*[c.join_room("tally") for c in clients])
            assert len({r.id for r in rooms}) == 1
            for c in clients:
                await c.close()

        arun(scenario())
