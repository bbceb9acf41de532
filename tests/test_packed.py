"""The Python runtime of the packed format (engine/packed.py) with the generated modules:
primitives, round trips of every schema type, struct arrays from and to numpy, and bad
input, which gets a DecodeError and nothing else."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine._generated import protocol as P
from engine.packed import (
    Codebook,
    DecodeError,
    EncodeError,
    Payload,
    Quant,
    UnknownType,
    r_string,
    r_svarint,
    r_uvarint,
    uvarint_bytes,
    w_string,
    w_svarint,
)
from engine.schema.model import load

from codec_values import CHANNEL, CHANNEL_TYPE, PROTOCOL, Strategies, everything, exact_fields, plain, same

MODEL, E = everything()
CB = Codebook(P, E)


def ctx(**kw):
    kw.setdefault("channel_types", {CHANNEL: CHANNEL_TYPE})
    return CB.context(**kw)


# ----------------------------------------------------------------------------------------
# primitives


@pytest.mark.parametrize(
    "value, hex_",
    [(0, "00"), (127, "7f"), (128, "8001"), (16383, "ff7f"), (16384, "808001"),
     (2**32 - 1, "ffffffff0f"), (2**64 - 1, "ffffffffffffffffff01")],
)
def test_uvarint(value, hex_):
    assert uvarint_bytes(value).hex() == hex_
    assert r_uvarint(bytes.fromhex(hex_), 0) == (value, len(hex_) // 2)


@pytest.mark.parametrize("value, hex_", [(0, "00"), (-1, "01"), (1, "02"), (-64, "7f"), (63, "7e"), (-(2**63), "ffffffffffffffffff01")])
def test_zigzag(value, hex_):
    out = bytearray()
    w_svarint(out, value)
    assert out.hex() == hex_
    assert r_svarint(bytes.fromhex(hex_), 0)[0] == value


@pytest.mark.parametrize("hex_", ["", "80", "ffffffffffffffffff02", "8080808080808080808000"])
def test_bad_varints(hex_):
    with pytest.raises(DecodeError):
        r_uvarint(bytes.fromhex(hex_), 0)


def test_uvarint_refuses_what_does_not_fit():
    with pytest.raises(EncodeError):
        uvarint_bytes(2**64)
    with pytest.raises(EncodeError):
        uvarint_bytes(-1)


@given(st.text())
def test_strings_round_trip(s):
    out = bytearray()
    w_string(out, s)
    assert r_string(bytes(out), 0, 1 << 20) == (s, len(out))


def test_strings_limits_and_errors():
    with pytest.raises(DecodeError, match="over the limit"):
        r_string(b"\x05hello", 0, 4)
    with pytest.raises(DecodeError, match="truncated"):
        r_string(b"\xff\xff\xff\x0f", 0, 1 << 40)  # a 4 GiB claim, refused before allocating
    with pytest.raises(DecodeError, match="UTF-8"):
        r_string(b"\x02\xc3\x28", 0, 10)
    with pytest.raises(EncodeError, match="surrogate"):
        w_string(bytearray(), "\ud800")
    with pytest.raises(EncodeError):
        w_string(bytearray(), b"bytes")  # type: ignore[arg-type]
    assert r_string(b"\x03\xef\xbb\xbf", 0, 10)[0] == "\ufeff"  # a BOM is kept


# ----------------------------------------------------------------------------------------
# quantisation: one formula for one value, for numpy arrays, and for JavaScript


def test_quant_rounds_half_to_even_and_clamps():
    q = Quant(0.0, 16.0, 7, 0.25)
    assert [q.quantise(v) for v in (0.125, 0.375, 0.625, -3.0, 99.0, math.inf)] == [0, 2, 2, 0, 64, 64]
    assert list(q.quantise_array(np.array([0.125, 0.375, 0.625, -3.0, 99.0, np.inf]))) == [0, 2, 2, 0, 64, 64]
    with pytest.raises(EncodeError):
        q.quantise(math.nan)
    with pytest.raises(EncodeError):
        q.quantise_array(np.array([1.0, np.nan]))


@st.composite
def quants(draw):
    lo = draw(st.floats(-1e6, 1e6))
    span = draw(st.floats(1e-3, 1e6))
    bits = draw(st.integers(1, 53))
    if draw(st.booleans()):
        return Quant(lo, lo + span, bits, span / ((1 << bits) - 1))
    step = draw(st.floats(span / 2**20, span))
    need = max(1, math.ceil(math.log2(round(span / step, 9) + 1)))
    return Quant(lo, lo + span, need, step)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # 1e308 / a small step
@given(quants(), st.lists(st.floats(allow_nan=False, width=64) | st.floats(-1e7, 1e7), min_size=1, max_size=20))
def test_quantise_array_agrees_with_quantise(q, values):
    arr = q.quantise_array(np.array(values))
    assert [int(x) for x in arr] == [q.quantise(v) for v in values]
    assert all(0 <= int(x) <= q.qmax for x in arr)


# ----------------------------------------------------------------------------------------
# round trips of every message of a schema that uses every feature


def _strategy():
    tag_bodies = Strategies(MODEL, E, []).table("Tag").map(CB.encode_body)
    s = Strategies(MODEL, E, sorted(CB.types), channel_body=tag_bodies)
    return {t.name: s.message(t) for t in MODEL.messages}


STRATEGIES = _strategy()


@pytest.mark.parametrize("name", list(STRATEGIES))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_round_trip(name, data):
    msg = data.draw(STRATEGIES[name])
    first = CB.encode(msg)
    decoded = CB.decode_one(first, ctx())
    assert type(decoded) is type(msg)
    # Decoding recovers every bit that was sent: what it gives encodes to the same bytes.
    assert CB.encode(decoded) == first
    table = MODEL.decls[name]
    for f in exact_fields(MODEL, table):
        assert same(plain(getattr(decoded, f.name)), plain(getattr(msg, f.name))), f.name


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(list(STRATEGIES.values())).flatmap(lambda s: s), min_size=1, max_size=4))
def test_frames_of_several_messages(msgs):
    out = bytearray()
    for m in msgs:
        CB.encode_into(out, m)
    decoded = CB.decode_frame(bytes(out), ctx())
    assert [type(m) for m in decoded] == [type(m) for m in msgs]


@pytest.mark.parametrize("name", list(STRATEGIES))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_plain_form_round_trips_through_json(name, data):
    """to_dict, as JSON text and back, then from_dict: the same message, bit for bit (what a
    SocketCluster client's publish to a typed channel goes through)."""
    msg = data.draw(STRATEGIES[name])
    text = json.dumps(msg.to_dict())  # Python's json keeps NaN and infinities; JS clients send neither
    again = type(msg).from_dict(json.loads(text), CB.records)
    assert CB.encode(again) == CB.encode(msg)
    assert CB.payload_from_plain(msg.TYPE_ID, json.loads(text)) == CB.payload(msg)


def test_plain_form_defaults_and_errors():
    assert E.Numbers.from_dict({"i16": 5}) == E.Numbers(i16=5)
    assert E.Composite.from_dict({"leaf": {"name": "n", "value": 1}}, CB.records).leaf.name == "n"
    leaf = {"$type": "Leaf", "name": "x"}  # a union member needs "$type"; its missing fields default
    assert CB.payload_value(CB.payload_from_plain(67, {"shape": leaf})).shape == E.Leaf("x")
    for bad, words in [
        ({"i16": "5"}, "cannot encode"),
        ({"nope": 1}, "no field 'nope'"),
        ([1, 2], "takes an object"),
        ({"i16": 1 << 40}, "out of range"),
        ({"$type": "Vectors"}, "expected Numbers"),
    ]:
        with pytest.raises(EncodeError, match=words):
            CB.payload_from_plain(64, bad)
    with pytest.raises(EncodeError, match="unknown \\$type"):
        CB.payload_from_plain(67, {"shape": {"$type": "Nope"}})
    with pytest.raises(EncodeError, match="cannot encode"):
        CB.payload_from_plain(67, {"shape": {"radius": 1.0}})  # which member? it does not say
    deep: object = {"name": "x", "value": 1}
    for _ in range(200):
        deep = {"label": "n", "children": [], "next": deep}
    with pytest.raises(EncodeError, match="nests more than"):
        E.Composite.from_dict({"tree": deep}, CB.records)
    with pytest.raises(EncodeError, match="list of numbers"):
        CB.payload_from_plain(65, {"u8s": [1, 256]})


# ----------------------------------------------------------------------------------------
# struct arrays and numpy


def test_struct_arrays_from_numpy_and_from_records_are_the_same_bytes():
    rows = [E.Packed(4095, 64.0, 0.0, -4, True, -2), E.Packed(1, 31.9, 12.34, 3, False, 1)]
    arr = np.zeros(2, E.Packed.dtype)
    for i, r in enumerate(rows):
        arr[i] = (r.id, r.x, r.y, r.neg, r.on, r.mood)
    assert CB.encode(E.Vectors(packed=rows)) == CB.encode(E.Vectors(packed=arr))
    back = CB.decode_one(CB.encode(E.Vectors(packed=arr)), ctx()).packed
    assert back.dtype == E.Packed.dtype
    assert list(back["id"]) == [4095, 1] and list(back["neg"]) == [-4, 3] and list(back["mood"]) == [-2, 1]
    assert back["x"][0] == 64.0 and abs(back["y"][1] - 12.34) <= 0.025


@given(st.lists(st.tuples(st.integers(0, 2**30 - 1), st.integers(-(2**19), 2**19 - 1), st.integers(0, 2**14 - 1)), max_size=20))
def test_struct_across_the_32_bit_boundary(rows):
    arr = np.array(rows, dtype=E.Straddle.dtype) if rows else np.zeros(0, E.Straddle.dtype)
    back = CB.decode_one(CB.encode(E.Vectors(straddles=arr)), ctx()).straddles
    assert back.tolist() == [tuple(r) for r in rows]


def test_struct_values_out_of_range_are_encode_errors():
    for bad in (E.Packed(4096, 0, 0, 0, False, 0), E.Packed(0, 0, 0, -5, False, 0), E.Packed(0, math.nan, 0, 0, False, 0)):
        with pytest.raises(EncodeError):
            CB.encode(E.Vectors(packed=[bad]))
    with pytest.raises(EncodeError):
        CB.encode(E.Vectors(straddles=[E.Straddle(2**30, 0, 0)]))


def test_nested_and_byte_aligned_structs():
    placed = np.zeros(3, E.Placed.dtype)
    placed["pos"]["x"] = [1.5, -2.0, 3.25]
    placed["team"] = [0, 1, 7]
    placed["heading"] = [0.0, 3.15, -3.15]
    back = CB.decode_one(CB.encode(E.Vectors(placed=placed)), ctx()).placed
    assert back["pos"]["x"].tolist() == [1.5, -2.0, 3.25]
    assert back["team"].tolist() == [0, 1, 7]
    assert np.allclose(back["heading"], placed["heading"], atol=1e-4)


# ----------------------------------------------------------------------------------------
# bad input: DecodeError, nothing else, whatever the bytes


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(sorted(CB.types)), st.binary(max_size=64))
def test_random_bodies_give_decode_error_only(type_id, body):
    data = uvarint_bytes(type_id) + body
    try:
        CB.decode_frame(data, ctx())
    except DecodeError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_random_frames_give_decode_error_only(data):
    try:
        CB.decode_frame(data, ctx())
    except DecodeError:
        pass


