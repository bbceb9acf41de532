"""Step your own room with fake clients and see what each received, without sockets.

    kit = RoomKit(Arena, options={"map": "small"})
    ann = kit.join("ann")
    ann.input({"move": [1, 0]})
    kit.advance(0.5)                 # half a second of room time, in fixed steps
    assert ann.state["players"] == 1
    assert ann.frames[-1][0].tick == kit.room.tick

The kit drives the same RoomRunner the server runs, with time as an argument; each fake
client decodes its sections of every send tick exactly as a real client decodes its
frames, so what a test sees is what a player would see.
"""

from __future__ import annotations

from typing import Any, Iterable

from ._generated import protocol as P
from .packed import Codebook
from .rooms import Player, Room, RoomRunner, SendTick

__all__ = ["RoomKit", "FakeClient"]


class FakeClient:
    """What one player received, decoded: frames (lists of messages), state, messages."""

    def __init__(self, kit: "RoomKit", player: Player):
        self.kit = kit
        self.player = player
        self.frames: list[list[Any]] = []
        self.state: Any = None
        self.messages: list[Any] = []
        self.seq = 0
        self.applied_seq = 0
        self.world: Any = None  # a ClientWorld, once the room told it how to read entities

    @property
    def id(self) -> int:
        return self.player.id

    def input(self, data: Any = None) -> bool:
        """Send one input; False when the room dropped it (rate, order, queue)."""
        self.seq += 1
        return self.kit.runner.input(self.player, self.seq, data, self.kit.now)

    def leave(self) -> None:
        self.kit.runner.remove(self.player, consented=True)

    def drop(self) -> None:
        """The connection drops; the seat waits for the grace period."""
        self.kit.runner.drop(self.player, self.kit.now)

    def rejoin(self) -> "FakeClient":
        self.player = self.kit.runner.rejoin(self.player.rejoin_token, self.kit.now)
        return self

    def backlog(self, paused: bool) -> None:
        """Its send buffer went over (True) or back under (False) the high-water mark."""
        self.kit.runner.backlog(self.player, paused)

    def _receive(self, parts: list[bytes]) -> None:
        cb = self.kit.codebook
        msgs = cb.decode_frame(b"".join(parts), cb.context(max_string=1 << 20))
        self.frames.append(msgs)
        for msg in msgs:
            match msg:
                case P.Tick():
                    self.applied_seq = msg.applied_seq
                case P.RoomState():
                    self.state = cb.payload_value(msg.data)
                case P.RoomMessage():
                    self.messages.append(cb.payload_value(msg.data))
                case P.EntitySyncInfo():
                    from .interest import ClientWorld, SyncLayout

                    info = {k: getattr(msg, k) for k in msg.__slots__}
                    self.world = ClientWorld(SyncLayout.from_info(self.kit.room.world.entity, info))
                case P.EntitySync():
                    from .interest import apply_entity_sync

                    apply_entity_sync(self.world, msg.data)

    def __repr__(self) -> str:
        return f"FakeClient({self.player!r}, frames={len(self.frames)})"


class RoomKit:
    def __init__(
        self,
        room_class: type[Room],
        options: Any = None,
        schemas: Iterable[Any] = (),
        start: float = 0.0,
        room_id: str = "test-room",
    ):
        self.codebook = Codebook(P, *schemas)
        self.now = start
        self.room = room_class()
        self.runner = RoomRunner(self.room, room_id, room_class.__name__, self.codebook, start)
        self.clients: dict[int, FakeClient] = {}
        self.sends: list[SendTick] = []
        self.room.on_create(options)

    def join(self, name: str = "", options: Any = None, reservation: str = "") -> FakeClient:
        player = self.runner.join(name, options, self.now, reservation=reservation)
        player.worker, player.socket_id, player.handle = "kit", f"fake-{player.id}", 1
        client = FakeClient(self, player)
        self.clients[player.id] = client
        return client

    def reserve(self, name: str = "") -> str:
        return self.runner.reserve(name, self.now)

    def advance(self, seconds: float) -> None:
        """Let `seconds` of room time pass, waking the room when it asks to be woken."""
        end = self.now + seconds
        while True:
            wake = self.runner.next_wakeup()
            if wake > end + 1e-12 or self.runner.disposed:
                break
            self.now = max(self.now, wake)
            self._run()
        self.now = end
        self._run()

    def jump(self, seconds: float) -> None:
        """Let time pass without waking the room (a stalled process): tests the late policy."""
        self.now += seconds
        self._run()

    def step(self, ticks: int = 1) -> None:
        self.advance(ticks / self.room.tick_rate)

    def _run(self) -> None:
        out = self.runner.advance(self.now)
        if out is None:
            return
        self.sends.append(out)
        for section in out.players:
            client = self.clients.get(section.player_id)
            if client is not None and client.player.connected:
                client._receive(out.parts(section))
