"""Codec benchmark: bytes and time of the packed format against JSON, msgpack and
SocketCluster's envelope (issue 3's targets; results in bench/README.md, "Codec").

    .venv/bin/python -m pytest bench/test_codec_bench.py --benchmark-enable

Without --benchmark-enable (the default in pyproject.toml) each benchmark runs once, as a
test; the byte budgets are plain assertions either way. `tests/` never collects this file.
"""

from __future__ import annotations

import os

import msgpack
import numpy as np
import orjson
import pytest

from bench.codec_world import (
    World,
    codebook,
    encode_frame_masked,
    encode_frame_slots,
    encode_naive,
    mixed_messages,
    rows,
    sc_mixed_messages,
    world_module,
)

CB = codebook()
W = world_module()
WORLD = World(n=1000, cells=16)
CTX = CB.context(max_vector=65536)


def per_entity(frame: bytes) -> float:
    return len(frame) / WORLD.moved_count


# ----------------------------------------------------------------------------------------
# 1,000 moving entities: encode from numpy state


def test_encode_masked_frame(benchmark):
    frame = benchmark(encode_frame_masked, WORLD, CB)
    benchmark.extra_info.update(bytes=len(frame), bytes_per_entity=per_entity(frame))
    assert per_entity(frame) <= 5.0


def test_encode_slot_frame(benchmark):
    frame = benchmark(encode_frame_slots, WORLD, CB)
    benchmark.extra_info.update(bytes=len(frame), bytes_per_entity=per_entity(frame))
    assert per_entity(frame) <= 5.0


def test_encode_one_struct_array(benchmark):
    # The codec's own share: the 1,000 moves of one tick, quantised and bit-packed.
    cols = {"x": WORLD.x, "y": WORLD.y, "flags": WORLD.flags}
    data = benchmark(W.Move.LAYOUT.encode_array, cols)
    assert len(data) == 3 * WORLD.n


def test_encode_naive_frame(benchmark):
    frame = benchmark(encode_naive, WORLD, CB)
    benchmark.extra_info.update(bytes=len(frame), bytes_per_entity=per_entity(frame))


def test_encode_json(benchmark):
    data = benchmark(lambda: orjson.dumps(rows(WORLD)))
    benchmark.extra_info.update(bytes=len(data), bytes_per_entity=per_entity(data))


def test_encode_json_columns(benchmark):
    # JSON at its most compact: one array per field, straight from numpy.
    def columns():
        m = WORLD.moved
        x = np.round(WORLD.wx[m], 2)
        y = np.round(WORLD.wy[m], 2)
        return orjson.dumps({"id": WORLD.id[m], "x": x, "y": y, "flags": WORLD.flags[m]}, option=orjson.OPT_SERIALIZE_NUMPY)

    data = benchmark(columns)
    benchmark.extra_info.update(bytes=len(data), bytes_per_entity=per_entity(data))


def test_encode_msgpack(benchmark):
    data = benchmark(lambda: msgpack.packb(rows(WORLD)))
    benchmark.extra_info.update(bytes=len(data), bytes_per_entity=per_entity(data))


def test_encode_socketcluster(benchmark):
    data = benchmark(lambda: orjson.dumps({"event": "#publish", "data": {"channel": "c", "data": rows(WORLD)}}))
    benchmark.extra_info.update(bytes=len(data), bytes_per_entity=per_entity(data))


# ----------------------------------------------------------------------------------------
# decode to numpy


def test_decode_masked_frame(benchmark):
    frame = encode_frame_masked(WORLD, CB)
    msgs = benchmark(CB.decode_frame, frame, CTX)
    moves = [m for m in msgs if type(m) is W.CellMoves]
    assert sum(len(m.moves) for m in moves) == WORLD.moved_count
    got = np.concatenate([m.moves["x"] for m in moves])
    assert np.allclose(got, WORLD.x[WORLD.moved], atol=64 / 2047)


def test_decode_slot_frame(benchmark):
    frame = encode_frame_slots(WORLD, CB)
    msgs = benchmark(CB.decode_frame, frame, CTX)
    moves = [m for m in msgs if type(m) is W.CellSlotMoves]
    slots = np.concatenate([m.moves["slot"] for m in moves])
    assert np.array_equal(slots, WORLD.slot[WORLD.moved])


def test_decode_json(benchmark):
    data = orjson.dumps(rows(WORLD))
    benchmark(orjson.loads, data)


