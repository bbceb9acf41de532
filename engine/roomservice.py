"""A worker's rooms: the rooms it owns, and its clients' seats in rooms anywhere.

Owner side: each hosted room has a RoomRunner and one timer; at each wake-up the runner
steps the simulation and, on a send tick, produces one SendTick. Sections for players on
this worker are written right away; for every other worker holding players of the room,
the owner publishes ONE RoomBatch on that worker's inbox (`$inbox.<worker>`), so each
worker gets one ordered message per send tick and turns it into one frame per client.

Player side: JoinRoom, Input and LeaveRoom from a client go to the room's owner (a direct
call when it is this worker; the bus otherwise, with inputs batched per loop iteration);
batches from owners become frames. A socket holding a seat flushes on its rooms' send
ticks: replies and channel messages wait for that frame unless they are urgent.

The directory (engine/directory.py) says which process owns a room and where a new one
goes: a LocalDirectory for one process, the supervisor's in a cluster.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ._generated import cluster as C
from ._generated import protocol as P
from .errors import BadRequest, ErrorCode, Forbidden, LimitExceeded, NotFound, TickwireError, error_from_code, wire_error
from .packed import Codebook, DecodeContext, DecodeError, Payload
from .rooms import Player, PlayerSection, Room, RoomRunner, SendTick
from .socket import room_frames

if TYPE_CHECKING:
    from .socket import Socket
    from .worker import Worker

__all__ = ["RoomService", "Seat"]

log = logging.getLogger("tickwire.rooms")
INBOX = "$inbox."
OWNER_SUBJECT = "$rooms."
CLUSTER = Codebook(C)


@dataclass
class Seat:
    """A socket's place in a room, as its worker sees it."""

    room_id: str
    room_type: str
    owner: str
    player: int
    handle: int


def _seat_token(room_id: str, token: str) -> str:
    return f"{room_id}/{token}"


