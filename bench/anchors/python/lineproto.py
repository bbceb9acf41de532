"""The harness's JSON-lines command loop for the Python anchor scripts (they run in the
bench venv, outside the `bench` package, so they share this small module instead).

One command per stdin line, one reply per stdout line, in order. End of stdin (the
harness went away) or {"cmd": "quit"} ends the process at once: os._exit, so that
thousands of open connections are not closed politely one by one.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import traceback


def reply(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def serve_commands(handlers: dict, hard_limit_s: float = 900.0) -> None:
    """Answer commands with handlers[cmd](command) (sync or async) until quit or EOF."""
    loop = asyncio.get_running_loop()
    loop.call_later(hard_limit_s, os._exit, 3)  # whatever happens, never outlive this
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            os._exit(0)
        if not line.strip():
            continue
        try:
            cmd = json.loads(line)
        except ValueError:
            reply({"error": "bad JSON command"})
            continue
        name = cmd.get("cmd")
        if name == "quit":
            os._exit(0)
        handler = handlers.get(name)
        if handler is None:
            reply({"error": f"unknown command {name!r}"})
            continue
        try:
            result = handler(cmd)
            if asyncio.iscoroutine(result):
                result = await result
            reply(result)
        except Exception:
            reply({"error": traceback.format_exc(limit=4)})


def percentiles(samples: list[float]) -> dict:
    if not samples:
        return {"lat_p50_ms": None, "lat_p99_ms": None, "lat_n": 0}
    s = sorted(samples)
    return {
        "lat_p50_ms": s[min(len(s) - 1, len(s) // 2)],
        "lat_p99_ms": s[min(len(s) - 1, int(0.99 * len(s)))],
        "lat_n": len(s),
    }
