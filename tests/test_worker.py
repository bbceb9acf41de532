"""A real server on 127.0.0.1 with real clients: procedures, events, channels, middleware."""

from __future__ import annotations

import asyncio
import socket

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from engine import App, BadRequest, Blocked, Client, RemoteError, Timeout
from engine._generated import protocol as P
from engine.errors import CloseCode, ErrorCode
from engine.limits import Limits

from helpers import CODEBOOK, arun, client, close_code, eventually, raw, recv_messages, serving, url


def make_app(**limits: object) -> App:
    app = App(limits=Limits().with_overrides(**limits) if limits else None)

    @app.procedure("add")
    def add(socket, data):
        return data["a"] + data["b"]

    @app.procedure("fail")
    def fail(socket, data):
        raise BadRequest("numbers only")

    @app.procedure("crash")
    def crash(socket, data):
        raise KeyError("secret detail")

    @app.procedure("sleep")
    async def sleep(socket, data):
        await asyncio.sleep(data)
        return "slept"

    @app.procedure("whoami")
    def whoami(socket, data):
        return {"id": socket.id, "token": socket.token and socket.token.get("user")}

    @app.procedure("shout")
    def shout(socket, data):
        socket.emit("shouted", data.upper())
        return None

    @app.receiver("note")
    def note(socket, data):
        socket.worker.publish("notes", data)

    return app


def test_procedure_result_error_internal_and_unknown():
    async def scenario():
        async with serving(make_app()) as w, client(w) as c:
            assert await c.call("add", {"a": 2, "b": 40}) == 42
            with pytest.raises(RemoteError) as err:
                await c.call("fail", 1)
            assert (err.value.code, err.value.message) == (ErrorCode.BAD_REQUEST, "numbers only")
            with pytest.raises(RemoteError) as err:
                await c.call("crash")
            assert err.value.code == ErrorCode.INTERNAL
            assert "secret" not in err.value.message  # internals never reach the wire
            with pytest.raises(RemoteError) as err:
                await c.call("nope")
            assert err.value.code == ErrorCode.NOT_FOUND
            assert w.stats.calls == 4 and w.stats.call_errors == 3

    arun(scenario())


def test_procedure_timeouts_server_and_client_side():
    async def scenario():
        async with serving(make_app(call_timeout=0.2)) as w, client(w) as c:
            with pytest.raises(RemoteError) as err:
                await c.call("sleep", 1.0)
            assert err.value.code == ErrorCode.TIMEOUT
            with pytest.raises(Timeout):
                await c.call("sleep", 0.15, timeout=0.05)
            assert await c.call("sleep", 0.01) == "slept"

    arun(scenario())


def test_events_both_ways():
    async def scenario():
        async with serving(make_app()) as w, client(w) as a, client(w) as b:
            (notes,) = await b.subscribe("notes")
            a.emit("note", {"n": 1})
            assert await notes.get(timeout=2) == {"n": 1}
            got = asyncio.get_running_loop().create_future()
            a.on("shouted", got.set_result)
            await a.call("shout", "hey")
            assert await asyncio.wait_for(got, 2) == "HEY"
            errors = asyncio.get_running_loop().create_future()
            a.on("#error", lambda e: errors.done() or errors.set_result(e))
            a.emit("no-such-receiver", 1)
            assert (await asyncio.wait_for(errors, 2))["code"] == ErrorCode.NOT_FOUND

    arun(scenario())


def test_publish_subscribe_among_clients_and_batch_subscribe():
    async def scenario():
        async with serving(make_app()) as w, client(w) as a, client(w) as b, client(w) as c:
            subs_a = await a.subscribe("x", "y", "z")  # one message for three channels
            assert [s.id for s in subs_a] == [1, 2, 3]
            (xb,) = await b.subscribe("x")
            assert xb.id == subs_a[0].id  # the worker's ids are shared by its connections
            await c.publish("x", {"v": 1})
            await c.publish("y", [1, 2, 3])
            await c.publish("z", "text")
            assert await subs_a[0].get(timeout=2) == {"v": 1}
            assert await xb.get(timeout=2) == {"v": 1}
            assert await subs_a[1].get(timeout=2) == [1, 2, 3]
            assert await subs_a[2].get(timeout=2) == "text"
            await a.unsubscribe("x")
            await c.publish("x", 2)
            assert await xb.get(timeout=2) == 2
            await asyncio.sleep(0.05)
            assert not subs_a[0].queue
            assert w.stats.publishes == 4

    arun(scenario())