@pytest.mark.parametrize("name", list(STRATEGIES))
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_truncation_is_a_decode_error(name, data):
    encoded = CB.encode(data.draw(STRATEGIES[name]))
    for n in range(len(encoded)):
        with pytest.raises(DecodeError):
            CB.decode_frame(encoded[:n], ctx())


def test_unknown_type_is_its_own_error():
    with pytest.raises(UnknownType) as info:
        CB.decode_frame(bytes.fromhex("3f"), ctx())
    assert info.value.type_id == 63


def _tree(depth):
    node = None
    for _ in range(depth):
        node = E.Node("", [], node)
    return E.Composite(tree=node, at=E.Placed(E.Vec2(0, 0), 0, 0), one=E.Packed(0, 0, 0, 0, False, 0),
                       scalars=E.Scalars(False, 0, 0, 0, 0, 0, 0, 0, 0, 0.0, 0.0))


def test_nesting_depth_limit():
    assert CB.decode_one(CB.encode(_tree(32)), ctx()).tree is not None
    with pytest.raises(DecodeError, match="max_depth"):
        CB.decode_one(CB.encode(_tree(33)), ctx())
    assert CB.decode_one(CB.encode(_tree(33)), ctx(max_depth=33)).tree is not None
    # a deep tree of children is counted the same way
    node = E.Node("leaf", [], None)
    for _ in range(40):
        node = E.Node("", [node], None)
    with pytest.raises(DecodeError, match="max_depth"):
        CB.decode_one(CB.encode(E.Composite(tree=node, at=_tree(0).at, one=_tree(0).one, scalars=_tree(0).scalars)), ctx())


