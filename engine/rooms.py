"""Rooms: authoritative simulations with their own clock, seats and inputs.

A game writes a Room subclass; the engine runs it. Time enters as an argument everywhere
(`RoomRunner.advance(now)`), so tests and `engine.testing` step a room without sleeping;
only the host's timer reads the clock.

    class Arena(Room):
        tick_rate = 30           # simulation steps per second
        send_rate = 20           # frames to players per second
        max_players = 8

        def on_join(self, player, options):  self.positions[player.id] = (0, 0)
        def on_input(self, player, data):    self.moves[player.id] = data
        def on_tick(self, now, dt):          ...   # advance the world by dt
        def on_leave(self, player, consented): ...

Simulation and sending run at separate rates. A tick that runs late is handled by the
room's `late_policy`: "skip" (drop the missed steps and count them; the default, so a
stall never turns into a burst) or "catch_up" (run up to `max_catch_up` missed steps at
once, then skip and count the rest). Either way the count is kept: never a silent drift.

Each send tick, every player gets exactly one frame section: a Tick header (tick number,
room time, the last input sequence applied for that player, and an echo of its latest
input so the client can measure round-trip time and clock offset), then what the room has
for it: room state when it changed (encoded once, shared by every player), broadcasts
(shared) and messages to that player alone. A send tick with nothing to say still sends
the header.
"""

from __future__ import annotations

import secrets
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, NamedTuple, Sequence

from . import speedups
from ._generated import protocol as P
from .errors import Forbidden, LimitExceeded
from .limits import TokenBucket
from .packed import SMALL_UVARINTS, Codebook, uvarint_bytes

__all__ = ["Room", "World", "Player", "RoomRunner", "SendTick", "PlayerSection", "TickStats", "TickHeaders"]

TICK_TYPE = uvarint_bytes(P.Tick.TYPE_ID)


@dataclass(frozen=True)
class World:
    """A room's entities and who sees them (engine/entities.py, engine/interest.py).

    `entity` is a schema struct (its quantised `x` and `y` place it on the grid); the room
    gets `self.entities`, an EntityTable of `capacity` rows, and each player sees the
    cells within `view_radius` of its view, which follows its own entity (`room.follow`).
    """

    entity: Any
    capacity: int
    cell_size: float
    view_radius: int = 1
    hysteresis: float = 0.25
    spawn_budget: int = 256
    position: tuple[str, str] = ("x", "y")


class Player:
    """A seat in a room: it outlives a dropped connection for `reconnect_grace` seconds."""

    __slots__ = (
        "id",
        "name",
        "options",
        "data",
        "worker",
        "socket_id",
        "handle",
        "connected",
        "dropped_at",
        "rejoin_token",
        "inputs",
        "bucket",
        "applied_seq",
        "echo_seq",
        "echo_at",
        "outbox",
        "inputs_dropped",
        "needs_state",
        "view",
    )

    def __init__(self, player_id: int, name: str, options: Any, now: float, rate: float, burst: float):
        self.id = player_id
        self.name = name
        self.options = options
        self.data: dict[str, Any] = {}  # the game's own per-player state
        self.worker = ""  # the worker process holding its connection
        self.socket_id = ""
        self.handle = 0  # the room's id on the player's connection (in its Tick headers)
        self.connected = True
        self.dropped_at: float | None = None
        self.rejoin_token = secrets.token_urlsafe(16)
        self.inputs: deque[tuple[int, Any]] = deque()
        self.bucket = TokenBucket(rate, burst, now)
        self.applied_seq = 0
        self.echo_seq = 0
        self.echo_at = 0.0
        self.outbox: list[bytes] = []  # encoded messages for this player only
        self.inputs_dropped = 0
        self.needs_state = True  # a newcomer gets the room state in its first section
        self.view = -1  # its client slot in the room's interest grid, if the room has a world

    def __repr__(self) -> str:
        return f"Player({self.id}, {self.name!r}{'' if self.connected else ', dropped'})"


