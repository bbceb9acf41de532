"""The entity table: columns from a schema struct, slots, quarantine, change detection."""

from __future__ import annotations

import math
import types

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.entities import EntityTable, FieldSpec
from engine.errors import LimitExceeded
from engine.packed import EncodeError
from engine.schema.gen_python import generate_python
from engine.schema.model import load

UNIT = """
namespace test.entities;
attribute "range";
attribute "precision";
attribute "bits";

struct Unit {
  x: float (range: "0 1000", precision: "0.05");
  y: float (range: "0 1000", precision: "0.05");
  vx: float (range: "-8 8", bits: 8);
  kind: ubyte;
  hp: short (bits: 10);
  alive: bool (bits: 1);
}

// Byte-aligned fields only (a struct with a sub-byte field holds at most 64 bits).
struct Wide {
  x: float (range: "0 100", bits: 16);
  y: float (range: "0 100", bits: 16);
  raw: float;
  big: double;
  n: int;
}
"""


def compile_struct(text: str, name: str):
    """The generated class of struct `name` in a schema given as text."""
    model = load(f"{name.lower()}.fbs", read=lambda _: text)
    mod = types.ModuleType(f"schema_{name.lower()}")
    exec(compile(generate_python(model), f"<{name}>", "exec"), mod.__dict__)
    return getattr(mod, name)


# Every test here runs with the C extension's wire_quant and wire_int and with numpy.
pytestmark = pytest.mark.usefixtures("native_and_numpy")

Unit = compile_struct(UNIT, "Unit")
Wide = compile_struct(UNIT, "Wide")


def table(capacity: int = 8) -> EntityTable:
    return EntityTable(Unit, capacity)


def test_columns_come_from_the_struct():
    t = table()
    assert [f.name for f in t.fields] == ["x", "y", "vx", "kind", "hp", "alive"]
    assert [f.kind for f in t.fields] == ["quant", "quant", "quant", "uint", "int", "bool"]
    assert [f.width for f in t.fields] == [15, 15, 8, 8, 10, 1]
    assert t["x"].dtype == np.float32 and t["hp"].dtype == np.int16
    w = EntityTable(Wide, 4)
    assert [(f.kind, f.width) for f in w.fields] == [("quant", 16), ("quant", 16), ("float", 32), ("float", 64), ("int", 32)]
    assert w["big"].dtype == np.float64
    assert t.id_bits == 3  # capacity 8: ids 0..7
    assert EntityTable(Unit, 5000).id_bits == 13
    with pytest.raises(KeyError, match="no field 'z'"):
        t["z"]


def test_spawn_takes_the_lowest_free_slot_and_despawn_is_quarantined():
    t = table()
    assert [t.spawn(x=i) for i in range(4)] == [0, 1, 2, 3]
    assert t.get(2)["x"] == 2.0 and len(t) == 4 and 2 in t
    t.despawn(1)
    assert 1 not in t and len(t) == 4 - 1
    # Slot 1 is held back until the next sync, so no tick can report a new entity in
    # the slot before the tick that reports the old one's departure.
    assert t.spawn() == 4
    assert t.free_slots == 8 - 5
    t.sync()
    assert t.free_slots == 8 - 4
    assert t.spawn() == 1
    assert t.ids().tolist() == [0, 1, 2, 3, 4]


def test_spawn_many_and_despawn_many():
    t = table(16)
    ids = t.spawn_many(5, x=np.arange(5) * 10.0, kind=3)
    assert ids.tolist() == [0, 1, 2, 3, 4]
    assert t["x"][:5].tolist() == [0, 10, 20, 30, 40] and t["kind"][:5].tolist() == [3] * 5
    t.despawn_many([1, 3])
    assert t.ids().tolist() == [0, 2, 4]
    assert t["x"][1] == 0 and t["kind"][3] == 0  # dead rows are zeroed
    t.sync()
    assert t.spawn_many(3).tolist() == [1, 3, 5]


