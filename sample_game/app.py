"""The sample game's server: `tickwire run sample_game.app:app` (the README's `make run`).

It serves the browser client (sample_game/web/, with the generated codec at
/generated/game.js) and hosts the world, room type "world" (sample_game/room.py). Every
player joins the same world, whichever worker holds its connection: the room lives on one
worker, and the others relay its frames.

With TICKWIRE_SAMPLE_DEBUG=1 in the server's environment, the procedure `debug.players`
answers with every avatar's position as the simulation has it (the browser test checks
that keys move the player on the server, not only on screen). It is off by default:
positions of players out of view are exactly what interest management keeps from
clients.
"""

from __future__ import annotations

import json
import os
from typing import Any

from engine import App, BadRequest, NotFound, Settings
from engine.web import static_file

from .generated import game
from .room import Meadow

HERE = os.path.dirname(os.path.abspath(__file__))
WEB = os.path.join(HERE, "web")
GENERATED = os.path.join(HERE, "generated")
ROOM_TYPE = "world"
DEBUG_ENV = "TICKWIRE_SAMPLE_DEBUG"
DEBUG_SUBJECT = "sample.debug."  # + worker: the debug question, asked of a room's owner

app = App(schemas=[game], settings=Settings(static_dir=WEB), name="tickwire-sample")
app.room(ROOM_TYPE, Meadow)


def _generated(name: str) -> Any:
    return lambda request: static_file([GENERATED], name)


# The page imports the codec the schema compiler wrote next to the Python module.
for _name in ("game.js", "game.d.ts"):
    app.route(f"/generated/{_name}")(_generated(_name))


@app.procedure("echo")
def echo(socket: Any, data: Any) -> Any:
    """What it is given: the smallest procedure (tests check `tickwire run` with it)."""
    return data


def _players_here(worker: Any, room_id: str) -> list[dict[str, Any]]:
    runner = worker.rooms.hosted.get(room_id)
    if runner is None or not isinstance(runner.room, Meadow):
        raise NotFound(f"no world {room_id!r} here")
    return runner.room.positions()


if os.environ.get(DEBUG_ENV):

    @app.hook("start")
    def _answer_debug(worker: Any) -> None:
        def answer(data: bytes) -> bytes:
            try:
                return json.dumps({"ok": _players_here(worker, json.loads(data)["room_id"])}).encode()
            except NotFound as exc:
                return json.dumps({"error": str(exc)}).encode()

        worker.bus.handle(DEBUG_SUBJECT + worker.node, answer)

    @app.procedure("debug.players")
    async def debug_players(socket: Any, data: Any) -> list[dict[str, Any]]:
        """[{player, name, x, y}] of a world, asked of the worker that owns it."""
        room_id = data.get("room_id") if isinstance(data, dict) else None
        if not isinstance(room_id, str) or not room_id:
            raise BadRequest("debug.players takes {room_id}")
        worker = socket.worker
        owner = (await worker.rooms.directory.get(room_id))["owner"]
        if owner == worker.node:
            return _players_here(worker, room_id)
        reply = json.loads(await worker.bus.request(DEBUG_SUBJECT + owner, json.dumps({"room_id": room_id}).encode(), timeout=5.0))
        if "error" in reply:
            raise NotFound(reply["error"])
        return reply["ok"]