class Room:
    """Base class of a game's rooms. Override the on_* hooks; use the methods below."""

    # -- settings (class attributes; a subclass overrides what it needs) ---------------------
    tick_rate: float = 20.0
    send_rate: float = 20.0
    max_players: int = 16
    reconnect_grace: float = 10.0  # a dropped player keeps its seat this long
    reservation_timeout: float = 15.0  # a reserved seat is held this long
    max_inputs_per_second: float = 60.0
    input_burst: int = 30
    max_queued_inputs: int = 64
    late_policy: str = "skip"  # or "catch_up"
    max_catch_up: int = 5
    input_type: type | None = None  # a schema message; None accepts any payload
    state_type: type | None = None  # a schema message holding the room's state, or None
    on_owner_lost: str = "close"  # or "recreate": what happens when its process dies
    world: World | None = None  # entities synced by interest management
    auto_dispose: bool = True  # dispose when the last player leaves
    drain_timeout: float = 30.0  # how long a rolling restart lets an unmovable room run

    def __init__(self) -> None:
        self.id = ""
        self.type_name = ""
        self.players: dict[int, Player] = {}
        self.metadata: dict[str, Any] = {}
        self.locked = False
        self.private = False
        self.state: Any = None
        self.entities: Any = None  # an EntityTable, when the room has a world
        self.tick = 0
        self.time = 0.0  # room time in seconds (since creation)
        self._runner: RoomRunner | None = None

    # -- hooks ------------------------------------------------------------------------------
    def on_create(self, options: Any) -> None: ...

    def on_join(self, player: Player, options: Any) -> None:
        """Raise Blocked("why") to refuse the player."""

    def on_leave(self, player: Player, consented: bool) -> None: ...

    def on_drop(self, player: Player) -> None:
        """Its connection dropped; the seat waits `reconnect_grace` for it (on_leave if not)."""

    def on_rejoin(self, player: Player) -> None:
        """It took its seat back after a dropped connection."""

    def on_input(self, player: Player, data: Any) -> None: ...

    def on_tick(self, now: float, dt: float) -> None: ...

    def on_dispose(self) -> None: ...

    def serialise(self) -> Any:
        """JSON-able state to move this room to another process; None if it cannot move.
        (A room with a `world` does not move yet: its entities and views stay behind.)"""
        return None

    def restore(self, data: Any) -> None:
        """Rebuild from what serialise() returned (instead of on_create)."""
        raise NotImplementedError

    # -- what hooks call ---------------------------------------------------------------------
    def send(self, player: Player, data: Any) -> None:
        """A message to one player, in its next frame."""
        self._r().private(player, data)

    def broadcast(self, data: Any, exclude: Player | None = None) -> None:
        """A message to every player, encoded once."""
        self._r().broadcast(data, exclude)

    def send_near(self, x: float, y: float, data: Any) -> None:
        """A message to the players who can see the point (x, y) (needs interest management)."""
        self._r().near(x, y, data)

    def follow(self, player: Player, entity: int | None) -> None:
        """The player's view follows this entity (its avatar) as it moves."""
        self._r().interest_of().follow(player.view, entity)

    def move_view(self, player: Player, x: float, y: float) -> None:
        """Put the player's view at (x, y) (a spectator, or a player without an entity)."""
        self._r().interest_of().move_view(player.view, x, y)

    def players_near(self, x: float, y: float) -> list[Player]:
        """The players who can see the point (x, y)."""
        return self._r().players_seeing(x, y)

    def lock(self) -> None:
        self.locked = True

    def unlock(self) -> None:
        self.locked = False

    def kick(self, player: Player, reason: str = "") -> None:
        self._r().remove(player, consented=False, reason=reason or "kicked")

    def dispose(self) -> None:
        self._r().disposed = True

    def _r(self) -> "RoomRunner":
        if self._runner is None:
            raise RuntimeError("this room is not running")
        return self._runner