def test_decode_msgpack(benchmark):
    data = msgpack.packb(rows(WORLD))
    benchmark(msgpack.unpackb, data)


# ----------------------------------------------------------------------------------------
# a frame of mixed small messages


def test_encode_mixed(benchmark):
    msgs, data_bytes = mixed_messages(CB)

    def encode():
        out = bytearray()
        for m in msgs:
            CB.encode_into(out, m)
        return out

    frame = benchmark(encode)
    envelope = (len(frame) - data_bytes) / len(msgs)
    benchmark.extra_info.update(bytes=len(frame), messages=len(msgs), envelope_per_message=envelope)
    # A channel delivery costs its type id and its channel id: 2 bytes (WIRE.md).
    delivery = CB.encode(msgs[0])
    assert len(delivery) - len(msgs[0].payload.body) == 2


def test_decode_mixed(benchmark):
    msgs, _ = mixed_messages(CB)
    out = bytearray()
    for m in msgs:
        CB.encode_into(out, m)
    ctx = CB.context(channel_types={1: CB.json_type, 2: CB.json_type, 3: CB.json_type})
    assert len(benchmark(CB.decode_frame, bytes(out), ctx)) == len(msgs)


def test_encode_mixed_socketcluster(benchmark):
    msgs, data_bytes = sc_mixed_messages()
    texts = benchmark(lambda: [orjson.dumps(m) for m in msgs])
    total = sum(len(t) for t in texts)
    benchmark.extra_info.update(bytes=total, messages=len(msgs), envelope_per_message=(total - data_bytes) / len(msgs))


def test_decode_mixed_socketcluster(benchmark):
    msgs, _ = sc_mixed_messages()
    texts = [orjson.dumps(m) for m in msgs]
    benchmark(lambda: [orjson.loads(t) for t in texts])


def test_byte_budgets():
    masked = encode_frame_masked(WORLD, CB)
    slots = encode_frame_slots(WORLD, CB)
    assert per_entity(masked) <= 5.0 and per_entity(slots) <= 5.0
    # With few movers, the mask costs a bit per entity of the cell, moved or not.
    few = World(n=1000, cells=16, moving=0.2)
    assert len(encode_frame_masked(few, CB)) / few.moved_count <= 5.0


@pytest.mark.parametrize("moving", [1.0, 0.5, 0.2])
def test_report_bytes(moving, capsys):
    w = World(n=1000, cells=16, moving=moving)
    with capsys.disabled():
        print(
            f"\n{int(moving * 100)}% moving ({w.moved_count} of 1000 in 16 cells), bytes per moved entity: "
            f"masked {len(encode_frame_masked(w, CB)) / w.moved_count:.2f}, "
            f"slots {len(encode_frame_slots(w, CB)) / w.moved_count:.2f}, "
            f"naive {len(encode_naive(w, CB)) / w.moved_count:.2f}, "
            f"json {len(orjson.dumps(rows(w))) / w.moved_count:.2f}, "
            f"msgpack {len(msgpack.packb(rows(w))) / w.moved_count:.2f}"
        )


def test_javascript_codec(tmp_path, capsys):
    """The browser side: JavaScript decode and encode of the same frames (node, V8)."""
    import json
    import shutil
    import subprocess

    from engine.schema.gen_js import generate_js
    from engine.schema.model import load
    from bench.codec_world import SCHEMA, ROOT

    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    runtime = os.path.join(ROOT, "codecs", "js", "packed.js")
    (tmp_path / "world.js").write_text(generate_js(load(SCHEMA), runtime))
    msgs, _ = mixed_messages(CB)
    mixed = bytearray()
    for m in msgs:
        CB.encode_into(mixed, m)
    frames = {
        "packed": {"masked": encode_frame_masked(WORLD, CB).hex(), "slots": encode_frame_slots(WORLD, CB).hex(), "mixed": mixed.hex()},
        "json": {"socketcluster": orjson.dumps({"event": "#publish", "data": {"channel": "c", "data": rows(WORLD)}}).decode()},
    }
    (tmp_path / "frames.json").write_text(json.dumps(frames))
    result = subprocess.run(
        [node, "bench/codec_js_bench.mjs", str(tmp_path / "world.js"), str(tmp_path / "frames.json")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    with capsys.disabled():
        for name, f in figures.items():
            print(f"\nJavaScript {name}: decode {f['decode_us']:.1f} us, encode {f['encode_us']:.1f} us (median)")
