"""The JavaScript entity sync decoder (codecs/js/entities.js) against the Python reference
(engine/interest.py `apply_entity_sync`): the same EntitySync data, produced by a real
Interest grid over seeded random walks, must give the same worlds tick after tick; mutated
data must be refused by both or give both the same world."""

from __future__ import annotations

import json
import math
import os
import subprocess

import numpy as np

from engine.entities import EntityTable
from engine.interest import ClientWorld, Interest, apply_entity_sync
from engine.packed import DecodeError, r_uvarint

from conftest import require_tool
from test_interest import Every, Mob, Unit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEER = os.path.join(ROOT, "codecs", "js", "testing", "entities_peer.mjs")


def plain(v):
    """A value as the peer writes it (JSON has no NaN, infinities or big integers)."""
    if isinstance(v, bool):
        return v
    if isinstance(v, int):
        return f"{v}n" if abs(v) > 2**53 else v
    if isinstance(v, float) and not math.isfinite(v):
        return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")
    return v


def snapshot(world: ClientWorld) -> dict:
    return {
        "entities": {str(e): {k: plain(v) for k, v in f.items()} for e, f in world.entities.items()},
        "cells": {str(e): c for e, c in world.cell_of.items()},
        "spawned": list(world.spawned),
        "despawned": list(world.despawned),
    }


def layout_json(grid: Interest) -> tuple[list[dict], dict]:
    fields = []
    for f in grid.layout.fields:
        spec = {"name": f.name, "kind": f.kind, "width": f.width}
        if f.quant is not None:
            spec["quant"] = {"min": f.quant.min, "max": f.quant.max, "bits": f.quant.bits, "step": f.quant.step}
        fields.append(spec)
    return fields, grid.layout.info()


def data_of(message: bytes) -> bytes:
    """The data of one EntitySync message (type id, length, data)."""
    _, pos = r_uvarint(message, 0)
    n, pos = r_uvarint(message, pos)
    assert pos + n == len(message)
    return message[pos:]


def randomise(table: EntityTable, ids: np.ndarray, rng: np.random.Generator, size: float) -> None:
    """Random values for every field of `ids` (positions within the world)."""
    k = ids.size
    for f in table.fields:
        col = table[f.name]
        if f.name in ("x", "y"):
            lo = f.quant.min if f.quant is not None else 0.0
            col[ids] = rng.uniform(lo - 5, lo + size + 5, k)  # a few out of range: clamped
        elif f.kind == "quant":
            col[ids] = rng.uniform(f.quant.min, f.quant.max, k)
        elif f.kind == "float":
            col[ids] = rng.normal(0, 1e6 if f.width == 32 else 1e300, k)
        elif f.kind == "bool":
            col[ids] = rng.random(k) < 0.5
        else:
            lo, hi = f.int_range
            lo, hi = max(lo, np.iinfo(col.dtype).min), min(hi, np.iinfo(col.dtype).max)
            col[ids] = rng.integers(lo, hi, k, endpoint=True)


