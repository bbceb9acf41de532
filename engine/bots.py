"""Bots: Python clients that join the sample game's world and walk around in it.

    tickwire bots --n 50 ws://localhost:8000/          # until Ctrl-C
    tickwire bots --n 200 --duration 60 --chat 20 ws://host:8000/

Each bot is one `engine.Client` (its own WebSocket, as a browser's) that joins the room
type `world` under the name `bot-<k>` and then plays: it walks to one point of its area
after another (a click, in the browser), repeating its intent four times a second as a
dragging pointer does, so the inputs' rate and round trips look like a player's. Bots
stay in their area (`--area X,Y,R`, around the plaza by default), so the world can be
filled where players look: demos, and load tests (the room's frames go to every bot,
interest-managed like any player's). For a game whose Move has no target (a `tickwire
create` project's), bots stroll with "keys" instead: a direction for a second or so,
then a pause (bounded only by the world's edge).

Bots join at `--rate` per second (the server allows 20 handshakes a second per address and
worker by default: raise its `max_handshakes_per_ip_per_second` to join faster), and a
bot whose connection is refused tries again with backoff. Ctrl-C (or SIGTERM, or the end
of `--duration`) makes every bot leave the room and close; a second Ctrl-C exits at once.

The inputs are the sample game's (`Move`, `Say` from `--schema`, by default the module
sample_game/generated/game.py, imported from the current directory as `tickwire run`
imports apps). The client's codebook must match the server's, so the schema is the
server's own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import math
import os
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Sequence

from .client import Client
from .errors import ConnectionClosed

__all__ = ["BotArea", "BotStats", "Bot", "run_bots", "main", "load_schema"]

log = logging.getLogger("tickwire.bots")

DEFAULT_SCHEMA = "sample_game.generated.game"
DEFAULT_ROOM = "world"
HEARTBEAT = 0.25  # s between repeats of a held direction (the room's intent timeout is 1 s)
LINES = (
    "hello!", "nice weather today", "has anyone seen the wisps?", "this meadow is big",
    "look at all the bunnies", "brb", "anyone up for a walk to the pond?", "gg",
    "the slimes are friendly, right?", "I think I'm lost", "over here!", "tick tock",
)


@dataclass(frozen=True)
class BotArea:
    """Where bots walk: within `radius` of (x, y), world units."""

    x: float = 2000.0
    y: float = 2000.0
    radius: float = 600.0

    @classmethod
    def parse(cls, text: str) -> "BotArea":
        try:
            x, y, r = (float(v) for v in text.split(","))
        except ValueError:
            raise ValueError(f"an area is X,Y,RADIUS (numbers), not {text!r}") from None
        if r <= 0:
            raise ValueError("the area's radius must be positive")
        return cls(x, y, r)

    def point(self, rng: random.Random) -> tuple[float, float]:
        a = rng.uniform(0, 2 * math.pi)
        r = self.radius * math.sqrt(rng.random())
        return self.x + r * math.cos(a), self.y + r * math.sin(a)


@dataclass
class BotStats:
    """What a run did, summed over its bots."""

    joined: int = 0
    failed: int = 0  # bots that gave up joining
    inputs: int = 0
    lines: int = 0  # chat lines said
    bytes_received: int = 0
    errors: list[str] = field(default_factory=list)

    def summary(self, seconds: float) -> str:
        rate = self.bytes_received / seconds if seconds > 0 else 0.0
        return (
            f"{self.joined} bot(s) joined, {self.failed} failed; {self.inputs} inputs, {self.lines} chat lines; "
            f"{self.bytes_received / 1e3:.1f} kB received ({rate / 1e3:.1f} kB/s) in {seconds:.1f} s"
        )


def load_schema(name: str) -> ModuleType:
    """The game's generated schema module, by import name (the current directory first)."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        raise SystemExit(f"cannot import the schema module {name!r} ({exc}); run from the project's directory or pass --schema") from None
    for needed in ("Move", "Say"):
        if not hasattr(module, needed):
            raise SystemExit(f"schema module {name!r} has no {needed} message: bots play the sample game's inputs")
    return module


