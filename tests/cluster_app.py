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
