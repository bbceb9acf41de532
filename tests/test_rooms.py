"""Rooms stepped with injected time (engine.testing): ticks, seats, inputs, state, messages."""

from __future__ import annotations

import pytest

from engine._generated import protocol as P
from engine.errors import Blocked, Forbidden, LimitExceeded
from engine.packed import Codebook, EncodeError
from engine.rooms import Room, TickHeaders
from engine.testing import RoomKit


class Counter(Room):
    tick_rate = 30
    send_rate = 10
    max_players = 3
    reconnect_grace = 5
    reservation_timeout = 2

    def on_create(self, options):
        self.state = {"total": 0, "phase": "waiting"}
        self.seen: list[tuple[int, int]] = []  # (player, value) in applied order
        self.ticked: list[tuple[float, float]] = []
        self.left: list[tuple[int, bool]] = []

    def on_join(self, player, options):
        if options == "banned":
            raise Blocked("not you")
        self.broadcast({"hello": player.id}, exclude=player)
        self.send(player, {"welcome": player.id})

    def on_input(self, player, data):
        self.seen.append((player.id, data))
        self.state = {**self.state, "total": self.state["total"] + data}

    def on_tick(self, now, dt):
        self.ticked.append((round(now, 6), round(dt, 6)))

    def on_leave(self, player, consented):
        self.left.append((player.id, consented))


def test_simulation_and_send_rates_are_separate_and_deterministic():
    kit = RoomKit(Counter)
    a = kit.join("a")
    kit.advance(1.0)
    assert kit.room.tick == 31  # t = 0, 1/30, ..., 30/30
    assert kit.room.ticked[:3] == [(0.0, 0.033333), (0.033333, 0.033333), (0.066667, 0.033333)]
    assert len(a.frames) == 11  # t = 0, 0.1, ..., 1.0: one section per send tick
    assert all(type(f[0]) is P.Tick for f in a.frames)
    ticks = [f[0].tick for f in a.frames]
    assert ticks == sorted(ticks) and ticks[-1] == kit.room.tick
    assert [f[0].time_ms for f in a.frames[:3]] == [0, 100, 200]


def test_a_send_tick_with_nothing_to_say_still_sends_the_header():
    kit = RoomKit(Counter)
    a = kit.join("a")
    kit.advance(0.3)
    quiet = a.frames[-1]
    assert [type(m) for m in quiet] == [P.Tick]
    assert len(kit.codebook.encode(quiet[0])) <= 12


def test_tick_headers_are_the_codebooks_tick_records():
    cb = Codebook(P)
    values = [0, 1, 127, 128, 300, 16383, 16384, 2**21, 2**32 - 1]
    for tick, time_ms in [(0, 0), (5, 250), (16384, 2**32 - 1)]:
        headers = TickHeaders(cb, tick, time_ms)
        for i, v in enumerate(values):
            handle, other = values[(i + 3) % len(values)], values[(i * 5) % len(values)]
            assert headers.header(handle, v, other, v) == cb.encode(P.Tick(handle, tick, time_ms, v, other, v))
    # Out of uint32, the codebook's refusal as before.
    with pytest.raises(EncodeError):
        TickHeaders(cb, 1, 2**32).header(1, 0, 0, 0)
    with pytest.raises(EncodeError):
        TickHeaders(cb, 1, 1).header(1, 0, 0, 2**32)


def test_late_ticks_are_skipped_and_counted_by_default():
    kit = RoomKit(Counter)
    kit.join("a")
    kit.advance(0.1)
    before = kit.room.tick
    kit.jump(1.0)  # the process stalled for a second
    assert kit.room.tick == before + 1  # no burst of 30 steps
    assert kit.runner.stats.skipped_ticks == 29
    assert kit.runner.stats.skipped_sends == 9


def test_catch_up_policy_runs_missed_steps_up_to_its_cap():
    class Eager(Counter):
        late_policy = "catch_up"
        max_catch_up = 5

    kit = RoomKit(Eager)
    kit.join("a")
    kit.advance(0.1)
    before = kit.room.tick
    kit.jump(0.1)  # three steps due
    assert kit.room.tick == before + 3 and kit.runner.stats.late_ticks == 2
    kit.jump(1.0)  # thirty due: five run, the rest are skipped and counted
    assert kit.room.tick == before + 8
    assert kit.runner.stats.skipped_ticks == 25


def test_inputs_apply_in_order_at_the_next_tick_and_the_sequence_is_echoed():
    kit = RoomKit(Counter)
    a, b = kit.join("a"), kit.join("b")
    kit.advance(0.05)
    assert a.input(1) and a.input(2) and b.input(10)
    assert kit.room.seen == []  # queued, not applied yet
    kit.advance(0.1)
    assert kit.room.seen == [(a.id, 1), (a.id, 2), (b.id, 10)]
    assert a.applied_seq == 2 and b.applied_seq == 1
    assert a.state["total"] == 13 and b.state["total"] == 13
    # A replayed or out-of-order sequence number is dropped and counted.
    assert not kit.runner.input(a.player, 2, 99, kit.now)
    assert kit.runner.stats.inputs_dropped == 1