class Bot:
    """One client playing: join, then walk and talk until `stop` is set."""

    def __init__(
        self,
        k: int,
        url: str,
        schema: ModuleType,
        area: BotArea,
        stats: BotStats,
        *,
        room_type: str = DEFAULT_ROOM,
        chat_every: float = 0.0,
        rng: random.Random | None = None,
        join_attempts: int = 6,
    ):
        self.k = k
        self.name = f"bot-{k}"
        self.url = url
        self.schema = schema
        self.area = area
        self.stats = stats
        self.room_type = room_type
        self.chat_every = chat_every  # mean seconds between lines; 0: silent
        self.rng = rng or random.Random()
        self.join_attempts = join_attempts
        # The sample game's Move can say "walk to (tx, ty)"; a game whose Move cannot
        # (a `tickwire create` project's) gets strolls with keys only.
        self.clicks = "to" in getattr(schema.Move, "__slots__", ())
        self.client: Client | None = None
        self.room: Any = None
        self.counted = 0  # bytes already added to stats

    async def run(self, stop: asyncio.Event) -> None:
        try:
            if await self._join(stop):
                await self._play(stop)
        finally:
            await self._leave()

    async def _join(self, stop: asyncio.Event) -> bool:
        delay = 0.5
        for attempt in range(self.join_attempts):
            if stop.is_set():
                return False
            client = Client(self.url, schemas=[self.schema], reconnect=True)
            try:
                await client.connect()
                self.room = await client.join_room(self.room_type, {"name": self.name})
            except Exception as exc:  # refused (handshake limit), full, timed out, server away
                await _quietly(client.close())
                if attempt == self.join_attempts - 1:
                    self.stats.failed += 1
                    self.stats.errors.append(f"{self.name}: {exc}")
                    return False
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay * (1 + self.rng.random()))
                delay = min(delay * 2, 8.0)
                continue
            self.client = client
            self.stats.joined += 1
            return True
        return False

    async def _play(self, stop: asyncio.Event) -> None:
        rng = self.rng
        next_line = self._next_line(time.monotonic())
        while not stop.is_set() and self.room.left is None:
            if self.clicks:
                # Walk to a point of the area, as a click would; the intent is repeated as a
                # dragging pointer's would be. Every point on the way is in the area (it
                # is a disc), so once in it the bot never leaves it.
                x, y = self.area.point(rng)
                move = self.schema.Move(0, 0, True, x, y)
                until = time.monotonic() + rng.uniform(2.0, 5.0)
            else:
                a = rng.randrange(8) * math.pi / 4
                move = self.schema.Move(round(100 * math.cos(a)), round(100 * math.sin(a)))
                until = time.monotonic() + rng.uniform(0.5, 1.5)
            while not stop.is_set() and time.monotonic() < until:
                self._input(move)
                if await _wait(stop, HEARTBEAT):
                    break
            if not self.clicks:
                self._input(self.schema.Move(0, 0))
            now = time.monotonic()
            if next_line is not None and now >= next_line:
                self._input(self.schema.Say(rng.choice(LINES)))
                self.stats.lines += 1
                next_line = self._next_line(now)
            self._count()
            if not self.clicks and await _wait(stop, rng.uniform(0.3, 1.5)):
                break

    def _next_line(self, now: float) -> float | None:
        return now + self.rng.expovariate(1 / self.chat_every) if self.chat_every > 0 else None

    def _input(self, data: Any) -> None:
        try:
            self.room.input(data)
            self.stats.inputs += 1
        except ConnectionClosed:
            pass  # reconnecting: the next input goes when the seat is back

    def _count(self) -> None:
        if self.client is not None:
            self.stats.bytes_received += self.client.bytes_received - self.counted
            self.counted = self.client.bytes_received

    async def _leave(self) -> None:
        client = self.client
        if client is None:
            return
        self._count()
        self.client = None
        if self.room is not None and self.room.left is None and client.connected:
            await _quietly(self.room.leave(), timeout=3.0)
        await _quietly(client.close(), timeout=5.0)


