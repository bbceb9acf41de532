"""Tickwire's load generator: many picows clients on one uvloop, driven by the harness's
load protocol (bench/system.py), speaking Tickwire's packed protocol.

    TICKWIRE_BENCH_SITE=<cache>/venv/lib/python3.X/site-packages python -m bench.tickwire_load

picows is what the anchors' Python load generator uses; it comes from the bench venv,
whose site-packages TICKWIRE_BENCH_SITE names: it is appended to sys.path, after this
interpreter's own, so that the engine and its dependencies are this interpreter's. Frames are
encoded once and counted by arithmetic where possible (bench/tickwire_frames.py), so
the load costs little per delivered message.

Scenarios (units in brackets):

- fanout, fanout-batch: `subscribers` connections subscribe to channel "c" (the
  Handshake and the Subscribe share the first frame); one publisher sends `burst`
  Publish messages in one frame, `rate` times a second [deliveries; also "published"
  and "frames"]. Latency: publish to delivery, on one subscriber in `sample_every`.
- single: `subscribers` on "c"; the publisher stays at most `inflight` messages ahead of
  the slowest, each refill in one frame [deliveries].
- churn: one connection subscribes to fresh channel names and unsubscribes each as soon
  as its Subscribed arrives, both acknowledged, at most `inflight` requests out; the
  requests made while handling one frame leave in one frame [acknowledged ops].
- rpc: `clients` connections each keep one `echo` Call of `size` bytes in flight
  [round trips].
- memory: "connect" opens idle handshaken connections (they answer pings).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

SITE_ENV = "TICKWIRE_BENCH_SITE"
if os.environ.get(SITE_ENV) and os.environ[SITE_ENV] not in sys.path:
    sys.path.append(os.environ[SITE_ENV])

from picows import WSListener, WSMsgType, ws_connect  # noqa: E402

from bench.anchors.python.lineproto import percentiles, reply, serve_commands  # noqa: E402
from bench.tickwire_frames import ClientFrames, DeliveryCounter, acks_of, scan_acks, stamp_of  # noqa: E402
from engine.codec import PACKED_SUBPROTOCOL  # noqa: E402
from engine._generated import protocol as P  # noqa: E402

BINARY, CLOSE = WSMsgType.BINARY, WSMsgType.CLOSE
now = time.perf_counter
MAX_LATENCY_SAMPLES = 200_000
SETUP_TIMEOUT_S = 30.0


class Load:
    """One load generator: its connections, its counters and the scenarios' loops."""

    def __init__(self) -> None:
        self.wire = ClientFrames()
        self.port = 0
        self.scenario = ""
        self.p: dict = {}
        self.subs: list[Conn] = []
        self.pub: Conn | None = None
        self.rpc: list[Conn] = []
        self.churner: Conn | None = None
        self.idle: list[Conn] = []
        self.units = 0
        self.frames = 0
        self.published = 0
        self.errors = 0
        self.first_error = ""
        self.closed = 0
        self.outstanding = 0
        self.issued = 0
        self.lat: list[float] = []
        self.running = False
        self.deadline = 0.0
        self.task: asyncio.Task | None = None
        self.kick_pending = False

    def error(self, text: str) -> None:
        self.errors += 1
        if not self.first_error:
            self.first_error = text[:300]

    def latency(self, ms: float) -> None:
        if len(self.lat) < MAX_LATENCY_SAMPLES:
            self.lat.append(ms)

    async def open(self, n: int, role: str, sample_every: int = 0, conc: int = 100) -> tuple[list[Conn], int, str]:
        """n connections, handshaken (and subscribed, for "sub"); each is tried 3 times."""
        url = f"ws://127.0.0.1:{self.port}/"
        sem = asyncio.Semaphore(conc)
        errors = 0
        first = ""

        async def one(i: int) -> Conn | None:
            nonlocal errors, first
            sampled = bool(sample_every) and i % sample_every == 0
            async with sem:
                for attempt in range(3):
                    try:
                        _, c = await ws_connect(
                            lambda: Conn(self, role, sampled),
                            url,
                            websocket_handshake_timeout=SETUP_TIMEOUT_S,
                            extra_headers={"Sec-WebSocket-Protocol": PACKED_SUBPROTOCOL},
                            max_frame_size=16 << 20,
                        )
                        await asyncio.wait_for(c.ready, SETUP_TIMEOUT_S)
                        return c
                    except Exception as exc:  # counted and reported; the harness decides
                        errors += 1
                        first = first or repr(exc)
                        await asyncio.sleep(0.1 * (attempt + 1))
            return None

        got = await asyncio.gather(*(one(i) for i in range(n)))
        return [c for c in got if c is not None], errors, first

    # -- commands -----------------------------------------------------------------------
    async def setup(self, cmd: dict) -> dict:
        self.port, self.scenario, self.p = cmd["port"], cmd["scenario"], cmd.get("params", {})
        if self.scenario == "fanout-batch":  # fan-out with 20 messages at a time: the same load
            self.scenario = "fanout"
        self.wire = ClientFrames(int(self.p.get("size", 32)))
        t0 = now()
        if self.scenario in ("fanout", "single"):
            n = int(self.p.get("subscribers", 1000))
            every = int(self.p.get("sample_every", 100 if self.scenario == "fanout" else 1))
            self.subs, errors, first = await self.open(n, "sub", every)
            pubs, e2, _ = await self.open(1, "pub")
            if len(self.subs) < n or not pubs:
                return {"error": f"only {len(self.subs)} of {n} subscribers ({first})"}
            self.pub = pubs[0]
            return {"ok": True, "connected": n + 1, "errors": errors + e2, "ms": round((now() - t0) * 1000)}
        if self.scenario == "rpc":
            n = int(self.p.get("clients", 100))
            self.rpc, errors, first = await self.open(n, "rpc", int(self.p.get("sample_every", 1)))
            if len(self.rpc) < n:
                return {"error": f"only {len(self.rpc)} of {n} clients ({first})"}
            return {"ok": True, "connected": n, "errors": errors}
        if self.scenario == "churn":
            got, errors, first = await self.open(1, "churn")
            if not got:
                return {"error": f"the churning connection did not open ({first})"}
            self.churner = got[0]
            return {"ok": True, "connected": 1}
        if self.scenario == "memory":
            return {"ok": True, "connected": 0}
        return {"error": f"tickwire_load does not run scenario {self.scenario!r}"}

    def start(self, cmd: dict) -> dict:
        self.running = True
        self.deadline = now() + float(self.p.get("max_s", 60))
        loop = asyncio.get_running_loop()
        if self.scenario == "fanout":
            self.task = loop.create_task(self.publish_loop())
        elif self.scenario == "single":
            self.task = loop.create_task(self.every(0.01, self.refill))
        elif self.scenario == "churn":
            self.task = loop.create_task(self.every(0.02, lambda: self.churn_out([])))
        elif self.scenario == "rpc":
            self.outstanding = len(self.rpc)
            for c in self.rpc:
                c.sent_at = now()
                c.t.send(BINARY, self.wire.call_echo)
            self.task = loop.create_task(self.every(0.05, lambda: None))
        return {"ok": True}

    def sample(self, cmd: dict) -> dict:
        lat, self.lat = self.lat, []
        return {
            "t": now(),
            "units": self.units,
            "published": self.published,
            "frames": self.frames,
            "errors": self.errors,
            "closed": self.closed,
            "first_error": self.first_error,
            **percentiles(lat),
        }

    async def stop(self, cmd: dict) -> dict:
        self.running = False
        if self.task is not None:
            await asyncio.wait_for(self.task, 5)
        end = now() + float(self.p.get("drain_s", 2))
        if self.scenario == "fanout":
            expected = self.published * len(self.subs)
            while self.units < expected and now() < end:
                await asyncio.sleep(0.05)
            return {"ok": True, "published": self.published, "delivered": self.units, "backlog": expected - self.units}
        if self.scenario in ("rpc", "churn"):
            while self.outstanding > 0 and now() < end:
                await asyncio.sleep(0.01)
        return {"ok": True, "units": self.units, "outstanding": self.outstanding, "errors": self.errors}

    async def connect(self, cmd: dict) -> dict:
        got, errors, first = await self.open(int(cmd["n"]), "idle")
        self.idle.extend(got)
        return {"connected": len(self.idle), "errors": errors, "first_error": first}

    # -- the scenarios' loops -----------------------------------------------------------
    async def every(self, interval: float, fn: Any) -> None:
        """Call fn every `interval` seconds until stopped or past the deadline."""
        while self.running and now() < self.deadline:
            fn()
            await asyncio.sleep(interval)
        self.running = False

    async def publish_loop(self) -> None:
        """Fan-out: `burst` Publish messages in one frame, `rate` times a second."""
        rate, burst = float(self.p.get("rate", 10)), int(self.p.get("burst", 1))
        w, t = self.wire, self.pub.t
        t0, rounds = now(), 0
        while self.running and now() < self.deadline:
            due = int((now() - t0) * rate) - rounds
            for _ in range(max(0, due)):
                stamp = now()
                t.send(BINARY, b"".join([w.publish(stamp) for _ in range(burst)]))
            if due > 0:
                rounds += due
                self.published += due * burst
            await asyncio.sleep(0.005)
        self.running = False

    def kick(self) -> None:
        """Single: a subscriber got something; refill once this loop iteration ends."""
        if not self.kick_pending and self.running:
            self.kick_pending = True
            asyncio.get_running_loop().call_soon(self.refill)

    def refill(self) -> None:
        """Single: stay at most `inflight` messages ahead of the slowest subscriber."""
        self.kick_pending = False
        if not self.running:
            return
        window = int(self.p.get("inflight", 100))
        ahead = self.published - min(c.got for c in self.subs)
        if ahead > window // 2:
            return
        k = window - ahead
        stamp = now()
        w = self.wire
        self.pub.t.send(BINARY, b"".join([w.publish(stamp) for _ in range(k)]))
        self.published += k

    def churn_out(self, ids: list[int]) -> None:
        """Churn: unsubscribe the channels just acknowledged and top the window up with
        fresh subscribes, all in one frame."""
        w = self.wire
        parts = [w.unsubscribe(i) for i in ids]
        self.outstanding += len(ids)
        if self.running and now() < self.deadline:
            window = int(self.p.get("inflight", 1000))
            if self.outstanding <= window // 2:
                k = min(window - self.outstanding, int(self.p.get("max_channels", 5_000_000)) - self.issued)
                for _ in range(max(0, k)):
                    parts.append(w.subscribe(b"ch%d" % self.issued))
                    self.issued += 1
                self.outstanding += max(0, k)
        if parts:
            self.churner.t.send(BINARY, b"".join(parts))


