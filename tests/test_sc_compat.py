"""SocketCluster clients against a live Tickwire server: the unmodified socketcluster-client
20.0.2 (tests/package.json) driven by tests/sc/client.mjs, on one in-process worker and on
a `tickwire run --workers 2 --brokers 1` cluster; and raw SocketCluster packets over a
plain WebSocket for the close codes, malformed input, middleware and limits."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any, Awaitable, Callable

import pytest
from websockets.asyncio.client import ClientConnection, connect

from engine import App, Client, Worker
from engine.errors import Blocked, CloseCode
from engine.limits import Limits
from engine.sccodec import ScCodec

import sc_app
from conftest import IN_CI, require_tool
from helpers import ROOT, Cluster, arun, close_code, eventually, free_port, serving, url

SCRIPT = os.path.join(ROOT, "tests", "sc", "client.mjs")
APP = "tests.sc_app:app"


def node() -> str:
    path = require_tool("node")
    if not os.path.isdir(os.path.join(ROOT, "tests", "node_modules", "socketcluster-client")):
        message = "socketcluster-client is not installed in tests/node_modules (make node-deps)"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return path


Ready = Callable[[dict[str, Any], dict[str, dict[str, Any]]], Awaitable[Any]]


async def scenario(name: str, port: int, *args: str, on_ready: Ready | None = None, timeout: float = 60) -> dict[str, dict[str, Any]]:
    """Run one scenario of client.mjs; its steps by name. `on_ready` answers its waits."""
    proc = await asyncio.create_subprocess_exec(
        node(), SCRIPT, name, "--port", str(port), *args,
        cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stdin is not None
    steps: dict[str, dict[str, Any]] = {}
    try:
        async with asyncio.timeout(timeout):
            async for line in proc.stdout:
                rec = json.loads(line)
                if "failed" in rec:
                    stderr = (await proc.stderr.read()).decode(errors="replace") if proc.stderr else ""
                    raise AssertionError(f"{name}: {rec['failed']}\n{stderr}\nsteps so far: {steps}")
                if rec.get("done"):
                    break
                if rec.get("step") == "ready":
                    assert on_ready is not None, f"{name} waits for the test: {rec}"
                    answer = await on_ready(rec, steps)
                    proc.stdin.write(json.dumps(answer).encode() + b"\n")
                    await proc.stdin.drain()
                    continue
                steps[rec["step"]] = rec
            await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, f"{name} exited with {proc.returncode}: {steps}"
    return steps


# ----------------------------------------------------------------------------------------
# socketcluster-client, one worker


def test_handshake_invoke_transmit_publish_typed_and_batches():
    node()

    async def run() -> None:
        async with serving(sc_app.app) as w:
            steps = await scenario("basics", w.port)
            assert steps["handshake"]["id"].startswith("worker-0.") and steps["handshake"]["pingTimeout"] == 20000
            assert steps["handshake"]["isAuthenticated"] is False and steps["handshake"]["state"] == "open"
            assert steps["invoke"]["result"] == {"a": 1, "list": [1, "two", None], "s": "é✓"}
            assert steps["invoke-no-data"]["result"] is None
            assert steps["invoke-error"]["error"] == {"name": "BadRequest", "message": "no good: 7", "code": 1}
            assert steps["invoke-crash"]["error"]["name"] == "InternalError"
            assert "details" not in steps["invoke-crash"]["error"]["message"]  # never on the wire
            assert steps["invoke-unknown"]["error"]["name"] == "NotFound"
            assert steps["transmit"]["noted"]["last"] == {"hello": "world"}
            assert steps["publish"]["got"] == [{"n": 1, "text": "invoked"}, [2, "transmitted"], {"n": 3, "from": "server"}]
            assert steps["unsubscribe"]["got"] == 3  # nothing after the unsubscribe
            assert steps["typed"]["got"] == {"$type": "Pos", "who": "bob", "at": {"x": 1.5, "y": -2}, "hp": 7, "tags": ["a", "b"]}
            assert steps["typed-error"]["error"]["name"] == "BadRequest" and "Pos" in steps["typed-error"]["error"]["message"]
            assert steps["typed-not-object"]["error"]["name"] == "BadRequest"
            batch = steps["batch"]
            assert batch["results"] == [None, None, "three"] and sorted(batch["shouts"]) == [1, 2]
            assert batch["batchedFrames"] >= 1 and batch["firstBatch"] >= 2  # answers travel as one array
            assert steps["errors"]["errors"] == []
            assert w.stats.handshakes == 1 and w.stats.protocol_errors == 0

    arun(run(), timeout=60)


def test_ping_pong_in_both_protocol_versions():
    """v2 clients answer '' pings, v1 clients '#1'; both stay connected past the ping
    timeout (5 s here), and SocketCluster's client closes on its own after pingTimeout
    without a ping, so the pings reach clients that are busy too."""
    node()

    async def run() -> None:
        async with serving(sc_app.app, limits=Limits(ping_interval=1.0, ping_timeout=5.0)) as w:
            v1, v2 = await asyncio.gather(
                scenario("ping", w.port, "--version", "1", "--seconds", "7"),
                scenario("ping", w.port, "--version", "2", "--seconds", "7"),
            )
            for steps in (v1, v2):
                assert steps["ping"]["state"] == "open" and steps["ping"]["closes"] == []
                assert steps["ping"]["echo"] == "alive" and steps["ping"]["pings"] >= 2
            assert w.stats.protocol_errors == 0

    arun(run(), timeout=60)


def test_reconnect_and_resubscribe_after_the_server_restarts():
    node()

    async def run() -> None:
        port = free_port()
        worker = Worker(sc_app.app)
        await worker.start("127.0.0.1", port)
        holder = {"worker": worker}

        async def restart(rec: dict[str, Any], steps: dict[str, Any]) -> None:
            await holder["worker"].stop(timeout=1.0)
            fresh = Worker(sc_app.app)
            await fresh.start("127.0.0.1", port)
            holder["worker"] = fresh

        try:
            steps = await scenario("restart", port, on_ready=restart)
        finally:
            await holder["worker"].stop(timeout=1.0)
        assert steps["restart"]["got"] == ["before", "after"]
        assert steps["restart"]["closes"] == [CloseCode.GOING_AWAY]
        assert steps["restart"]["state"] == "open"

    arun(run(), timeout=60)


# ----------------------------------------------------------------------------------------
# socketcluster-client, a cluster of two workers


def test_tokens_across_reconnects_and_workers():
    node()
    with Cluster(app=APP, workers=2, brokers=1) as cluster:
        steps = arun(scenario("tokens", cluster.port, "--workers", "2"), timeout=90)
    assert steps["login"]["result"] == "ok"
    assert steps["token"] == {"step": "token", "authState": "authenticated", "user": "ann", "hasExp": True}
    # The same token was accepted on both workers: they share the signing key.
    assert steps["reconnects"]["workers"] == ["worker-0", "worker-1"] and steps["reconnects"]["all"] is True
    assert steps["authenticate"]["isAuthenticated"] is True and steps["authenticate"]["whoami"] == "ann"
    bad = steps["authenticate-bad"]
    assert bad["error"]["name"] == "AuthTokenInvalidError" and bad["authState"] == "unauthenticated" and bad["whoami"] is None
    hs = steps["handshake-bad-token"]
    assert hs["isAuthenticated"] is False and hs["authError"]["name"] == "AuthTokenInvalidError"
    assert steps["logout"]["authState"] == "unauthenticated" and steps["logout"]["whoami"] is None
    assert steps["errors"]["errors"] == []


def test_socketcluster_and_tickwire_clients_share_channels_across_workers():
    node()

    async def run(port: int) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        clients: list[Client] = []

        async def tickwire_side(rec: dict[str, Any], steps: dict[str, Any]) -> None:
            if "tw" not in seen:
                # A Tickwire client on the other worker than the SocketCluster client's.
                for _ in range(60):
                    c = Client(f"ws://127.0.0.1:{port}/", schemas=[sc_app.sctest], reconnect=False)
                    await c.connect()
                    clients.append(c)
                    if c.process != steps["where"]["where"]:
                        break
                seen["tw"] = c
                seen["worker"] = c.process
                seen["subs"] = await c.subscribe("mix", "pos.mix")
                await c.publish("mix", {"from": "tw", "n": 1, "text": "é✓"})
                await c.publish("pos.mix", sc_app.sctest.Pos("tw", sc_app.sctest.Vec2(1.5, -2.0), 3, ["x", "y"]))
                return None
            mix, pos = seen["subs"]
            seen["mix"] = [await mix.get(timeout=5) for _ in range(2)]
            seen["pos"] = [await pos.get(timeout=5) for _ in range(2)]
            return None

        try:
            steps = await scenario("mixed", port, on_ready=tickwire_side)
        finally:
            for c in clients:
                await c.close()
        return {"steps": steps, **seen}

    with Cluster(app=APP, workers=2, brokers=1) as cluster:
        r = arun(run(cluster.port), timeout=90)
    steps = r["steps"]
    assert r["worker"] != steps["where"]["where"], "both clients ended up on one worker"
    assert steps["from-tickwire"]["got"] == {"from": "tw", "n": 1, "text": "é✓"}
    assert steps["from-tickwire"]["position"] == {"$type": "Pos", "who": "tw", "at": {"x": 1.5, "y": -2}, "hp": 3, "tags": ["x", "y"]}
    # The Tickwire client gets its own publish back, then the SocketCluster client's, unchanged.
    assert r["mix"] == [{"from": "tw", "n": 1, "text": "é✓"}, {"from": "sc", "n": 2, "text": "é✓", "list": [1.5, None, True]}]
    assert r["pos"][1] == sc_app.sctest.Pos("sc", sc_app.sctest.Vec2(0.25, 8.0), 65535, [])


# ----------------------------------------------------------------------------------------
# raw SocketCluster packets: close codes, malformed input, middleware, limits


HANDSHAKE = '{"event":"#handshake","data":{"authToken":null},"cid":1}'


async def sc_raw(w: Worker, handshake: bool = True, path: str = "/socketcluster/", **kwargs: Any) -> ClientConnection:
    ws = await connect(url(w, path), ping_interval=None, **kwargs)
    assert ws.subprotocol is None
    if handshake:
        await ws.send(HANDSHAKE)
        welcome = json.loads(await ws.recv())
        assert welcome["rid"] == 1 and welcome["data"]["isAuthenticated"] is False
    return ws


async def answer(ws: ClientConnection, timeout: float = 5.0) -> Any:
    """The next packet that is not a ping."""
    async with asyncio.timeout(timeout):
        while True:
            frame = await ws.recv()
            if frame not in ("", "#1"):
                return json.loads(frame)


def small_app(**limits: Any) -> App:
    app = App(limits=Limits(**limits) if limits else None)

    @app.procedure("echo")
    def echo(socket: Any, data: Any) -> Any:
        return data

    return app


def test_close_codes_before_and_without_the_handshake():
    async def run() -> None:
        async with serving(small_app(handshake_timeout=0.5)) as w:
            ws = await sc_raw(w, handshake=False)
            await ws.send('{"event":"#subscribe","data":{"channel":"c"},"cid":1}')
            assert await close_code(ws) == CloseCode.MESSAGE_BEFORE_HANDSHAKE == 4009
            ws = await sc_raw(w, handshake=False)
            await ws.send("not json at all")
            assert await close_code(ws) == 4009
            ws = await sc_raw(w, handshake=False)
            await ws.send('{"event":"#handshake","data":{}}')  # no cid
            assert await close_code(ws) == CloseCode.HANDSHAKE_REJECTED == 4008
            ws = await sc_raw(w, handshake=False)
            assert await close_code(ws) == CloseCode.HANDSHAKE_TIMEOUT == 4005
            ws = await sc_raw(w, handshake=False, path="/")  # any path, not only /socketcluster/
            await ws.send(HANDSHAKE)
            assert json.loads(await ws.recv())["rid"] == 1
            await ws.close()

    arun(run())


def test_a_client_that_never_pongs_is_closed_with_4001():
    async def run() -> None:
        async with serving(small_app(ping_interval=0.5, ping_timeout=2.0)) as w:
            ws = await sc_raw(w)
            pings = []
            try:
                async with asyncio.timeout(6):
                    while True:
                        pings.append(await ws.recv())
            except Exception:
                pass
            assert ws.close_code == 4001  # SocketCluster's "Client pong timed out"
            assert pings and set(pings) <= {"", "#1"}

    arun(run())


def test_malformed_packets_after_the_handshake_get_errors_not_closes():
    async def run() -> None:
        async with serving(small_app()) as w:
            ws = await sc_raw(w)
            for garbage in ("not json", "[[1]]", '{"rid": 5}', "42", '{"event":"x","data":NaN}', "[" * 50000):
                await ws.send(garbage)
            await ws.send('{"event":"#subscribe","data":"c","cid":2}')
            assert await answer(ws) == {"rid": 2, "error": {"name": "BadRequest", "message": "Subscribe channel name was malformatted", "code": 1}}
            await ws.send('{"event":"#unsubscribe","data":"never-subscribed","cid":3}')
            err = await answer(ws)
            assert err["rid"] == 3 and err["error"]["name"] == "BadRequest"
            await ws.send('{"event":"#publish","data":{"channel":"$engine","data":1},"cid":4}')
            assert (await answer(ws))["error"]["name"] == "BadRequest"
            await ws.send('{"event":"echo","data":"still here","cid":5}')
            assert await answer(ws) == {"rid": 5, "data": "still here"}
            assert w.stats.protocol_errors == 0 and w.stats.rejected >= 6
            # A binary frame is not SocketCluster's (it sends text): malformed, 4100.
            await ws.send(b'{"event":"echo","cid":6}')
            assert await close_code(ws) == CloseCode.MALFORMED

    arun(run())


def test_batches_in_and_out_and_subscriptions_by_name():
    async def run() -> None:
        async with serving(small_app()) as w:
            ws = await sc_raw(w)
            await ws.send(json.dumps([
                {"event": "#subscribe", "data": {"channel": "a"}, "cid": 2},
                {"event": "#subscribe", "data": {"channel": "b"}},
                {"event": "#publish", "data": {"channel": "a", "data": {"n": 1}}, "cid": 3},
                {"event": "#publish", "data": {"channel": "b", "data": {"n": 2}}},
                {"event": "echo", "data": 4, "cid": 4},
            ]))
            got: list[Any] = []
            while len(got) < 5:
                packet = await answer(ws)
                got.extend(packet if isinstance(packet, list) else [packet])
            assert {"rid": 2} in got and {"rid": 3} in got and {"rid": 4, "data": 4} in got
            assert {"event": "#publish", "data": {"channel": "a", "data": {"n": 1}}} in got
            assert {"event": "#publish", "data": {"channel": "b", "data": {"n": 2}}} in got
            await ws.send('{"event":"#unsubscribe","data":"a"}')
            await ws.send('{"event":"#publish","data":{"channel":"a","data":"gone"}}')
            await ws.send('{"event":"#publish","data":{"channel":"b","data":"here"},"cid":5}')
            rest: list[Any] = []
            while {"rid": 5} not in rest or len(rest) < 2:
                packet = await answer(ws)
                rest.extend(packet if isinstance(packet, list) else [packet])
            assert {"event": "#publish", "data": {"channel": "b", "data": "here"}} in rest
            assert all(p.get("data", {}).get("channel") != "a" for p in rest if "event" in p)
            await ws.close()

    arun(run())


def test_oversized_frames_close_with_1009():
    async def run() -> None:
        async with serving(small_app(max_frame_size=1024)) as w:
            ws = await sc_raw(w, max_size=None)
            await ws.send('{"event":"echo","data":"' + "x" * 2000 + '","cid":2}')
            assert await close_code(ws) == CloseCode.MESSAGE_TOO_BIG

    arun(run())


def test_middleware_and_rate_limits_apply_to_socketcluster_clients():
    app = small_app(max_messages_per_second=20, message_burst=20, flood_close_after=0.5)
    seen: list[str] = []

    @app.middleware("handshake")
    def door(req: Any) -> None:
        if "deny" in req.path:
            raise Blocked("wrong door")

    @app.middleware("inbound")
    def log(req: Any) -> None:
        seen.append(type(req.message).__name__)

    @app.middleware("subscribe")
    def members(req: Any) -> None:
        if req.channel.startswith("vip"):
            raise Blocked("members only")

    @app.middleware("publish_in")
    def no_shouting(req: Any) -> None:
        if isinstance(req.data, str) and req.data.isupper():
            raise Blocked("no shouting")

    async def run() -> None:
        async with serving(app) as w:
            denied = await sc_raw(w, handshake=False, path="/deny/")
            await denied.send(HANDSHAKE)
            assert await close_code(denied) == CloseCode.HANDSHAKE_REJECTED
            ws = await sc_raw(w)
            await ws.send('{"event":"#subscribe","data":{"channel":"vip.room"},"cid":2}')
            assert await answer(ws) == {"rid": 2, "error": {"name": "Forbidden", "message": "members only", "code": 3}}
            await ws.send('{"event":"#publish","data":{"channel":"c","data":"HEY"},"cid":3}')
            assert await answer(ws) == {"rid": 3, "error": {"name": "Forbidden", "message": "no shouting", "code": 3}}
            assert seen == ["Subscribe", "Publish"]
            # Over the rate: requests are answered LimitExceeded, then a flood closes 4102.
            limited = 0
            try:
                for i in range(200):
                    await ws.send(json.dumps([{"event": "echo", "data": k, "cid": 100 + 10 * i + k} for k in range(10)]))
                    await asyncio.sleep(0.01)
                async with asyncio.timeout(5):
                    while True:
                        packet = json.loads(await ws.recv())
                        for p in packet if isinstance(packet, list) else [packet]:
                            limited += p.get("error", {}).get("name") == "LimitExceeded"
            except Exception:
                pass
            assert limited > 0
            assert ws.close_code == CloseCode.FLOOD

    arun(run())


def test_server_code_sees_socketcluster_clients_like_any_other():
    """Tokens set by server code, kicks and events reach a raw SocketCluster socket."""
    app = small_app()

    @app.procedure("kick_me")
    def kick_me(socket: Any, data: Any) -> None:
        socket.kick("room", "bye")

    @app.procedure("login")
    def login(socket: Any, data: Any) -> None:
        socket.set_token({"user": data})

    async def run() -> None:
        async with serving(app) as w:
            ws = await sc_raw(w)
            await ws.send('{"event":"#subscribe","data":{"channel":"room"},"cid":2}')
            assert await answer(ws) == {"rid": 2}
            await ws.send('{"event":"kick_me","cid":3}')
            packets: list[Any] = []
            while len(packets) < 2:
                packet = await answer(ws)
                packets.extend(packet if isinstance(packet, list) else [packet])
            assert {"event": "#kickOut", "data": {"channel": "room", "message": "bye"}} in packets
            await ws.send('{"event":"login","data":"ann","cid":4}')
            packets = []
            while len(packets) < 2:
                packet = await answer(ws)
                packets.extend(packet if isinstance(packet, list) else [packet])
            (set_token,) = [p for p in packets if p.get("event") == "#setAuthToken"]
            token = set_token["data"]["token"]
            assert w.auth.verify(token)["user"] == "ann"
            again = await sc_raw(w, handshake=False)
            await again.send(json.dumps({"event": "#handshake", "data": {"authToken": token}, "cid": 1}))
            assert json.loads(await again.recv())["data"]["isAuthenticated"] is True
            await again.send('{"event":"#removeAuthToken"}')
            await eventually(lambda: sum(s.token is not None for s in w.sockets) == 1)  # ws keeps its own
            await ws.close()
            await again.close()

    arun(run())


class CountingScCodec(ScCodec):
    """The sc-json codec, counting the deliveries it builds (an injected seam)."""

    def __init__(self, codebook: Any):
        super().__init__(codebook)
        self.built = 0

    def channel_message(self, prefix: bytes, payload: Any) -> bytes:
        self.built += 1
        return super().channel_message(prefix, payload)


def test_a_typed_delivery_is_converted_once_per_worker_not_per_subscriber():
    made: list[CountingScCodec] = []

    def make(worker: Worker) -> CountingScCodec:
        made.append(CountingScCodec(worker.codebook))
        return made[-1]

    async def run() -> None:
        async with serving(sc_app.app, extra_codecs=[make]) as w:
            subscribers = [await sc_raw(w) for _ in range(3)]
            for ws in subscribers:
                await ws.send('{"event":"#subscribe","data":{"channel":"pos.7"},"cid":2}')
                assert await answer(ws) == {"rid": 2}
            publisher = await sc_raw(w)
            pos = {"who": "ann", "at": {"x": 0.5, "y": 1}, "hp": 2, "tags": ["t"]}
            await publisher.send(json.dumps({"event": "#publish", "data": {"channel": "pos.7", "data": pos}, "cid": 3}))
            assert await answer(publisher) == {"rid": 3}
            got = [await answer(ws) for ws in subscribers]
            assert all(g == {"event": "#publish", "data": {"channel": "pos.7", "data": {"$type": "Pos", **pos}}} for g in got)
            assert made[0].built == 1 and w.stats.deliveries == 3
            for ws in (*subscribers, publisher):
                await ws.close()

    arun(run())