def test_channel_ids_are_reused_after_the_last_subscriber_leaves():
    async def scenario():
        async with serving(make_app()) as w, client(w) as a:
            await a.subscribe("one", "two")
            await a.unsubscribe("one")
            assert "one" not in w.channels.by_name
            (three,) = await a.subscribe("three")
            assert three.id == 1

    arun(scenario())


def test_messages_of_one_flush_arrive_as_one_frame():
    async def scenario():
        async with serving(make_app()) as w, client(w) as pub:
            frames: list[bytes] = []
            sub = Client(url(w), on_frame=frames.append)
            await sub.connect()
            (ch,) = await sub.subscribe("burst")
            frames.clear()
            # Twenty publishes in one frame from the publisher: one flush on the server.
            for i in range(20):
                await_ = pub.publish("burst", i, ack=False)
                await await_
            await eventually(lambda: len(ch.queue) == 20)
            assert len(frames) == 1
            msgs = CODEBOOK.decode_frame(frames[0], sub._ctx)
            assert [type(m) for m in msgs] == [P.Message] * 20
            # The envelope of each delivery: type id and channel id, one byte each.
            assert len(frames[0]) == sum(2 + len(m.payload.body) for m in msgs)
            await sub.close()

    arun(scenario())


def test_middleware_blocks_subscribe_and_publish_and_transforms():
    app = make_app()

    @app.middleware("subscribe")
    def members_only(req):
        if req.channel.startswith("private.") and not req.socket.token:
            raise Blocked("members only")

    @app.middleware("publish_in")
    def no_swearing(req):
        if req.data == "darn":
            raise Blocked("mind your language")
        if isinstance(req.data, str):
            req.data = req.data.upper()

    @app.middleware("publish_out")
    def stamp(req):
        if isinstance(req.data, str):
            req.data = req.data + "!"

    async def scenario():
        async with serving(app) as w, client(w) as a, client(w) as b:
            with pytest.raises(RemoteError) as err:
                await a.subscribe("private.room")
            assert (err.value.code, err.value.message) == (ErrorCode.FORBIDDEN, "private.room: members only")
            (pub,) = await b.subscribe("public")
            with pytest.raises(RemoteError) as err:
                await a.publish("public", "darn")
            assert err.value.message == "mind your language"
            await a.publish("public", "hello")
            assert await pub.get(timeout=2) == "HELLO!"
            assert w.stats.middleware_blocks == 2

    arun(scenario())


def test_async_middleware_keeps_message_order():
    app = make_app()
    seen = []

    @app.middleware("inbound")
    async def slow_first(req):
        if isinstance(req.message, P.Subscribe):
            await asyncio.sleep(0.05)
        seen.append(type(req.message).__name__)

    async def scenario():
        async with serving(app) as w, client(w) as a:
            sub_task = asyncio.create_task(a.subscribe("ordered"))
            await asyncio.sleep(0)  # the subscribe is queued first...
            await a.publish("ordered", 1)  # ...so the publish must reach the channel after it
            (ch,) = await sub_task
            assert await ch.get(timeout=2) == 1
            assert seen == ["Subscribe", "Publish"]

    arun(scenario())


def test_handshake_middleware_rejects_with_4008():
    app = make_app()

    @app.middleware("handshake")
    def gate(req):
        if req.path != "/ok":
            raise Blocked("wrong door")

    async def scenario():
        async with serving(app) as w:
            ok = Client(url(w, "/ok"))
            await ok.connect()
            await ok.close()
            bad = Client(url(w, "/nope"), reconnect=False)
            with pytest.raises(Exception):
                await bad.connect()
            assert bad.close_code == CloseCode.HANDSHAKE_REJECTED
            assert bad.close_reason == "wrong door"

    arun(scenario())


