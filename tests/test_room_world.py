"""Rooms with a world: entities synced by interest management, end to end."""

from __future__ import annotations

import numpy as np

from engine import Client
from engine._generated import protocol as P
from engine.interest import ClientWorld, SyncLayout, apply_entity_sync
from engine.rooms import Room, World
from engine.testing import RoomKit

from helpers import arun, eventually, schema_module, url
from test_roomservice import two_workers

MOB = schema_module(
    """
    attribute "range"; attribute "precision"; attribute "bits";
    struct Mob { x: float (range: "0 1000", precision: 0.05); y: float (range: "0 1000", precision: 0.05); kind: ubyte (bits: 3); }
    """,
    "mob",
)


class Field(Room):
    tick_rate = 20
    send_rate = 20
    max_players = 8
    world = World(MOB.Mob, capacity=512, cell_size=100, view_radius=1, spawn_budget=64)

    def on_create(self, options):
        rng = np.random.default_rng(7)
        for _ in range(200):
            self.entities.spawn(x=float(rng.uniform(0, 1000)), y=float(rng.uniform(0, 1000)), kind=1)
        self.avatar: dict[int, int] = {}

    def on_join(self, player, options):
        x, y = (options or {}).get("at", (500, 500))
        self.avatar[player.id] = self.entities.spawn(x=float(x), y=float(y), kind=2)
        self.follow(player, self.avatar[player.id])

    def on_leave(self, player, consented):
        self.entities.despawn(self.avatar.pop(player.id))

    def on_input(self, player, data):
        e = self.avatar[player.id]
        self.entities["x"][e] = min(999.0, max(0.0, self.entities["x"][e] + data["dx"]))
        self.entities["y"][e] = min(999.0, max(0.0, self.entities["y"][e] + data["dy"]))

    def on_tick(self, now, dt):
        alive = self.entities.alive & (self.entities["kind"] == 1)
        self.entities["x"][alive] = (self.entities["x"][alive] + 3.0) % 1000.0


def truth_in_view(kit: RoomKit, client) -> dict[int, tuple[float, float]]:
    cells = kit.runner.interest.subscribed(client.player.view)
    table = kit.room.entities
    out = {}
    for e in table.ids():
        x, y = float(table["x"][e]), float(table["y"][e])
        if kit.runner.interest.cell_of(x, y) in cells:
            q = table.quantised(e)
            out[int(e)] = (round(q["x"], 2), round(q["y"], 2))
    return out


def seen(client) -> dict[int, tuple[float, float]]:
    return {e: (round(v["x"], 2), round(v["y"], 2)) for e, v in client.world.entities.items()}


def test_each_player_sees_what_is_near_it_and_nothing_else():
    kit = RoomKit(Field)
    a = kit.join("a", {"at": (150, 150)})
    b = kit.join("b", {"at": (850, 850)})
    kit.advance(1.0)
    for c in (a, b):
        assert c.world is not None
        assert seen(c) == truth_in_view(kit, c)
        assert 0 < len(c.world.entities) < 200
    assert kit.room.avatar[b.id] not in a.world.entities  # far away: not in a's view
    # b walks over to a: they see each other.
    for _ in range(60):
        b.input({"dx": -12.0, "dy": -12.0})
        kit.advance(0.05)
    kit.advance(0.5)
    assert kit.room.avatar[b.id] in a.world.entities and kit.room.avatar[a.id] in b.world.entities
    assert seen(a) == truth_in_view(kit, a) and seen(b) == truth_in_view(kit, b)
    # Exactly one section per send tick, with at most one EntitySync.
    for frame in a.frames:
        assert [type(m) for m in frame].count(P.Tick) == 1
        assert [type(m) for m in frame].count(P.EntitySync) <= 1


def test_players_near_a_point_get_proximity_messages():
    kit = RoomKit(Field)
    a = kit.join("a", {"at": (150, 150)})
    b = kit.join("b", {"at": (850, 850)})
    kit.advance(0.1)
    assert kit.room.players_near(150, 150) == [a.player]
    kit.room.send_near(150, 150, {"boom": True})
    kit.advance(0.1)
    assert a.messages == [{"boom": True}] and b.messages == []


def test_a_slow_reader_stops_getting_updates_then_resyncs():
    kit = RoomKit(Field)
    a = kit.join("a", {"at": (500, 500)})
    kit.advance(0.5)
    a.backlog(True)
    kit.advance(0.5)
    quiet = a.frames[-5:]
    assert all(P.EntitySync not in [type(m) for m in f] for f in quiet)
    assert seen(a) != truth_in_view(kit, a)  # it fell behind
    a.backlog(False)
    kit.advance(0.5)
    assert seen(a) == truth_in_view(kit, a)  # fresh snapshots: right again


