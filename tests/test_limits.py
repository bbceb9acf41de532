"""Every named limit, enforced by a real server: a clear error or a documented close code."""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from engine import App, Client, RemoteError
from engine._generated import protocol as P
from engine.codec import PACKED_SUBPROTOCOL
from engine.errors import CloseCode, ErrorCode
from engine.limits import Limits, TokenBucket

from helpers import CODEBOOK, arun, client, close_code, raw, recv_messages, serving, url


def app_with(**limits: object) -> App:
    app = App(limits=Limits().with_overrides(**limits))

    @app.procedure("echo")
    def echo(socket, data):
        return data

    @app.procedure("wait")
    async def wait(socket, data):
        await asyncio.sleep(data)

    return app


def test_limits_are_named_with_defaults():
    limits = Limits()
    assert limits.max_frame_size == 65536 and limits.max_channels_per_connection == 100
    assert Limits().with_overrides(max_frame_size="1024").max_frame_size == 1024
    with pytest.raises(ValueError, match="unknown limit"):
        Limits().with_overrides(max_fun=1)


def test_token_bucket():
    b = TokenBucket(rate=2, burst=2, now=0)
    assert b.take(0) and b.take(0) and not b.take(0)
    assert b.take(0.5) and not b.take(0.5)


def test_max_frame_size_closes_1009():
    async def scenario():
        async with serving(app_with(max_frame_size=1000)) as w:
            ws = await raw(w)
            await ws.send(CODEBOOK.encode(P.Call(1, "echo", CODEBOOK.payload("x" * 2000))))
            assert await close_code(ws) == CloseCode.MESSAGE_TOO_BIG

    arun(scenario())


def test_max_string_length_closes_4100():
    async def scenario():
        async with serving(app_with(max_string_length=16)) as w:
            ws = await raw(w)
            await ws.send(CODEBOOK.encode(P.Call(1, "e" * 17, None)))
            assert await close_code(ws) == CloseCode.MALFORMED

    arun(scenario())


def test_max_vector_length_refuses_a_payload():
    import types

    from engine.schema.gen_python import generate_python
    from engine.schema.model import build
    from engine.schema.parse import parse

    model = build([parse('attribute "msgid"; table Path (msgid: 70) { xs: [float]; }', "path.fbs")], "path", "path.fbs")
    mod = types.ModuleType("path_schema")
    exec(compile(generate_python(model), "path_schema", "exec"), mod.__dict__)
    app = app_with(max_vector_length=4)
    app.schemas.append(mod)

    async def scenario():
        async with serving(app) as w:
            c = Client(url(w), schemas=[mod])
            await c.connect()
            assert list((await c.call("echo", mod.Path([1, 2, 3, 4]))).xs) == [1, 2, 3, 4]
            with pytest.raises(RemoteError) as err:
                await c.call("echo", mod.Path([1, 2, 3, 4, 5]))
            assert err.value.code == ErrorCode.BAD_REQUEST and "limit" in err.value.message
            await c.close()

    arun(scenario())


def test_message_rate_error_then_flood_close_4102():
    async def scenario():
        async with serving(app_with(max_messages_per_second=50, message_burst=10, flood_close_after=0.5)) as w:
            ws = await raw(w)
            await ws.send(b"".join(CODEBOOK.encode(P.Call(i + 1, "echo", None)) for i in range(15)))
            msgs = []
            while len(msgs) < 15:
                msgs += await recv_messages(ws)
            refused = [m for m in msgs if isinstance(m, P.Error)]
            assert len(refused) == 5 and all(m.code == ErrorCode.LIMIT_EXCEEDED for m in refused)
            for _ in range(20):  # keep flooding
                await ws.send(b"".join(CODEBOOK.encode(P.Emit("x", None)) for _ in range(50)))
                await asyncio.sleep(0.05)
                if ws.close_code is not None:
                    break
            assert await close_code(ws) == CloseCode.FLOOD
            assert w.stats.rate_limited > 0

    arun(scenario())


