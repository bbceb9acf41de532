"""The Python servers under test, on uvloop, bound to 127.0.0.1.

--impl websockets  websockets 17 (asyncio). Publish: broadcast(subscribers, message): the
                   message is built once, the floor every Python server is held to.
--impl picows      picows: transport.send(BINARY, message) to each subscriber (the fast floor).
--impl socketio    python-socketio AsyncServer on aiohttp: "sub" joins room "c", "pub"
                   emits "m" to the room (one text frame per subscriber).

The floor protocol (websockets, picows), shared with bench/anchors/node/ws_floor_server.js:
b"S" subscribes (answered b"s"), b"P" + payload publishes the whole message to every
subscriber, b"E" + payload is echoed back (procedure round trips).

stdout: {"ready": true} once listening, then one reply per stdin command:
{"cmd": "gc"}, {"cmd": "stats"}, {"cmd": "quit"}.
    python py_server.py --impl websockets --port P
"""

from __future__ import annotations

import argparse
import gc
import os

import uvloop
from lineproto import reply, serve_commands


class State:
    def __init__(self) -> None:
        self.clients = 0
        self.subscribers: dict = {}  # insertion-ordered set
        self.published = 0


async def start_websockets(st: State, port: int):
    from websockets.asyncio.server import broadcast, serve
    from websockets.exceptions import ConnectionClosed

    async def handler(ws):
        st.clients += 1
        try:
            async for msg in ws:
                kind = msg[:1]
                if kind == b"P":
                    broadcast(st.subscribers, msg)
                    st.published += 1
                elif kind == b"E":
                    await ws.send(msg)
                elif kind == b"S":
                    st.subscribers[ws] = None
                    await ws.send(b"s")
        except ConnectionClosed:
            pass
        finally:
            st.subscribers.pop(ws, None)
            st.clients -= 1

    return await serve(handler, "127.0.0.1", port, compression=None, backlog=4096)


async def start_picows(st: State, port: int):
    from picows import WSListener, WSMsgType, ws_create_server

    BINARY, CLOSE = WSMsgType.BINARY, WSMsgType.CLOSE

    class Listener(WSListener):
        def on_ws_connected(self, t):
            st.clients += 1

        def on_ws_frame(self, t, frame):
            if frame.msg_type == BINARY:
                msg = frame.get_payload_as_bytes()
                kind = msg[:1]
                if kind == b"P":
                    for sub in st.subscribers:
                        sub.send(BINARY, msg)
                    st.published += 1
                elif kind == b"E":
                    t.send(BINARY, msg)
                elif kind == b"S":
                    st.subscribers[t] = None
                    t.send(BINARY, b"s")
            elif frame.msg_type == CLOSE:
                t.send_close(frame.get_close_code())
                t.disconnect()

        def on_ws_disconnected(self, t):
            st.subscribers.pop(t, None)
            st.clients -= 1

    return await ws_create_server(lambda request: Listener(), "127.0.0.1", port, backlog=4096)


async def start_socketio(st: State, port: int):
    import socketio
    from aiohttp import web

    sio = socketio.AsyncServer(async_mode="aiohttp", logger=False, engineio_logger=False)

    @sio.event
    async def connect(sid, environ, *args):
        st.clients += 1

    @sio.event
    async def disconnect(sid, *args):
        st.clients -= 1
        st.subscribers.pop(sid, None)

    @sio.on("sub")
    async def sub(sid, *args):
        await sio.enter_room(sid, "c")
        st.subscribers[sid] = None
        return True  # the acknowledgement tells the client it is subscribed

    @sio.on("pub")
    async def pub(sid, data):
        await sio.emit("m", data, room="c")
        st.published += 1

    app = web.Application()
    sio.attach(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
    return runner


async def main(impl: str, port: int) -> None:
    st = State()
    start = {"websockets": start_websockets, "picows": start_picows, "socketio": start_socketio}[impl]
    server = await start(st, port)  # kept referenced while serving

    def collect(cmd):
        gc.collect()
        gc.collect()
        return {"ok": True}

    def stats(cmd):
        return {"clients": st.clients, "subscribers": len(st.subscribers), "published": st.published}

    reply({"ready": True, "pid": os.getpid(), "impl": impl, "server": type(server).__name__})
    await serve_commands({"gc": collect, "stats": stats})


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--impl", required=True, choices=["websockets", "picows", "socketio"])
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    uvloop.run(main(args.impl, args.port))