def scenario(struct, seed: int, *, capacity: int, cell_size: float, size: float, radius: int, budget: int, ticks: int):
    """A walk: entities move, spawn, die and change; clients follow entities or look at
    fixed points that move now and then; some pause and resume. Returns, per client,
    (layout, [data of each tick that had a message])."""
    rng = np.random.default_rng(seed)
    table = EntityTable(struct, capacity)
    grid = Interest(table, cell_size=cell_size, view_radius=radius, spawn_budget=budget, max_clients=8)
    randomise(table, table.spawn_many(capacity * 2 // 3), rng, size)
    ids = table.ids()
    clients = [grid.add_client(follow=int(ids[0])), grid.add_client(follow=int(ids[1]))]
    clients += [grid.add_client(*rng.uniform(0, size, 2)) for _ in range(2)]
    datas: dict[int, list[bytes]] = {c: [] for c in clients}
    lay = grid.layout
    x0 = lay.fields[lay.x].quant.min
    y0 = lay.fields[lay.y].quant.min
    for t in range(ticks):
        ids = table.ids()
        step = rng.normal(0, cell_size / 4, (2, ids.size))
        table["x"][ids] = np.clip(table["x"][ids] + step[0], x0, x0 + size)
        table["y"][ids] = np.clip(table["y"][ids] + step[1], y0, y0 + size)
        if ids.size and rng.random() < 0.5:
            randomise(table, rng.choice(ids, max(1, ids.size // 10), replace=False), rng, size)
        if ids.size > 4 and rng.random() < 0.3:
            table.despawn_many(rng.choice(ids[2:], 2, replace=False))  # the followed ones live
        if table.free_slots and rng.random() < 0.3:
            randomise(table, table.spawn_many(min(3, table.free_slots)), rng, size)
        if rng.random() < 0.2:
            grid.move_view(clients[2], *rng.uniform(0, size, 2))
        if t == ticks // 3:
            grid.pause(clients[3])
        if t == ticks // 2:
            grid.resume(clients[3])
        out = grid.tick()
        for c in clients:
            msgs = out.message(c)
            assert len(msgs) <= 1
            if msgs:
                datas[c].append(data_of(msgs[0]))
    return grid, datas


def expected(grid: Interest, datas: list[bytes]) -> list[dict]:
    world = ClientWorld(grid.layout)
    out = []
    for data in datas:
        world.spawned.clear()
        world.despawned.clear()
        try:
            apply_entity_sync(world, data)
        except DecodeError as exc:
            out.append({"error": str(exc)})
            break
        out.append(snapshot(world))
    return out


def run_peer(tmp_path, cases: list[dict]) -> list[list[dict]]:
    node = require_tool("node")
    path = tmp_path / "cases.json"
    path.write_text(json.dumps({"cases": cases}))
    result = subprocess.run([node, PEER, str(path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)["cases"]


SCENARIOS = [
    # The property tests' small world (signed 5-bit hp, a bool bit), views of 1 to 5 cells.
    (Mob, dict(capacity=24, cell_size=8, size=64, radius=1, budget=4, ticks=40)),
    (Mob, dict(capacity=24, cell_size=8, size=64, radius=0, budget=1, ticks=30)),
    # Every field kind: raw float and double (64 bits in two pieces), signed ints, enums.
    (Every, dict(capacity=64, cell_size=10, size=100, radius=2, budget=16, ticks=15)),
    # The benchmark's shape: 1000 x 1000 at 0.05, gap-coded ids among hundreds.
    (Unit, dict(capacity=600, cell_size=100, size=1000, radius=1, budget=64, ticks=25)),
]


def build_cases() -> tuple[list[dict], list[list[dict]]]:
    cases, want = [], []
    for i, (struct, kw) in enumerate(SCENARIOS):
        grid, datas = scenario(struct, 100 + i, **kw)
        fields, info = layout_json(grid)
        for ticks in datas.values():
            cases.append({"fields": fields, "info": info, "ticks": [d.hex() for d in ticks]})
            want.append(expected(grid, ticks))
    return cases, want


def test_js_decoder_gives_the_python_worlds(tmp_path):
    cases, want = build_cases()
    assert sum(len(c["ticks"]) for c in cases) > 150
    assert all("error" not in t for w in want for t in w)
    got = run_peer(tmp_path, cases)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert len(g) == len(w), f"case {i}"
        for t, (gt, wt) in enumerate(zip(g, w)):
            assert gt == wt, f"case {i}, tick {t}"


def test_js_decoder_refuses_what_python_refuses(tmp_path):
    """Mutated data (a byte changed, inserted or dropped, or cut short) after a valid prefix:
    both decoders refuse it, or both reach the same world."""
    rng = np.random.default_rng(7)
    cases, want = [], []
    for i, (struct, kw) in enumerate(SCENARIOS[:3]):
        grid, datas = scenario(struct, 200 + i, **kw)
        fields, info = layout_json(grid)
        for ticks in datas.values():
            for _ in range(40):
                if not ticks:
                    break
                k = int(rng.integers(0, min(len(ticks), 8)))
                data = bytearray(ticks[k])
                how = rng.integers(0, 4)
                at = int(rng.integers(0, len(data)))
                if how == 0:
                    data[at] = int(rng.integers(0, 256))
                elif how == 1:
                    data.insert(at, int(rng.integers(0, 256)))
                elif how == 2:
                    del data[at]
                else:
                    data = data[:at]
                mutated = [*ticks[:k], bytes(data)]
                cases.append({"fields": fields, "info": info, "ticks": [d.hex() for d in mutated]})
                want.append(expected(grid, mutated))
    got = run_peer(tmp_path, cases)
    refused = 0
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert len(g) == len(w), f"case {i}"
        assert g[:-1] == w[:-1], f"case {i}"
        if "error" in w[-1] or "error" in g[-1]:
            assert "error" in w[-1] and "error" in g[-1], f"case {i}: {g[-1]} vs {w[-1]}"
            refused += 1
        else:
            assert g[-1] == w[-1], f"case {i}"
    assert refused > len(cases) // 10  # the mutations did reach the checks