def test_the_cpu_of_applying_inputs_is_counted_apart_when_the_runner_has_a_cpu_clock():
    class Metered(Counter):
        def on_input(self, player, data):
            cpu[0] += data  # applying this input "costs" data seconds of CPU
            super().on_input(player, data)

        def on_tick(self, now, dt):
            cpu[0] += 100.0  # the simulation is not input application
            super().on_tick(now, dt)

    cpu = [0.0]
    kit = RoomKit(Metered)
    kit.runner.cpu_clock = lambda: cpu[0]
    a = kit.join("a")
    kit.advance(0.05)
    assert kit.runner.stats.input_cpu_ms == 0
    assert a.input(2) and a.input(3)
    kit.advance(0.05)
    assert kit.runner.stats.input_cpu_ms == pytest.approx(5000.0)


def test_input_rate_limit_per_client():
    class Strict(Counter):
        max_inputs_per_second = 10
        input_burst = 3

    kit = RoomKit(Strict)
    a = kit.join("a")
    results = [a.input(1) for _ in range(5)]
    assert results == [True, True, True, False, False]
    kit.advance(0.5)  # five more tokens
    assert a.input(1)


def test_state_is_sent_when_it_changes_and_newcomers_get_it():
    kit = RoomKit(Counter)
    a = kit.join("a")
    kit.advance(0.0)
    assert a.state == {"total": 0, "phase": "waiting"}
    kit.advance(0.5)
    state_frames = [f for f in a.frames if any(type(m) is P.RoomState for m in f)]
    assert len(state_frames) == 1  # unchanged state is not sent again
    a.input(5)
    b = kit.join("b")
    kit.advance(0.1)
    assert a.state["total"] == 5 and b.state["total"] == 5
    c = kit.join("c")
    kit.advance(0.1)
    assert c.state["total"] == 5  # joined after the change: still gets the state


def test_messages_to_one_to_all_and_excluding():
    kit = RoomKit(Counter)
    a = kit.join("a")
    b = kit.join("b")
    kit.advance(0.0)
    assert a.messages == [{"welcome": a.id}, {"hello": b.id}]
    assert b.messages == [{"welcome": b.id}]
    kit.room.broadcast("all")
    kit.advance(0.1)
    assert a.messages[-1] == "all" and b.messages[-1] == "all"
    # A broadcast is encoded once: the same bytes object in both sections.
    last = kit.sends[-1]
    assert len(last.shared) == 1 and all(last.views[s.view] == [0] for s in last.players)


def test_full_and_locked_rooms_and_on_join_refusal():
    kit = RoomKit(Counter)
    for name in "abc":
        kit.join(name)
    with pytest.raises(LimitExceeded):
        kit.join("d")
    kit.clients[1].leave()
    kit.room.lock()
    with pytest.raises(Forbidden):
        kit.join("d")
    kit.room.unlock()
    with pytest.raises(Blocked):
        kit.join("e", options="banned")
    kit.join("d")
    assert kit.room.left == [(1, True)]


def test_seat_reservations_hold_a_seat_and_expire():
    kit = RoomKit(Counter)
    kit.join("a")
    kit.join("b")
    token = kit.reserve("c")
    with pytest.raises(LimitExceeded):
        kit.join("intruder")  # the reserved seat is taken
    c = kit.join("c", reservation=token)
    assert c.player.name == "c"
    kit.clients[c.id].leave()
    late = kit.reserve("late")
    kit.advance(2.5)  # reservation_timeout is 2 s
    with pytest.raises(Forbidden):
        kit.join("late", reservation=late)


def test_rejoin_within_the_grace_period_keeps_the_seat():
    kit = RoomKit(Counter)
    a = kit.join("a")
    kit.join("b")
    a.input(3)
    kit.advance(0.1)
    a.drop()
    kit.advance(3.0)
    assert a.id in kit.room.players and kit.room.left == []
    a.rejoin()
    kit.advance(0.1)
    assert a.player.connected and a.state["total"] == 3
    # Dropped again, and back too late: the seat is gone.
    a.drop()
    kit.advance(6.0)
    assert a.id not in kit.room.players and kit.room.left == [(a.id, False)]
    with pytest.raises(Forbidden):
        a.rejoin()


def test_room_disposes_when_the_last_player_leaves():
    kit = RoomKit(Counter)
    a = kit.join("a")
    a.leave()
    assert kit.runner.disposed
