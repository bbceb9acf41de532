"""Load generator: many picows clients in one uvloop process, driven by the harness's load
protocol (bench/system.py). picows costs the load little CPU, so more of the shared
cores is left to the server under test.

--proto ws   the floor protocol of py_server.py and ws_floor_server.js (binary frames:
             b"S" subscribe, answered b"s"; b"P" publish; b"E" echo)
--proto sio  Engine.IO 4 / Socket.IO 5 over a raw WebSocket: answers the open packet with
             "40", pings with "3"; subscribes with the acknowledged event 421["sub"] and
             publishes 42["pub", "..."]

Scenarios: fanout (`subscribers` on one channel, one publisher sending `burst` messages
`rate` times a second; units = deliveries), rpc (`clients` connections each keeping one
echo request in flight; units = round trips), memory ("connect" opens idle connections),
mmo (the floor of mmo_floor.py: `clients` bots join with b"J" and answer every frame,
b"T" + tick number, with one input of INPUT_SIZE bytes, the size of a Tickwire bot's;
units = frames of bot 0, with `messages`, `bytes`, `wire_bytes` and `client_ticks`
counted as bench/tickwire_mmo_load.py counts them).
Latency is measured on one subscriber in `sample_every` (fan-out: publish to delivery),
or on every round trip.
    python picows_load.py --proto ws
"""

from __future__ import annotations

import argparse
import asyncio
import os
import struct
import time

import uvloop
from lineproto import percentiles, reply, serve_commands
from picows import WSListener, WSMsgType, ws_connect

BINARY, TEXT, CLOSE = WSMsgType.BINARY, WSMsgType.TEXT, WSMsgType.CLOSE
now = time.perf_counter
MAX_LATENCY_SAMPLES = 200_000
INPUT_SIZE = 9  # a Tickwire bot's Input: type, room, seq (2 bytes), Steer payload (type, length, 4)
INPUT = b"I" * INPUT_SIZE
TICK = struct.Struct("<BI")


class Load:
    def __init__(self, proto: str) -> None:
        self.proto = proto
        self.port = 0
        self.scenario = ""
        self.p: dict = {}
        self.subs: list = []
        self.pub = None
        self.rpc: list = []
        self.idle: list = []
        self.units = 0
        self.published = 0
        self.outstanding = 0
        self.lat: list[float] = []
        self.running = False
        self.task: asyncio.Task | None = None
        self.request = b""
        self.bots: list = []
        self.mmo = dict.fromkeys(("messages", "bytes", "wire_bytes", "client_ticks", "inputs"), 0)

    def latency(self, ms: float) -> None:
        if len(self.lat) < MAX_LATENCY_SAMPLES:
            self.lat.append(ms)

    def publish_message(self) -> bytes:
        size = int(self.p.get("size", 32))
        if self.proto == "ws":
            head = b"P" + struct.pack("<d", now())
            return head + b"x" * max(0, size - len(head))
        t = b"%.6f|" % now()
        return b'42["pub","' + t + b"x" * max(0, size - len(t)) + b'"]'