def test_limits_from_context():
    data = CB.encode(E.Vectors(i16s=[1, 2], strings=["abcd"]))
    with pytest.raises(DecodeError, match="over the limit of 3"):
        CB.decode_frame(data, ctx(max_string=3))
    with pytest.raises(DecodeError, match="over the limit of 1"):
        CB.decode_frame(data, ctx(max_vector=1))


# ----------------------------------------------------------------------------------------
# the codebook


def test_encode_into_leaves_the_frame_whole_on_error():
    out = bytearray()
    CB.encode_into(out, P.Ping())
    for bad in (P.Error(1, -1, ""), P.Error(None, 1, ""), P.Subscribe(0, [1]), E.Numbers(f32="x"), E.Composite()):
        with pytest.raises(EncodeError):
            CB.encode_into(out, bad)
    assert bytes(out) == b"\x05"
    with pytest.raises(EncodeError):
        CB.encode(object())


def test_payloads():
    p = CB.payload({"a": [1, "x"]})
    assert p.type_id == P.Json.TYPE_ID and CB.payload_value(p) == {"a": [1, "x"]}
    b = CB.payload(b"\x01\x02")
    assert b.type_id == P.Bytes.TYPE_ID and CB.payload_value(b) == b"\x01\x02"
    t = CB.payload(E.Tag("x", 2))
    assert t.type_id == 99 and CB.payload_value(t) == E.Tag("x", 2)
    assert CB.payload(None).type_id == 0 and CB.payload_value(CB.payload(None)) is None
    with pytest.raises(DecodeError, match="trailing"):
        CB.payload_value(Payload(99, b"\x00\x01\x02"))
    with pytest.raises(DecodeError):
        CB.payload_value(Payload(P.Json.TYPE_ID, b"\x01{"))
    with pytest.raises(DecodeError):
        CB.payload_value(Payload(63, b""))


