"""The floor of the mmo scenario: a plain WebSocket server writing, at `--hz`, one frame of
`--size` bytes to every client that joined, and reading (and dropping) their inputs.

It does what a game server must do at the least in the same configuration, and nothing
else: the same number of frames as Tickwire's room, of its median frame size, with the
same inputs coming in. So Tickwire's outbound cost per tick over this one's is the
overhead of its simulation, interest management, encoding and frame assembly.

--impl websockets  websockets 17 (asyncio): broadcast(clients, frame), the frame built
                   once per tick (what the fan-out floor does); inputs read with
                   `async for` in each connection's handler
--impl picows      picows: transport.send(BINARY, frame) to each client (the raw writer)

Protocol (with bench/anchors/python/picows_load.py, role "bot"): b"J" joins, answered
b"j"; every other message is an input, counted and dropped. A frame is b"T", the tick
number (uint32, little-endian), then padding to `--size` bytes.

The tick runs on the loop's clock at fixed times (a late tick is skipped and counted,
never run twice), like a Tickwire room. Each tick's process CPU time is measured, so
`stats` splits the process's CPU (cumulative µs) as the Tickwire bench server does:
`out_cpu_us` in the ticks (building the frame and writing it to every client),
`in_cpu_us` everything else (reading the inputs, the event loop).

stdout: {"ready": true} once listening, then one reply per stdin command:
{"cmd": "stats"}, {"cmd": "gc"}, {"cmd": "quit"}.
    python mmo_floor.py --impl websockets --port P --size 2400 --hz 20
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import struct
import time

import uvloop
from lineproto import reply, serve_commands

TICK = struct.Struct("<BI")


class Floor:
    def __init__(self, size: int, hz: float) -> None:
        self.size = max(size, TICK.size)
        self.dt = 1.0 / hz
        self.clients: dict = {}  # insertion-ordered set of joined connections
        self.tick = 0
        self.ticks = 0
        self.skipped = 0
        self.inputs = 0
        self.frames = 0
        self.out_cpu = 0.0
        self.next = 0.0
        self.send = lambda frame: None

    def frame(self) -> bytes:
        return TICK.pack(ord("T"), self.tick) + b"\0" * (self.size - TICK.size)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.next = loop.time() + self.dt
        loop.call_at(self.next, self.wake)

    def wake(self) -> None:
        cpu = time.process_time()
        self.tick += 1
        self.ticks += 1
        self.send(self.frame())
        self.frames += len(self.clients)
        self.out_cpu += time.process_time() - cpu
        self.next += self.dt
        now = self.loop.time()
        if now >= self.next:  # late: skip what was missed, as a room does
            missed = int((now - self.next) // self.dt) + 1
            self.skipped += missed
            self.next += missed * self.dt
        self.loop.call_at(self.next, self.wake)

    def stats(self, cmd: dict) -> dict:
        t1 = time.process_time()
        return {
            "clients": len(self.clients),
            "ticks": self.ticks,
            "skipped_ticks": self.skipped,
            "frames": self.frames,
            "inputs": self.inputs,
            "gauges": {"frame_bytes_p50": self.size},
            "out_cpu_us": self.out_cpu * 1e6,
            "in_cpu_us": (t1 - self.out_cpu) * 1e6,
        }


async def start_websockets(st: Floor, port: int):
    from websockets.asyncio.server import broadcast, serve
    from websockets.exceptions import ConnectionClosed

    async def handler(ws):
        try:
            async for msg in ws:
                if msg == b"J":
                    st.clients[ws] = None
                    await ws.send(b"j")
                else:
                    st.inputs += 1
        except ConnectionClosed:
            pass
        finally:
            st.clients.pop(ws, None)

    st.send = lambda frame: broadcast(st.clients, frame)
    return await serve(handler, "127.0.0.1", port, compression=None, backlog=4096)


async def start_picows(st: Floor, port: int):
    from picows import WSListener, WSMsgType, ws_create_server

    BINARY, CLOSE = WSMsgType.BINARY, WSMsgType.CLOSE

    class Listener(WSListener):
        def on_ws_frame(self, t, frame):
            if frame.msg_type == BINARY:
                if frame.get_payload_as_bytes() == b"J":
                    st.clients[t] = None
                    t.send(BINARY, b"j")
                else:
                    st.inputs += 1
            elif frame.msg_type == CLOSE:
                t.send_close(frame.get_close_code())
                t.disconnect()

        def on_ws_disconnected(self, t):
            st.clients.pop(t, None)

    def send(frame: bytes) -> None:
        for t in st.clients:
            t.send(BINARY, frame)

    st.send = send
    return await ws_create_server(lambda request: Listener(), "127.0.0.1", port, backlog=4096)


async def main(impl: str, port: int, size: int, hz: float) -> None:
    st = Floor(size, hz)
    server = await {"websockets": start_websockets, "picows": start_picows}[impl](st, port)  # kept referenced
    st.start(asyncio.get_running_loop())

    def collect(cmd):
        gc.collect()
        gc.collect()
        return {"ok": True}

    reply({"ready": True, "pid": os.getpid(), "impl": impl, "size": st.size, "server": type(server).__name__})
    await serve_commands({"gc": collect, "stats": st.stats})


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--impl", required=True, choices=["websockets", "picows"])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--size", type=int, required=True, help="bytes of each frame's payload")
    ap.add_argument("--hz", type=float, default=20.0)
    args = ap.parse_args()
    uvloop.run(main(args.impl, args.port, args.size, args.hz))
