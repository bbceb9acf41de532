"""One Tickwire worker, as `tickwire run bench.apps:app --single` starts it, plus the
harness's server commands on stdin:

    python -m bench.tickwire_server --port P [--app bench.apps:app] [--stats module:function]

It serves with engine.server.serve, the same code `tickwire run --single` runs (one
process, uvloop, no supervisor), and reads JSON lines like the anchors' servers do:
{"cmd": "gc"} collects garbage before a memory reading (the Python anchors do it too, so
idle memory is compared on equal terms), {"cmd": "stats"} returns the worker's counters
(frames and deliveries out, ...: the harness keeps their deltas per window), and
{"cmd": "quit"} or the end of stdin exits at once. The command reader is idle during
the window: it reads a line only when the harness sends one.

With rooms, `stats` also splits the process's CPU time (cumulative µs):

- `out_cpu_us`: the rooms' wake-ups (engine/roomservice.py measures each one's process
  time) less the part of them that applies queued inputs: simulation, interest, encoding,
  and the writes of every frame: what the floor's ticks do (bench/anchors/python/mmo_floor.py);
- `in_cpu_us`: everything else: reading, decoding and queuing the clients' inputs, the
  event loop around them, and applying the inputs at the tick (`room_input_cpu_us`, the
  rooms' `input_cpu_ms`: the game's on_input for every input, and the loop that feeds it).
  The CPU of the stats commands themselves is left out.
- `room_wake_cpu_us`: the wake-ups whole (out_cpu_us + room_input_cpu_us).

and the rooms' counters summed (`room_sends`, `room_skipped_sends`, `room_inputs`, ...).
`--stats module:function` adds what function(worker) returns (bench/tickwire_mmo_app.py's
`view_sample`); it runs before the CPU is read, so its cost is not in the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import logging
import os
import time
from typing import Any, Callable

from bench.anchors.python.lineproto import reply, serve_commands
from engine.cli import load_app
from engine.server import serve


class CpuSplit:
    """The process's CPU time in room wake-ups and outside them, less what `stats` costs."""

    def __init__(self) -> None:
        self.excluded = 0.0  # seconds spent answering stats

    def figures(self, worker: Any, extra: Callable[[Any], dict] | None) -> dict[str, float]:
        t0 = time.process_time()
        out = dict(extra(worker)) if extra is not None else {}
        runners = list(worker.rooms.hosted.values())
        for name in ("sends", "skipped_sends", "ticks", "skipped_ticks", "inputs", "inputs_dropped", "bytes_sent"):
            out["room_" + name] = sum(getattr(r.stats, name) for r in runners)
        rooms_cpu = sum(r.stats.cpu_ms for r in runners) / 1000
        apply_cpu = sum(r.stats.input_cpu_ms for r in runners) / 1000
        t1 = time.process_time()
        self.excluded += t1 - t0
        out["room_wake_cpu_us"] = rooms_cpu * 1e6
        out["room_input_cpu_us"] = apply_cpu * 1e6
        out["out_cpu_us"] = (rooms_cpu - apply_cpu) * 1e6
        out["in_cpu_us"] = (t1 - self.excluded - rooms_cpu + apply_cpu) * 1e6
        return out


def load_function(spec: str) -> Callable[[Any], dict]:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


async def main(spec: str, port: int, extra: Callable[[Any], dict] | None = None) -> None:
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

    split = CpuSplit()

    def stats(cmd: dict) -> dict:
        out = worker.stats.as_dict()
        if worker.rooms.hosted or extra is not None:
            out.update(split.figures(worker, extra))
        return out

    reply({"ready": True, "pid": os.getpid(), "process": worker.process})
    commands = loop.create_task(serve_commands({"gc": collect, "stats": stats}))
    await asyncio.wait([server, commands], return_when=asyncio.FIRST_COMPLETED)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="One Tickwire worker for the bench harness.")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--app", default="bench.apps:app")
    ap.add_argument("--stats", default="", help="module:function(worker) -> dict, added to stats")
    ap.add_argument("--log-level", default="info")
    args = ap.parse_args()
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()), format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    import uvloop

    uvloop.run(main(args.app, args.port, load_function(args.stats) if args.stats else None))