class Client(WSListener):
    """One connection. role: "sub", "pub", "rpc" or "idle"."""

    def __init__(self, load: Load, role: str, sampled: bool = False) -> None:
        self.load = load
        self.role = role
        self.sampled = sampled
        self.ready = asyncio.get_running_loop().create_future()  # handshake/subscription done
        self.subscribed = False
        self.sent_at = 0.0
        self.t = None
        self.last_tick = -1

    def _set_ready(self) -> None:
        if not self.ready.done():
            self.ready.set_result(True)

    def on_ws_connected(self, t) -> None:
        self.t = t
        if self.load.proto == "ws":
            if self.role == "sub":
                t.send(BINARY, b"S")
            elif self.role == "bot":
                t.send(BINARY, b"J")
            else:
                self._set_ready()

    def on_ws_frame(self, t, frame) -> None:
        mt = frame.msg_type
        L = self.load
        if mt == BINARY:
            if self.role == "bot":
                self.bot_frame(t, frame.get_payload_as_bytes())
            elif self.role == "sub":
                if not self.subscribed:
                    self.subscribed = True  # the b"s" answer
                    self._set_ready()
                    return
                L.units += 1
                if self.sampled:
                    msg = frame.get_payload_as_bytes()
                    if msg[:1] == b"P":
                        L.latency((now() - struct.unpack_from("<d", msg, 1)[0]) * 1000)
            elif self.role == "rpc":
                L.units += 1
                if self.sampled:
                    L.latency((now() - self.sent_at) * 1000)
                if L.running:
                    self.sent_at = now()
                    t.send(BINARY, L.request)
                else:
                    L.outstanding -= 1
        elif mt == TEXT:
            msg = frame.get_payload_as_bytes()
            c = msg[:1]
            if c == b"4":
                k = msg[1:2]
                if k == b"2":
                    if self.role == "sub":
                        L.units += 1
                        if self.sampled:
                            i = msg.find(b',"')
                            j = msg.find(b"|", i)
                            if i > 0 and j > i:
                                L.latency((now() - float(msg[i + 2 : j])) * 1000)
                elif k == b"3":  # 431[...]: our subscription is acknowledged
                    self.subscribed = True
                    self._set_ready()
                elif k == b"0":  # the namespace is connected
                    if self.role == "sub":
                        t.send(TEXT, b'421["sub"]')
                    else:
                        self._set_ready()
            elif c == b"0":
                t.send(TEXT, b"40")
            elif c == b"2":
                t.send(TEXT, b"3")
        elif mt == CLOSE:
            t.disconnect()


    def bot_frame(self, t, msg: bytes) -> None:
        if msg == b"j":
            self._set_ready()
            return
        c = self.load.mmo
        n = len(msg)
        c["messages"] += 1
        c["bytes"] += n
        c["wire_bytes"] += n + (2 if n < 126 else 4 if n < 65536 else 10)
        tick = TICK.unpack_from(msg)[1]
        if self.last_tick >= 0:
            c["client_ticks"] += tick - self.last_tick
        self.last_tick = tick
        if self.sampled:
            self.load.units += 1
        t.send(BINARY, INPUT)
        c["inputs"] += 1


async def open_clients(L: Load, n: int, role: str, sample_every: int = 0, conc: int = 100) -> tuple[list, int, str]:
    """n connections (with their subscription, for role "sub"); failures are retried twice."""
    if L.proto == "ws":
        url = f"ws://127.0.0.1:{L.port}/"
    else:
        url = f"ws://127.0.0.1:{L.port}/socket.io/?EIO=4&transport=websocket"
    sem = asyncio.Semaphore(conc)
    errors = 0
    first_error = ""

    async def one(i: int):
        nonlocal errors, first_error
        async with sem:
            for attempt in range(3):
                try:
                    sampled = bool(sample_every) and i % sample_every == 0
                    t, client = await ws_connect(
                        lambda s=sampled: Client(L, role, s), url, websocket_handshake_timeout=30
                    )
                    await asyncio.wait_for(client.ready, 30)
                    return client
                except Exception as exc:  # counted and reported; the harness decides
                    errors += 1
                    first_error = first_error or repr(exc)
                    await asyncio.sleep(0.1 * (attempt + 1))
            return None

    got = await asyncio.gather(*(one(i) for i in range(n)))
    return [c for c in got if c is not None], errors, first_error


