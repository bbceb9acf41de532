"""The room directory: which process owns which room, and where a new room goes.

One owner for the whole cluster's directory: the supervisor in a cluster, the worker
itself when it runs alone (or LocalDirectory, the in-memory twin that lets tests put
several workers in one process). Owners report their rooms with their regular stats, and
a report replaces what the directory knew of that owner, so after any restart the
directory is whole again within a second. New rooms go to the least-loaded worker.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any, Awaitable, Callable

from .errors import NotFound, Unavailable, error_from_code
from .rooms import joinable, matches

__all__ = ["RoomDirectory", "Matchmaker", "LocalDirectory", "SupervisorDirectory", "new_room_id", "unwrap"]


def new_room_id(room_type: str) -> str:
    return f"{room_type}-{secrets.token_hex(4)}"


class RoomDirectory:
    """Pure bookkeeping: rooms by id, and each worker's load."""

    def __init__(self) -> None:
        self.rooms: dict[str, dict[str, Any]] = {}  # room_id -> info (with "owner")
        self.loads: dict[str, float] = {}  # worker -> connections + weighted players
        self.up: set[str] = set()

    def report(self, owner: str, rooms: list[dict[str, Any]], connections: int = 0) -> None:
        """What an owner holds now; replaces everything known of it before."""
        for room_id in [r for r, info in self.rooms.items() if info["owner"] == owner]:
            del self.rooms[room_id]
        for info in rooms:
            self.rooms[info["room_id"]] = {**info, "owner": owner}
        self.up.add(owner)
        self.loads[owner] = connections + 10 * len(rooms) + sum(r.get("players", 0) for r in rooms)

    def update(self, owner: str, info: dict[str, Any]) -> None:
        """One room's seats or flags changed (or it is gone, when info has "gone")."""
        if info.get("gone"):
            self.rooms.pop(info["room_id"], None)
        else:
            self.rooms[info["room_id"]] = {**{k: v for k, v in info.items() if k != "gone"}, "owner": owner}

    def add(self, owner: str, info: dict[str, Any]) -> None:
        self.rooms[info["room_id"]] = {**info, "owner": owner}
        self.loads[owner] = self.loads.get(owner, 0) + 10

    def owner_lost(self, owner: str) -> list[dict[str, Any]]:
        """Forget a dead owner; the rooms it held."""
        self.up.discard(owner)
        self.loads.pop(owner, None)
        lost = [info for info in self.rooms.values() if info["owner"] == owner]
        for info in lost:
            del self.rooms[info["room_id"]]
        return lost

    def get(self, room_id: str) -> dict[str, Any] | None:
        return self.rooms.get(room_id)

    def find(self, room_type: str, filters: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The fullest joinable room of a type (players gather instead of spreading thin)."""
        candidates = [i for i in self.rooms.values() if i["type"] == room_type and joinable(i, filters)]
        if not candidates:
            return None
        return max(candidates, key=lambda i: (i["players"], i["room_id"]))

    def listing(self, room_type: str, filters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Every public room of a type (full and locked ones included, marked as such)."""
        found = [
            i for i in self.rooms.values()
            if (not room_type or i["type"] == room_type) and not i.get("private") and matches(i, filters)
        ]
        return sorted(found, key=lambda i: i["room_id"])

    def place(self) -> str:
        """The least-loaded worker that is up."""
        if not self.up:
            raise Unavailable("no worker can host a room")
        return min(sorted(self.up), key=lambda w: self.loads.get(w, 0))


# How a directory reaches an owner to create a room there: (owner, type, room_id, options) -> info
Creator = Callable[[str, str, str, Any], Awaitable[dict[str, Any]]]


class Matchmaker:
    """Join-or-create over a RoomDirectory, one decision per room type at a time.

    Without the lock, two players asking for the same type at the same moment both find
    no room and create two (a one-world game would split its players); with it, the
    second finds the room the first created."""

    def __init__(self, book: RoomDirectory, host: Callable[[str, str, Any], Awaitable[dict[str, Any]]], place: Callable[[], str]):
        self.book = book
        self.host = host  # (owner, room_type, options) -> the new room's info
        self.place = place
        self.locks: dict[str, asyncio.Lock] = {}

    async def find_or_create(self, room_type: str, filters: Any, options: Any, create: bool) -> dict[str, Any]:
        filters = filters if isinstance(filters, dict) else None
        if create:
            return await self.host(self.place(), room_type, options)
        lock = self.locks.setdefault(room_type, asyncio.Lock())
        async with lock:
            info = self.book.find(room_type, filters)
            if info is not None:
                return info
            return await self.host(self.place(), room_type, options)


class LocalDirectory:
    """The directory in the same process as its workers (one worker, or a test's several)."""

    def __init__(self) -> None:
        self.book = RoomDirectory()
        self.creators: dict[str, Creator] = {}
        self.matchmaker = Matchmaker(self.book, self._create, self.book.place)

    async def _create(self, owner: str, room_type: str, options: Any) -> dict[str, Any]:
        info = await self.creators[owner](owner, room_type, new_room_id(room_type), options)
        self.book.add(owner, info)
        return self.book.rooms[info["room_id"]]

    def attach(self, worker: str, create: Creator) -> None:
        self.creators[worker] = create
        self.book.report(worker, [], 0)

    def detach(self, worker: str) -> list[dict[str, Any]]:
        self.creators.pop(worker, None)
        return self.book.owner_lost(worker)

    def report(self, owner: str, rooms: list[dict[str, Any]], connections: int = 0) -> None:
        self.book.report(owner, rooms, connections)

    def update(self, owner: str, info: dict[str, Any]) -> None:
        self.book.update(owner, info)

    async def get(self, room_id: str) -> dict[str, Any]:
        info = self.book.get(room_id)
        if info is None:
            raise NotFound(f"no room {room_id!r}")
        return info

    async def find_or_create(self, room_type: str, filters: Any, options: Any, create: bool) -> dict[str, Any]:
        return await self.matchmaker.find_or_create(room_type, filters, options, create)

    async def listing(self, room_type: str, filters: Any) -> list[dict[str, Any]]:
        return self.book.listing(room_type, filters if isinstance(filters, dict) else None)


def unwrap(answer: Any) -> Any:
    """A control-link answer: {"ok": value} or {"error": [code, message]} (raised)."""
    if isinstance(answer, dict) and "error" in answer:
        raise error_from_code(*answer["error"])
    return answer["ok"] if isinstance(answer, dict) and "ok" in answer else answer


class SupervisorDirectory:
    """A cluster worker's directory: the supervisor's, reached over the control link."""

    def __init__(self, link: Any):
        self.link = link

    async def get(self, room_id: str) -> dict[str, Any]:
        info = unwrap(await self.link.ask("room.get", room_id=room_id))
        if info is None:
            raise NotFound(f"no room {room_id!r}")
        return info

    async def find_or_create(self, room_type: str, filters: Any, options: Any, create: bool) -> dict[str, Any]:
        return unwrap(await self.link.ask("room.find_or_create", type=room_type, filters=filters, options=options, create=create, timeout=10.0))

    async def listing(self, room_type: str, filters: Any) -> list[dict[str, Any]]:
        return unwrap(await self.link.ask("room.listing", type=room_type, filters=filters))

    async def move(self, room_id: str, room_type: str, restore: Any) -> dict[str, Any]:
        return unwrap(await self.link.ask("room.move", room_id=room_id, type=room_type, restore=restore, timeout=10.0))

    def update(self, owner: str, info: dict[str, Any]) -> None:
        self.link.send({"op": "room.update", "info": info})