class RoomService:
    def __init__(self, worker: "Worker", directory: Any):
        self.worker = worker
        self.directory = directory
        self.types: dict[str, type[Room]] = worker.app.room_types
        self.hosted: dict[str, RoomRunner] = {}
        self.timers: dict[str, asyncio.TimerHandle] = {}
        self.sockets: dict[str, "Socket"] = {}  # socket id -> socket, for batches
        self.inputs: dict[str, dict[str, list[Any]]] = {}  # owner -> room -> InputRecords
        self.inputs_scheduled = False
        # Inbox messages carry the application's payloads (inputs): decode them against
        # the worker's codebook, with the generous limits of trusted internal traffic.
        self.ctx = DecodeContext(worker.codebook, max_string=1 << 20, max_vector=1 << 24)

    @property
    def name(self) -> str:
        """This process's identity for room traffic (unique per generation in a cluster)."""
        return self.worker.node

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self.worker.loop

    def start(self) -> None:
        bus = self.worker.bus
        bus.subscribe(INBOX + self.name)
        bus.handle(OWNER_SUBJECT + self.name, self._owner_request)

    # ==========================================================================================
    # owner side

    def host(self, room_type: str, room_id: str, options: Any, restore: Any = None) -> dict[str, Any]:
        """Create (or restore) a room here; its directory info."""
        cls = self.types.get(room_type)
        if cls is None:
            raise NotFound(f"no room type {room_type!r}")
        if room_id in self.hosted:
            return self.hosted[room_id].info()
        room = cls()
        runner = RoomRunner(room, room_id, room_type, self.worker.codebook, self.loop.time(), time.process_time)
        runner.on_removed = lambda player, reason: self._removed(runner, player, reason)
        if restore is not None:
            runner_state, room_state = restore
            self._restore_seats(runner, runner_state)
            room.restore(room_state)
        else:
            room.on_create(options)
        self.hosted[room_id] = runner
        self._schedule(room_id)
        log.info("room %s (%s) hosted on %s", room_id, room_type, self.name)
        return runner.info()

    def _schedule(self, room_id: str) -> None:
        runner = self.hosted.get(room_id)
        if runner is None:
            return
        self.timers[room_id] = self.loop.call_at(runner.next_wakeup(), self._wake, room_id)

    def _wake(self, room_id: str) -> None:
        runner = self.hosted.get(room_id)
        if runner is None:
            return
        started = time.perf_counter()
        cpu = time.process_time()  # a syscall (CPU clocks have no vDSO): twice a wake-up is nothing
        try:
            out = runner.advance(self.loop.time())
            if out is not None:
                self._send(runner, out)
        except Exception:
            log.exception("room %s failed in its tick; closing it", room_id)
            runner.disposed = True
        runner.stats.observe((time.perf_counter() - started) * 1000, (time.process_time() - cpu) * 1000)
        if runner.disposed:
            self.dispose(room_id, ErrorCode.UNAVAILABLE if runner.room.players else 0, "the room closed")
        else:
            self._schedule(room_id)

    def _send(self, runner: RoomRunner, out: SendTick) -> None:
        for worker, sections in out.by_worker().items():
            if worker == self.name:
                self.deliver(out.shared, out.views, sections)
                continue
            # Each worker gets the views its players have and their segments, once,
            # re-indexed.
            vused = sorted({s.view for s in sections})
            used = sorted({i for v in vused for i in out.views[v]})
            where = {old: new for new, old in enumerate(used)}
            vwhere = {old: new for new, old in enumerate(vused)}
            batch = C.RoomBatch(
                out.room_id,
                out.tick,
                [C.Segment(out.shared[i]) for i in used],
                [C.View([where[i] for i in out.views[v]]) for v in vused],
                [C.Section(s.socket_id, s.header, vwhere[s.view], [C.Segment(p) for p in s.private]) for s in sections],
            )
            self.worker.bus.publish(INBOX + worker, CLUSTER.payload(batch))

    def dispose(self, room_id: str, code: int = 0, reason: str = "the room closed") -> None:
        runner = self.hosted.pop(room_id, None)
        timer = self.timers.pop(room_id, None)
        if timer is not None:
            timer.cancel()
        if runner is None:
            return
        self.directory.update(self.name, {"room_id": room_id, "gone": True})
        players = list(runner.room.players.values())
        runner.room.players.clear()
        by_worker: dict[str, list[int]] = {}
        for p in players:
            by_worker.setdefault(p.worker, []).append(p.id)
        for worker, ids in by_worker.items():
            self._gone(worker, room_id, ids, code, reason)
        try:
            runner.room.on_dispose()
        except Exception:
            log.exception("room %s failed in on_dispose", room_id)
        log.info("room %s disposed", room_id)

    def _changed(self, runner: RoomRunner) -> None:
        """Seats changed: the directory learns at once (it also gets every room each second)."""
        self.directory.update(self.name, {**runner.info(), "gone": runner.disposed})

    def _removed(self, runner: RoomRunner, player: Player, reason: str) -> None:
        self._changed(runner)
        if player.worker:
            self._gone(player.worker, runner.room.id, [player.id], 0 if reason == "left" else ErrorCode.FORBIDDEN, reason)

    def _gone(self, worker: str, room_id: str, players: list[int], code: int, reason: str) -> None:
        if worker == self.name:
            self.seats_gone(room_id, players, code, reason)
        elif worker:
            self.worker.bus.publish(INBOX + worker, CLUSTER.payload(C.RoomGone(room_id, players, code, reason)))

    def owner_join(self, room_id: str, name: str, options: Any, seat: str, worker: str, socket_id: str, handle: int) -> dict[str, Any]:
        runner = self.hosted.get(room_id)
        if runner is None:
            raise NotFound(f"no room {room_id!r} here")
        now = self.loop.time()
        player = None
        if seat:
            token = seat.split("/", 1)[-1]
            if token in runner.reservations:
                player = runner.join(name, options, now, reservation=token)
            else:
                player = runner.rejoin(token, now)
        else:
            player = runner.join(name, options, now)
        player.worker, player.socket_id, player.handle = worker, socket_id, handle
        self._changed(runner)
        room = runner.room
        return {
            "room_id": room.id,
            "room_type": room.type_name,
            "player": player.id,
            "seat": _seat_token(room.id, player.rejoin_token),
            "tick_rate": int(room.tick_rate),
            "send_rate": int(room.send_rate),
        }

    def owner_leave(self, room_id: str, player_id: int, consented: bool) -> None:
        runner = self.hosted.get(room_id)
        if runner is not None and player_id in runner.room.players:
            player = runner.room.players[player_id]
            player.worker = ""  # its worker already knows
            runner.remove(player, consented=consented, reason="left")

    def owner_drop(self, room_id: str, player_id: int) -> None:
        runner = self.hosted.get(room_id)
        if runner is not None and player_id in runner.room.players:
            runner.drop(runner.room.players[player_id], self.loop.time())

    def owner_input(self, room_id: str, player_id: int, seq: int, payload: Payload) -> None:
        runner = self.hosted.get(room_id)
        if runner is None:
            return
        player = runner.room.players.get(player_id)
        if player is None:
            return
        data = None
        if payload.type_id:
            try:
                data = self.worker.payload_value(payload)
            except DecodeError:
                runner.stats.inputs_dropped += 1
                return
        runner.input(player, seq, data, self.loop.time())

    def owner_backlog(self, room_id: str, player_id: int, paused: bool) -> None:
        runner = self.hosted.get(room_id)
        if runner is not None and player_id in runner.room.players:
            runner.backlog(runner.room.players[player_id], paused)

    def backlog(self, sock: "Socket", paused: bool) -> None:
        """A socket's send buffer crossed its high-water mark: its rooms' owners pause (or
        resume, with fresh snapshots) its entity updates."""
        for seat in (sock.rooms or {}).values():
            if seat.owner == self.name:
                self.owner_backlog(seat.room_id, seat.player, paused)
            else:
                self.worker.bus.publish(INBOX + seat.owner, CLUSTER.payload(C.RoomBacklog(seat.room_id, seat.player, paused)))

    def reserve(self, room_id: str, name: str) -> str:
        """Server code: hold a seat in a room hosted here; the token the client joins with."""
        runner = self.hosted.get(room_id)
        if runner is None:
            raise NotFound(f"no room {room_id!r} here")
        return _seat_token(room_id, runner.reserve(name, self.loop.time()))

    def _restore_seats(self, runner: RoomRunner, state: dict[str, Any]) -> None:
        now = self.loop.time()
        room = runner.room
        for p in state.get("players", []):
            player = Player(p["id"], p["name"], p.get("options"), now, room.max_inputs_per_second, room.input_burst)
            player.rejoin_token = p["token"]
            player.applied_seq = p.get("applied_seq", 0)
            player.data = p.get("data", {})
            player.connected = False  # until its worker points the seat here again
            player.dropped_at = now
            player.worker, player.socket_id, player.handle = p.get("worker", ""), p.get("socket_id", ""), p.get("handle", 0)
            if player.worker and player.worker != state.get("from"):
                player.connected = True
                player.dropped_at = None
            room.players[player.id] = player
        runner.next_player_id = state.get("next_player_id", 1)
        runner.created = now - float(state.get("time", 0.0))
        room.tick = int(state.get("tick", 0))

    def snapshot(self, room_id: str) -> tuple[dict[str, Any], Any] | None:
        """What moves a room to another process (None when the room cannot move)."""
        runner = self.hosted.get(room_id)
        if runner is None:
            return None
        if runner.interest is not None:
            # Not yet: a world's entity table and its players' views do not move, so a
            # room with a world finishes where it is (within its drain_timeout).
            log.info("room %s has a world, which does not move yet; it finishes here", room_id)
            return None
        data = runner.room.serialise()
        if data is None:
            return None
        players = [
            {
                "id": p.id, "name": p.name, "options": p.options, "token": p.rejoin_token,
                "applied_seq": p.applied_seq, "data": p.data, "worker": p.worker,
                "socket_id": p.socket_id, "handle": p.handle,
            }
            for p in runner.room.players.values()
        ]
        state = {
            "players": players,
            "next_player_id": runner.next_player_id,
            "from": self.name,
            "time": self.loop.time() - runner.created,  # room time and tick go on where they were
            "tick": runner.room.tick,
        }
        return state, data

    async def move_all(self) -> int:
        """A rolling restart: move every room that can serialise itself to another process."""
        moved = 0
        for room_id in list(self.hosted):
            runner = self.hosted[room_id]
            snap = self.snapshot(room_id)
            if snap is None or not hasattr(self.directory, "move"):
                continue
            try:
                await self.directory.move(room_id, runner.room.type_name, list(snap))
            except Exception:
                log.exception("room %s could not move; it finishes here", room_id)
                continue
            # It lives elsewhere now: stop it here without telling its players anything.
            self.hosted.pop(room_id, None)
            timer = self.timers.pop(room_id, None)
            if timer is not None:
                timer.cancel()
            moved += 1
        return moved

    def rooms_info(self) -> list[dict[str, Any]]:
        return [r.info() for r in self.hosted.values() if not r.disposed]

    def room_stats(self) -> dict[str, Any]:
        return {
            room_id: {
                "type": r.room.type_name,
                "players": len(r.room.players),
                "ticks": r.stats.ticks,
                "late_ticks": r.stats.late_ticks,
                "skipped_ticks": r.stats.skipped_ticks,
                "bytes_sent": r.stats.bytes_sent,
                "inputs": r.stats.inputs,
                "inputs_dropped": r.stats.inputs_dropped,
                "sends": r.stats.sends,
                "tick_ms": {str(k): v for k, v in r.stats.buckets.items()},
                "tick_ms_sum": round(r.stats.total_ms, 3),
                "tick_cpu_ms_sum": round(r.stats.cpu_ms, 3),
                "input_cpu_ms_sum": round(r.stats.input_cpu_ms, 3),
            }
            for room_id, r in self.hosted.items()
        }

    async def _owner_request(self, data: bytes) -> bytes:
        """Requests from other workers about rooms hosted here (JSON: they are rare)."""
        req = json.loads(data)
        try:
            op = req["op"]
            if op == "join":
                body: Any = self.owner_join(req["room_id"], req["name"], req.get("options"), req.get("seat", ""), req["worker"], req["socket_id"], req["handle"])
            elif op == "leave":
                body = self.owner_leave(req["room_id"], req["player"], True)
            elif op == "host":
                body = self.host(req["type"], req["room_id"], req.get("options"), req.get("restore"))
            elif op == "reserve":
                body = self.reserve(req["room_id"], req.get("name", ""))
            else:
                raise BadRequest(f"unknown room operation {op!r}")
            return json.dumps({"ok": body}).encode()
        except Exception as exc:
            code, message = wire_error(exc)
            if not isinstance(exc, TickwireError):
                log.exception("room request %s failed", req.get("op"))
            return json.dumps({"error": [code, message]}).encode()

    async def call_owner(self, owner: str, op: str, **fields: Any) -> Any:
        """Run a room operation on its owner: a direct call here, a bus request elsewhere."""
        if owner == self.name:
            if op == "join":
                return self.owner_join(fields["room_id"], fields["name"], fields.get("options"), fields.get("seat", ""), fields["worker"], fields["socket_id"], fields["handle"])
            if op == "leave":
                return self.owner_leave(fields["room_id"], fields["player"], True)
            if op == "host":
                return self.host(fields["type"], fields["room_id"], fields.get("options"), fields.get("restore"))
            if op == "reserve":
                return self.reserve(fields["room_id"], fields.get("name", ""))
            raise BadRequest(f"unknown room operation {op!r}")
        data = json.dumps({"op": op, **fields}).encode()
        reply = json.loads(await self.worker.bus.request(OWNER_SUBJECT + owner, data, timeout=5.0))
        if "error" in reply:
            raise error_from_code(*reply["error"])
        return reply["ok"]

    # ==========================================================================================
    # player side

    async def join(self, sock: "Socket", msg: Any) -> None:
        try:
            options = self.worker.payload_value(msg.options)
        except DecodeError as exc:
            raise BadRequest(str(exc)) from None
        if msg.seat:
            info = await self.directory.get(msg.seat.split("/", 1)[0])
        elif msg.room_id:
            info = await self.directory.get(msg.room_id)
        elif msg.room_type:
            if msg.room_type not in self.types:
                raise NotFound(f"no room type {msg.room_type!r}")
            filters = options.get("filters") if isinstance(options, dict) else None
            info = await self.directory.find_or_create(msg.room_type, filters, options, msg.create)
        else:
            raise BadRequest("JoinRoom needs a room_type, a room_id or a seat")
        try:
            await self._seat(sock, msg, info, options)
        except (LimitExceeded, Forbidden):
            if msg.seat or msg.room_id or msg.create:
                raise
            # The directory's view was a moment old (another player took the last seat):
            # a fresh room, created for this player, cannot be full.
            info = await self.directory.find_or_create(msg.room_type, None, options, True)
            await self._seat(sock, msg, info, options)

    async def _seat(self, sock: "Socket", msg: Any, info: dict[str, Any], options: Any) -> None:
        rooms = sock.rooms if sock.rooms is not None else {}
        if any(s.room_id == info["room_id"] for s in rooms.values()):
            raise BadRequest("already in that room")
        handle = max(rooms, default=0) + 1
        name = str(options.get("name", "")) if isinstance(options, dict) else ""
        joined = await self.call_owner(
            info["owner"], "join",
            room_id=info["room_id"], name=name, options=options, seat=msg.seat,
            worker=self.name, socket_id=sock.id, handle=handle,
        )
        if sock.closed:
            # Gone while joining: give the seat back at once.
            await self._leave_owner(info["owner"], joined["room_id"], joined["player"])
            return
        seat = Seat(joined["room_id"], joined["room_type"], info["owner"], joined["player"], handle)
        if sock.rooms is None:
            sock.rooms = {}
        sock.rooms[handle] = seat
        self.sockets[sock.id] = sock
        sock.send(
            P.RoomJoined(msg.cid, handle, seat.room_id, seat.room_type, seat.player, joined["seat"], joined["tick_rate"], joined["send_rate"]),
            urgent=True,
        )

    async def leave(self, sock: "Socket", msg: Any) -> None:
        seat = (sock.rooms or {}).pop(msg.room, None)
        if seat is None:
            raise BadRequest(f"not in a room with handle {msg.room}")
        self._forget_socket_if_roomless(sock)
        await self._leave_owner(seat.owner, seat.room_id, seat.player)
        sock.send(P.Result(msg.cid, None), urgent=True)

    async def _leave_owner(self, owner: str, room_id: str, player: int) -> None:
        try:
            await self.call_owner(owner, "leave", room_id=room_id, player=player)
        except TickwireError:
            pass

    def input(self, sock: "Socket", msg: Any) -> None:
        seat = (sock.rooms or {}).get(msg.room)
        if seat is None:
            sock.send(P.Error(0, ErrorCode.BAD_REQUEST, f"input for room handle {msg.room}, which this connection is not in"))
            return
        expected = self.types[seat.room_type].input_type
        if msg.data.type_id and expected is not None and msg.data.type_id != expected.TYPE_ID:
            sock.send(P.Error(0, ErrorCode.BAD_REQUEST, f"room {seat.room_type!r} takes {expected.__name__} inputs"))
            return
        if seat.owner == self.name:
            self.owner_input(seat.room_id, seat.player, msg.seq, msg.data)
            return
        rooms = self.inputs.setdefault(seat.owner, {})
        rooms.setdefault(seat.room_id, []).append(C.InputRecord(seat.player, msg.seq, msg.data))
        if not self.inputs_scheduled:
            self.inputs_scheduled = True
            self.loop.call_soon(self._flush_inputs)

    def _flush_inputs(self) -> None:
        """Inputs of this loop iteration, one message per room to each owner."""
        self.inputs_scheduled = False
        pending, self.inputs = self.inputs, {}
        for owner, rooms in pending.items():
            for room_id, records in rooms.items():
                self.worker.bus.publish(INBOX + owner, CLUSTER.payload(C.RoomInputs(room_id, records)))

    def socket_closed(self, sock: "Socket") -> None:
        """Its connection dropped: each of its seats waits for the grace period."""
        self.sockets.pop(sock.id, None)
        for seat in (sock.rooms or {}).values():
            if seat.owner == self.name:
                self.owner_drop(seat.room_id, seat.player)
            else:
                self.worker.bus.publish(INBOX + seat.owner, CLUSTER.payload(C.RoomDrop(seat.room_id, seat.player)))
        sock.rooms = None

    def deliver(self, shared: list[bytes], views: list[list[int]], sections: Iterable[PlayerSection]) -> None:
        """One send tick of one room: ONE frame per client, with what it had queued. Each
        view's shared bytes are joined once, for all of its players."""
        room_frames(self.sockets, shared, views, sections, self.worker.stats)

    def seats_gone(self, room_id: str, players: list[int], code: int, reason: str) -> None:
        wanted = set(players)
        for sock in list(self.sockets.values()):
            for handle, seat in list((sock.rooms or {}).items()):
                if seat.room_id == room_id and seat.player in wanted:
                    del sock.rooms[handle]  # type: ignore[index]
                    sock.send(P.RoomLeft(handle, code, reason), urgent=True)
            self._forget_socket_if_roomless(sock)

    def owners_lost(self, owner: str, lost: list[dict[str, Any]], recreated: set[str]) -> None:
        """A process that owned rooms died: tell its players, never leave them waiting."""
        for sock in list(self.sockets.values()):
            for handle, seat in list((sock.rooms or {}).items()):
                if seat.owner == owner:
                    del sock.rooms[handle]  # type: ignore[index]
                    why = "the room's process died; it was recreated, join it again" if seat.room_id in recreated else "the room's process died; the room is closed"
                    sock.send(P.RoomLeft(handle, ErrorCode.UNAVAILABLE, why), urgent=True)
            self._forget_socket_if_roomless(sock)

    def room_moved(self, room_id: str, owner: str) -> None:
        for sock in self.sockets.values():
            for seat in (sock.rooms or {}).values():
                if seat.room_id == room_id:
                    seat.owner = owner

    def _forget_socket_if_roomless(self, sock: "Socket") -> None:
        if not sock.rooms:
            sock.rooms = None
            self.sockets.pop(sock.id, None)
            if sock.session.out is not None:
                self.worker.mark(sock)

    def inbox(self, payload: Payload) -> None:
        """A message on this worker's inbox, from another process."""
        try:
            msg = CLUSTER.payload_value(payload, self.ctx)
        except DecodeError:
            log.error("malformed message on %s's inbox", self.name)
            return
        match msg:
            case C.RoomBatch():
                shared = [s.data for s in msg.shared]
                views = [[int(i) for i in v.segments] for v in msg.views]
                if any(i >= len(shared) for v in views for i in v) or any(s.view >= len(views) for s in msg.sections):
                    log.error("room batch of %s with an index out of range", msg.room_id)
                    return
                self.deliver(
                    shared,
                    views,
                    [PlayerSection(0, self.name, s.socket_id, s.header, s.view, [p.data for p in s.private]) for s in msg.sections],
                )
            case C.RoomInputs():
                for rec in msg.inputs:
                    self.owner_input(msg.room_id, rec.player, rec.seq, rec.data)
            case C.RoomDrop():
                self.owner_drop(msg.room_id, msg.player)
            case C.RoomGone():
                self.seats_gone(msg.room_id, list(msg.players), msg.code, msg.reason)
            case C.RoomBacklog():
                self.owner_backlog(msg.room_id, msg.player, msg.paused)

    def stop(self) -> None:
        for room_id in list(self.hosted):
            self.dispose(room_id, ErrorCode.UNAVAILABLE, "server shutting down")

