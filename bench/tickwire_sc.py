"""`tickwire-scjson`: Tickwire serving SocketCluster's own load (issue 8's benchmark).

| system         | server                                                         | load |
|----------------|----------------------------------------------------------------|------|
| tickwire-scjson| one worker (bench/tickwire_server.py, as `tickwire run --single`), | anchors/node/sc_load.js, the |
|                | app bench/tickwire_sc_app.py: channel `c` untyped              | SocketCluster anchor's own load |

The load is the one the `socketcluster` anchor runs, unchanged: raw WebSocket clients on
`/socketcluster/` speaking SocketCluster's protocol (#handshake, #subscribe, #publish, v2
pings), so Tickwire's sc-json codec (engine/sccodec.py) and SocketCluster 20 get the same
frames from the same script in the same run. The figure to hold them to each other by is
server CPU per delivered message in `fanout`.

Only `fanout` (one publish a frame) and `memory`: sc_load.js counts frames, and a server
that batches (Tickwire sends what one flush holds as one JSON array, as SocketCluster's
batching does) would be under-counted in fanout-batch, single and churn.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from pathlib import Path

from bench.anchors.install import NODE, ensure_node_group, node_binary, node_versions
from bench.process import ProcessSpec
from bench.proc import tool_version
from bench.system import Env, RunContext, System, Unavailable
from bench.tickwire_systems import _commit

APP = "bench.tickwire_sc_app:app"

_PROBE = "import json, sys, engine, engine.sccodec; print(json.dumps({'tickwire': engine.__version__, 'python': sys.version.split()[0]}))"


class TickwireScJson(System):
    name = "tickwire-scjson"
    label = "Tickwire (sc-json codec, 1 worker)"
    scenarios = frozenset({"fanout", "memory"})

    def __init__(self) -> None:
        self.dir: Path | None = None

    def prepare(self, env: Env) -> Mapping[str, str]:
        try:
            done = subprocess.run([env.python, "-c", _PROBE], cwd=str(env.repo), capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.SubprocessError) as exc:
            raise Unavailable(f"importing the engine: {exc}") from None
        if done.returncode != 0:
            raise Unavailable("importing the engine failed: " + " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:]))
        versions = json.loads(done.stdout.strip().splitlines()[-1])
        self.dir = ensure_node_group(env, NODE)  # sc_load.js and its wslib.js
        node = {"node": tool_version(["node", "--version"]) or "?"}
        load = {f"{k} (load's group)": v for k, v in node_versions(env, NODE).items() if k == "ws"}
        return {**versions, "commit": _commit(env.repo), **node, **load}

    def server(self, ctx: RunContext) -> ProcessSpec:
        env = ctx.env
        return ProcessSpec([env.python, "-m", "bench.tickwire_server", "--port", str(ctx.port), "--app", APP], cwd=str(env.repo))

    def load(self, ctx: RunContext) -> ProcessSpec:
        if self.dir is None:
            raise Unavailable(f"{self.name} was not prepared")
        return ProcessSpec([node_binary(), "sc_load.js"], cwd=str(self.dir))

