"""Helpers for tests that run a real server on 127.0.0.1 inside the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import threading
import urllib.error
import urllib.request
import socket
import subprocess
import sys
import time
from typing import Any, AsyncIterator, Awaitable, Callable, TypeVar

import uvloop
from websockets.asyncio.client import ClientConnection, connect

from engine import App, Client, Worker
from engine._generated import protocol as P
from engine.codec import PACKED_SUBPROTOCOL
from engine.packed import Codebook

T = TypeVar("T")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CODEBOOK = Codebook(P)


def arun(coro: Awaitable[T], timeout: float = 30.0) -> T:
    """Run a test coroutine on uvloop, bounded in time."""

    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await coro

    return uvloop.run(bounded())


@contextlib.asynccontextmanager
async def serving(app: App, **worker_kwargs: Any) -> AsyncIterator[Worker]:
    worker = Worker(app, **worker_kwargs)
    await worker.start("127.0.0.1", 0)
    try:
        yield worker
    finally:
        await worker.stop(timeout=1.0)


def url(worker: Worker, path: str = "/") -> str:
    return f"ws://127.0.0.1:{worker.port}{path}"


@contextlib.asynccontextmanager
async def client(worker: Worker, **kwargs: Any) -> AsyncIterator[Client]:
    c = Client(url(worker), **kwargs)
    await c.connect()
    try:
        yield c
    finally:
        await c.close()


async def raw(worker: Worker, handshake: bool = True, **kwargs: Any) -> ClientConnection:
    """A bare WebSocket speaking the protocol by hand (for malformed-input tests)."""
    ws = await connect(url(worker), subprotocols=[PACKED_SUBPROTOCOL], ping_interval=None, **kwargs)  # type: ignore[list-item]
    if handshake:
        await ws.send(CODEBOOK.encode(P.Handshake(CODEBOOK.hash, "", "raw")))
        welcome = CODEBOOK.decode_one(await ws.recv(), CODEBOOK.context())
        assert isinstance(welcome, P.Welcome)
    return ws


async def close_code(ws: ClientConnection, timeout: float = 5.0) -> int | None:
    """Read until the server closes; the close code it sent."""
    from websockets.exceptions import ConnectionClosed

    try:
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else None
    raise AssertionError("the connection did not close")


async def recv_messages(ws: ClientConnection, timeout: float = 5.0) -> list[Any]:
    async with asyncio.timeout(timeout):
        frame = await ws.recv()
    assert isinstance(frame, bytes)
    return CODEBOOK.decode_frame(frame, CODEBOOK.context())


async def eventually(check: Callable[[], bool], timeout: float = 5.0, step: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(step)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`tickwire run` in a subprocess, stopped (and waited for) on exit."""

    def __init__(self, *args: str, port: int | None = None, env: dict[str, str] | None = None):
        self.port = port or free_port()
        self.args = [sys.executable, "-m", "engine.cli", "run", *args, "--host", "127.0.0.1", "--port", str(self.port)]
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, ready_timeout: float = 15.0) -> "ServerProcess":
        self.proc = subprocess.Popen(self.args, cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stdout.read().decode()}")  # type: ignore[union-attr]
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("server did not start in time")

    def stop(self, sig: int = 15, timeout: float = 10.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def output(self) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        return self.proc.stdout.read().decode(errors="replace")

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def schema_module(text: str, name: str = "inline") -> Any:
    """A schema's generated Python module, compiled from text (no files written)."""
    import types

    from engine.schema.gen_python import generate_python
    from engine.schema.model import build
    from engine.schema.parse import parse

    model = build([parse(text, f"{name}.fbs")], name, f"{name}.fbs")
    module = types.ModuleType(f"{name}_schema")
    exec(compile(generate_python(model), module.__name__, "exec"), module.__dict__)
    return module


class Cluster:
    """`tickwire run` with a supervisor, its log stream collected, stopped on exit."""

    def __init__(self, *args: str, app: str = "tests.cluster_app:app", workers: int = 2, brokers: int = 1):
        self.port = free_port()
        self.app = app
        self.args = [
            sys.executable, "-m", "engine.cli", "run", app, "--host", "127.0.0.1", "--port", str(self.port),
            "--workers", str(workers), "--brokers", str(brokers), "--log-format", "json", *args,
        ]
        self.lines: list[str] = []
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> "Cluster":
        self.proc = subprocess.Popen(self.args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=self._collect, daemon=True).start()
        deadline = time.monotonic() + 60  # generous: CI machines are shared
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("cluster exited:\n" + "\n".join(self.lines))
            try:
                if self.health()["status"] == "ok":
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        self.__exit__()
        raise RuntimeError("cluster did not start:\n" + "\n".join(self.lines))

    def _collect(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def records(self) -> list[dict[str, Any]]:
        out = []
        for line in list(self.lines):
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"raw": line})
        return out

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
            return r.read()

    def health(self) -> dict[str, Any]:
        try:
            return json.loads(self.get("/health"))
        except urllib.error.HTTPError as exc:  # 503 while degraded still carries the body
            return json.loads(exc.read())

    def pids(self) -> dict[str, int]:
        return {p["process"]: p["pid"] for p in self.health()["processes"]}

    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
