"""The load of the `mmo` scenario for Tickwire: `clients` bots in one room, driven by the
harness's load protocol (bench/system.py).

    TICKWIRE_BENCH_SITE=<cache>/venv/lib/python3.X/site-packages python -m bench.tickwire_mmo_load

Each bot is a picows connection (as in bench/tickwire_load.py) that handshakes, joins
the room (bot 0 creates it, the others join it by id) and then, for every frame the room
sends it, sends one Input (a Steer: its avatar's step, bench/tickwire_mmo_app.py's
`steer_of`): one input per send tick, as the issue asks. It never decodes a steady
frame in full: `room_frame` reads the Tick header's tick number and `SyncCounter` counts
the EntitySync records from their group headers (bench/tickwire_frames.py). Anything else
in a frame (the join reply, the EntitySyncInfo, a ping) goes through the full decoder.

Counters (cumulative; the harness takes their deltas over the window):

- `units`: frames received by bot 0 (one per send tick: the scenario's ticks);
- `messages`: frames received by all bots; `bytes`: their payload bytes (WebSocket
  header excluded, as in the Colyseus load's `bytes`); `wire_bytes`: with the header;
- `client_ticks`: per bot, how far the Tick header's tick number advanced from one frame
  to the next, summed: `messages / client_ticks` is frames per client per send tick
  (1 when every bot gets exactly one frame each send tick; a second frame in a tick
  raises it, a skipped one lowers it). A room sends once per simulation step here
  (tick_rate = send_rate), so its tick number counts send ticks;
- `entity_updates`: update and enter records (an entity's new state; with every entity
  moving, each is a moving entity in the bot's view), so `bytes / entity_updates` is
  bytes per moving entity; `entity_departs`, `cell_leaves`;
- `inputs`, `other_frames` (frames without a Tick), `errors`, `closed`.

`sample` also carries `gauges`: the frame sizes since the previous sample (median and
10th/90th percentiles), which the harness keeps as they are.

More processes. With `load_procs` > 1 (default: one per 500 bots) this process starts
that many minus one more of itself (`--shard`), each holding a share of the bots
(joined to the room bot 0 created), relays every command to them and sums their
counters. The harness counts the CPU of the whole load tree.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from typing import Any

SITE_ENV = "TICKWIRE_BENCH_SITE"
if os.environ.get(SITE_ENV) and os.environ[SITE_ENV] not in sys.path:
    sys.path.append(os.environ[SITE_ENV])

from picows import WSListener, WSMsgType, ws_connect  # noqa: E402

from bench.anchors.python.lineproto import reply, serve_commands  # noqa: E402
from bench.process import Child, ProcessSpec  # noqa: E402
from bench.tickwire_frames import CLIENT, SyncCounter, room_frame  # noqa: E402
from bench.tickwire_mmo_app import ROOM, schema_module, steer_of  # noqa: E402
from engine._generated import protocol as P  # noqa: E402
from engine.codec import PACKED_SUBPROTOCOL  # noqa: E402
from engine.interest import SyncLayout  # noqa: E402
from engine.packed import Codebook, DecodeError, uvarint_bytes  # noqa: E402

BINARY, CLOSE = WSMsgType.BINARY, WSMsgType.CLOSE
now = time.perf_counter
SETUP_TIMEOUT_S = 60.0
BOTS_PER_PROCESS = 500
MAX_SIZE_SAMPLES = 100_000
COUNTERS = (
    "units",
    "messages",
    "bytes",
    "wire_bytes",
    "client_ticks",
    "entity_updates",
    "entity_departs",
    "cell_leaves",
    "inputs",
    "other_frames",
    "errors",
    "closed",
)


def ws_header(n: int) -> int:
    return 2 if n < 126 else 4 if n < 65536 else 10


class Shard:
    """The bots of this process and their counters."""

    def __init__(self) -> None:
        self.mmo = schema_module()
        self.codebook = Codebook(P, self.mmo)
        self.handshake = self.codebook.encode(P.Handshake(self.codebook.hash, "", CLIENT))
        self.port = 0
        self.p: dict = {}
        self.bots: list[Bot] = []
        self.room_id = ""
        self.counter: SyncCounter | None = None
        self.c = dict.fromkeys(COUNTERS, 0)
        self.sizes: list[int] = []
        self.first_error = ""

    def error(self, text: str) -> None:
        self.c["errors"] += 1
        if not self.first_error:
            self.first_error = text[:300]

    def join_frame(self, create: bool) -> bytes:
        if create:
            return self.codebook.encode(P.JoinRoom(1, ROOM, "", True, "", self.codebook.payload(None)))
        return self.codebook.encode(P.JoinRoom(1, "", self.room_id, False, "", self.codebook.payload(None)))

    def input_tail(self, bot: int) -> bytes:
        """The Steer payload of bot `bot`'s inputs (after the room handle and the seq)."""
        steer = self.mmo.Steer(*steer_of(bot))
        whole = self.codebook.encode(P.Input(0, 0, self.codebook.payload(steer)))
        return whole[3:]  # type id, room 0, seq 0: one byte each

    def layout(self, info: Any) -> None:
        if self.counter is None:
            fields = {k: getattr(info, k) for k in info.__slots__}
            self.counter = SyncCounter(SyncLayout.from_info(self.mmo.Mob, fields))

    async def open(self, first: int, n: int, create: bool = False, conc: int = 50) -> list[Bot]:
        """Bots first .. first+n-1, joined to the room (created by the first one if
        `create`); each is tried 3 times."""
        url = f"ws://127.0.0.1:{self.port}/"
        sem = asyncio.Semaphore(conc)

        async def one(i: int) -> Bot | None:
            async with sem:
                for attempt in range(3):
                    try:
                        _, bot = await ws_connect(
                            lambda: Bot(self, i, create and i == first),
                            url,
                            websocket_handshake_timeout=SETUP_TIMEOUT_S,
                            extra_headers={"Sec-WebSocket-Protocol": PACKED_SUBPROTOCOL},
                            max_frame_size=64 << 20,
                        )
                        await asyncio.wait_for(bot.joined, SETUP_TIMEOUT_S)
                        return bot
                    except Exception as exc:  # counted and reported; the harness decides
                        self.error(f"bot {i}: {exc!r}")
                        await asyncio.sleep(0.2 * (attempt + 1))
            return None

        got = await asyncio.gather(*(one(i) for i in range(first, first + n)))
        return [b for b in got if b is not None]

    def sample(self) -> dict:
        sizes, self.sizes = self.sizes, []
        return {"t": now(), **self.c, "first_error": self.first_error, "sizes": sizes}