async def _wait(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep `seconds`, or less if `stop` is set; whether it is."""
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


async def _quietly(aw: Any, timeout: float = 5.0) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(aw, timeout)


async def run_bots(
    url: str,
    n: int,
    *,
    schema: ModuleType,
    room_type: str = DEFAULT_ROOM,
    area: BotArea = BotArea(),
    rate: float = 10.0,
    duration: float | None = None,
    chat_every: float = 0.0,
    seed: int | None = None,
    stop: asyncio.Event | None = None,
    report_every: float = 0.0,
) -> BotStats:
    """Run `n` bots until `stop` is set or `duration` seconds pass; every bot has left and
    closed its connection when this returns."""
    if n < 1:
        raise ValueError("n must be at least 1")
    if rate <= 0:
        raise ValueError("rate must be positive")
    stop = stop or asyncio.Event()
    stats = BotStats()
    master = random.Random(seed)
    bots = [
        Bot(k + 1, url, schema, area, stats, room_type=room_type, chat_every=chat_every, rng=random.Random(master.random()))
        for k in range(n)
    ]
    started = time.monotonic()
    tasks: list[asyncio.Task[None]] = []
    timer = asyncio.get_running_loop().call_later(duration, stop.set) if duration is not None else None
    reporter = asyncio.create_task(_report(stats, stop, report_every, started)) if report_every > 0 else None
    try:
        for bot in bots:
            if stop.is_set():
                break
            tasks.append(asyncio.create_task(bot.run(stop)))
            if await _wait(stop, 1.0 / rate):
                break
        await stop.wait()
    finally:
        stop.set()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if timer is not None:
            timer.cancel()
        if reporter is not None:
            reporter.cancel()
    for bot in bots:
        bot._count()
    return stats


async def _report(stats: BotStats, stop: asyncio.Event, every: float, started: float) -> None:
    last_bytes, last_at = 0, started
    while not await _wait(stop, every):
        now = time.monotonic()
        rate = (stats.bytes_received - last_bytes) / (now - last_at)
        last_bytes, last_at = stats.bytes_received, now
        print(f"bots: {stats.joined} in the world, {stats.failed} failed, {rate / 1e3:.1f} kB/s down", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tickwire bots", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("url", metavar="URL", help="the server, e.g. ws://localhost:8000/ (http:// works too)")
    p.add_argument("--n", type=int, default=10, help="how many bots (default 10)")
    p.add_argument("--room", default=DEFAULT_ROOM, help=f"room type to join (default {DEFAULT_ROOM})")
    p.add_argument("--schema", default=DEFAULT_SCHEMA, help=f"the game's generated schema module (default {DEFAULT_SCHEMA})")
    p.add_argument("--area", type=BotArea.parse, default=BotArea(), metavar="X,Y,R", help="where they walk (default 2000,2000,600)")
    p.add_argument("--rate", type=float, default=10.0, help="bots joining per second (default 10)")
    p.add_argument("--duration", type=float, default=None, metavar="SECONDS", help="stop after this long (default: until Ctrl-C)")
    p.add_argument("--chat", type=float, default=0.0, metavar="SECONDS", help="each bot says a line every SECONDS on average (default: silent)")
    p.add_argument("--seed", type=int, default=None, help="random seed, for repeatable runs")


def run_from_args(args: argparse.Namespace) -> int:
    url = args.url
    if url.startswith(("http://", "https://")):
        url = "ws" + url[4:]
    if args.n < 1:
        print("--n must be at least 1", file=sys.stderr)
        return 2
    schema = load_schema(args.schema)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    async def go() -> BotStats:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        signals = 0

        def on_signal() -> None:
            nonlocal signals
            signals += 1
            if signals > 1:
                os._exit(130)  # a second Ctrl-C: now
            print("bots: leaving (Ctrl-C again to quit at once)", file=sys.stderr, flush=True)
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        return await run_bots(
            url, args.n, schema=schema, room_type=args.room, area=args.area, rate=args.rate,
            duration=args.duration, chat_every=args.chat, seed=args.seed, stop=stop, report_every=5.0,
        )

    started = time.monotonic()
    print(f"bots: {args.n} joining {url} (room type {args.room!r}); Ctrl-C to stop", file=sys.stderr, flush=True)
    stats = asyncio.run(go())
    print(f"bots: {stats.summary(time.monotonic() - started)}", file=sys.stderr, flush=True)
    for error in stats.errors[:5]:
        print(f"  {error}", file=sys.stderr)
    return 0 if stats.joined else 1