@dataclass
class TickStats:
    """What a room's health is measured by (exported per room)."""

    ticks: int = 0
    late_ticks: int = 0  # steps run late (caught up)
    skipped_ticks: int = 0  # steps dropped by the late policy
    sends: int = 0
    skipped_sends: int = 0
    bytes_sent: int = 0
    inputs: int = 0
    inputs_dropped: int = 0
    # wake-up duration histogram (simulation steps plus the send tick): upper bounds in ms
    buckets: dict[float, int] = field(default_factory=lambda: {b: 0 for b in (1, 2, 5, 10, 20, 50, 100, float("inf"))})
    total_ms: float = 0.0
    # CPU time of the wake-ups (the process's, while the room ran: simulation, interest,
    # encoding and the writes of its frames), beside their wall time above
    cpu_ms: float = 0.0
    # The part of cpu_ms spent applying queued inputs (on_input), when the runner has a
    # `cpu_clock`: work caused by what clients sent, where the rest is what the room sends.
    input_cpu_ms: float = 0.0

    def observe(self, ms: float, cpu_ms: float = 0.0) -> None:
        self.total_ms += ms
        self.cpu_ms += cpu_ms
        for bound in self.buckets:
            if ms <= bound:
                self.buckets[bound] += 1
                return


class PlayerSection(NamedTuple):
    """One player's part of a send tick: its Tick header, the shared messages of its view
    (`SendTick.views[view]`), then its own messages."""

    player_id: int
    worker: str
    socket_id: str
    header: bytes
    view: int  # index into SendTick.views
    private: Sequence[bytes]


@dataclass
class SendTick:
    """One send tick of a room. `shared` holds every message that more than one player
    gets, each encoded once; `views` the distinct lists of them that players get, as
    indices into `shared` (`views[0]`: what every player gets). Players with the same
    view (most of them share one with others) point at the same list, so a worker joins
    each view's bytes once, however many of its players see it."""

    room_id: str
    tick: int
    shared: list[bytes]
    views: list[list[int]]
    players: list[PlayerSection]

    def parts(self, section: PlayerSection) -> list[bytes]:
        """What one player's frame section holds, in order."""
        return [section.header, *(self.shared[i] for i in self.views[section.view]), *section.private]

    def by_worker(self) -> dict[str, list[PlayerSection]]:
        players = self.players
        if players and all(s.worker == players[0].worker for s in players):
            return {players[0].worker: players}
        out: dict[str, list[PlayerSection]] = {}
        for s in players:
            out.setdefault(s.worker, []).append(s)
        return out


NOTHING: tuple[bytes, ...] = ()  # a section without private parts (shared: never appended to)
U32 = 0xFFFFFFFF


class TickHeaders:
    """The Tick headers of one send tick: `header()` gives one player's.

    A header is six varints after the type id (schemas/protocol.fbs: room, tick, time_ms,
    applied_seq, echo_seq, echo_age_ms). The first three are the same for every player
    with the same room handle (almost always all of them), so they are encoded once
    (`prefix()`) and each header is that prefix and three varints, looked up in
    SMALL_UVARINTS (engine/packed.py) when they are small: ~4 times faster than encoding a Tick record per
    player. RoomRunner._send inlines `header()`'s usual path. A value outside uint32
    takes the codebook's path, which refuses it as it always did. tests/test_rooms.py
    checks the bytes against the codebook's.
    """

    __slots__ = ("codebook", "tick", "time_ms", "prefixes", "fast")

    def __init__(self, codebook: Codebook, tick: int, time_ms: int):
        self.codebook = codebook
        self.tick = tick
        self.time_ms = time_ms
        self.prefixes: dict[int, bytes] = {}
        self.fast = 0 <= tick <= U32 and 0 <= time_ms <= U32

    def prefix(self, handle: int) -> bytes | None:
        """The header's first varints for room handle `handle`; None when a value is
        outside uint32 (then only header()'s codebook path can encode it)."""
        prefix = self.prefixes.get(handle)
        if prefix is None and self.fast and 0 <= handle <= U32:
            prefix = self.prefixes[handle] = (
                TICK_TYPE + uvarint_bytes(handle) + uvarint_bytes(self.tick) + uvarint_bytes(self.time_ms)
            )
        return prefix

    def header(self, handle: int, applied_seq: int, echo_seq: int, echo_age_ms: int) -> bytes:
        prefix = self.prefix(handle)
        if prefix is not None and 0 <= applied_seq <= U32 and 0 <= echo_seq <= U32 and 0 <= echo_age_ms <= U32:
            return prefix + uvarint_bytes(applied_seq) + uvarint_bytes(echo_seq) + uvarint_bytes(echo_age_ms)
        return self.codebook.encode(P.Tick(handle, self.tick, self.time_ms, applied_seq, echo_seq, echo_age_ms))