class Bot(WSListener):
    """One bot: joins, then answers every send-tick frame with one Input."""

    def __init__(self, shard: Shard, index: int, create: bool) -> None:
        super().__init__()
        self.shard = shard
        self.index = index
        self.create = create
        self.t: Any = None
        self.joined = asyncio.get_running_loop().create_future()
        self.ctx = shard.codebook.context(max_string=1 << 20, max_vector=1 << 24)
        self.head = b""  # Input type id and room handle
        self.tail = shard.input_tail(index)
        self.seq = 0
        self.last_tick = -1
        self.sampled = index % 10 == 0  # frame sizes of one bot in ten

    def on_ws_connected(self, t: Any) -> None:
        self.t = t
        t.send(BINARY, self.shard.handshake + self.shard.join_frame(self.create))

    def on_ws_disconnected(self, t: Any) -> None:
        if not self.joined.done():
            self.joined.set_exception(ConnectionError("disconnected before joining"))

    def on_ws_frame(self, t: Any, frame: Any) -> None:
        mt = frame.msg_type
        if mt == BINARY:
            self.frame(frame.get_payload_as_bytes())
        elif mt == CLOSE:
            self.shard.c["closed"] += 1
            self.shard.error(f"closed by the server: {frame.get_close_code()} {frame.get_close_message()!r}")
            t.send_close(frame.get_close_code())
            t.disconnect()

    def frame(self, data: bytes) -> None:
        shard = self.shard
        counter = shard.counter
        room = room_frame(data) if counter is not None and self.head else None
        if room is None:
            self.full(data)
            return
        tick, start, end = room
        c = shard.c
        if start < end:
            u, e, d, leaves = counter.count(data[start:end])
            c["entity_updates"] += u + e
            c["entity_departs"] += d
            c["cell_leaves"] += leaves
        self.ticked(tick, len(data))

    def ticked(self, tick: int, size: int) -> None:
        """A frame with one Tick header (and the room's section): count it, answer it."""
        c = self.shard.c
        c["messages"] += 1
        c["bytes"] += size
        c["wire_bytes"] += size + ws_header(size)
        if self.last_tick >= 0:
            c["client_ticks"] += tick - self.last_tick
        self.last_tick = tick
        if self.index == 0:
            c["units"] += 1
        if self.sampled and len(self.shard.sizes) < MAX_SIZE_SAMPLES:
            self.shard.sizes.append(size)
        self.seq += 1
        self.t.send(BINARY, self.head + uvarint_bytes(self.seq) + self.tail)
        c["inputs"] += 1

    def full(self, data: bytes) -> None:
        """Every message of the frame through the decoder."""
        shard = self.shard
        try:
            msgs = shard.codebook.decode_frame(data, self.ctx)
        except DecodeError as exc:
            shard.error(f"undecodable frame: {exc}")
            return
        ticks = []
        for m in msgs:
            kind = type(m)
            if kind is P.Tick:
                ticks.append(m.tick)
            elif kind is P.EntitySync:
                if shard.counter is None:
                    shard.error("EntitySync before EntitySyncInfo")
                    continue
                try:
                    u, e, d, leaves = shard.counter.count(bytes(m.data))
                except DecodeError as exc:
                    shard.error(f"bad EntitySync: {exc}")
                    continue
                shard.c["entity_updates"] += u + e
                shard.c["entity_departs"] += d
                shard.c["cell_leaves"] += leaves
            elif kind is P.EntitySyncInfo:
                shard.layout(m)
            elif kind is P.RoomJoined:
                self.head = uvarint_bytes(P.Input.TYPE_ID) + uvarint_bytes(m.room)
                if self.create:
                    shard.room_id = m.room_id
                if not self.joined.done():
                    self.joined.set_result(True)
            elif kind is P.Ping:
                self.t.send(BINARY, shard.codebook.encode(P.Pong()))
            elif kind is P.Error:
                shard.error(f"error {m.code}: {m.message}")
                if not self.joined.done():
                    self.joined.set_exception(RuntimeError(f"join refused: {m.message}"))
            elif kind is P.RoomLeft:
                shard.error(f"left the room: {m.code} {m.reason}")
            elif kind not in (P.Welcome, P.Pong):
                shard.error(f"unexpected {kind.__name__}")
        if len(ticks) > 1:
            shard.error(f"{len(ticks)} Tick headers in one frame")
        if ticks and self.head:
            self.ticked(ticks[-1], len(data))
        else:
            shard.c["other_frames"] += 1