async def setup(L: Load, cmd: dict) -> dict:
    L.port, L.scenario, L.p = cmd["port"], cmd["scenario"], cmd.get("params", {})
    if L.scenario == "fanout-batch":  # fanout with a larger burst: the same load
        L.scenario = "fanout"
    t0 = now()
    if L.scenario == "fanout":
        n = int(L.p.get("subscribers", 1000))
        L.subs, errors, first = await open_clients(L, n, "sub", int(L.p.get("sample_every", 100)))
        pubs, e2, _ = await open_clients(L, 1, "pub")
        if len(L.subs) < n or not pubs:
            return {"error": f"only {len(L.subs)} of {n} subscribers ({first})"}
        L.pub = pubs[0]
        return {"ok": True, "connected": n + 1, "errors": errors + e2, "ms": round((now() - t0) * 1000)}
    if L.scenario == "rpc":
        n = int(L.p.get("clients", 100))
        L.rpc, errors, first = await open_clients(L, n, "rpc", int(L.p.get("sample_every", 1)))
        if len(L.rpc) < n:
            return {"error": f"only {len(L.rpc)} of {n} clients ({first})"}
        size = int(L.p.get("size", 32))
        L.request = b"E" + b"r" * max(0, size - 1)
        return {"ok": True, "connected": n, "errors": errors}
    if L.scenario == "memory":
        return {"ok": True, "connected": 0}
    if L.scenario == "mmo":
        n = int(L.p.get("clients", 100))
        # One client in n is "sampled": bot 0 alone, whose frames are the units (ticks).
        L.bots, errors, first = await open_clients(L, n, "bot", n, conc=50)
        if len(L.bots) < n:
            return {"error": f"only {len(L.bots)} of {n} bots joined ({first})"}
        return {"ok": True, "connected": n, "errors": errors, "ms": round((now() - t0) * 1000)}
    return {"error": f"picows_load does not run scenario {L.scenario!r}"}


async def publish_loop(L: Load, deadline: float) -> None:
    rate, burst = float(L.p.get("rate", 10)), int(L.p.get("burst", 1))
    kind = BINARY if L.proto == "ws" else TEXT
    t0, rounds = now(), 0
    while L.running and now() < deadline:
        due = int((now() - t0) * rate) - rounds
        for _ in range(max(0, due) * burst):
            L.pub.t.send(kind, L.publish_message())
        if due > 0:
            rounds += due
            L.published += due * burst
        await asyncio.sleep(0.005)
    L.running = False


async def rpc_deadline(L: Load, deadline: float) -> None:
    while L.running and now() < deadline:
        await asyncio.sleep(0.05)
    L.running = False


def start(L: Load, cmd: dict) -> dict:
    L.running = True
    deadline = now() + float(L.p.get("max_s", 60))
    if L.scenario == "fanout":
        L.task = asyncio.ensure_future(publish_loop(L, deadline))
    elif L.scenario == "rpc":
        L.outstanding = len(L.rpc)
        for c in L.rpc:
            c.sent_at = now()
            c.t.send(BINARY, L.request)
        L.task = asyncio.ensure_future(rpc_deadline(L, deadline))
    return {"ok": True}


def sample(L: Load, cmd: dict) -> dict:
    if L.scenario == "mmo":
        return {"t": now(), "units": L.units, **L.mmo}
    lat, L.lat = L.lat, []
    # every delivery and every echo is a frame of its own here
    return {"t": now(), "units": L.units, "frames": L.units, "published": L.published, **percentiles(lat)}


async def stop(L: Load, cmd: dict) -> dict:
    L.running = False
    if L.task is not None:
        await asyncio.wait_for(L.task, 5)
    end = now() + float(L.p.get("drain_s", 2))
    if L.scenario == "fanout":
        expected = L.published * len(L.subs)
        while L.units < expected and now() < end:
            await asyncio.sleep(0.05)
        return {"ok": True, "published": L.published, "delivered": L.units, "backlog": expected - L.units}
    if L.scenario == "rpc":
        while L.outstanding > 0 and now() < end:
            await asyncio.sleep(0.01)
    return {"ok": True, "units": L.units}


async def connect(L: Load, cmd: dict) -> dict:
    got, errors, first = await open_clients(L, int(cmd["n"]), "idle")
    L.idle.extend(got)
    return {"connected": len(L.idle), "errors": errors, "first_error": first}


async def main(proto: str) -> None:
    L = Load(proto)
    handlers = {
        "setup": lambda c: setup(L, c),
        "start": lambda c: start(L, c),
        "sample": lambda c: sample(L, c),
        "stop": lambda c: stop(L, c),
        "connect": lambda c: connect(L, c),
    }
    reply({"ready": True, "pid": os.getpid()})
    await serve_commands(handlers)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--proto", default="ws", choices=["ws", "sio"])
    uvloop.run(main(ap.parse_args().proto))
