"""Running a single-process server: a worker on uvloop, until SIGTERM or SIGINT.

`tickwire run module:app` lands here when it runs one process; the cluster (supervisor,
workers, brokers) builds on the same Worker. On the first SIGTERM/SIGINT the worker stops
accepting, closes every client with 1001 (going away) and exits; a second signal exits
at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import Any, Callable

import uvloop

from .app import App
from .heap import tune_memory
from .worker import Worker

__all__ = ["serve", "run"]

log = logging.getLogger("tickwire.server")


async def serve(
    app: App,
    host: str | None = None,
    port: int | None = None,
    *,
    process: str = "worker-0",
    ready: Callable[[Worker], Any] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until `stop` is set or a SIGTERM/SIGINT arrives."""
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    tune_memory(app.settings)
    worker = Worker(app, process=process)
    await worker.start(host, port)
    signals = 0

    def on_signal(signum: int) -> None:
        nonlocal signals
        signals += 1
        if signals > 1:
            log.warning("second %s: exiting now", signal.Signals(signum).name)
            os._exit(130)
        log.info("%s: shutting down", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(signum, on_signal, signum)
        except (NotImplementedError, RuntimeError):
            pass
    scheme = "https" if app.settings.tls_cert else "http"
    log.info("%s listening on %s://%s:%d/", process, scheme, host or app.settings.host, worker.port)
    if ready is not None:
        ready(worker)
    try:
        await stop.wait()
    finally:
        await worker.stop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def run(app: App, host: str | None = None, port: int | None = None, **kwargs: Any) -> None:
    uvloop.run(serve(app, host, port, **kwargs))