class RoomRunner:
    """Steps one room: seats, inputs, fixed-step simulation, send ticks. Pure: no clock."""

    def __init__(
        self,
        room: Room,
        room_id: str,
        type_name: str,
        codebook: Codebook,
        now: float,
        cpu_clock: Callable[[], float] | None = None,
    ):
        self.room = room
        self.cpu_clock = cpu_clock  # seconds of CPU (time.process_time): splits stats.input_cpu_ms out
        self.codebook = codebook
        room.id = room_id
        room.type_name = type_name
        room._runner = self
        self.created = now
        self.sim_dt = 1.0 / room.tick_rate
        self.send_dt = 1.0 / room.send_rate
        self.next_sim = now
        self.next_send = now
        self.stats = TickStats()
        self.shared: list[bytes] = []  # broadcasts queued for the next send tick
        self.reservations: dict[str, tuple[float, Any]] = {}  # token -> (expiry, name)
        self.last_state: bytes | None = None
        self.next_player_id = 1
        self.free_ids: list[int] = []
        self.disposed = False
        self.on_removed: Callable[[Player, str], None] = lambda player, reason: None
        self.interest: Any = None
        self.sync_info: bytes | None = None
        self.views: dict[int, Player] = {}  # interest client slot -> player
        if room.world is not None:
            self._make_world(room.world)

    def _make_world(self, world: World) -> None:
        from .entities import EntityTable
        from .interest import Interest

        self.room.entities = EntityTable(world.entity, world.capacity)
        self.interest = Interest(
            self.room.entities,
            cell_size=world.cell_size,
            view_radius=world.view_radius,
            hysteresis=world.hysteresis,
            spawn_budget=world.spawn_budget,
            max_clients=max(1, self.room.max_players),
            position=world.position,
            type_id=P.EntitySync.TYPE_ID,
        )

    def interest_of(self) -> Any:
        if self.interest is None:
            raise RuntimeError("this room has no world: give its class `world = World(...)`")
        return self.interest

    def players_seeing(self, x: float, y: float) -> list[Player]:
        slots = self.interest_of().clients_seeing(x, y)
        return [p for c in slots.tolist() if (p := self.views.get(int(c))) is not None and p.connected]

    def near(self, x: float, y: float, data: Any) -> None:
        encoded = self.encode(data)
        for player in self.players_seeing(x, y):
            player.outbox.append(encoded)

    def _seat_view(self, player: Player) -> None:
        if self.interest is not None and player.view < 0:
            player.view = self.interest.add_client()
            self.views[player.view] = player

    def _unseat_view(self, player: Player) -> None:
        if self.interest is not None and player.view >= 0:
            self.views.pop(player.view, None)
            self.interest.remove_client(player.view)
            player.view = -1

    def backlog(self, player: Player, paused: bool) -> None:
        """Its connection's send buffer is over (or back under) its high-water mark."""
        if self.interest is None or player.view < 0:
            return
        if paused:
            self.interest.pause(player.view)
        elif self.interest.paused(player.view):
            self.interest.resume(player.view)  # fresh snapshots of its whole view

    # -- seats -------------------------------------------------------------------------------
    @property
    def seats_taken(self) -> int:
        return len(self.room.players) + len(self.reservations)

    def reserve(self, name: str, now: float) -> str:
        """Hold a seat for `reservation_timeout`; the token is presented at join."""
        self._expire(now)
        self._check_open()
        token = secrets.token_urlsafe(12)
        self.reservations[token] = (now + self.room.reservation_timeout, name)
        return token

    def _check_open(self) -> None:
        room = self.room
        if self.disposed:
            raise Forbidden("the room is closed")
        if room.locked:
            raise Forbidden("the room is locked")
        if self.seats_taken >= room.max_players:
            raise LimitExceeded("the room is full (max_players)")

    def _expire(self, now: float) -> None:
        for token, (expiry, _) in list(self.reservations.items()):
            if expiry <= now:
                del self.reservations[token]
        grace = self.room.reconnect_grace
        for player in list(self.room.players.values()):
            if not player.connected and player.dropped_at is not None and now - player.dropped_at > grace:
                self.remove(player, consented=False, reason="did not come back in time")

    def join(self, name: str, options: Any, now: float, reservation: str = "") -> Player:
        """Seat a player (with a reservation, or on a free seat); on_join may refuse it."""
        self._expire(now)
        room = self.room
        if reservation:
            if self.reservations.pop(reservation, None) is None:
                raise Forbidden("the seat reservation expired or does not exist")
            if self.disposed:
                raise Forbidden("the room is closed")
        else:
            self._check_open()
        pid = self.free_ids.pop() if self.free_ids else self._new_id()
        player = Player(pid, name, options, now, room.max_inputs_per_second, room.input_burst)
        self._seat_view(player)  # before on_join, which may point the view at an avatar
        try:
            room.on_join(player, options)
        except Exception:
            self.free_ids.append(pid)
            self._unseat_view(player)
            raise
        room.players[pid] = player
        return player

    def _new_id(self) -> int:
        pid = self.next_player_id
        self.next_player_id += 1
        return pid

    def rejoin(self, token: str, now: float) -> Player:
        """The same seat again, within the grace period after a dropped connection."""
        self._expire(now)
        for player in self.room.players.values():
            if player.rejoin_token == token:
                if player.connected:
                    raise Forbidden("that seat is connected")
                player.connected = True
                player.dropped_at = None
                player.outbox.clear()
                player.needs_state = True
                self.backlog(player, False)  # its new connection starts with fresh snapshots
                self.room.on_rejoin(player)
                return player
        raise Forbidden("the seat is gone (rejoin grace period over)")

    def drop(self, player: Player, now: float) -> None:
        """The player's connection dropped: keep the seat for the grace period."""
        if player.id in self.room.players and player.connected:
            player.connected = False
            player.dropped_at = now
            player.inputs.clear()
            self.backlog(player, True)
            self.room.on_drop(player)
            if self.room.reconnect_grace <= 0:
                self.remove(player, consented=False, reason="connection dropped")

    def remove(self, player: Player, consented: bool, reason: str = "left") -> None:
        room = self.room
        if room.players.pop(player.id, None) is None:
            return
        self.free_ids.append(player.id)
        self._unseat_view(player)
        try:
            room.on_leave(player, consented)
        finally:
            self.on_removed(player, reason)
            if room.auto_dispose and not room.players and not self.reservations:
                self.disposed = True

    # -- inputs ------------------------------------------------------------------------------
    def input(self, player: Player, seq: int, data: Any, now: float) -> bool:
        """Queue an input for the next tick; False when it was dropped (counted)."""
        stats = self.stats
        if seq > player.echo_seq:
            player.echo_seq = seq
            player.echo_at = now
        if not player.connected:
            return False
        if (
            seq <= player.applied_seq
            or len(player.inputs) >= self.room.max_queued_inputs
            or not player.bucket.take(now)
            or (player.inputs and seq <= player.inputs[-1][0])
        ):
            player.inputs_dropped += 1
            stats.inputs_dropped += 1
            return False
        player.inputs.append((seq, data))
        stats.inputs += 1
        return True

    # -- messages ------------------------------------------------------------------------------
    def encode(self, data: Any) -> bytes:
        return self.codebook.encode(P.RoomMessage(self.codebook.payload(data)))

    def private(self, player: Player, data: Any) -> None:
        if player.connected:
            player.outbox.append(self.encode(data))

    def broadcast(self, data: Any, exclude: Player | None) -> None:
        encoded = self.encode(data)
        if exclude is None:
            self.shared.append(encoded)
        else:
            for p in self.room.players.values():
                if p is not exclude and p.connected:
                    p.outbox.append(encoded)

    # -- time ----------------------------------------------------------------------------------
    def next_wakeup(self) -> float:
        return min(self.next_sim, self.next_send)

    def advance(self, now: float) -> SendTick | None:
        """Run the simulation steps due by `now`, and the send tick if one is due."""
        self._expire(now)
        room = self.room
        steps = 0
        limit = room.max_catch_up if room.late_policy == "catch_up" else 1
        while now >= self.next_sim and not self.disposed:
            if steps >= limit:
                missed = int((now - self.next_sim) // self.sim_dt) + 1
                self.stats.skipped_ticks += missed
                self.next_sim += missed * self.sim_dt
                break
            self._step()
            steps += 1
        if steps > 1:
            self.stats.late_ticks += steps - 1
        if now < self.next_send or self.disposed:
            return None
        out = self._send(now)
        self.next_send += self.send_dt
        if now >= self.next_send:  # sends are never caught up: the newest state is what matters
            missed = int((now - self.next_send) // self.send_dt) + 1
            self.stats.skipped_sends += missed
            self.next_send += missed * self.send_dt
        return out

    def _step(self) -> None:
        room = self.room
        clock = self.cpu_clock
        cpu = clock() if clock is not None else 0.0
        for player in list(room.players.values()):
            while player.inputs:
                seq, data = player.inputs.popleft()
                player.applied_seq = seq
                if data is not None:
                    room.on_input(player, data)
        if clock is not None:
            self.stats.input_cpu_ms += (clock() - cpu) * 1000
        room.time = self.next_sim - self.created
        room.on_tick(room.time, self.sim_dt)
        room.tick += 1
        self.stats.ticks += 1
        self.next_sim += self.sim_dt

    def _send(self, now: float) -> SendTick:
        room = self.room
        state = self._state_part()
        shared = state + self.shared
        self.shared = []
        everyone = list(range(len(shared)))  # every player gets these
        views = [everyone]
        sync = self.interest.tick() if self.interest is not None else None
        view_of: list[int] | None = None  # interest client slot -> its view in `views`
        if sync is not None:
            # Entity messages shared by players with the same view centre: view k + 1.
            views += [[*everyone, len(shared) + k] for k in range(len(sync.shared))]
            shared += sync.shared
            view_of = (sync.shared_of + 1).tolist()
        view_size = [sum(len(shared[i]) for i in v) for v in views]
        ticker = TickHeaders(self.codebook, room.tick, int((now - self.created) * 1000))
        own = sync.own if sync is not None else {}
        native = speedups.native
        if native is None:
            sections, total = self._sections(room.players.values(), ticker, now, view_of, own, state, view_size)
        else:
            sections, total = native.room_sections(
                room.players.values(), ticker.prefixes, SMALL_UVARINTS, now, view_of, own, view_size,
                PlayerSection, NOTHING,
                lambda player: self._sections((player,), ticker, now, view_of, own, state, view_size),
            )
        self.stats.sends += 1
        self.stats.bytes_sent += total
        return SendTick(room.id, room.tick, shared, views, sections)

    def _sections(
        self, players: Iterable[Player], ticker: TickHeaders, now: float, view_of: list[int] | None,
        own: dict[int, bytes], state: list[bytes], view_size: list[int],
    ) -> tuple[list[PlayerSection], int]:
        """The connected players' sections and their bytes, as sent. The C extension's
        room_sections runs this loop when it is there, and calls it for a player with
        anything but a steady player's section; this is its reference."""
        # Per player, this loop is the room's whole per-client cost besides the write, so it
        # builds little: the Tick header as a prefix shared by the players with the same
        # room handle and three looked-up varints (TickHeaders.header, inlined), and a
        # plain tuple (PlayerSection) that names the player's view by index.
        prefixes = ticker.prefixes
        small = SMALL_UVARINTS
        nsmall = len(small)
        section = tuple.__new__  # PlayerSection(...) without a Python-level __new__ call
        sections = []
        total = 0  # bytes of every player's section, as sent
        for player in players:
            if not player.connected:
                continue
            applied, echo = player.applied_seq, player.echo_seq
            age = int((now - player.echo_at) * 1000) if echo else 0
            prefix = prefixes.get(player.handle)
            if prefix is not None and applied < nsmall and echo < nsmall and 0 <= age < nsmall:
                header = prefix + small[applied] + small[echo] + small[age]
            else:
                header = ticker.header(player.handle, applied, echo, age)
            private: Sequence[bytes] = NOTHING
            if player.outbox:
                private, player.outbox = player.outbox, []
            view = 0
            if view_of is not None and player.view >= 0:
                view = view_of[player.view]
                if not view:
                    mine = own.get(player.view)
                    if mine is not None:
                        private = [mine, *private]
            if player.needs_state:
                private = [*self._first_parts(player, state), *private]
            sections.append(section(PlayerSection, (player.id, player.worker, player.socket_id, header, view, private)))
            total += len(header) + view_size[view]
            if private:
                total += sum(map(len, private))
        return sections, total

    def _first_parts(self, player: Player, state: list[bytes]) -> list[bytes]:
        """What a newcomer gets before anything else: the entity layout, the room state."""
        player.needs_state = False
        first = []
        if self.interest is not None:
            first.append(self._sync_info(player.handle))
        if not state and self.last_state is not None:
            first.append(self.last_state)  # unchanged state: newcomers need it too
        return first

    def _sync_info(self, handle: int) -> bytes:
        info = self.interest.layout.info()
        return self.codebook.encode(
            P.EntitySyncInfo(
                handle, info["struct_name"], info["id_bits"], info["x_field"], info["y_field"],
                info["cell_steps_x"], info["cell_steps_y"], info["columns"], info["rows"],
            )
        )

    def _state_part(self) -> list[bytes]:
        """The room state, when it changed since the last send tick (compared encoded)."""
        state = self.room.state
        if state is None:
            return []
        body = self.codebook.payload(state)
        encoded = self.codebook.encode(P.RoomState(body))
        if encoded == self.last_state:
            return []
        self.last_state = encoded
        return [encoded]

    def info(self) -> dict[str, Any]:
        room = self.room
        return {
            "room_id": room.id,
            "type": room.type_name,
            "players": len(room.players),
            "max_players": room.max_players,
            "locked": room.locked,
            "private": room.private,
            "metadata": room.metadata,
            "on_owner_lost": room.on_owner_lost,
        }


def matches(info: dict[str, Any], filters: dict[str, Any] | None) -> bool:
    """Whether a listed room's metadata has every key-value of `filters`."""
    if not filters:
        return True
    meta = info.get("metadata") or {}
    return all(meta.get(k) == v for k, v in filters.items())


def joinable(info: dict[str, Any], filters: dict[str, Any] | None = None) -> bool:
    return (
        not info.get("locked")
        and not info.get("private")
        and info.get("players", 0) < info.get("max_players", 0)
        and matches(info, filters)
    )

