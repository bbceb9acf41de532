"""Interest management and entity sync, outbound side of one send tick (run by hand).

    .venv/bin/python bench/bench_interest.py             # 5,000 entities, 1,000 clients, 200 ticks
    .venv/bin/python bench/bench_interest.py --quick     # 60 ticks
    .venv/bin/python bench/bench_interest.py --radius 2 --cell 60

A 2-D world (1000 x 1000 units by default) holds --entities moving entities; the first
--clients of them are players, each followed by one client's view. Every entity walks
at --speed units/s with its own heading, and --turn of them pick a new heading each tick
(so their velocity fields change too). At each send tick (--hz) the bench moves the
entities (not timed) and then times `Interest.tick()`: change detection, views, the one
encoding pass and every client's message. The time is split by wrapping the grid's own
phases on this instance (a measurement seam of this script only):

- sync: EntityTable.sync(), quantisation and changed-field masks
- views: followed positions, hysteresis, re-centred views and snapshot choice
- encode: the records of the tick and the encoding pass (every segment and snapshot)
- assemble: every client's message (shared per centre cell, or its own)

It also times what the caller does next for every client, joining a 12-byte Tick
header with the client's message into one frame, and reports bytes: per client per tick,
per moving entity (frame bytes, with that 12-byte header, divided by the entities in the
client's view whose position changed), the segments encoded once, and the distinct
messages (what a batch to another worker carries when it sends each shared message
once). One JSON line goes to stdout.

Nothing here is collected by pytest: the file name does not start with test_.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
import types

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from engine.entities import EntityTable  # noqa: E402
from engine.interest import Interest  # noqa: E402
from engine.schema.gen_python import generate_python  # noqa: E402
from engine.schema.model import load  # noqa: E402

SCHEMA = """
namespace bench.interest;
attribute "range";
attribute "precision";
attribute "bits";

