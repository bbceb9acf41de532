"""The app the JavaScript client's tests (codecs/js/test/*.test.mjs) run a live server with.

    python -m engine.cli run tests.js_app:app --single --host 127.0.0.1 --port P

It serves the golden `everything` schema too (tests/golden/everything.py; the JavaScript
side is tests/golden/everything.js), so codec round trips go through a real server.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
from typing import Any

from engine import App
from engine.errors import Blocked, Forbidden
from engine.rooms import Room


def _golden() -> Any:
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden", "everything.py")
    spec = importlib.util.spec_from_file_location("tickwire_golden_everything", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


E = _golden()
app = App(schemas=[E])
app.channel_type("typed.*", E.Numbers)


# -- procedures ------------------------------------------------------------------------------
@app.procedure("echo")
def echo(socket, data):
    return data


@app.procedure("add")
def add(socket, data):
    return data["a"] + data["b"]


@app.procedure("fail")
def fail(socket, data):
    raise Forbidden(data or "no")


@app.procedure("crash")
def crash(socket, data):
    raise RuntimeError("a bug in the procedure")


@app.procedure("slow")
async def slow(socket, seconds):
    await asyncio.sleep(seconds)
    return "late"


@app.procedure("login")
def login(socket, user):
    socket.set_token({"user": user})
    return user


@app.procedure("whoami")
def whoami(socket, data):
    return socket.token.get("user") if socket.token else None


@app.procedure("logout")
def logout(socket, data):
    socket.deauthenticate()


@app.procedure("publish")
def publish(socket, data):
    socket.worker.publish(data["channel"], data["data"])


@app.procedure("kick_me")
def kick_me(socket, channel):
    socket.kick(channel, "bye")


@app.procedure("close_me")
def close_me(socket, data):
    socket.close(data["code"], data.get("reason", ""))


@app.procedure("process")
def process(socket, data):
    return os.getpid()


# -- events ----------------------------------------------------------------------------------
@app.receiver("shout")
def shout(socket, data):
    """Answers an event with an event: both directions in one test."""
    socket.emit("shouted", {"heard": data, "socket": socket.id})


@app.middleware("subscribe")
def no_secrets(req):
    if req.channel.startswith("secret."):
        raise Blocked("secret channels are closed")


# -- rooms -----------------------------------------------------------------------------------
class Counter(Room):
    """Sums its inputs in order; one entity moves at SPEED units per second of room time."""

    tick_rate = 20
    send_rate = 20
    reconnect_grace = 10.0
    max_players = 4
    SPEED = 100.0

    def on_create(self, options):
        self.state = {"total": 0, "order": [], "x": 0.0}

    def on_join(self, player, options):
        self.broadcast({"joined": player.id, "name": player.name})

    def on_input(self, player, data):
        n = data["n"]
        self.state = {**self.state, "total": self.state["total"] + n, "order": (self.state["order"] + [n])[-64:]}
        if data.get("say"):
            self.send(player, {"said": data["say"]})

    def on_tick(self, now, dt):
        self.state = {**self.state, "x": round(now * self.SPEED, 3)}


app.room("counter", Counter)