def test_limits_and_bad_arguments():
    t = table(2)
    t.spawn()
    t.spawn()
    with pytest.raises(LimitExceeded, match="full"):
        t.spawn()
    with pytest.raises(LimitExceeded):
        table(2).spawn_many(3)
    with pytest.raises(ValueError, match="no field 'z'"):
        table().spawn(z=1)
    with pytest.raises(ValueError, match="not alive"):
        table().despawn(0)
    with pytest.raises(ValueError, match="not alive"):
        table().get(5)
    with pytest.raises(ValueError):
        table().spawn(kind=300)  # does not fit a ubyte column


def test_sync_reports_changed_fields_by_quantised_value():
    t = table()
    a = t.spawn(x=10.0, y=20.0, kind=1)
    b = t.spawn(x=30.0, y=40.0)
    ch = t.sync()
    assert ch.n == 2 and ch.alive.tolist() == [True, True] and ch.was_alive.tolist() == [False, False]
    assert ch.mask.tolist() == [0, 0]  # new entities: nothing to compare with
    assert ch.wire[0].tolist() == [200, 600]  # x / 0.05
    # Noise below half a step sends nothing; a step more does.
    t["x"][a] += 0.02
    t["y"][b] += 0.05
    t["kind"][b] = 9
    ch = t.sync()
    assert ch.mask.tolist() == [0, (1 << 1) | (1 << 3)]
    assert ch.was_alive.tolist() == [True, True]
    assert t.sync().mask.tolist() == [0, 0]


def test_sync_of_a_despawned_entity_and_a_respawned_slot():
    t = table()
    a = t.spawn(x=1.0)
    t.sync()
    t.despawn(a)
    ch = t.sync()
    assert ch.alive.tolist() == [False] and ch.was_alive.tolist() == [True] and ch.mask.tolist() == [0]
    assert t.spawn(x=5.0) == a
    ch = t.sync()
    assert ch.alive.tolist() == [True] and ch.was_alive.tolist() == [False]


def test_values_out_of_their_bits_are_refused_at_sync():
    t = table()
    e = t.spawn()
    t["hp"][e] = 600  # 10 bits, signed: -512..511
    with pytest.raises(EncodeError, match="hp"):
        t.sync()
    t["hp"][e] = -512
    t.sync()
    t["x"][e] = math.nan
    with pytest.raises(EncodeError, match="'x'"):
        t.sync()


def test_quantised_is_what_a_client_decodes():
    t = table()
    e = t.spawn(x=12.34, y=999.99, vx=-3.3, kind=7, hp=-5, alive=True)
    q = t.quantised(e)
    assert q["x"] == pytest.approx(12.35) and q["y"] == pytest.approx(1000.0)
    assert q["vx"] == pytest.approx(-3.3, abs=16 / 255 / 2)
    assert (q["kind"], q["hp"], q["alive"]) == (7, -5, True)
    w = EntityTable(Wide, 2)
    e = w.spawn(raw=1.5, big=-2.25, n=-7)
    assert {k: w.quantised(e)[k] for k in ("raw", "big", "n")} == {"raw": 1.5, "big": -2.25, "n": -7}


SPECS = EntityTable(Unit, 1).fields + EntityTable(Wide, 1).fields


@given(
    st.sampled_from(SPECS),
    st.floats(-2000, 2000, allow_nan=False) | st.integers(-600, 600) | st.booleans(),
)
def test_wire_integer_round_trip(spec: FieldSpec, v):
    """value(to_wire(v)) is v after quantisation, for every field kind."""
    col = np.zeros(1, spec.dtype)
    try:
        col[0] = v
    except (OverflowError, ValueError):
        return
    try:
        w = spec.wire_one(col[0])
    except EncodeError:
        assert spec.kind in ("int", "uint")
        return
    assert 0 <= w < 1 << spec.width
    back = spec.value(w)
    if spec.kind == "quant":
        assert abs(back - float(col[0])) <= spec.quant.step / 2 + 1e-9 or not (
            spec.quant.min <= col[0] <= spec.quant.max
        )
    else:
        assert back == col[0].item()


def test_a_struct_field_is_refused():
    Outer = compile_struct(
        """
        namespace test.nested;
        struct V { x: float; y: float; }
        struct Outer { pos: V; kind: ubyte; }
        """,
        "Outer",
    )
    with pytest.raises(ValueError, match="flatten"):
        EntityTable(Outer, 4)