def test_channels_per_connection_and_name_length():
    async def scenario():
        async with serving(app_with(max_channels_per_connection=3, max_channel_name_length=8)) as w, client(w) as c:
            await c.subscribe("a", "b", "c")
            with pytest.raises(RemoteError) as err:
                await c.subscribe("d")
            assert (err.value.code, err.value.message) == (ErrorCode.LIMIT_EXCEEDED, "d: max_channels_per_connection")
            with pytest.raises(RemoteError) as err:
                await c.publish("n" * 9, 1)
            assert err.value.code == ErrorCode.BAD_REQUEST and "max_channel_name_length" in err.value.message
            await c.unsubscribe("a")
            await c.subscribe("d")

    arun(scenario())


def test_max_pending_calls():
    async def scenario():
        async with serving(app_with(max_pending_calls=2)) as w, client(w) as c:
            results = await asyncio.gather(*[c.call("wait", 0.1) for _ in range(3)], return_exceptions=True)
            errors = [r for r in results if isinstance(r, RemoteError)]
            assert len(errors) == 1 and errors[0].message == "max_pending_calls"
            assert await c.call("echo", 1) == 1  # slots are released

    arun(scenario())


def test_handshake_timeout_closes_4005():
    async def scenario():
        async with serving(app_with(handshake_timeout=0.5)) as w:
            ws = await raw(w, handshake=False)
            assert await close_code(ws, timeout=5) == CloseCode.HANDSHAKE_TIMEOUT
            # A TCP connection that never sends its HTTP request is cut off too.
            r, wr = await asyncio.open_connection("127.0.0.1", w.port)
            async with asyncio.timeout(5):
                assert await r.read() == b""
            wr.close()

    arun(scenario())


def test_ping_and_ping_timeout_closes_4000():
    async def scenario():
        async with serving(app_with(ping_interval=0.3, ping_timeout=1.2)) as w:
            # The Python client answers pings: it stays connected past the timeout.
            async with client(w) as c:
                await asyncio.sleep(2.5)
                assert c.connected and c.connects == 1
            # A raw socket that never answers is closed with 4000.
            ws = await raw(w)
            pings = 0
            try:
                async with asyncio.timeout(6):
                    while True:
                        for m in await recv_messages(ws):
                            pings += isinstance(m, P.Ping)
            except Exception:
                pass
            assert pings >= 1
            assert ws.close_code == CloseCode.PING_TIMEOUT

    arun(scenario())


def test_max_connections_503_and_handshakes_per_ip_429():
    async def scenario():
        async with serving(app_with(max_connections=2)) as w:
            a, b = await raw(w), await raw(w)
            with pytest.raises(InvalidStatus) as err:
                await raw(w)
            assert err.value.response.status_code == 503
            assert err.value.response.headers["Retry-After"]
            await a.close()
            await b.close()
        async with serving(app_with(max_handshakes_per_ip_per_second=2, handshake_burst=3)) as w:
            socks = [await raw(w, handshake=False) for _ in range(3)]
            with pytest.raises(InvalidStatus) as err:
                await raw(w, handshake=False)
            assert err.value.response.status_code == 429
            for s in socks:
                await s.close()
            assert w.stats.http_rejected == 1

    arun(scenario())


def test_origin_allow_list_403():
    app = app_with()
    app.settings.origins = ["https://game.example"]

    async def scenario():
        async with serving(app) as w:
            ok = await connect(url(w), subprotocols=[PACKED_SUBPROTOCOL], origin="https://game.example")  # type: ignore[list-item]
            await ok.close()
            with pytest.raises(InvalidStatus) as err:
                await connect(url(w), subprotocols=[PACKED_SUBPROTOCOL], origin="https://evil.example")  # type: ignore[list-item]
            assert err.value.response.status_code == 403

    arun(scenario())


def test_outbound_content_over_the_frame_limit_is_split():
    async def scenario():
        async with serving(app_with(max_out_frame_size=1000)) as w, client(w) as pub:
            frames: list[bytes] = []
            sub = Client(url(w), on_frame=frames.append)
            await sub.connect()
            (ch,) = await sub.subscribe("big")
            frames.clear()
            await asyncio.gather(*[pub.publish("big", "y" * 300) for _ in range(10)])
            while len(ch.queue) < 10:
                await asyncio.sleep(0.01)
            assert len(frames) >= 4 and all(len(f) <= 1000 for f in frames)
            assert w.stats.frames_split >= 3
            await sub.close()

    arun(scenario())
