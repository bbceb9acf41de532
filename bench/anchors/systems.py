"""The anchor systems: how each reference server and its load generator are started.

| system        | server                                    | load generator            |
|---------------|-------------------------------------------|---------------------------|
| socketcluster | node/sc_server.js (SocketCluster 20.0.1)  | node/sc_load.js (raw WS)  |
| socketio      | python/py_server.py --impl socketio       | python/picows_load.py sio |
| websockets    | python/py_server.py --impl websockets     | python/picows_load.py ws  |
|               | (mmo: python/mmo_floor.py)                |                           |
| picows        | python/py_server.py --impl picows         | python/picows_load.py ws  |
|               | (mmo: python/mmo_floor.py)                |                           |
| node-ws       | node/ws_floor_server.js (ws 8.23.0)       | python/picows_load.py ws  |
| colyseus      | colyseus/colyseus_server.mjs (0.18.8)     | colyseus/colyseus_load.mjs|
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.anchors.install import (
    COLYSEUS,
    HERE,
    NODE,
    PY_ANCHORS,
    ensure_node_group,
    ensure_venv,
    node_binary,
    node_versions,
    pip_versions,
)
from bench.proc import tool_version
from bench.process import ProcessSpec
from bench.system import Env, RunContext, System, Unavailable

PY_DIR = HERE / "python"
# The anchor scripts run from the repository: no __pycache__ written there.
PY_ENV = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}


class NodeSystem(System):
    """A system whose server is a Node script of one npm group."""

    group = NODE
    server_script = ""
    load_script = ""

    def __init__(self) -> None:
        self.dir: Path | None = None

    def prepare(self, env: Env) -> Mapping[str, str]:
        self.dir = ensure_node_group(env, self.group)
        return {"node": tool_version(["node", "--version"]) or "?", **node_versions(env, self.group)}

    def _node(self, script: str, *args: str) -> ProcessSpec:
        if self.dir is None:
            raise Unavailable(f"{self.name} was not prepared")
        return ProcessSpec([node_binary(), "--expose-gc", script, *args], cwd=str(self.dir))

    def server(self, ctx: RunContext) -> ProcessSpec:
        return self._node(self.server_script, "--port", str(ctx.port))

    def load(self, ctx: RunContext) -> ProcessSpec:
        return self._node(self.load_script)


class SocketCluster(NodeSystem):
    name = "socketcluster"
    label = "SocketCluster 20.0.1 (Node)"
    scenarios = frozenset({"fanout", "fanout-batch", "churn", "single", "memory"})
    server_script = "sc_server.js"
    load_script = "sc_load.js"


class Colyseus(NodeSystem):
    name = "colyseus"
    label = "Colyseus 0.18.8 (Node)"
    scenarios = frozenset({"mmo"})
    group = COLYSEUS
    server_script = "colyseus_server.mjs"
    load_script = "colyseus_load.mjs"


def mmo_frame_bytes(env: Env, params: Mapping[str, Any], cache: dict[str, int]) -> int:
    """The mmo floor's frame size: `floor_bytes`, or else the median frame size of
    Tickwire's room for the same parameters, from a run of the room in process, without
    sockets (bench/tickwire_mmo_app.py --frame-bytes); computed once per parameters."""
    if int(params.get("floor_bytes", 0)) > 0:
        return int(params["floor_bytes"])
    keys = ("entities", "clients", "hz", "move_frac", "view_frac")
    text = json.dumps({k: params[k] for k in keys if k in params}, sort_keys=True)
    if text not in cache:
        argv = [env.python, "-m", "bench.tickwire_mmo_app", "--frame-bytes", "--params", text]
        try:
            done = subprocess.run(argv, cwd=str(env.repo), capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.SubprocessError) as exc:
            raise RuntimeError(f"sizing the mmo floor's frames failed: {exc}") from None
        try:
            cache[text] = int(json.loads(done.stdout.strip().splitlines()[-1])["median"])
        except (ValueError, IndexError, KeyError):
            raise RuntimeError(f"sizing the mmo floor's frames failed: {done.stderr.strip()[-300:]}") from None
    return cache[text]


def picows_load(python: Path, proto: str) -> ProcessSpec:
    """The picows load generator (speaks the floor protocol, or Socket.IO with proto="sio")."""
    return ProcessSpec([str(python), "picows_load.py", "--proto", proto], cwd=str(PY_DIR), env=PY_ENV)


class PythonServer(System):
    """One of py_server.py's servers, loaded by picows_load.py."""

    def __init__(self, impl: str, label: str, scenarios: frozenset[str], packages: tuple[str, ...], proto: str = "ws"):
        self.name = impl
        self.impl = impl
        self.label = label
        self.scenarios = scenarios
        self.packages = packages
        self.proto = proto
        self.python: Path | None = None
        self.frame_bytes: dict[str, int] = {}

    def prepare(self, env: Env) -> Mapping[str, str]:
        self.python = ensure_venv(env, PY_ANCHORS)
        return pip_versions(env, list(self.packages))

    def server(self, ctx: RunContext) -> ProcessSpec:
        if ctx.scenario == "mmo":  # the floor: mmo_floor.py, sized by Tickwire's room
            size = mmo_frame_bytes(ctx.env, ctx.params, self.frame_bytes)
            argv = [str(self.python), "mmo_floor.py", "--impl", self.impl, "--port", str(ctx.port)]
            argv += ["--size", str(size), "--hz", str(ctx.params.get("hz", 20))]
            return ProcessSpec(argv, cwd=str(PY_DIR), env=PY_ENV)
        return ProcessSpec(
            [str(self.python), "py_server.py", "--impl", self.impl, "--port", str(ctx.port)],
            cwd=str(PY_DIR),
            env=PY_ENV,
        )

    def load(self, ctx: RunContext) -> ProcessSpec:
        return picows_load(self.python, self.proto)


class NodeWsFloor(NodeSystem):
    """Node's `ws`, writing one pre-built frame per publish to every subscriber."""

    name = "node-ws"
    label = "Node ws 8.23.0 (floor)"
    scenarios = frozenset({"fanout"})
    server_script = "ws_floor_server.js"

    def __init__(self) -> None:
        super().__init__()
        self.python: Path | None = None

    def prepare(self, env: Env) -> Mapping[str, str]:
        versions = dict(super().prepare(env))
        self.python = ensure_venv(env, PY_ANCHORS)
        return versions

    def load(self, ctx: RunContext) -> ProcessSpec:
        return picows_load(self.python, "ws")


def anchor_systems() -> list[System]:
    """Every anchor, in the order they run within a round."""
    return [
        SocketCluster(),
        PythonServer(
            "socketio",
            "python-socketio 5.18.1 (aiohttp)",
            frozenset({"fanout"}),
            ("python-socketio", "python-engineio", "aiohttp", "uvloop"),
            proto="sio",
        ),
        PythonServer(
            "websockets",
            "websockets 17.4 (floor)",
            frozenset({"fanout", "fanout-batch", "rpc", "memory", "mmo"}),
            ("websockets", "uvloop", "picows"),
        ),
        PythonServer(
            "picows", "picows 2.3.1 (floor)", frozenset({"fanout", "rpc", "mmo"}), ("picows", "aiofastnet", "uvloop")
        ),
        NodeWsFloor(),
        Colyseus(),
    ]
