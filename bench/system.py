"""What a benchmarked system is: the interface every anchor implements, and Tickwire too.

A system starts two processes per run, both described by a ProcessSpec:

- the **server** under test (one process or a tree: the harness sums CPU over the tree);
- the **load generator**, a separate process that speaks the load protocol below.

The harness owns the clock, the measurement window and the arithmetic; a system only
says how to start its processes, and its load generator only counts.

Load protocol (JSON lines: one command per line on stdin, exactly one reply line per
command on stdout, in order; logs go to stderr). A reply may carry "error": "text"
instead, which fails the run.

    (at start)                   -> {"ready": true}
    {"cmd": "setup", "scenario": S, "port": P, "params": {...}}
                                 -> {"ok": true, "connected": N, ...}
        open connections, subscribe, join: everything before the load starts.
    {"cmd": "start"}             -> {"ok": true}
        start the load (publishing, closed loops, churn); it must stop by itself after
        params["max_s"] seconds.
    {"cmd": "sample"}            -> {"t": seconds, "units": n, <counter>: n, ...,
                                     "lat_p50_ms": x, "lat_p99_ms": y, "lat_n": k}
        cumulative counters since start (monotonic "t" from the load's own clock;
        "units" is what the scenario counts, see bench/scenarios.py); latency
        percentiles cover the samples taken since the previous "sample".
    {"cmd": "stop"}              -> {"ok": true, ...}      stop the load; may report a backlog
    {"cmd": "connect", "n": N}   -> {"connected": total}   memory scenario: N more idle connections
    {"cmd": "quit"}              (no reply) exit now

A server with `control=True` in its ProcessSpec also reads JSON lines on stdin:
{"cmd": "gc"} -> {"ok": true} (collect garbage before a memory reading) and
{"cmd": "stats"} -> {counters...} (sampled with the load's counters; the deltas appear
under "server_counters"). A server without control is fine: `tickwire run` as it ships.
"""

from __future__ import annotations

import abc
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.process import ProcessSpec

REPO = Path(__file__).resolve().parent.parent


class Unavailable(Exception):
    """This system cannot run here: a tool or package is missing or failed to install.
    Its runs are reported with status "unavailable" and this message."""


def _log_to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Env:
    """Where things are: the repository, the install cache, the harness's interpreter."""

    cache: Path
    repo: Path = REPO
    python: str = sys.executable
    log: Callable[[str], None] = _log_to_stderr


@dataclass(frozen=True)
class RunContext:
    """One run of one system in one scenario."""

    scenario: str
    params: Mapping[str, Any]
    port: int
    run: int
    env: Env
    extra: Mapping[str, Any] = field(default_factory=dict)


class System(abc.ABC):
    """A benchmarked system. Subclass it, list the scenarios it runs, and add an
    instance to bench/catalog.py.

    name: short and stable ("socketcluster", "tickwire-packed"): the results key.
    label: what the table and chart show ("SocketCluster 20.0.1 (Node)").
    scenarios: names of the scenarios it takes part in.
    """

    name: str
    label: str
    scenarios: frozenset[str]

    def prepare(self, env: Env) -> Mapping[str, str]:
        """Install or check what the system needs, once per invocation of the harness,
        before its first run. Return the versions measured ({"package": "1.2.3"}).
        Raise Unavailable when it cannot run here."""
        return {}

    @abc.abstractmethod
    def server(self, ctx: RunContext) -> ProcessSpec:
        """The server under test, listening on 127.0.0.1:ctx.port."""

    @abc.abstractmethod
    def load(self, ctx: RunContext) -> ProcessSpec:
        """The load generator (the load protocol above); setup tells it the port."""