def test_typed_channel_accepts_its_type_only():
    from engine.schema.gen_python import generate_python
    import types

    src = generate_python(load_text("""
        namespace demo;
        attribute "msgid";
        table Chat (msgid: 64) { from: string; text: string; }
    """))
    demo = types.ModuleType("demo_schema")
    exec(compile(src, "demo_schema", "exec"), demo.__dict__)
    app = App(schemas=[demo])
    app.channel_type("chat.*", demo.Chat)

    async def scenario():
        async with serving(app) as w:
            a = Client(url(w), schemas=[demo])
            b = Client(url(w), schemas=[demo])
            await a.connect()
            await b.connect()
            (chat,) = await b.subscribe("chat.lobby")
            assert chat.type_id == 64
            await a.publish("chat.lobby", demo.Chat("ann", "hi"))
            assert await chat.get(timeout=2) == demo.Chat("ann", "hi")
            with pytest.raises(RemoteError) as err:
                await a.publish("chat.lobby", {"text": "json is not a Chat"})
            assert err.value.code == ErrorCode.BAD_REQUEST and "Chat" in err.value.message
            # A client built without the demo schema is refused at the handshake.
            plain = Client(url(w), reconnect=False)
            with pytest.raises(Exception):
                await plain.connect()
            assert plain.close_code == CloseCode.SCHEMA_MISMATCH
            await a.close()
            await b.close()

    arun(scenario())


def load_text(text: str):
    from engine.schema.model import build
    from engine.schema.parse import parse

    return build([parse(text, "demo.fbs")], "demo", "demo.fbs")


def test_subprotocol_negotiation():
    async def scenario():
        async with serving(make_app()) as w:
            sc = await connect(url(w, "/socketcluster/"))  # no subprotocol: SocketCluster's JSON
            assert sc.subprotocol is None
            await sc.send('{"event":"#handshake","data":{"authToken":null},"cid":1}')
            assert '"rid":1' in await sc.recv()
            await sc.close()
            with pytest.raises(InvalidStatus) as err:
                await connect(url(w), subprotocols=["mqtt"])
            assert err.value.response.status_code == 400
            ws = await raw(w, handshake=False)
            assert ws.subprotocol == "tickwire.packed.v1"
            await ws.close()

    arun(scenario())


@pytest.mark.parametrize(
    "frame, code",
    [
        (bytes(range(7, 40)), None),  # random bytes after a good handshake: malformed or unknown
        (CODEBOOK.encode(P.Call(1, "add", CODEBOOK.payload(1)))[:-2], CloseCode.MALFORMED),  # truncated
        (b"\x3f\x00", CloseCode.UNKNOWN_TYPE),  # a protocol id nobody declared
        (b"\x81\x01", CloseCode.UNKNOWN_TYPE),  # id 129: two-byte varint, unknown
        (CODEBOOK.encode(P.Welcome("a", "b", 1, 2, True, "")), CloseCode.UNKNOWN_TYPE),
    ],
)
def test_malformed_input_closes_that_client_only(frame: bytes, code: int | None):
    async def scenario():
        async with serving(make_app()) as w, client(w) as bystander:
            (ch,) = await bystander.subscribe("life")
            ws = await raw(w)
            await ws.send(frame)
            got = await close_code(ws)
            if code is None:
                assert got in (CloseCode.MALFORMED, CloseCode.UNKNOWN_TYPE)
            else:
                assert got == code
            # The other client is still served.
            assert await bystander.call("add", {"a": 1, "b": 1}) == 2
            await bystander.publish("life", "goes on")
            assert await ch.get(timeout=2) == "goes on"
            assert w.stats.protocol_errors == 1

    arun(scenario())


def test_text_frame_and_unknown_channel_id_and_bad_json():
    async def scenario():
        async with serving(make_app()) as w:
            ws = await raw(w)
            await ws.send(CODEBOOK.encode(P.Unsubscribe(7, [99])))
            [err] = await recv_messages(ws)
            assert (err.cid, err.code) == (7, ErrorCode.BAD_REQUEST)
            bad_json = CODEBOOK.json_payload("{not json")
            await ws.send(CODEBOOK.encode(P.Publish(8, "c", bad_json)))
            [err] = await recv_messages(ws)
            assert (err.cid, err.code) == (8, ErrorCode.BAD_REQUEST)
            await ws.send(CODEBOOK.encode(P.Call(9, "add", CODEBOOK.json_payload("[1,"))))
            [err] = await recv_messages(ws)
            assert (err.cid, err.code) == (9, ErrorCode.BAD_REQUEST)
            await ws.send("a text frame")
            assert await close_code(ws) == CloseCode.MALFORMED

    arun(scenario())


