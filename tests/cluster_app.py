"""The app the cluster tests run: it reports where it runs and reaches presence and kv."""

import asyncio

from engine import App

app = App()


@app.procedure("where")
def where(socket, data):
    return socket.worker.process


@app.procedure("announce")
def announce(socket, data):
    socket.worker.publish("chat", f"announce: {data}")


@app.procedure("presence")
async def presence(socket, channel):
    return await socket.worker.bus.presence(channel)


@app.procedure("kv_set")
async def kv_set(socket, data):
    await socket.worker.bus.kv_set(data["key"], data["value"].encode(), ttl=data.get("ttl"))


@app.procedure("kv_get")
async def kv_get(socket, key):
    value = await socket.worker.bus.kv_get(key)
    return value.decode() if value is not None else None


@app.receiver("boom")
async def boom(socket, data):
    await asyncio.sleep(0)
    raise RuntimeError("kaboom")


from engine.rooms import Room  # noqa: E402


class Tally(Room):
    """A room that keeps a sum of inputs and can move between processes."""

    tick_rate = 20
    send_rate = 20
    reconnect_grace = 5.0
    max_players = 8

    def on_create(self, options):
        self.state = {"total": 0}

    def on_input(self, player, data):
        self.state = {"total": self.state["total"] + data}

    def serialise(self):
        return self.state

    def restore(self, data):
        self.state = data


class Phoenix(Tally):
    """Recreated (empty) when its process dies."""

    on_owner_lost = "recreate"

    def serialise(self):
        return None


app.room("tally", Tally)
app.room("phoenix", Phoenix)


@app.procedure("host_of")
def host_of(socket, room_id):
    return socket.worker.process if room_id in socket.worker.rooms.hosted else None
