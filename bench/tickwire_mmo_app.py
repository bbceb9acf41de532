"""The Tickwire app of the `mmo` scenario: one room of moving entities with interest
management, as a game server would write it.

    TICKWIRE_BENCH_MMO='{"entities": 5000, "clients": 200, "hz": 20, "view_frac": 0.1}' \\
        tickwire run bench.tickwire_mmo_app:make_app --single

The room type "mmo" holds `entities` entities of struct Mob (bench/schemas/mmo.fbs:
x, y quantised to 1/32 unit over a 1,000 x 1,000 world, k a ubyte), the shape of the
Colyseus anchor's. They start at uniformly random places (seeded) with random headings at
the Colyseus anchor's speed (1.25 and 0.75 units a tick: 1.46), and wrap around the
world's edges as the anchor's do. Each tick, `move_frac` of them move (a rotating window
when it is under 1, as in the anchor), in one numpy pass.

Each player takes one of the entities as its avatar and its view follows it; its bot's
Steer input (one per send tick) sets the avatar's step, so avatars always move.

Views: a 3 x 3 square of cells (view_radius 1). The cell size is chosen so that a player
at a uniformly random place sees `view_frac` of the world on average, edges included
(`cell_size_for`); the entities are uniform, so that is also the share of them it sees.
The server's `stats` command reports the share each player really saw (`view_sample`).

Parameters come from the environment (TICKWIRE_BENCH_MMO, JSON: the scenario's params),
since a room's world is fixed when the room class is made. `python -m
bench.tickwire_mmo_app --frame-bytes` runs the same room in process, without sockets,
and prints the median frame size it sends: the floor's frame size (bench/mmo_floor.py).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from engine import App, Limits
from engine._generated import protocol as P
from engine.packed import Codebook
from engine.rooms import Room, RoomRunner, World
from engine.schema.gen_python import generate_python
from engine.schema.model import load

PARAMS_ENV = "TICKWIRE_BENCH_MMO"
ROOM = "mmo"
SCHEMA = Path(__file__).resolve().parent / "schemas" / "mmo.fbs"
WORLD_SIZE = 1000.0
STEP = 0.03125  # the position fields' precision (mmo.fbs)
SPEED = math.hypot(1.25, 0.75)  # units per tick: the Colyseus anchor's step
VIEW_RADIUS = 1
DEFAULTS = {"entities": 5000, "clients": 100, "hz": 20, "move_frac": 1.0, "view_frac": 0.1, "seed": 1}


def schema_module() -> ModuleType:
    """The generated module of bench/schemas/mmo.fbs, compiled in memory once."""
    name = "tickwire_bench_mmo"
    if name not in sys.modules:
        mod = ModuleType(name)
        exec(compile(generate_python(load(str(SCHEMA))), str(SCHEMA), "exec"), mod.__dict__)
        sys.modules[name] = mod
    return sys.modules[name]


def steer_of(bot: int) -> tuple[float, float]:
    """Bot number `bot`'s step per tick: the anchor's speed, headings spread by the
    golden angle so that every subset of bots heads every way."""
    a = bot * 2.399963229728653
    return SPEED * math.cos(a), SPEED * math.sin(a)


def coverage(cell: float, view_radius: int = VIEW_RADIUS, size: float = WORLD_SIZE, step: float = STEP) -> float:
    """The share of the world a player at a uniformly random place sees, on average, with
    cells of `cell` units: per axis, the mean width of its view's columns (fewer at the
    edges), squared. Cells are whole quantisation steps; the last column may be narrower."""
    q = round(size / step) + 1  # steps on an axis
    c = max(2, round(cell / step))
    cols = -(-q // c)
    width = 0.0
    for col in range(cols):
        lo, hi = col * c, min(q, (col + 1) * c)
        seen = min(q, (col + view_radius + 1) * c) - max(0, (col - view_radius) * c)
        width += (hi - lo) / q * seen
    return (width / q) ** 2


def cell_size_for(view_frac: float, view_radius: int = VIEW_RADIUS, size: float = WORLD_SIZE) -> float:
    """The cell size whose views cover `view_frac` of the world on average (bisection on
    `coverage`); the whole world in one cell for view_frac 0 or 1 and above."""
    if view_frac <= 0 or view_frac >= 1:
        return size
    lo, hi = 2 * STEP, size
    for _ in range(40):
        mid = (lo + hi) / 2
        if coverage(mid, view_radius, size) < view_frac:
            lo = mid
        else:
            hi = mid
    return round(hi / STEP) * STEP


def params_from_env() -> dict[str, Any]:
    p = dict(DEFAULTS)
    text = os.environ.get(PARAMS_ENV, "")
    if text:
        p.update(json.loads(text))
    return p


class MmoRoom(Room):
    """Moving entities, one avatar per player; `configure` sets the class's settings."""

    entity_count = DEFAULTS["entities"]
    move_frac = 1.0
    seed = 1
    input_type = None  # Steer, set by configure
    auto_dispose = False
    reconnect_grace = 0.0

    def on_create(self, options: Any) -> None:
        n = self.entity_count
        rng = np.random.default_rng(self.seed)
        t = self.entities
        ids = t.spawn_many(
            n,
            x=rng.uniform(0, WORLD_SIZE, n).astype(np.float32),
            y=rng.uniform(0, WORLD_SIZE, n).astype(np.float32),
            k=np.arange(n) % 200,
        )
        heading = rng.uniform(0, 2 * math.pi, n)
        self.vx = np.zeros(t.capacity, np.float32)
        self.vy = np.zeros(t.capacity, np.float32)
        self.vx[ids] = SPEED * np.cos(heading)
        self.vy[ids] = SPEED * np.sin(heading)
        self.driven = np.zeros(t.capacity, bool)  # avatars: moved by their player's input
        self.free = list(range(n - 1, -1, -1))  # entities not yet taken as avatars
        self.avatar: dict[int, int] = {}
        self.moving = round(n * self.move_frac)
        self.window = np.arange(self.moving)

    def on_join(self, player: Any, options: Any) -> None:
        e = self.free.pop() if self.free else self.entities.spawn(x=WORLD_SIZE / 2, y=WORLD_SIZE / 2)
        self.avatar[player.id] = e
        self.driven[e] = True
        self.vx[e] = self.vy[e] = 0.0
        self.follow(player, e)

    def on_leave(self, player: Any, consented: bool) -> None:
        e = self.avatar.pop(player.id)
        self.driven[e] = False
        if e < self.entity_count:
            self.free.append(e)
        else:
            self.entities.despawn(e)

    def on_input(self, player: Any, data: Any) -> None:
        e = self.avatar[player.id]
        self.vx[e] = data.dx
        self.vy[e] = data.dy

    def on_tick(self, now: float, dt: float) -> None:
        t = self.entities
        x, y = t["x"], t["y"]
        n = self.entity_count
        if self.moving >= n:
            movers = slice(0, len(x))
        else:
            # The anchor's rotating window, plus every avatar.
            window = (self.window + self.tick * self.moving) % n
            movers = np.union1d(window, np.flatnonzero(self.driven))
        x[movers] = np.mod(x[movers] + self.vx[movers], WORLD_SIZE)
        y[movers] = np.mod(y[movers] + self.vy[movers], WORLD_SIZE)