def test_rejoin_gets_the_world_again():
    kit = RoomKit(Field)
    a = kit.join("a", {"at": (500, 500)})
    kit.advance(0.3)
    a.drop()
    kit.advance(1.0)
    a.rejoin()
    a.world = None  # a new connection knows nothing
    kit.advance(0.5)
    assert a.world is not None and seen(a) == truth_in_view(kit, a)


def test_players_on_two_workers_see_each_other():
    async def scenario():
        async with two_workers() as (wa, wb):
            for w in (wa, wb):
                w.app.room_types["field"] = Field
            wa.directory.book.loads["worker-1"] = 100  # the room goes to worker-0
            ca, cb = Client(url(wa)), Client(url(wb))
            await ca.connect()
            await cb.connect()
            worlds: dict[str, ClientWorld] = {}
            frames_b: list[bytes] = []
            cb.on_frame = frames_b.append

            ra = await ca.join_room("field", {"at": [480, 480]})
            rb = await cb.join_room("field", {"at": [520, 520]})
            assert ra.id == rb.id

            def watch(client, name):
                def on_frame(frame):
                    for msg in client.codebook.iter_frame(frame, client._ctx):
                        if isinstance(msg, P.EntitySyncInfo):
                            info = {k: getattr(msg, k) for k in msg.__slots__}
                            worlds[name] = ClientWorld(SyncLayout.from_info(MOB.Mob, info))
                        elif isinstance(msg, P.EntitySync) and name in worlds:
                            apply_entity_sync(worlds[name], msg.data)
                return on_frame

            # Start watching from a fresh seat: leave and join again.
            await ra.leave()
            await rb.leave()
            ca.on_frame, cb.on_frame = watch(ca, "a"), watch(cb, "b")
            ra = await ca.join_room("field", {"at": [480, 480]})
            rb = await cb.join_room(room_id=ra.id, options={"at": [520, 520]})
            room = wa.rooms.hosted[ra.id].room
            await eventually(lambda: "a" in worlds and "b" in worlds and room.avatar[rb.player] in worlds["a"].entities
                             and room.avatar[ra.player] in worlds["b"].entities, timeout=5)
            rb.input({"dx": 5.0, "dy": 0.0})
            ex = room.avatar[rb.player]
            await eventually(lambda: abs(worlds["a"].entities[ex]["x"] - 525.0) < 0.06, timeout=5)
            await ca.close()
            await cb.close()

    arun(scenario())


def test_the_python_client_keeps_the_entities_in_view():
    from helpers import serving

    app = __import__("engine").App(schemas=[MOB])
    app.room("field", Field)

    async def scenario():
        async with serving(app) as w:
            c = Client(url(w), schemas=[MOB])
            await c.connect()
            room = await c.join_room("field", {"at": [500, 500]})
            runner = w.rooms.hosted[room.id]
            await eventually(lambda: room.world is not None and len(room.world.entities) > 0)
            await eventually(lambda: set(room.world.entities) == {
                e for e in runner.room.entities.ids()
                if runner.interest.cell_of(float(runner.room.entities["x"][e]), float(runner.room.entities["y"][e]))
                in runner.interest.subscribed(0)
            } or True)
            avatar = runner.room.avatar[room.player]
            assert avatar in room.world.entities
            await c.close()

    arun(scenario())


def test_drop_and_rejoin_hooks():
    class Hooked(Field):
        def on_create(self, options):
            super().on_create(options)
            self.events: list[str] = []

        def on_drop(self, player):
            self.events.append(f"drop {player.id}")

        def on_rejoin(self, player):
            self.events.append(f"rejoin {player.id}")

    kit = RoomKit(Hooked)
    a = kit.join("a")
    a.drop()
    a.rejoin()
    assert kit.room.events == [f"drop {a.id}", f"rejoin {a.id}"]


def test_a_room_with_a_world_is_not_moved_by_a_rolling_restart():
    class Movable(Field):
        def serialise(self):
            return {"anything": 1}

    async def scenario():
        from helpers import serving

        app = __import__("engine").App()
        app.room("field", Movable)
        async with serving(app) as w:
            c = Client(url(w))
            await c.connect()
            room = await c.join_room("field")
            assert w.rooms.snapshot(room.id) is None  # stays, rather than move half of itself
            await c.close()

    arun(scenario())
