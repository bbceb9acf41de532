"""The state and the encoders of the codec benchmark (bench/test_codec_bench.py).

A room's entity state is numpy arrays, one per field. Each send tick the interest layer
sends, for every cell of the grid where something moved, one segment that every client
seeing the cell shares (DESIGN.md, "interest"). Three designs of that segment are here,
all from bench/schemas/world.fbs, so that the benchmark can show what each costs:

- `EntitiesF32`: a 32-bit id and float32 world coordinates, byte-aligned (13 bytes);
- `CellSlotMoves`: each move names its slot in the cell's entity list (10 bits) and has
  10-bit cell-relative coordinates and 2 bits of flags (4 bytes);
- `CellMoves`: a change mask over the cell's slots, then 11-bit coordinates and 2 bits of
  flags per moved entity (3 bytes).

`encode_frame_*` build all the segments of a tick in one vectorised pass: every moved
entity's struct bytes at once (StructLayout.encode_array), then a few bytes of header per
cell. Encoding each cell's message separately would pay numpy's per-call cost once per
cell instead of once per tick.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType

import numpy as np

from engine.packed import Codebook, uvarint_bytes
from engine.schema.gen_python import generate_python
from engine.schema.model import load

SCHEMA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schemas", "world.fbs")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CELL_SIZE = 64.0


def world_module() -> ModuleType:
    """The generated Python module of world.fbs, compiled in memory."""
    name = "tickwire_bench_world"
    if name not in sys.modules:
        mod = ModuleType(name)
        sys.modules[name] = mod
        exec(compile(generate_python(load(SCHEMA)), SCHEMA.replace(".fbs", ".py"), "exec"), mod.__dict__)
    return sys.modules[name]


class World:
    """n entities spread over `cells` cells, kept sorted by cell (each cell's entity list
    is a contiguous run; an entity's slot is its index in that run)."""

    def __init__(self, n: int = 1000, cells: int = 16, moving: float = 1.0, seed: int = 1):
        rng = np.random.default_rng(seed)
        self.n = n
        self.cells = cells
        self.cell = np.sort(rng.integers(0, cells, n)).astype(np.uint16)
        self.start = np.searchsorted(self.cell, np.arange(cells + 1)).astype(np.int64)
        self.slot = (np.arange(n) - self.start[self.cell]).astype(np.uint16)
        self.id = rng.permutation(n).astype(np.uint32) + 1
        self.x = rng.uniform(0, CELL_SIZE, n).astype(np.float32)  # cell-relative
        self.y = rng.uniform(0, CELL_SIZE, n).astype(np.float32)
        self.flags = rng.integers(0, 4, n).astype(np.uint8)
        self.moved = rng.random(n) < moving
        cx = (self.cell % 4).astype(np.float32) * CELL_SIZE
        cy = (self.cell // 4).astype(np.float32) * CELL_SIZE
        self.wx = self.x + cx  # world coordinates, for the formats that send them
        self.wy = self.y + cy

    @property
    def moved_count(self) -> int:
        return int(self.moved.sum())


def codebook() -> Codebook:
    from engine._generated import protocol

    return Codebook(protocol, world_module())


def tick_header(cb: Codebook) -> bytes:
    """The protocol's per-tick header when it has one (Tick), else nothing."""
    tick_type = cb.by_name.get("Tick")
    if tick_type is None:
        return b""
    return cb.encode(tick_type.cls(room=1, tick=123456, time_ms=4_000_000, applied_seq=5000, echo_seq=5001, echo_age_ms=12))


def encode_frame_masked(world: World, cb: Codebook) -> bytes:
    """A tick's frame: header, then one CellMoves per cell with a moved entity."""
    W = world_module()
    m = world.moved
    idx = np.flatnonzero(m)
    moves = memoryview(W.Move.LAYOUT.encode_array({"x": world.x[idx], "y": world.y[idx], "flags": world.flags[idx]}))
    # Moves of all cells, in cell order: cell c's are those of entities first[c]..first[c+1].
    first = np.concatenate(([0], np.cumsum(m)))[world.start].tolist()
    start = world.start.tolist()
    size = W.Move.LAYOUT.size
    tid = uvarint_bytes(W.CellMoves.TYPE_ID)
    pieces: list = [tick_header(cb)]
    for c in range(world.cells):
        a, b = first[c], first[c + 1]
        if a == b:
            continue
        mask = np.packbits(m[start[c] : start[c + 1]], bitorder="little").tobytes()
        pieces += (tid, uvarint_bytes(c), uvarint_bytes(len(mask)), mask, uvarint_bytes(b - a), moves[size * a : size * b])
    return b"".join(pieces)


def encode_frame_slots(world: World, cb: Codebook) -> bytes:
    """A tick's frame: header, then one CellSlotMoves per cell with a moved entity."""
    W = world_module()
    idx = np.flatnonzero(world.moved)
    moves = memoryview(
        W.SlotMove.LAYOUT.encode_array(
            {"slot": world.slot[idx], "x": world.x[idx], "y": world.y[idx], "flags": world.flags[idx]}
        )
    )
    first = np.concatenate(([0], np.cumsum(world.moved)))[world.start].tolist()
    size = W.SlotMove.LAYOUT.size
    tid = uvarint_bytes(W.CellSlotMoves.TYPE_ID)
    pieces: list = [tick_header(cb)]
    for c in range(world.cells):
        a, b = first[c], first[c + 1]
        if a != b:
            pieces += (tid, uvarint_bytes(c), uvarint_bytes(b - a), moves[size * a : size * b])
    return b"".join(pieces)


def encode_naive(world: World, cb: Codebook) -> bytes:
    """One message, 32-bit ids and float32 world coordinates (no cells, no packing)."""
    W = world_module()
    m = world.moved
    cols = {"id": world.id[m], "x": world.wx[m], "y": world.wy[m], "flags": world.flags[m]}
    return tick_header(cb) + cb.encode(W.EntitiesF32(cols))


def rows(world: World) -> list[dict]:
    """The moved entities as the list of dicts a JSON or msgpack API takes."""
    m = world.moved
    return [
        {"id": i, "x": round(x, 2), "y": round(y, 2), "flags": f}
        for i, x, y, f in zip(world.id[m].tolist(), world.wx[m].tolist(), world.wy[m].tolist(), world.flags[m].tolist())
    ]


def mixed_messages(cb: Codebook) -> tuple[list, int]:
    """A frame's worth of small protocol messages, and the bytes of the data they carry
    (payload bodies), so that frame bytes minus data is the envelope."""
    from engine._generated import protocol as P

    json = cb.json_payload
    msgs: list = []
    data = 0
    for i in range(10):
        p = json('{"from":"p%d","text":"hello"}' % i)
        msgs.append(P.Message(channel=1 + i % 3, payload=p))
        data += len(p.body)
    for i in range(4):
        p = json('{"ok":true,"n":%d}' % i)
        msgs.append(P.Result(cid=100 + i, data=p))
        data += len(p.body)
    for i in range(4):
        p = json('{"hp":%d}' % (90 - i))
        msgs.append(P.Emit(event="hit", data=p))
        data += len(p.body) + len("hit")
    msgs.append(P.Ping())
    msgs.append(P.Error(cid=104, code=2, message="no procedure 'fly'"))
    data += len("no procedure 'fly'")
    return msgs, data


def sc_mixed_messages() -> tuple[list, int]:
    """The same messages as SocketCluster's JSON envelopes, and the bytes of their data."""
    import orjson

    out: list = []
    data = 0
    for i in range(10):
        d = {"from": "p%d" % i, "text": "hello"}
        out.append({"event": "#publish", "data": {"channel": "room:%d" % (1 + i % 3), "data": d}})
        data += len(orjson.dumps(d))
    for i in range(4):
        d = {"ok": True, "n": i}
        out.append({"rid": 100 + i, "data": d})
        data += len(orjson.dumps(d))
    for i in range(4):
        d = {"hp": 90 - i}
        out.append({"event": "hit", "data": d})
        data += len(orjson.dumps(d)) + len("hit")
    out.append("")  # SocketCluster's protocol v2 ping is an empty message
    err = {"name": "NotFound", "message": "no procedure 'fly'"}
    out.append({"rid": 104, "error": err})
    data += len("no procedure 'fly'")
    return out, data