class Conn(WSListener):
    """One connection. role: "sub", "pub", "rpc", "churn" or "idle".

    Until its Welcome (and, for a subscriber, its Subscribed) every frame is decoded in
    full; then `handle` is its role's fast path."""

    def __init__(self, load: Load, role: str, sampled: bool = False) -> None:
        super().__init__()
        self.load = load
        self.wire = load.wire
        self.role = role
        self.sampled = sampled
        self.t: Any = None
        self.ready = asyncio.get_running_loop().create_future()
        self.ctx = self.wire.context()
        self.counter: DeliveryCounter | None = None
        self.got = 0  # deliveries this subscriber received
        self.sent_at = 0.0
        self.handle = self.setup_frame

    def on_ws_connected(self, t: Any) -> None:
        self.t = t
        w = self.wire
        t.send(BINARY, w.handshake + w.subscribe_channel if self.role == "sub" else w.handshake)

    def on_ws_frame(self, t: Any, frame: Any) -> None:
        mt = frame.msg_type
        if mt == BINARY:
            self.handle(frame.get_payload_as_bytes())
        elif mt == CLOSE:
            self.load.closed += 1
            self.load.error(f"closed by the server: {frame.get_close_code()} {frame.get_close_message()!r}")
            t.send_close(frame.get_close_code())
            t.disconnect()

    def on_ws_disconnected(self, t: Any) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("disconnected before the handshake finished"))

    # -- before the fast path, and whatever it does not take ------------------------------
    def setup_frame(self, data: bytes) -> None:
        for m in self.decode(data):
            kind = type(m)
            if kind is P.Welcome:
                if self.role != "sub":
                    self.go()
            elif kind is P.Subscribed:
                info = m.channels[0]
                if info.error:
                    self.load.error(f"subscribe refused: {info.message}")
                    continue
                self.ctx.channel_types[info.id] = info.type_id
                self.counter = DeliveryCounter(info.id, self.wire.size)
                self.go()
            else:
                self.other(m)

    def go(self) -> None:
        self.handle = {
            "sub": self.deliveries,
            "pub": self.full,
            "rpc": self.round_trip,
            "churn": self.acks,
            "idle": self.idle_frame,
        }[self.role]
        if not self.ready.done():
            self.ready.set_result(True)

    def decode(self, data: bytes) -> list:
        try:
            return self.wire.decode(data, self.ctx)
        except ValueError as exc:  # DecodeError
            self.load.error(f"undecodable frame: {exc}")
            return []

    def full(self, data: bytes) -> None:
        """The full decoder: every message of the frame through `other`."""
        if self.role == "sub":
            self.load.frames += 1
        for m in self.decode(data):
            self.other(m)

    def other(self, m: Any) -> None:
        """One decoded message: deliveries and replies counted, pings answered, errors kept."""
        L = self.load
        kind = type(m)
        if kind is P.Message:
            if self.counter is not None and m.channel == self.counter.channel_id:
                self.got += 1
                L.units += 1
                if self.sampled:
                    body = m.payload.body  # a Bytes value: its length varint, then the data
                    L.latency((now() - stamp_of(body, 1 if body[0] < 0x80 else 2)) * 1000)
        elif kind is P.Ping:
            self.t.send(BINARY, self.wire.pong)
        elif kind is P.Result and self.role == "rpc":
            self.round_trip(self.wire.echo_reply)
        elif kind is P.Error:
            L.error(f"error {m.code}: {m.message}")
        elif kind is not P.Pong:
            L.error(f"unexpected {kind.__name__}")

    # -- fast paths ---------------------------------------------------------------------
    def deliveries(self, data: bytes) -> None:
        L = self.load
        counter = self.counter
        k = counter.count(data)
        if k:
            L.units += k
            L.frames += 1
            self.got += k
            if self.sampled:
                t = now()
                for s in counter.stamps(data, k):
                    L.latency((t - s) * 1000)
        else:
            self.full(data)
        if L.scenario == "single":
            L.kick()

    def round_trip(self, data: bytes) -> None:
        L = self.load
        if data != self.wire.echo_reply:
            self.full(data)  # its Result comes back here as echo_reply
            return
        L.units += 1
        if self.sampled:
            L.latency((now() - self.sent_at) * 1000)
        if L.running:
            self.sent_at = now()
            self.t.send(BINARY, self.wire.call_echo)
        else:
            L.outstanding -= 1

    def acks(self, data: bytes) -> None:
        L = self.load
        scanned = scan_acks(data)
        if scanned is None:
            msgs = self.decode(data)
            ids, results, errors = acks_of(msgs)
            for m in msgs:
                if type(m) is not P.Subscribed and type(m) is not P.Result:
                    self.other(m)
            L.outstanding -= errors
        else:
            ids, results = scanned
        L.units += len(ids) + results
        L.outstanding -= len(ids) + results
        L.churn_out(ids)

    def idle_frame(self, data: bytes) -> None:
        if data == self.wire.ping:
            self.t.send(BINARY, self.wire.pong)
        else:
            self.full(data)


async def main() -> None:
    L = Load()
    handlers = {"setup": L.setup, "start": L.start, "sample": L.sample, "stop": L.stop, "connect": L.connect}
    reply({"ready": True, "pid": os.getpid()})
    await serve_commands(handlers)


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())
