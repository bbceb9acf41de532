"""The entry point of a child process of the cluster (`python -m engine.process`).

The supervisor starts every worker and broker this way. What a child needs arrives in the
environment variable TICKWIRE_CHILD (JSON; removed from the environment once read) and as
inherited file descriptors: the control socketpair, and for a worker its listening socket
(SO_REUSEPORT) or the socketpair that hands it accepted connections ('rr'). The auth key
comes through TICKWIRE_AUTH_KEY, never on a command line.

A child exits when the supervisor tells it to, on SIGTERM, and when the supervisor dies
(its control link reaches EOF; Linux's parent-death signal covers a supervisor killed with
SIGKILL before the child noticed). SIGINT is left to the supervisor: a terminal sends it to
the whole process group, and the supervisor decides what each child does.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import os
import signal
import socket
import sys
from typing import Any

import uvloop

from .control import ControlLink, FdReceiver
from .errors import wire_error
from .heap import tune_memory
from .logs import configure_child, loop_exception_handler

__all__ = ["main", "CHILD_ENV"]

CHILD_ENV = "TICKWIRE_CHILD"
STATS_INTERVAL = 1.0
log = logging.getLogger("tickwire.process")


def die_with_parent() -> None:
    """Ask Linux to send SIGTERM to this process when its parent dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


async def run_worker(cfg: dict[str, Any]) -> None:
    from .bus import LocalBus
    from .cli import load_app
    from .worker import Worker

    loop = asyncio.get_running_loop()
    loop.set_exception_handler(loop_exception_handler)
    name = cfg["name"]
    link = await ControlLink.from_socket(socket.socket(fileno=cfg["control_fd"]))
    app = load_app(cfg["app"])
    for key, value in cfg.get("settings", {}).items():
        setattr(app.settings, key, value)
    if cfg.get("limits"):
        app.limits = app.limits.with_overrides(**cfg["limits"])
    if cfg.get("brokers"):
        from .brokerbus import BrokerBus

        bus: Any = BrokerBus(cfg["brokers"], name)
    else:
        bus = LocalBus()
    from .directory import SupervisorDirectory

    tune_memory(app.settings)
    worker = Worker(app, bus=bus, process=name, node=cfg.get("node", name), directory=SupervisorDirectory(link))
    worker.control = link
    if cfg.get("listen_fd") is not None:
        await worker.start(sock=socket.socket(fileno=cfg["listen_fd"]))
    else:
        await worker.start(listen=False)
        receiver = FdReceiver(socket.socket(fileno=cfg["fd_channel"]), worker.accept_socket)
        receiver.start(loop)
    done = asyncio.Event()

    async def handle(msg: dict[str, Any]) -> None:
        op = msg.get("op")
        if op == "stop":
            await worker.stop(code=1001, reason="server shutting down")
            done.set()
        elif op == "drain":
            asyncio.ensure_future(drain())  # the link keeps serving while rooms move
        elif op == "ask" and msg.get("what") == "host":
            try:
                info = worker.rooms.host(msg["type"], msg["room_id"], msg.get("options"), msg.get("restore"))
                link.answer(msg, {"ok": info})
            except Exception as exc:
                link.answer(msg, {"error": list(wire_error(exc))})
        elif op == "owners_lost":
            worker.rooms.owners_lost(msg["owner"], msg.get("lost", []), set(msg.get("recreated", [])))
        elif op == "room_moved":
            worker.rooms.room_moved(msg["room_id"], msg["owner"])

    async def drain() -> None:
        await worker.drain()
        done.set()

    async def report() -> None:
        while not done.is_set():
            link.send({
                "op": "stats",
                "stats": worker.stats.as_dict(),
                "rooms": worker.rooms.rooms_info(),
                "room_stats": worker.rooms.room_stats(),
                "bus": bus.stats.as_dict() if hasattr(bus, "stats") else {},
            })
            await asyncio.sleep(STATS_INTERVAL)

    async def control() -> None:
        await link.serve(handle)
        if not done.is_set():  # the supervisor is gone: nobody will restart us
            log.warning("supervisor gone; stopping")
            await worker.stop()
            done.set()

    loop.add_signal_handler(signal.SIGTERM, lambda: asyncio.ensure_future(handle({"op": "stop"})))
    link.send({"op": "ready", "pid": os.getpid()})
    log.info("%s ready (pid %d)", name, os.getpid())
    tasks = [asyncio.ensure_future(report()), asyncio.ensure_future(control())]
    await done.wait()
    link.send({"op": "stats", "stats": worker.stats.as_dict()})
    await link.writer.drain()
    for t in tasks:
        t.cancel()


async def run_broker_child(cfg: dict[str, Any]) -> None:
    from .broker import run_broker

    loop = asyncio.get_running_loop()
    loop.set_exception_handler(loop_exception_handler)
    link = await ControlLink.from_socket(socket.socket(fileno=cfg["control_fd"]))
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    async def control() -> None:
        await link.serve(lambda msg: stop.set() if msg.get("op") in ("stop", "drain") else None)
        stop.set()

    task = asyncio.ensure_future(control())
    await run_broker(cfg["path"], cfg["id"], stop=stop, ready=lambda: link.send({"op": "ready", "pid": os.getpid()}))
    task.cancel()


def main() -> int:
    cfg = json.loads(os.environ.pop(CHILD_ENV))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent()
    if os.getppid() != cfg["parent"]:
        return 1  # the supervisor died before we could ask to die with it
    configure_child(cfg["name"], cfg.get("log_level", "INFO"))
    try:
        if cfg["kind"] == "worker":
            uvloop.run(run_worker(cfg))
        elif cfg["kind"] == "broker":
            uvloop.run(run_broker_child(cfg))
        else:
            raise ValueError(f"unknown process kind {cfg['kind']!r}")
    except Exception:
        logging.getLogger("tickwire").critical("%s crashed", cfg["name"], exc_info=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