def configure(params: Mapping[str, Any]) -> type[MmoRoom]:
    """The room class for these parameters (a room's world is a class setting)."""
    p = {**DEFAULTS, **params}
    mmo = schema_module()
    n, clients, hz = int(p["entities"]), int(p["clients"]), float(p["hz"])
    max_players = clients + 16
    return type(
        "MmoRoom",
        (MmoRoom,),
        {
            "entity_count": n,
            "move_frac": float(p["move_frac"]),
            "seed": int(p["seed"]),
            "tick_rate": hz,
            "send_rate": hz,
            "max_players": max_players,
            "max_inputs_per_second": 3 * hz,
            "input_type": mmo.Steer,
            "world": World(
                mmo.Mob,
                capacity=n + max_players,
                cell_size=cell_size_for(float(p["view_frac"])),
                view_radius=VIEW_RADIUS,
            ),
        },
    )


LIMITS = Limits(max_handshakes_per_ip_per_second=1e6, handshake_burst=10**6)  # every bot is 127.0.0.1


def make_app(params: Mapping[str, Any] | None = None) -> App:
    """The app, for `params` or those in TICKWIRE_BENCH_MMO."""
    app = App(schemas=[schema_module()], limits=LIMITS, name="tickwire-bench-mmo")
    app.room(ROOM, configure(params if params is not None else params_from_env()))
    return app


def view_sample(worker: Any) -> dict[str, Any]:
    """What the players of the worker's mmo rooms see now, for the bench server's `stats`:
    `view_frac_seen`, the mean over players of the share of the room's entities in their
    view (a gauge: the harness keeps the value read at the end of the window)."""
    shares = []
    for runner in worker.rooms.hosted.values():
        if runner.interest is None or not isinstance(runner.room, MmoRoom):
            continue
        total = len(runner.room.entities)
        for player in runner.room.players.values():
            if player.view >= 0 and total:
                shares.append(runner.interest.visible(player.view).size / total)
    return {"gauges": {"view_frac_seen": statistics.fmean(shares)}} if shares else {}


def frame_sizes(params: Mapping[str, Any], ticks: int = 20, warm: int = 20) -> list[int]:
    """Every player's frame size (bytes) in `ticks` send ticks after `warm` ones, from the
    room run in process with every player steering as its bot does."""
    cls = configure(params)
    mmo = schema_module()
    room = cls()
    runner = RoomRunner(room, "offline", ROOM, Codebook(P, mmo), 0.0)
    room.on_create(None)
    players = []
    for i in range(int(params.get("clients", DEFAULTS["clients"]))):
        player = runner.join(f"bot{i}", None, 0.0)
        player.worker, player.socket_id, player.handle = "offline", f"bot{i}", 1
        players.append((player, mmo.Steer(*steer_of(i))))
    sizes: list[int] = []
    dt = 1.0 / cls.send_rate
    for k in range(warm + ticks):
        now = k * dt + 1e-6  # just after the tick's time: k * dt may round below the room's
        for seq_player, steer in players:
            runner.input(seq_player, k + 1, steer, now)
        out = runner.advance(now)
        if out is None or k < warm:
            continue
        for s in out.players:
            sizes.append(sum(len(part) for part in out.parts(s)))
    return sizes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frame-bytes", action="store_true", help="print the median frame size of an offline run")
    ap.add_argument("--params", default="{}", help="the scenario's parameters, JSON")
    ap.add_argument("--ticks", type=int, default=20)
    args = ap.parse_args(argv)
    params = {**DEFAULTS, **json.loads(args.params)}
    sizes = frame_sizes(params, args.ticks)
    cell = cell_size_for(float(params["view_frac"]))
    print(
        json.dumps(
            {
                "median": int(statistics.median(sizes)) if sizes else 0,
                "mean": round(statistics.fmean(sizes), 1) if sizes else 0,
                "min": min(sizes, default=0),
                "max": max(sizes, default=0),
                "frames": len(sizes),
                "cell_size": cell,
                "coverage": round(coverage(cell), 4),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
