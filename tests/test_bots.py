"""`tickwire bots`: Python clients that join the sample game's world and walk, against a
live cluster (two workers), stopped by the caller or by Ctrl-C."""

from __future__ import annotations

import asyncio
import math
import signal
import subprocess
import sys

import pytest

from engine import Client
from engine.bots import BotArea, run_bots
from sample_game.generated import game
from sample_game.room import PLAZA

from helpers import ROOT, ServerProcess, arun, eventually


@pytest.fixture(scope="module")
def server():
    with ServerProcess("sample_game.app:app", "--workers", "2", env={"TICKWIRE_SAMPLE_DEBUG": "1"}) as s:
        yield s


def url(server: ServerProcess) -> str:
    return f"ws://127.0.0.1:{server.port}/"


async def observer(server: ServerProcess):
    """A client in the world, watching its roster."""
    client = Client(url(server), schemas=[game])
    await client.connect()
    room = await client.join_room("world", {"name": "observer"})
    return client, room


def bots_in(room) -> list[str]:
    return sorted(m.name for m in (room.state.players if room.state else []) if m.name.startswith("bot-"))


def test_area_parsing():
    assert BotArea.parse("100,200.5,30") == BotArea(100.0, 200.5, 30.0)
    for bad in ("1,2", "a,b,c", "1,2,0"):
        with pytest.raises(ValueError):
            BotArea.parse(bad)


def test_bots_join_walk_in_their_area_and_leave(server):
    area = BotArea(PLAZA[0], PLAZA[1], 300.0)

    async def scenario():
        client, room = await observer(server)
        stop = asyncio.Event()
        run = asyncio.create_task(run_bots(url(server), 4, schema=game, area=area, rate=20, seed=7, stop=stop))
        try:
            await eventually(lambda: bots_in(room) == ["bot-1", "bot-2", "bot-3", "bot-4"], timeout=20)
            first = {r["name"]: (r["x"], r["y"]) for r in await client.call("debug.players", {"room_id": room.id})}
            moved: set[str] = set()
            for _ in range(100):  # bounded: 100 looks, 0.1 s apart
                rows = await client.call("debug.players", {"room_id": room.id})
                for r in rows:
                    if r["name"].startswith("bot-"):
                        assert math.hypot(r["x"] - area.x, r["y"] - area.y) <= area.radius + 0.5, r
                        if (r["x"], r["y"]) != first[r["name"]]:
                            moved.add(r["name"])
                if len(moved) == 4:
                    break
                await asyncio.sleep(0.1)
            assert len(moved) == 4, f"only {sorted(moved)} moved"
        finally:
            stop.set()
            stats = await run
        assert (stats.joined, stats.failed) == (4, 0)
        assert stats.inputs >= 4 and stats.bytes_received > 0
        await eventually(lambda: bots_in(room) == [], timeout=10)  # they left (not dropped)
        await client.close()

    arun(scenario(), timeout=90)


def test_the_command_runs_until_ctrl_c(server):
    async def scenario():
        client, room = await observer(server)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "engine.cli", "bots", "--n", "2", "--rate", "20", "--chat", "0.5", url(server),
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        try:
            await eventually(lambda: len(bots_in(room)) == 2, timeout=20)
            while True:  # the bots talk (--chat): past the news of their joins, a line of theirs
                line = await room.next_message(timeout=10)
                if isinstance(line, game.Chat) and line.player:
                    assert line.name.startswith("bot-")
                    break
            proc.send_signal(signal.SIGINT)
            out, _ = await asyncio.wait_for(proc.communicate(), 20)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        text = out.decode()
        assert proc.returncode == 0, text
        assert "2 bot(s) joined, 0 failed" in text
        await eventually(lambda: bots_in(room) == [], timeout=10)
        await client.close()

    arun(scenario(), timeout=90)
