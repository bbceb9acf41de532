"""The sample game in a real browser: Debian's Chromium, headless, driven by Playwright.

The test starts the cluster (`tickwire run` with two workers and a broker, the debug
procedure on), opens the game in two pages whose WebSockets sit on different workers, and
checks what a player would: the canvas draws, keys move the avatar (in the room's own
state, asked through the Python client, and on the other page), and chat lines reach both
pages. Screenshots go to artifacts/ (git-ignored).

Chromium comes from `make system-deps` (never `playwright install`); the playwright package
from the test extras. In CI a missing one fails the test instead of skipping it.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import pytest

from engine import Client
from sample_game.generated import game

from conftest import IN_CI, require_tool
from helpers import ROOT, ServerProcess, arun

ARTIFACTS = os.path.join(ROOT, "artifacts")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WAIT_MS = 15000  # bound of every wait for the page


def playwright_api() -> Any:
    try:
        from playwright import async_api
    except ImportError:
        message = "the playwright package is not installed (pip install -c constraints.txt -e '.[test]')"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return async_api


async def joined(page: Any, port: int, name: str) -> dict[str, Any]:
    """Open the game as `name`; once its avatar is drawn, what the page knows of itself."""
    await page.goto(f"http://127.0.0.1:{port}/?name={name}")
    await page.wait_for_function("globalThis.meadow && globalThis.meadow.me !== null", timeout=WAIT_MS)
    return await page.evaluate(
        "({room: meadow.room.id, player: meadow.room.player, process: meadow.client.process})"
    )


async def distinct_colours(page: Any) -> int:
    """How many colours the canvas holds (a blank one has one)."""
    return await page.evaluate(
        """() => {
          const c = document.getElementById("view");
          const data = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
          const seen = new Set();
          for (let i = 0; i < data.length; i += 4 * 7) seen.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
          return seen.size;
        }"""
    )


async def server_position(client: Client, room_id: str, player: int) -> tuple[float, float]:
    rows = await client.call("debug.players", {"room_id": room_id})
    me = next(r for r in rows if r["player"] == player)
    return me["x"], me["y"]


def test_two_browsers_on_two_workers_walk_and_chat():
    chromium = require_tool("chromium")
    pw = playwright_api()
    os.makedirs(ARTIFACTS, exist_ok=True)
    server = ServerProcess("sample_game.app:app", "--workers", "2", "--brokers", "1", env={"TICKWIRE_SAMPLE_DEBUG": "1"})

    async def scenario() -> None:
        async with pw.async_playwright() as p:
            browser = await p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
            try:
                await play(browser)
            finally:
                await browser.close()

    async def play(browser: Any) -> None:
        errors: list[str] = []
        alice_page = await browser.new_page(viewport={"width": 1280, "height": 720})
        alice_page.on("pageerror", lambda exc: errors.append(f"alice: {exc}"))
        alice = await joined(alice_page, server.port, "Alice")

        # Bob's page, until its WebSocket lands on the other worker (the kernel spreads
        # connections over the workers' SO_REUSEPORT sockets: a fresh one is a coin toss).
        bob_page = await browser.new_page(viewport={"width": 1280, "height": 720})
        bob_page.on("pageerror", lambda exc: errors.append(f"bob: {exc}"))
        for _ in range(16):
            bob = await joined(bob_page, server.port, "Bob")
            if bob["process"] != alice["process"]:
                break
            await bob_page.goto("about:blank")
        assert bob["process"] != alice["process"], "both pages stayed on one worker"
        assert bob["room"] == alice["room"], "two workers, one world"

        # The canvas draws the world: the ground, scenery, creatures, names.
        assert await distinct_colours(alice_page) > 100

        client = Client(f"ws://127.0.0.1:{server.port}/", schemas=[game])
        await client.connect()
        try:
            x0, y0 = await server_position(client, alice["room"], alice["player"])
            # Keys move Alice in the room's own state...
            await alice_page.keyboard.down("KeyD")
            await alice_page.keyboard.down("KeyS")
            moved: list[tuple[float, float]] = []

            async def walked() -> bool:
                moved.append(await server_position(client, alice["room"], alice["player"]))
                return moved[-1][0] > x0 + 60 and moved[-1][1] > y0 + 60

            await until(walked, "Alice's avatar did not move on the server")
            await alice_page.keyboard.up("KeyD")
            await alice_page.keyboard.up("KeyS")

            # ...and Bob, on the other worker, sees her walk there.
            await bob_page.wait_for_function(
                """([player, x, y]) => {
                  const world = meadow.room.entities;
                  for (const e of world ? world.entities.values() : [])
                    if (e.kind === 0 && e.player === player) return e.x > x && e.y > y;
                  return false;
                }""",
                arg=[alice["player"], x0 + 60, y0 + 60],
                timeout=WAIT_MS,
            )
            # Alice stops when the keys are up: the server's position settles.
            await until(lambda: settled(client, alice), "Alice did not stop")

            # Chat: a line from each page reaches both.
            await say(alice_page, "hello from Alice")
            await say(bob_page, "hi Alice, Bob here")
            for page in (alice_page, bob_page):
                for text in ("hello from Alice", "hi Alice, Bob here"):
                    await page.wait_for_function(
                        "(text) => document.getElementById('chat-log').textContent.includes(text)", arg=text, timeout=WAIT_MS
                    )
            # Bob's avatar, seen from Alice's page: the HUD counts him nearby.
            await alice_page.wait_for_function("document.getElementById('hud-nearby').textContent === '1'", timeout=WAIT_MS)
            await alice_page.screenshot(path=os.path.join(ARTIFACTS, "sample_game_alice.png"))
            await bob_page.screenshot(path=os.path.join(ARTIFACTS, "sample_game_bob.png"))
        finally:
            await client.close()
        assert errors == []

    with server:
        arun(scenario(), timeout=120)


async def settled(client: Client, who: dict[str, Any]) -> bool:
    """Whether the avatar stands still: the same position in two looks, 0.2 s apart."""
    a = await server_position(client, who["room"], who["player"])
    await asyncio.sleep(0.2)
    return a == await server_position(client, who["room"], who["player"])


async def say(page: Any, text: str) -> None:
    await page.keyboard.press("Enter")
    await page.keyboard.type(text)
    await page.keyboard.press("Enter")


async def until(check: Any, message: str, timeout: float = 15.0) -> None:
    """Await `check()` (a coroutine function) until it is true, bounded by `timeout` s."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(message)
        await asyncio.sleep(0.1)
