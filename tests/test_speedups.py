"""The C extension (engine/_speedups.c) against its pure-Python references, byte for byte,
and its refusal of bad arguments (an error, never a crash)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import run_state_machine_as_test

import engine.interest as interest
from conftest import require_native
from engine import speedups
from engine.entities import EntityTable
from engine.packed import EncodeError
from engine.packed import SMALL_UVARINTS
from engine.rooms import NOTHING, PlayerSection, Room, TickHeaders
from engine.socket import room_frames
from engine.testing import RoomKit
from engine.interest import SyncLayout, join_messages, sync_records
from test_entities import Unit, Wide
from test_interest import MACHINE_SETTINGS, Every, InterestMachine, Mob


@contextmanager
def using(native):
    """engine.speedups.native is `native` (the extension, or None for the Python twins)
    inside the block."""
    saved, speedups.native = speedups.native, native
    try:
        yield
    finally:
        speedups.native = saved


def both(lay, cell, prev, mask, watched, is_snap, vals, native):
    """sync_records with the C extension and with its numpy reference."""
    with using(native):
        fast = sync_records(lay, cell, prev, mask, watched, is_snap, vals)
    with using(None):
        slow = sync_records(lay, cell, prev, mask, watched, is_snap, vals)
    return fast, slow


def assert_same(fast, slow):
    (buf, off, records), (ref, ref_off, ref_records) = fast, slow
    assert buf == ref
    assert off.tolist() == ref_off.tolist()
    assert records == ref_records


@st.composite
def ticks(draw):
    """A layout with fields of any width (1 to 64 bits), and one tick's rows: each one
    dead or in a cell, now and at the last tick, with any changed-field mask; any cells
    watched and snapshotted. Sparse rows make wide id gaps, dense ones plain-coded
    groups; a small grid puts every kind of record in one segment."""
    nf = draw(st.integers(1, 6))
    widths = tuple(draw(st.lists(st.integers(1, 64), min_size=nf, max_size=nf)))
    id_bits = draw(st.integers(1, 14))
    cols, rows = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    ncells = cols * rows
    lay = SyncLayout(tuple(range(nf)), widths, id_bits, 0, min(1, nf - 1), 4, 4, cols, rows)  # type: ignore[arg-type]
    n = draw(st.integers(0, 1 << id_bits))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dead = draw(st.sampled_from([0.0, 0.1, 0.9]))
    moved = draw(st.sampled_from([0.0, 0.05, 0.5]))
    prev = np.where(rng.random(n) < dead, -1, rng.integers(0, ncells, n))
    cell = np.where(rng.random(n) < moved, rng.integers(0, ncells, n), prev)
    cell = np.where(rng.random(n) < dead, -1, cell)
    mask = rng.integers(0, 1 << nf, n, dtype=np.uint64)
    mask[(cell < 0) | (prev < 0)] = 0  # as EntityTable.sync leaves it
    watched = rng.random(ncells) < draw(st.sampled_from([0.3, 1.0]))
    is_snap = rng.random(ncells) < draw(st.sampled_from([0.0, 0.3]))
    vals = [rng.integers(0, 2**64, n, dtype=np.uint64) >> np.uint64(64 - w) for w in widths]
    return lay, cell.astype(np.int64), prev.astype(np.int64), mask, watched, is_snap, vals


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ticks())
def test_sync_records_matches_numpy(tick):
    assert_same(*both(*tick, require_native()))


def test_the_property_machine_with_both_at_once(monkeypatch):
    """Interest's property machine (tests/test_interest.py), each tick's records made by
    both."""
    native = require_native()
    compared = []

    def checked(*args):
        fast, slow = both(*args, native)
        assert_same(fast, slow)
        compared.append(fast[2])
        return fast

    monkeypatch.setattr(interest, "sync_records", checked)
    run_state_machine_as_test(InterestMachine, settings=MACHINE_SETTINGS)
    # Not vacuous: ticks with records (90 to 470 of ~3,000 in runs here, as the examples
    # vary: most spawn entities, and their snapshots are records).
    assert sum(map(bool, compared)) >= 10


@settings(max_examples=200, deadline=None)
@given(
    st.binary(max_size=300),
    st.binary(max_size=3),
    st.integers(0, 6),
    st.integers(1, 4),
    st.integers(0, 2**32 - 1),
)
def test_join_messages_matches_python(buf, prefix, rows, m, seed):
    """Ranges anywhere in the buffer, empty and reversed ones too; messages past 127
    bytes have a two-byte length."""
    native = require_native()
    rng = np.random.default_rng(seed)
    a = rng.integers(0, len(buf) + 1, (rows, m))
    b = np.where(rng.random((rows, m)) < 0.2, a, rng.integers(0, len(buf) + 1, (rows, m)))
    with using(native):
        fast = join_messages(prefix, buf, a, b)
    with using(None):
        slow = join_messages(prefix, buf, a, b)
    assert fast == slow
    assert all(type(x) is bytes for x in fast)


@pytest.mark.parametrize(
    "a, b, error",
    [
        (np.array([[0, 2]]), np.array([[1, 11]]), ValueError),  # past the end
        (np.array([[-1, 2]]), np.array([[1, 3]]), ValueError),  # before the start
        (np.array([[0, 2]]), np.array([[1, 3], [4, 5]]), ValueError),  # shapes differ
        (np.array([0, 2]), np.array([1, 3]), TypeError),  # 1-D
        (np.array([[0, 2]], np.int32), np.array([[1, 3]], np.int32), TypeError),
    ],
)
def test_join_messages_refuses_bad_ranges(a, b, error):
    native = require_native()
    with pytest.raises(error):
        native.join_messages(b"\x1e", bytes(10), a, b)


def good_args():
    """Two fields, two columns and one row of cells, four rows of entities."""
    return dict(
        cell=np.array([0, 1, -1, 1], np.int64),
        prev=np.array([0, 0, 1, -1], np.int64),
        mask=np.array([3, 0, 0, 0], np.uint64),
        watched=np.array([True, True]),
        is_snap=np.array([False, True]),
        vals=(np.arange(4, dtype=np.uint64), np.arange(4, dtype=np.uint64)),
        widths=(5, 7),
        id_bits=2,
        off=np.zeros(5, np.int64),
    )


@pytest.mark.parametrize(
    "change, error",
    [
        ({"cell": np.array([0, 1, -1, 1], np.int32)}, TypeError),  # 4-byte integers
        ({"mask": np.array([3.0, 0, 0, 0])}, TypeError),  # floats
        ({"prev": np.array([[0, 0, 1, -1]], np.int64)}, TypeError),  # 2-D
        ({"off": np.zeros(9, np.int64)[::2]}, (TypeError, BufferError, ValueError)),  # not contiguous
        ({"off": np.zeros(4, np.int64)}, ValueError),  # an odd number of segments
        ({"watched": np.array([1, 1], np.int64)}, TypeError),  # not booleans
        ({"is_snap": np.array([True])}, TypeError),  # one per cell
        ({"vals": [np.arange(4, dtype=np.uint64)] * 2}, TypeError),  # a list
        ({"vals": (np.arange(4, dtype=np.uint64),)}, ValueError),  # one array for two widths
        ({"widths": (5, 65)}, ValueError),
        ({"id_bits": 0}, ValueError),
        ({"cell": np.array([0, 2, -1, 1], np.int64)}, ValueError),  # outside the grid
        ({"prev": np.array([0, 0, -2, -1], np.int64)}, ValueError),
        ({"mask": np.array([4, 0, 0, 0], np.uint64)}, ValueError),  # a field that does not exist
        ({"vals": (np.arange(4, dtype=np.uint64), np.arange(2, dtype=np.uint64))}, ValueError),  # too short
        ({"prev": np.array([0, 0, 1], np.int64)}, ValueError),  # lengths differ
    ],
)
def test_sync_records_refuses_bad_arguments(change, error):
    native = require_native()
    args = {**good_args(), **change}
    with pytest.raises(error):
        native.sync_records(*args.values())


def test_sync_records_of_good_arguments():
    """The arguments the refusals above start from are good, with 7 records: row 0 an
    update, row 1 a departure from cell 0, an enter into cell 1 and a snapshot row, row 2
    a departure, row 3 an enter and a snapshot row."""
    native = require_native()
    args = good_args()
    lay = SyncLayout((0, 1), (5, 7), 2, 0, 1, 4, 4, 2, 1)  # type: ignore[arg-type]
    buf, records = native.sync_records(*args.values())
    speedups_off = args["off"].tolist()
    ref, ref_off, ref_records = both(lay, *(args[k] for k in ("cell", "prev", "mask", "watched", "is_snap")), list(args["vals"]), None)[1]
    assert (buf, records, speedups_off) == (ref, ref_records, ref_off.tolist())
    assert records == 7


FIELDS = [f for s in (Unit, Wide, Every, Mob) for f in EntityTable(s, 1).fields if f.kind != "float"]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(FIELDS), st.integers(0, 40), st.integers(0, 2**32 - 1), st.sampled_from(["in", "edges", "wild"]))
def test_diff_into_matches_numpy(spec, n, seed, values):
    """FieldSpec.diff_into (EntityTable.sync's per-field pass) with wire_quant or wire_int
    and with to_wire: the same wire integers and mask bits, or the same EncodeError.
    Values: inside the field's range, on and past its edges (inf, -0.0, halves that
    round to even), or anything its column holds (NaN, out-of-range integers)."""
    native = require_native()
    rng = np.random.default_rng(seed)
    if spec.quant is not None:
        q = spec.quant
        inside = rng.uniform(q.min, q.max, n)
        edges = rng.choice([q.min, q.max, q.min - 1, q.max + 1, np.inf, -np.inf, -0.0, q.min + q.step / 2, q.min + 1.5 * q.step], n)
        wild = np.where(rng.random(n) < 0.2, np.nan, rng.normal(0, 1e6, n))
    else:
        lo, hi = spec.int_range
        info = np.iinfo(spec.dtype) if spec.dtype != np.bool_ else None
        inside = rng.integers(lo, hi + 1, n)
        edges = rng.choice([lo, hi, 0], n)
        wild = rng.integers(info.min, info.max, n, endpoint=True) if info is not None else rng.integers(0, 2, n)
    col = {"in": inside, "edges": edges, "wild": wild}[values].astype(spec.dtype)
    sent = rng.integers(0, 2, n, dtype=np.uint64) * rng.integers(0, 2**63, n, dtype=np.uint64)
    bit = int(rng.integers(0, 48))
    results = []
    for path in (native, None):
        wire = np.zeros(n, np.uint64)
        mask = rng.integers(0, 2**40, n, dtype=np.uint64) if path is native else results[0][2].copy()
        start = mask.copy()
        try:
            with using(path):
                spec.diff_into(col, wire, sent, mask, bit)
            results.append(("ok", wire, start, mask))
        except EncodeError as e:
            results.append(("error", str(e), start, None))
    (kind, a, _, mask_a), (kind_b, b, _, mask_b) = results
    assert kind == kind_b
    if kind == "ok":
        assert a.tolist() == b.tolist() and mask_a.tolist() == mask_b.tolist()
    else:
        assert a == b


@pytest.mark.parametrize(
    "call",
    [
        lambda n: n.wire_quant(np.zeros(3, np.int32), 0.0, 1.0, 10, *rows(3), 0),  # integers for a quantised field
        lambda n: n.wire_quant(np.zeros(3, np.float32), 0.0, 1.0, 10, *rows(2), 0),  # lengths differ
        lambda n: n.wire_quant(np.zeros(3, np.float32), 0.0, 1.0, 2**53, *rows(3), 0),
        lambda n: n.wire_quant(np.zeros(3, np.float32), 0.0, 1.0, 10, *rows(3), 64),
        lambda n: n.wire_int(np.zeros(3, np.float64), 0, 10, 8, *rows(3), 0),  # floats for an integer field
        lambda n: n.wire_int(np.zeros(3, np.int8), 0, 10, 65, *rows(3), 0),
        lambda n: n.wire_int(np.zeros(3, np.int8), 0, 10, 8, np.zeros(3, np.int64)[::-1], *rows(3)[1:], 0),
    ],
)
def test_wire_functions_refuse_bad_arguments(call):
    with pytest.raises((TypeError, ValueError, BufferError)):
        call(require_native())


def rows(n):
    return np.zeros(n, np.uint64), np.zeros(n, np.uint64), np.zeros(n, np.uint64)


def test_no_speedups_environment_variable():
    require_native()
    code = "from engine import speedups; print(speedups.native is None)"
    for value, expected in (("1", "True"), ("", "False")):
        env = {**os.environ, "TICKWIRE_NO_SPEEDUPS": value}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == expected


# -- a room's frames ----------------------------------------------------------------------


class Recorder:
    """A socket's transport and Socket.room_frame, recording what they get, in order, in
    one log shared by every socket of a tick."""

    def __init__(self, name: str, log: list, fail_on: int = -1):
        self.name, self.log, self.fail_on = name, log, fail_on

    def write(self, data: bytes) -> None:
        if len(self.log) == self.fail_on:
            raise ConnectionResetError("gone")
        self.log.append((self.name, "write", bytes(data)))

    def room_frame(self, header: bytes, shared: list, private) -> None:
        self.log.append((self.name, "slow", header, list(shared), list(private)))


def fake_socket(draw, rec: Recorder) -> SimpleNamespace:
    """What room_frames reads of a Socket, each condition of its fast path drawn."""
    codec = draw(st.sampled_from([SimpleNamespace(concatenates=True), SimpleNamespace(concatenates=False), SimpleNamespace()]))
    limits = SimpleNamespace(max_out_frame_size=draw(st.sampled_from([10, 200, 70000, 1 << 20, 250.5, 1 << 70])))
    session = SimpleNamespace(out=draw(st.sampled_from([None, None, None, [b"x"]])), state=draw(st.sampled_from([1, 1, 1, 2])), limits=limits)
    conn = SimpleNamespace(writable=draw(st.sampled_from([True, True, False])), fast=draw(st.sampled_from([True, True, False])), transport=rec)
    return SimpleNamespace(
        session=session, conn=conn, codec=codec, closed=draw(st.sampled_from([False, False, False, True])), room_frame=rec.room_frame
    )


@st.composite
def room_ticks(draw):
    log: list = []
    fail_on = draw(st.sampled_from([-1, -1, -1, 0, 2]))  # a write that raises, at that point of the log
    nsock = draw(st.integers(0, 6))
    sockets = {f"s{i}": fake_socket(draw, Recorder(f"s{i}", log, fail_on)) for i in range(nsock)}
    shared = draw(st.lists(st.binary(max_size=300), min_size=1, max_size=4))
    # Sizes past the one- and two-byte WebSocket lengths: 125, 126, 65535, 65536.
    shared.append(draw(st.sampled_from([b"", bytes(120), bytes(65530), bytes(65600)])))
    views = [[0]] + draw(st.lists(st.lists(st.integers(0, len(shared) - 1), max_size=3), max_size=3))
    sections = [
        PlayerSection(
            k, "w", draw(st.sampled_from([*sockets, "gone"])), draw(st.binary(min_size=1, max_size=12)),
            draw(st.integers(0, len(views) - 1)), draw(st.sampled_from([(), (), (b"own",)])),
        )
        for k in range(draw(st.integers(0, 10)))
    ]
    return sockets, log, shared, views, sections


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(room_ticks())
def test_room_frames_matches_python(tick):
    """The same frames written and the same sections given to Socket.room_frame, in the
    same order (a socket may have two sections), the same counts, and the same log when
    a write raises, for sockets in every state the fast path checks (frame limits that
    are floats or past 64 bits too)."""
    native = require_native()
    sockets, log, shared, views, sections = tick
    seen = []
    for path in (native, None):
        log.clear()
        stats = SimpleNamespace(frames_out=0, bytes_out=0)
        try:
            with using(path):
                room_frames(sockets, shared, views, sections, stats)
            error = None
        except ConnectionResetError as e:
            error = str(e)
        seen.append((list(log), stats.frames_out, stats.bytes_out, error))
    assert seen[0] == seen[1]


def test_room_frames_refuses_bad_sections():
    native = require_native()
    sock = SimpleNamespace()

    def slow(*args):
        raise AssertionError("not reached")

    for sections, error in [
        ([("a", "b")], TypeError),  # not a section
        ([PlayerSection(1, "w", "s", b"h", 5, ())], ValueError),  # no such view
        ([PlayerSection(1, "w", "s", "text", 0, ())], ValueError),  # a header that is not bytes
    ]:
        with pytest.raises(error):
            native.room_frames({"s": sock}, [b"tail"], sections, 2, slow)
    # An attribute that raises propagates (here: the socket has none of them).
    with pytest.raises(AttributeError):
        native.room_frames({"s": sock}, [b"tail"], [PlayerSection(1, "w", "s", b"h", 0, ())], 2, slow)


# -- a room's player sections -------------------------------------------------------------


class Roomy(Room):
    max_players = 12


@st.composite
def players_states(draw):
    """Players in every state RoomRunner._sections tells apart: dropped, sequence numbers
    and echo ages inside and past the small varints (and ages below zero, NaN), room
    handles with and without a prefix yet, private messages, newcomers, interest views
    shared, own (with or without a message of its own) or none."""
    n = draw(st.integers(0, 8))
    seq = st.sampled_from([0, 1, 5, 127, 128, 16383, 16384, 70000])
    players = [
        dict(
            connected=draw(st.sampled_from([True, True, True, False])),
            applied_seq=draw(seq),
            echo_seq=draw(st.sampled_from([0, 0, 3, 20000])),
            age=draw(st.sampled_from([0.0, 0.0004, 0.5, 2.5, 20.0, -0.0005, -1.0, math.nan])),
            handle=draw(st.sampled_from([1, 1, 2, 7])),
            outbox=draw(st.sampled_from([[], [], [b"mine"]])),
            needs_state=draw(st.sampled_from([False, False, True])),
            view=draw(st.sampled_from([-1, 0, 1, 2])),
        )
        for _ in range(n)
    ]
    view_of = draw(st.sampled_from([None, [1, 0, 2], [0, 0, 0]]))
    own = draw(st.sampled_from([{}, {1: b"own1"}, {0: b"own0", 2: b"own2"}]))
    prefixed = draw(st.sampled_from([(), (1,), (1, 2)]))  # handles whose prefix exists before the loop
    state = draw(st.sampled_from([[], [b"S"]]))
    return players, view_of, own, prefixed, state


def runner_with(spec):
    players, view_of, own, prefixed, state = spec
    kit = RoomKit(Roomy, start=100.0)
    made = []
    for p in players:
        player = kit.join().player
        for k, v in p.items():
            if k == "age":
                player.echo_at = 100.0 - v
            else:
                setattr(player, k, list(v) if k == "outbox" else v)
        made.append(player)
    ticker = TickHeaders(kit.codebook, 9, 450)
    for h in prefixed:
        ticker.prefix(h)
    view_size = [3, 40, 200]
    return kit.runner, made, ticker, view_of, own, state, view_size


@settings(max_examples=300, deadline=None)
@given(players_states())
def test_room_sections_matches_python(spec):
    """The same sections, bytes and player state after (private messages taken, the
    newcomer flag cleared) from the C loop, which hands every unsteady player to
    _sections, as from _sections alone."""
    native = require_native()
    out = []
    for path in (native, None):
        runner, players, ticker, view_of, own, state, view_size = runner_with(spec)
        try:
            if path is None:
                sections, total = runner._sections(runner.room.players.values(), ticker, 100.0, view_of, own, state, view_size)
            else:
                sections, total = native.room_sections(
                    runner.room.players.values(), ticker.prefixes, SMALL_UVARINTS, 100.0, view_of, own, view_size,
                    PlayerSection, NOTHING,
                    lambda p: runner._sections((p,), ticker, 100.0, view_of, own, state, view_size),
                )
        except (EncodeError, ValueError) as e:  # an echo in the future (-1 s), or at NaN
            out.append(type(e))
            continue
        assert all(type(s) is PlayerSection for s in sections)
        after = [(p.outbox, p.needs_state) for p in players]
        out.append(([tuple(s) for s in sections], total, after, sorted(ticker.prefixes)))
    assert out[0] == out[1]


def test_room_sections_refuses_bad_arguments():
    native = require_native()
    args = ([], {}, SMALL_UVARINTS, 0.0, None, {}, [0], PlayerSection, NOTHING, lambda p: ([], 0))
    native.room_sections(*args)  # good
    for i, bad in [(4, {}), (7, dict), (1, [])]:
        with pytest.raises(TypeError):
            native.room_sections(*args[:i], bad, *args[i + 1:])
    player = SimpleNamespace(connected=True, applied_seq=0, echo_seq=0, handle=1, outbox=[], view=-1, needs_state=True)
    with pytest.raises(TypeError):  # slow() must return (list, int)
        native.room_sections([player], *args[1:-1], lambda p: None)


def test_sections_hash_as_tuples():
    """A section made in C is a PlayerSection that hashes and compares as the tuple it is
    (tuple.__new__ makes it, as in the reference)."""
    native = require_native()
    runner, players, ticker, view_of, own, state, view_size = runner_with(
        ([dict(connected=True, applied_seq=3, echo_seq=0, age=0.0, handle=1, outbox=[], needs_state=False, view=-1)], None, {}, (1,), [])
    )
    sections, _ = native.room_sections(
        runner.room.players.values(), ticker.prefixes, SMALL_UVARINTS, 100.0, view_of, own, view_size,
        PlayerSection, NOTHING, lambda p: pytest.fail("a steady player"),
    )
    (sec,) = sections
    assert type(sec) is PlayerSection and hash(sec) == hash(tuple(sec)) and sec == tuple(sec)
    assert sec.header == ticker.header(1, 3, 0, 0)


def test_columns_the_extension_does_not_read_take_numpy():
    """A bool column with bytes other than 0 and 1 counts them as true, as numpy's astype
    does; a column in the other byte order, or not aligned, goes through to_wire."""
    native = require_native()
    spec = next(f for f in EntityTable(Unit, 1).fields if f.kind == "bool")
    col = np.frombuffer(bytes([0, 1, 2, 255]), np.uint8).view(np.bool_)
    for path in (native, None):
        wire, mask = np.zeros(4, np.uint64), np.zeros(4, np.uint64)
        with using(path):
            spec.diff_into(col, wire, np.zeros(4, np.uint64), mask, 2)
        assert wire.tolist() == [0, 1, 1, 1] and mask.tolist() == [0, 4, 4, 4]
    quant = next(f for f in EntityTable(Unit, 1).fields if f.kind == "quant")
    other_order = np.array([1.0, 2.0], quant.dtype.newbyteorder())
    unaligned = np.frombuffer(b"\0" + np.array([1.0, 2.0], quant.dtype).tobytes(), quant.dtype, count=2, offset=1)
    for col in (other_order, unaligned):
        wire, mask = np.zeros(2, np.uint64), np.zeros(2, np.uint64)
        quant.diff_into(col, wire, np.zeros(2, np.uint64), mask, 0)
        assert wire.tolist() == quant.to_wire(col).tolist()
        with pytest.raises((TypeError, BufferError)):
            native.wire_quant(col, 0.0, 0.05, 20000, wire, np.zeros(2, np.uint64), mask, 0)
    with pytest.raises(TypeError):  # int64 in the other byte order
        native.sync_records(
            np.zeros(2, ">i8"), np.zeros(2, np.int64), np.zeros(2, np.uint64), np.ones(1, bool), np.ones(1, bool),
            (np.zeros(2, np.uint64),), (3,), 1, np.zeros(3, np.int64),
        )