struct Unit {{
  x: float (range: "0 {world}", precision: "{precision}");
  y: float (range: "0 {world}", precision: "{precision}");
  vx: float (range: "-8 8", bits: 8);
  vy: float (range: "-8 8", bits: 8);
  kind: ubyte;
}}
"""

TICK_HEADER = 12  # bytes: the room's Tick message (type, room, tick, time, input seqs)


def unit_struct(world: float, precision: float):
    text = SCHEMA.format(world=world, precision=precision)
    model = load("unit.fbs", read=lambda _: text)
    mod = types.ModuleType("bench_unit")
    exec(compile(generate_python(model), "<unit>", "exec"), mod.__dict__)
    return mod.Unit


class Phases:
    """Times the grid's phases by wrapping them on the instance."""

    def __init__(self, grid: Interest):
        self.t = {"sync": 0.0, "views": 0.0, "encode": 0.0, "assemble": 0.0}
        self.wrap(grid.table, "sync", "sync")
        self.wrap(grid, "_move_views", "views")
        self.wrap(grid, "_choose_snapshots", "views")
        self.wrap(grid, "_assemble", "assemble")

    def wrap(self, obj, name, phase):
        fn = getattr(obj, name)
        t = self.t

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                t[phase] += time.perf_counter() - t0

        setattr(obj, name, timed)

    def take(self, total: float) -> dict[str, float]:
        out = dict(self.t)
        out["encode"] = total - out["sync"] - out["views"] - out["assemble"]
        for k in self.t:
            self.t[k] = 0.0
        return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--entities", type=int, default=5000)
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--ticks", type=int, default=200)
    ap.add_argument("--warm", type=int, default=20, help="ticks before measuring (views fill)")
    ap.add_argument("--hz", type=float, default=20)
    ap.add_argument("--world", type=float, default=1000)
    ap.add_argument("--precision", type=float, default=0.05)
    ap.add_argument("--cell", type=float, default=100)
    ap.add_argument("--radius", type=int, default=1)
    ap.add_argument("--hysteresis", type=float, default=0.25)
    ap.add_argument("--budget", type=int, default=256)
    ap.add_argument("--speed", type=float, default=5.0, help="units per second")
    ap.add_argument("--turn", type=float, default=0.01, help="share of entities turning each tick")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    if a.quick:
        a.ticks, a.warm = 60, 10

    rng = np.random.default_rng(a.seed)
    n = a.entities
    table = EntityTable(unit_struct(a.world, a.precision), n)
    table.spawn_many(n, x=rng.uniform(0, a.world, n), y=rng.uniform(0, a.world, n), kind=1)
    heading = rng.uniform(0, 2 * np.pi, n)
    table["vx"][:] = np.cos(heading) * a.speed
    table["vy"][:] = np.sin(heading) * a.speed
    grid = Interest(
        table,
        cell_size=a.cell,
        view_radius=a.radius,
        hysteresis=a.hysteresis,
        spawn_budget=a.budget,
        max_clients=a.clients,
    )
    for e in range(a.clients):
        grid.add_client(follow=e)
    phases = Phases(grid)
    lay = grid.layout
    pos_bits = np.uint64((1 << lay.x) | (1 << lay.y))
    views = {}
    header = bytes(TICK_HEADER)
    dt = 1.0 / a.hz

    rows = []
    gc.collect()
    for tick in range(a.warm + a.ticks):
        turn = rng.random(n) < a.turn
        heading[turn] = rng.uniform(0, 2 * np.pi, int(turn.sum()))
        table["vx"][turn] = np.cos(heading[turn]) * a.speed
        table["vy"][turn] = np.sin(heading[turn]) * a.speed
        table["x"][:] = np.clip(table["x"] + table["vx"] * dt, 0, a.world)
        table["y"][:] = np.clip(table["y"] + table["vy"] * dt, 0, a.world)

        t0 = time.perf_counter()
        out = grid.tick()
        t1 = time.perf_counter()
        frames = [b"".join([header, *out.message(c)]) for c in range(out.shared_of.size)]
        t2 = time.perf_counter()
        split = phases.take(t1 - t0)
        if tick == 0:
            first = {"tick_ms": (t1 - t0) * 1e3, "snapshots": out.snapshots, "bytes": sum(map(len, frames))}
        if tick < a.warm:
            continue
        # Bytes per moving entity: moved entities in each client's view (not timed).
        moved = out.changes.alive & ((out.changes.mask & pos_bits) != 0)
        per_cell = np.bincount(out.cell[moved], minlength=lay.ncells)
        centre = grid._crow[: a.clients] * lay.cols + grid._ccol[: a.clients]
        in_view = 0
        for c, k in enumerate(centre.tolist()):
            cells = views.get(k)
            if cells is None:
                cells = views[k] = np.fromiter(grid.view_cells(c), np.int64)
            in_view += int(per_cell[cells].sum())
        frame_bytes = sum(map(len, frames))
        distinct = sum(map(len, out.shared)) + sum(map(len, out.own.values()))
        rows.append(
            {
                "tick_ms": (t1 - t0) * 1e3,
                "join_ms": (t2 - t1) * 1e3,
                **{f"{k}_ms": v * 1e3 for k, v in split.items()},
                "frame_bytes": frame_bytes,
                "moved_in_view": in_view,
                "moved": int(moved.sum()),
                "encoded_bytes": out.encoded_bytes,
                "distinct_bytes": distinct,
                "shared": len(out.shared),
                "segments": out.segments,
                "snapshots": out.snapshots,
                "recentred": out.recentred,
            }
        )

    def med(key):
        return statistics.median(r[key] for r in rows)

    def pct(key, p):
        v = sorted(r[key] for r in rows)
        return v[min(len(v) - 1, int(p * len(v)))]

    fb = sum(r["frame_bytes"] for r in rows)
    mv = sum(r["moved_in_view"] for r in rows)
    result = {
        "test": "interest",
        "entities": n,
        "clients": a.clients,
        "ticks": len(rows),
        "hz": a.hz,
        "world": a.world,
        "precision": a.precision,
        "cell": a.cell,
        "radius": a.radius,
        "cells": lay.ncells,
        "id_bits": lay.id_bits,
        "position_bits": [lay.widths[lay.x], lay.widths[lay.y]],
        "tick_ms_median": med("tick_ms"),
        "tick_ms_p90": pct("tick_ms", 0.9),
        "tick_ms_max": max(r["tick_ms"] for r in rows),
        "split_ms_median": {k: med(f"{k}_ms") for k in ("sync", "views", "encode", "assemble")},
        "frame_join_ms_median": med("join_ms"),
        "bytes_per_client_tick": fb / len(rows) / a.clients,
        "bytes_per_moving_entity": fb / mv,
        "bytes_per_moving_entity_without_tick_header": (fb - TICK_HEADER * a.clients * len(rows)) / mv,
        "moved_in_view_per_client": mv / len(rows) / a.clients,
        "encoded_bytes_per_tick": med("encoded_bytes"),
        "distinct_message_bytes_per_tick": med("distinct_bytes"),
        "shared_messages_per_tick": med("shared"),
        "segments_per_tick": med("segments"),
        "snapshots_per_tick": statistics.mean(r["snapshots"] for r in rows),
        "recentred_per_tick": statistics.mean(r["recentred"] for r in rows),
        "first_tick": first,  # every client joined at once: all views' snapshots
        "loadavg": os.getloadavg(),
    }
    s = result["split_ms_median"]
    print(
        f"{n:,} entities, {a.clients:,} clients, {lay.ncells} cells of {a.cell:g}, radius {a.radius}: "
        f"{result['moved_in_view_per_client']:.0f} moving entities in view per client\n"
        f"  send tick: {result['tick_ms_median']:.2f} ms median (p90 {result['tick_ms_p90']:.2f}, "
        f"max {result['tick_ms_max']:.2f}) = sync {s['sync']:.2f} + views {s['views']:.2f} + "
        f"encode {s['encode']:.2f} + assemble {s['assemble']:.2f}; joining frames {result['frame_join_ms_median']:.2f} ms\n"
        f"  {result['bytes_per_client_tick']:.0f} B per client per tick; "
        f"{result['bytes_per_moving_entity']:.2f} B per moving entity "
        f"({result['bytes_per_moving_entity_without_tick_header']:.2f} without the Tick header); "
        f"load average {result['loadavg'][0]:.2f}\n"
        f"  encoded once: {result['encoded_bytes_per_tick'] / 1024:.1f} KiB of segments per tick; "
        f"{result['shared_messages_per_tick']:.0f} shared messages, "
        f"{result['distinct_message_bytes_per_tick'] / 1024:.0f} KiB of distinct messages per tick\n"
        f"  first tick (all {a.clients:,} clients join at once, budget {a.budget}): {first['tick_ms']:.2f} ms, "
        f"{first['snapshots']} snapshots, {first['bytes'] / a.clients:.0f} B per client",
        file=sys.stderr,
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