def test_channel_payloads_need_a_subscription():
    msg = E.Delivery(CHANNEL, CB.payload(E.Tag("a", 1)))
    assert CB.decode_one(CB.encode(msg), ctx()) == msg
    with pytest.raises(DecodeError, match="not subscribed"):
        CB.decode_one(CB.encode(msg), ctx(channel_types={}))
    with pytest.raises(EncodeError):
        CB.encode(E.Delivery(CHANNEL, None))


def test_codebook_hash_is_in_message_id_order():
    assert Codebook(P, E).hash == Codebook(E, P).hash
    assert Codebook(P).hash != Codebook(P, E).hash
    with pytest.raises(ValueError, match="message id 1"):
        Codebook(P, P)


def test_schema_hash_is_the_models():
    assert E.SCHEMA_HASH == MODEL.hash
    assert P.SCHEMA_HASH == load(PROTOCOL).hash


def test_struct_arrays_from_one_array_per_field():
    # Game state kept as one numpy array per field encodes without a structured array.
    cols = {"id": np.array([1, 4095], np.uint16), "x": np.array([1.0, 64.0], np.float32), "y": np.array([3.0, 4.0]),
            "neg": np.array([-1, 2], np.int8), "on": np.array([True, False]), "mood": np.array([0, 1], np.int16)}
    rows = [E.Packed(1, 1.0, 3.0, -1, True, 0), E.Packed(4095, 64.0, 4.0, 2, False, 1)]
    assert CB.encode(E.Vectors(packed=cols)) == CB.encode(E.Vectors(packed=rows))
    nested = {"pos": {"x": np.array([1.5]), "y": np.array([0.0])}, "team": np.array([1]), "heading": np.array([0.5])}
    assert CB.encode(E.Vectors(placed=nested)) == CB.encode(E.Vectors(placed=[E.Placed(E.Vec2(1.5, 0.0), 1, 0.5)]))
    with pytest.raises(EncodeError, match="one length"):
        CB.encode(E.Vectors(packed={**cols, "x": np.array([1.0])}))
    with pytest.raises(EncodeError, match="columns"):
        CB.encode(E.Vectors(packed={"id": cols["id"]}))
    with pytest.raises(EncodeError, match="out of range"):
        CB.encode(E.Vectors(packed={**cols, "id": np.array([1, 4096])}))


def test_fuzz_target_finds_nothing_in_a_second():
    # bench/fuzz_codec.py runs for as long as it is asked to; a second of it here.
    from bench.fuzz_codec import run

    lines: list[str] = []
    assert run(1.0, seed=1234, js=False, report=lines.append) == 0, "\n".join(lines)