class Load:
    """The harness's side: this process's shard, and the other shards' processes."""

    def __init__(self) -> None:
        self.shard = Shard()
        self.others: list[Child] = []
        self.p: dict = {}

    def _spawn(self, k: int) -> None:
        for i in range(1, k):
            spec = ProcessSpec([sys.executable, "-m", "bench.tickwire_mmo_load", "--shard"], env={"PYTHONUNBUFFERED": "1"})
            # The shards' stderr goes where this process's goes: the run's load log.
            child = Child(spec, f"load-shard-{i}", "/proc/self/fd/2")
            child.wait_ready()
            self.others.append(child)

    async def _all(self, cmd: dict | list[dict], timeout_s: float = 60.0) -> list[dict]:
        """A command to every other shard at once (one each, when a list); their replies."""
        loop = asyncio.get_running_loop()
        cmds = cmd if isinstance(cmd, list) else [cmd] * len(self.others)
        return list(
            await asyncio.gather(
                *(loop.run_in_executor(None, c.request, m, timeout_s) for c, m in zip(self.others, cmds))
            )
        )

    async def setup(self, cmd: dict) -> dict:
        self.p = p = cmd.get("params", {})
        shard = self.shard
        shard.port, shard.p = cmd["port"], p
        n = int(p.get("clients", 100))
        procs = max(1, int(p.get("load_procs", 0)) or -(-n // BOTS_PER_PROCESS))
        procs = min(procs, n)
        t0 = now()
        first = await shard.open(0, 1, create=True)
        if not first:
            return {"error": f"bot 0 could not create the room ({shard.first_error})"}
        shard.bots = first
        shares = [n // procs + (1 if i < n % procs else 0) for i in range(procs)]
        starts = [sum(shares[:i]) for i in range(procs)]
        if procs > 1:
            await asyncio.get_running_loop().run_in_executor(None, self._spawn, procs)
            joins = [
                {"cmd": "join", "port": shard.port, "room_id": shard.room_id, "first": starts[i], "n": shares[i]}
                for i in range(1, procs)
            ]
            pending = asyncio.ensure_future(self._all(joins, SETUP_TIMEOUT_S * 4))
        shard.bots += await shard.open(1, shares[0] - 1)
        joined = len(shard.bots)
        if procs > 1:
            joined += sum(r["joined"] for r in await pending)
        if joined < n:
            return {"error": f"only {joined} of {n} bots joined ({shard.first_error})"}
        return {"ok": True, "connected": joined, "room": shard.room_id, "load_procs": procs, "ms": round((now() - t0) * 1000)}

    async def sample(self, cmd: dict) -> dict:
        mine = self.shard.sample()
        parts = [mine, *(await self._all({"cmd": "sample"}))] if self.others else [mine]
        out: dict[str, Any] = {"t": mine["t"]}
        for k in COUNTERS:
            out[k] = sum(s[k] for s in parts)
        out["first_error"] = next((s["first_error"] for s in parts if s["first_error"]), "")
        sizes = sorted(x for s in parts for x in s["sizes"])
        if sizes:
            q = statistics.quantiles(sizes, n=10) if len(sizes) > 1 else [sizes[0]] * 9
            out["gauges"] = {"frame_bytes_p50": statistics.median(sizes), "frame_bytes_p10": q[0], "frame_bytes_p90": q[8]}
        return out

    async def stop(self, cmd: dict) -> dict:
        # The room ticks by itself: nothing to stop; the bots answer until the end.
        return {"ok": True, "bots": len(self.shard.bots) + sum(r["bots"] for r in await self._all({"cmd": "count"}))}

    def start(self, cmd: dict) -> dict:
        return {"ok": True}


async def shard_main() -> None:
    shard = Shard()

    async def join(cmd: dict) -> dict:
        shard.port, shard.room_id = cmd["port"], cmd["room_id"]
        shard.bots = await shard.open(int(cmd["first"]), int(cmd["n"]))
        return {"joined": len(shard.bots), "first_error": shard.first_error}

    handlers = {"join": join, "sample": lambda cmd: shard.sample(), "count": lambda cmd: {"bots": len(shard.bots)}}
    reply({"ready": True, "pid": os.getpid()})
    await serve_commands(handlers)


async def main() -> None:
    load = Load()
    handlers = {"setup": load.setup, "start": load.start, "sample": load.sample, "stop": load.stop}
    reply({"ready": True, "pid": os.getpid()})
    # "quit" ends this process at once (os._exit); the shards die with it (PDEATHSIG), and
    # the harness ends the whole load tree anyway.
    await serve_commands(handlers)


if __name__ == "__main__":
    import uvloop

    ap = argparse.ArgumentParser(description="The mmo scenario's Tickwire bots.")
    ap.add_argument("--shard", action="store_true", help="hold a share of the bots for another load process")
    args = ap.parse_args()
    uvloop.run(shard_main() if args.shard else main())
