"""One Tickwire worker, as `tickwire run bench.apps:app --single` starts it, plus the
harness's server commands on stdin:

    python -m bench.tickwire_server --port P [--app bench.apps:app]

It serves with engine.server.serve, the same code `tickwire run --single` runs (one
process, uvloop, no supervisor), and reads JSON lines like the anchors' servers do:
{"cmd": "gc"} collects garbage before a memory reading (the Python anchors do it too, so
idle memory is compared on equal terms), {"cmd": "stats"} returns the worker's counters
(frames and deliveries out, ...: the harness keeps their deltas per window), and
{"cmd": "quit"} or the end of stdin exits at once. The command reader is idle during
the window: it reads a line only when the harness sends one.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
from typing import Any

from bench.anchors.python.lineproto import reply, serve_commands
from engine.cli import load_app
from engine.server import serve


async def main(spec: str, port: int) -> None:
    app = load_app(spec)
    loop = asyncio.get_running_loop()
    started: asyncio.Future[Any] = loop.create_future()
    server = loop.create_task(serve(app, "127.0.0.1", port, ready=started.set_result))
    await asyncio.wait([server, started], return_when=asyncio.FIRST_COMPLETED)
    if server.done():
        server.result()  # raises why it did not start
        raise RuntimeError("the server stopped before it started")
    worker = started.result()

    def collect(cmd: dict) -> dict:
        gc.collect()
        gc.collect()
        return {"ok": True}

    def stats(cmd: dict) -> dict:
        return worker.stats.as_dict()

    reply({"ready": True, "pid": os.getpid(), "process": worker.process})
    commands = loop.create_task(serve_commands({"gc": collect, "stats": stats}))
    await asyncio.wait([server, commands], return_when=asyncio.FIRST_COMPLETED)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="One Tickwire worker for the bench harness.")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--app", default="bench.apps:app")
    ap.add_argument("--log-level", default="info")
    args = ap.parse_args()
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()), format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    import uvloop

    uvloop.run(main(args.app, args.port))
