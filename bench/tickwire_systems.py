"""Tickwire as the harness runs it, next to the anchors.

| system       | server                                                             | load |
|--------------|--------------------------------------------------------------------|------|
| tickwire     | one worker, no supervisor (bench/tickwire_server.py: what          | bench/tickwire_load.py |
|              | `tickwire run bench.apps:app --single` runs, plus gc and stats)     | (picows) |
| tickwire-1w  | `tickwire run bench.apps:app --workers 1 --brokers 1`: supervisor,  | same |
|              | 1 worker, 1 broker                                                  |      |
| tickwire-2w  | `tickwire run ... --workers 2 --brokers 1`                         | same |

`tickwire` is the figure to compare with the single-process anchors. In the `mmo`
scenario it serves bench/tickwire_mmo_app.py (the room, its parameters in
TICKWIRE_BENCH_MMO) and its load is bench/tickwire_mmo_load.py (the bots). The cluster forms
are issue 9's "1 worker against 2 workers": the harness sums CPU over the whole server
tree (supervisor, workers, brokers), so they report what the cluster costs per unit, not
a scaling ratio (the load shares the machine's 2 cores).

Every server runs the interpreter that runs the harness, from the repository (so it
measures the engine in this checkout). The load runs the same interpreter, with picows
taken from the bench venv (installed on demand, as for the Python anchors).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from pathlib import Path

from bench.anchors.install import PY_ANCHORS, ensure_venv
from bench.process import ProcessSpec
from bench.system import Env, RunContext, System, Unavailable

APP = "bench.apps:app"
MMO_APP = "bench.tickwire_mmo_app:make_app"
MMO_STATS = "bench.tickwire_mmo_app:view_sample"
WINDOW_SCENARIOS = frozenset({"fanout", "fanout-batch", "churn", "single", "rpc"})

# What the servers' interpreter must import, and the versions reported with the figures.
_PROBE = """
import importlib.metadata as m, json, sys
import engine, engine.worker, engine.supervisor, uvloop, websockets, numpy
out = {"tickwire": engine.__version__, "python": sys.version.split()[0]}
for name in ("websockets", "uvloop", "numpy"):
    out[name] = m.version(name)
try:
    import engine.broker, engine.brokerbus
    out["brokers"] = "yes"
except ImportError as exc:
    out["brokers"] = "no: " + str(exc)
print(json.dumps(out))
"""
_SITE = "import json, sysconfig; print(json.dumps(sysconfig.get_paths()['purelib']))"


def _run_json(argv: list[str], cwd: Path, what: str) -> object:
    try:
        done = subprocess.run(argv, cwd=str(cwd), capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as exc:
        raise Unavailable(f"{what}: {exc}") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise Unavailable(f"{what} failed: {' | '.join(tail)}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _commit(repo: Path) -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "engine"], cwd=repo, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "?"
    if rev.returncode != 0:
        return "?"
    return rev.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


class Tickwire(System):
    """Tickwire's packed protocol: the server of each form, and the Tickwire load."""

    def __init__(self, name: str, label: str, scenarios: frozenset[str], workers: int = 0, brokers: int = 0):
        self.name = name
        self.label = label
        self.scenarios = scenarios
        self.workers = workers  # 0: one worker, no supervisor
        self.brokers = brokers
        self.site: str | None = None

    def prepare(self, env: Env) -> Mapping[str, str]:
        versions = _run_json([env.python, "-c", _PROBE], env.repo, "importing the engine")
        assert isinstance(versions, dict)
        if self.workers and versions.get("brokers") != "yes":
            raise Unavailable(f"the cluster needs the brokers (engine/broker.py): {versions.get('brokers')}")
        versions.pop("brokers", None)
        python = ensure_venv(env, PY_ANCHORS)  # picows, for the load generator
        site = _run_json([str(python), "-c", _SITE], env.repo, "finding the bench venv's site-packages")
        self.site = str(site)
        load = _run_json(
            [str(python), "-c", "import importlib.metadata as m, json; print(json.dumps(m.version('picows')))"],
            env.repo,
            "finding picows",
        )
        return {**versions, "commit": _commit(env.repo), "picows (load)": str(load)}

    def server(self, ctx: RunContext) -> ProcessSpec:
        env = ctx.env
        if ctx.scenario == "mmo":
            argv = [env.python, "-m", "bench.tickwire_server", "--port", str(ctx.port), "--app", MMO_APP]
            return ProcessSpec(
                argv + ["--stats", MMO_STATS], cwd=str(env.repo), env={"TICKWIRE_BENCH_MMO": json.dumps(dict(ctx.params))}
            )
        if not self.workers:
            return ProcessSpec(
                [env.python, "-m", "bench.tickwire_server", "--port", str(ctx.port), "--app", APP], cwd=str(env.repo)
            )
        argv = [env.python, "-m", "engine.cli", "run", APP, "--host", "127.0.0.1", "--port", str(ctx.port)]
        argv += ["--workers", str(self.workers), "--brokers", str(self.brokers), "--log-format", "text"]
        return ProcessSpec(argv, cwd=str(env.repo), ready="port", control=False)

    def load(self, ctx: RunContext) -> ProcessSpec:
        if self.site is None:
            raise Unavailable(f"{self.name} was not prepared")
        module = "bench.tickwire_mmo_load" if ctx.scenario == "mmo" else "bench.tickwire_load"
        return ProcessSpec(
            [ctx.env.python, "-m", module],
            cwd=str(ctx.env.repo),
            env={"TICKWIRE_BENCH_SITE": self.site, "PYTHONUNBUFFERED": "1"},
        )


def tickwire_systems() -> list[System]:
    """Tickwire's forms, in the order they run within a round."""
    return [
        Tickwire("tickwire", "Tickwire (packed, 1 worker)", WINDOW_SCENARIOS | {"memory", "mmo"}),
        Tickwire("tickwire-1w", "Tickwire cluster: 1 worker + 1 broker", WINDOW_SCENARIOS, workers=1, brokers=1),
        Tickwire("tickwire-2w", "Tickwire cluster: 2 workers + 1 broker", WINDOW_SCENARIOS, workers=2, brokers=1),
    ]