def test_health_and_static_files(tmp_path):
    (tmp_path / "index.html").write_text("<h1>game</h1>")
    (tmp_path / "app.js").write_text("export const x = 1;")
    app = make_app()
    app.settings.static_dir = str(tmp_path)

    async def scenario():
        async with serving(app) as w:
            port = w.port

            async def get(path: str) -> tuple[int, bytes, str]:
                r, wr = await asyncio.open_connection("127.0.0.1", port)
                wr.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                data = await r.read()
                wr.close()
                head, _, body = data.partition(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                ctype = next((ln.split(": ", 1)[1] for ln in lines if ln.lower().startswith("content-type")), "")
                return int(lines[0].split()[1]), body, ctype

            status, body, _ = await get("/health")
            assert status == 200 and b'"status": "ok"' in body
            assert (await get("/"))[:2] == (200, b"<h1>game</h1>")
            status, body, ctype = await get("/app.js")
            assert status == 200 and ctype.startswith("text/javascript")
            assert (await get("/../etc/passwd"))[0] == 404
            assert (await get("/missing.png"))[0] == 404
            status, body, _ = await get("/metrics")
            assert status == 200 and b"tickwire_http_requests_total" in body

    arun(scenario())


def test_deliveries_to_a_slow_reader_are_dropped_not_queued():
    app = make_app(send_buffer_high_water=64 * 1024, max_messages_per_second=100000, message_burst=100000)
    n, blob = 700, "x" * 8000

    async def scenario():
        async with serving(app) as w, client(w) as fast:
            # A reader with a small receive window that stops reading altogether.
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", w.port))
            slow = await raw(w, max_size=None, sock=s)
            await slow.send(CODEBOOK.encode(P.Subscribe(1, ["flood"])))
            await recv_messages(slow)
            (f,) = await fast.subscribe("flood")
            sock = next(x for x in w.sockets if x.id != fast.socket_id)
            slow.transport.pause_reading()
            for i in range(n):
                await fast.publish("flood", blob, ack=False)
                if i % 20 == 0:
                    await asyncio.sleep(0.002)
            await eventually(lambda: len(f.queue) == n, timeout=20)  # the fast client got everything
            assert sock.backlogged and w.stats.drops > 0
            assert sock.conn.buffered() < 1024 * 1024  # bounded by the high-water mark, not a queue
            slow.transport.abort()

    arun(scenario(), timeout=40)


def test_per_recipient_publish_out_is_opt_in_and_sees_each_socket():
    app = make_app()
    seen: list[str] = []

    @app.middleware("publish_out_socket")
    def personalise(req):
        seen.append(req.socket.id)
        if req.socket.token is None and req.data == "secret":
            raise Blocked("not for you")
        if isinstance(req.data, str):
            req.data = f"{req.data} for {req.socket.id}"

    async def scenario():
        async with serving(app) as w, client(w) as a, client(w) as b:
            (ca,) = await a.subscribe("news")
            (cb,) = await b.subscribe("news")
            await a.publish("news", "hello")
            assert await ca.get(timeout=2) == f"hello for {a.socket_id}"
            assert await cb.get(timeout=2) == f"hello for {b.socket_id}"
            await a.publish("news", "secret")
            await asyncio.sleep(0.1)
            assert not ca.queue and not cb.queue  # blocked for both (no token)
            assert sorted(seen) == sorted([a.socket_id, b.socket_id] * 2)

    arun(scenario())


def test_batch_interval_delays_the_flush_and_joins_more_into_one_frame():
    app = make_app()
    app.settings.batch_interval = 0.05

    async def scenario():
        async with serving(app) as w, client(w) as pub:
            frames: list[bytes] = []
            sub = Client(url(w), on_frame=frames.append)
            await sub.connect()
            (ch,) = await sub.subscribe("slow")
            frames.clear()
            for i in range(5):  # five publishes ~5 ms apart, in separate client frames
                await pub.publish("slow", i, ack=False)
                await asyncio.sleep(0.005)
            await eventually(lambda: len(ch.queue) == 5)
            assert len(frames) <= 2  # joined by the 50 ms batch interval
            await sub.close()

    arun(scenario())
