"""Rooms on real servers: one or two workers in one process (LocalHub, LocalDirectory)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator

import pytest

from engine import App, Client, Limits, RemoteError, Worker
from engine._generated import protocol as P
from engine.bus import LocalHub
from engine.directory import LocalDirectory
from engine.errors import ErrorCode
from engine.rooms import Room

from helpers import CODEBOOK, arun, eventually, serving, url


class Arena(Room):
    tick_rate = 20
    send_rate = 20
    max_players = 4
    reconnect_grace = 1.0

    def on_create(self, options):
        self.state = {"total": 0}
        self.inputs: list[tuple[int, int, int]] = []

    def on_input(self, player, data):
        self.inputs.append((player.id, data["n"], self.tick))
        self.state = {"total": self.state["total"] + data["n"]}


def arena_app() -> App:
    app = App()
    app.room("arena", Arena)

    @app.procedure("hosted")
    def hosted(socket, data):
        return sorted(socket.worker.rooms.hosted)

    @app.procedure("reserve")
    def reserve(socket, room_id):
        return socket.worker.rooms.reserve(room_id, "guest")

    return app


def section_counts(frames: list[bytes], ctx) -> list[int]:
    """How many Tick headers (room sections) each frame holds."""
    return [sum(isinstance(m, P.Tick) for m in CODEBOOK.decode_frame(f, ctx)) for f in frames]


def test_join_input_state_and_one_frame_per_send_tick():
    async def scenario():
        async with serving(arena_app()) as w:
            frames: list[bytes] = []
            a = Client(url(w), on_frame=frames.append)
            b = Client(url(w))
            await a.connect()
            await b.connect()
            ra = await a.join_room("arena", {"name": "ann"})
            rb = await b.join_room("arena")
            assert ra.id == rb.id and ra.player != rb.player
            for n in (1, 2, 3):
                ra.input({"n": n})
            await eventually(lambda: rb.state == {"total": 6})
            assert ra.applied_seq == 3
            stats = w.rooms.room_stats()[ra.id]  # wake-ups are timed in wall and CPU time
            assert stats["sends"] > 0 and stats["tick_ms_sum"] > 0 and stats["tick_cpu_ms_sum"] > 0
            assert 0 < stats["input_cpu_ms_sum"] < stats["tick_cpu_ms_sum"]  # the inputs' part of it
            # Replies ride the room's frame: each frame holds exactly one room section.
            frames.clear()
            await asyncio.gather(*[a.call("hosted") for _ in range(5)])
            await asyncio.sleep(0.3)
            counts = section_counts(frames, a._ctx)
            assert counts and all(c == 1 for c in counts)
            assert 4 <= len(frames) <= 9  # 20 Hz for 0.3 s, plus the join of the calls
            assert ra.rtt is not None and ra.rtt < 0.5
            listed = await b.list_rooms("arena")
            assert listed[0]["room_id"] == ra.id and listed[0]["players"] == 2
            await ra.leave()
            await eventually(lambda: w.directory.book.rooms[rb.id]["players"] == 1)
            await a.close()
            await b.close()

    arun(scenario())


def test_room_errors_reach_the_client():
    async def scenario():
        async with serving(arena_app()) as w:
            c = Client(url(w))
            await c.connect()
            with pytest.raises(RemoteError) as err:
                await c.join_room("nope")
            assert err.value.code == ErrorCode.NOT_FOUND
            with pytest.raises(RemoteError) as err:
                await c.join_room(room_id="arena-00000000")
            assert err.value.code == ErrorCode.NOT_FOUND
            room = await c.join_room("arena")
            with pytest.raises(RemoteError) as err:
                await c.join_room(room_id=room.id)
            assert err.value.code == ErrorCode.BAD_REQUEST
            # An input for a room handle this connection does not hold.
            errors = asyncio.get_running_loop().create_future()
            c.on("#error", lambda e: errors.done() or errors.set_result(e))
            c._queue(P.Input(99, 1, c.payload({"n": 1})))
            assert (await asyncio.wait_for(errors, 2))["code"] == ErrorCode.BAD_REQUEST
            await c.close()

    arun(scenario())


def test_full_rooms_spill_into_new_ones_and_reservations_work():
    async def scenario():
        async with serving(arena_app()) as w:
            clients = [Client(url(w)) for _ in range(6)]
            rooms = []
            for c in clients:
                await c.connect()
                rooms.append(await c.join_room("arena"))
            ids = [r.id for r in rooms]
            assert len(set(ids)) == 2 and ids.count(ids[0]) == 4
            token = await clients[5].call("reserve", ids[5])
            guest = Client(url(w))
            await guest.connect()
            seat = await guest.join_room(seat=token)
            assert seat.id == ids[5]
            for c in [*clients, guest]:
                await c.close()

    arun(scenario())


def test_reconnect_takes_the_same_seat_back():
    async def scenario():
        port = __import__("helpers").free_port()
        w = Worker(arena_app())
        await w.start("127.0.0.1", port)
        c = Client(f"ws://127.0.0.1:{port}/", min_backoff=0.05)
        await c.connect()
        room = await c.join_room("arena")
        room.input({"n": 5})
        await eventually(lambda: room.state == {"total": 5})
        # Cut the connection under the client (not a clean close): it reconnects by itself.
        next(iter(w.sockets)).conn.abort()
        await eventually(lambda: c.connects == 2 and room.handle in c.rooms, timeout=5)
        room.input({"n": 1})
        await eventually(lambda: room.state == {"total": 6})
        assert room.player == 1 and room.left is None
        await c.close()
        await w.stop()

    arun(scenario())


@contextlib.asynccontextmanager
async def two_workers() -> AsyncIterator[tuple[Worker, Worker]]:
    hub, directory = LocalHub(), LocalDirectory()
    a = Worker(arena_app(), bus=hub.bus(), process="worker-0", directory=directory)
    b = Worker(arena_app(), bus=hub.bus(), process="worker-1", directory=directory)
    await a.start("127.0.0.1", 0)
    await b.start("127.0.0.1", 0)
    try:
        yield a, b
    finally:
        await a.stop(timeout=1)
        await b.stop(timeout=1)


def test_a_room_on_one_worker_with_players_on_both():
    async def scenario():
        async with two_workers() as (wa, wb):
            # Make worker-1 busier so the room is placed on worker-0.
            wa.directory.book.loads["worker-1"] = 100
            frames_b: list[bytes] = []
            pa = Client(url(wa))
            pb = Client(url(wb), on_frame=frames_b.append)
            await pa.connect()
            await pb.connect()
            ra = await pa.join_room("arena")
            rb = await pb.join_room("arena")
            assert ra.id == rb.id
            assert await pa.call("hosted") == [ra.id] and await pb.call("hosted") == []
            # Inputs from the remote worker reach the room, batched, in order.
            for n in range(1, 6):
                rb.input({"n": n})
            await eventually(lambda: ra.state == {"total": 15} and rb.state == {"total": 15})
            room = wa.rooms.hosted[ra.id].room
            assert [n for _, n, _ in room.inputs] == [1, 2, 3, 4, 5]
            assert rb.applied_seq == 5
            # One frame per send tick on the remote worker too.
            frames_b.clear()
            await asyncio.sleep(0.5)
            counts = section_counts(frames_b, pb._ctx)
            assert all(c == 1 for c in counts) and 7 <= len(counts) <= 12
            # Leaving from the remote worker frees the seat on the owner.
            await rb.leave()
            await eventually(lambda: len(room.players) == 1)
            await pa.close()
            await pb.close()

    arun(scenario())


def test_players_are_told_when_the_room_closes():
    async def scenario():
        async with two_workers() as (wa, wb):
            wa.directory.book.loads["worker-1"] = 100
            pa, pb = Client(url(wa)), Client(url(wb))
            await pa.connect()
            await pb.connect()
            ra = await pa.join_room("arena")
            rb = await pb.join_room("arena")
            wa.rooms.dispose(ra.id, ErrorCode.UNAVAILABLE, "game over")
            await eventually(lambda: ra.left is not None and rb.left is not None)
            assert rb.left == (ErrorCode.UNAVAILABLE, "game over")
            assert not pb.rooms
            await pa.close()
            await pb.close()

    arun(scenario())


def test_room_metrics_say_the_wake_ups_cpu_and_the_inputs_part_of_it():
    from engine.metrics import room_metrics_text

    text = room_metrics_text([({"process": "w0"}, "r1", {"type": "arena", "tick_cpu_ms_sum": 2500.0, "input_cpu_ms_sum": 500.0})])
    labels = '{process="w0",room="r1",type="arena"}'
    assert f"tickwire_room_tick_cpu_seconds_total{labels} 2.500000" in text.splitlines()
    assert f"tickwire_room_input_cpu_seconds_total{labels} 0.500000" in text.splitlines()


def test_a_room_section_over_max_out_frame_size_is_split_and_each_part_names_its_room():
    # A burst of broadcasts makes one send tick's section larger than the limit: it is
    # split at message boundaries, each frame that continues it starts with the Tick again
    # (else the client would drop what it carries), and the client counts one tick.
    class Loud(Arena):
        def on_input(self, player, data):
            super().on_input(player, data)
            for i in range(data["n"]):
                self.broadcast(f"{i:03d}" + "x" * 200)

    app = App(limits=Limits(max_out_frame_size=600))
    app.room("loud", Loud)

    async def scenario():
        async with serving(app) as w:
            frames: list[bytes] = []
            a = Client(url(w), on_frame=frames.append)
            await a.connect()
            ra = await a.join_room("loud")
            await asyncio.sleep(0.2)
            frames.clear()
            ticks_before = ra.ticks
            ra.input({"n": 5})
            got = [await ra.next_message(timeout=5) for _ in range(5)]
            assert [m[:3] for m in got] == ["000", "001", "002", "003", "004"]
            await asyncio.sleep(0.2)
            decoded = [CODEBOOK.decode_frame(f, a._ctx) for f in frames]
            assert all(len(f) <= 600 for f in frames) and w.stats.frames_split >= 2
            assert all(isinstance(msgs[0], P.Tick) for msgs in decoded)  # every frame names its room first
            ticks = {(m.tick, m.time_ms) for msgs in decoded for m in msgs if isinstance(m, P.Tick)}
            assert len(ticks) < len(frames) and ra.ticks - ticks_before == len(ticks)
            await a.close()

    arun(scenario())
