"""One run of one system in one scenario: start the server, start the load generator in
another process, measure, end both.

The window: the harness reads the server tree's CPU, the load generator's CPU and the
machine's busy time, asks the load for its counters, sleeps `window_s`, and reads all of
them again. Server CPU per unit is the tree's (user + sys) delta over the load's `units`
delta. Throughput is the units delta over the load's own elapsed time between the two
samples. "other_cpu_util" is what neither process used (other engineers, the kernel's
own threads): a run with much of it was measured on a busy machine.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.proc import CpuTimes, machine_busy, tree_cpu, tree_memory
from bench.process import Child, ChildError, free_port
from bench.scenarios import Scenario
from bench.system import Env, RunContext, System


class RunFailed(RuntimeError):
    """The run could not produce figures (no units counted, a step not reached...)."""


def _sleep_watching(seconds: float, *children: Child) -> None:
    """Sleep, but fail as soon as one of the children dies."""
    end = time.monotonic() + seconds
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.25))
        for c in children:
            if not c.alive():
                raise ChildError(f"{c.name} exited with code {c.popen.returncode} during the run{c.log_tail()}")


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def counter_deltas(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, float]:
    """after - before for every numeric counter in both (latency fields excepted)."""
    out = {}
    for k, v in after.items():
        if k.startswith("lat_") or k == "t" or not _num(v) or not _num(before.get(k)):
            continue
        out[k] = v - before[k]
    return out


def window_metrics(
    scenario: Scenario,
    cpu: CpuTimes,
    wall_s: float,
    load_before: Mapping[str, Any],
    load_after: Mapping[str, Any],
    load_cpu: CpuTimes | None = None,
    busy_s: float | None = None,
    server_before: Mapping[str, Any] | None = None,
    server_after: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The figures of a window from the raw readings (pure: tested without processes).

    The server's `stats` (when it takes commands) give "server_counters", their deltas,
    which derived figures name as "server.<counter>". A load's sample or a server's
    stats may also hold "gauges": figures that are not counters (a median frame size, the
    share of the world a player sees), kept as they are at the end of the window."""
    counts = counter_deltas(load_before, load_after)
    units = counts.get("units", 0)
    if units <= 0:
        raise RunFailed(f"the load counted no {scenario.unit} in the window")
    load_wall = load_after.get("t", 0) - load_before.get("t", 0) if _num(load_after.get("t")) else 0
    m: dict[str, Any] = {
        "units": units,
        "wall_s": wall_s,
        "cpu_us_per_unit": cpu.total / units * 1e6,
        "user_us_per_unit": cpu.user / units * 1e6,
        "sys_us_per_unit": cpu.sys / units * 1e6,
        "units_per_s": units / (load_wall if load_wall > 0 else wall_s),
        "server_cpu_util": cpu.total / wall_s,
        "server_user_s": cpu.user,
        "server_sys_s": cpu.sys,
    }
    if load_cpu is not None:
        m["load_cpu_util"] = load_cpu.total / wall_s
    if busy_s is not None:
        m["other_cpu_util"] = max(0.0, (busy_s - cpu.total - (load_cpu.total if load_cpu else 0.0)) / wall_s)
    for k in ("lat_p50_ms", "lat_p99_ms", "lat_n"):
        if _num(load_after.get(k)):
            m[k] = load_after[k]
    names = {"cpu_us": cpu.total * 1e6, "user_us": cpu.user * 1e6, "sys_us": cpu.sys * 1e6, "wall_s": wall_s, **counts}
    if server_before is not None and server_after is not None:
        server_counts = counter_deltas(server_before, server_after)
        m["server_counters"] = server_counts
        names.update({"server." + k: v for k, v in server_counts.items()})
    for source in (load_after, server_after or {}):
        gauges = source.get("gauges")
        if isinstance(gauges, Mapping):
            m.update({k: v for k, v in gauges.items() if _num(v)})
    for d in scenario.derived:
        num, den = names.get(d.numerator), names.get(d.denominator)
        if num is not None and den:
            m[d.name] = num / den * d.scale
    m["counts"] = counts
    return m


def memory_metrics(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """KiB per connection at each step, relative to the first step (pure)."""
    if not steps:
        raise RunFailed("no memory step was measured")
    base = steps[0]
    m: dict[str, Any] = {"rss_kib_at_0" if base["conns"] == 0 else f"rss_kib_at_{base['conns']}": base["rss_kib"]}
    last = None
    for s in steps[1:]:
        n = s["conns"] - base["conns"]
        if n <= 0:
            continue
        s["kib_per_conn"] = (s["rss_kib"] - base["rss_kib"]) / n
        m[f"kib_per_conn_at_{s['conns']}"] = s["kib_per_conn"]
        m[f"rss_kib_at_{s['conns']}"] = s["rss_kib"]
        if "pss_kib" in s and "pss_kib" in base:
            s["pss_kib_per_conn"] = (s["pss_kib"] - base["pss_kib"]) / n
            m[f"pss_kib_per_conn_at_{s['conns']}"] = s["pss_kib_per_conn"]
        last = s
    if last is None:
        raise RunFailed("the steps opened no connection beyond the first")
    m["kib_per_conn"] = last["kib_per_conn"]
    m["steps"] = steps
    return m


class Run:
    """The processes of one run; `measure()` returns its figures."""

    def __init__(
        self, system: System, scenario: Scenario, params: Mapping[str, Any], run: int, env: Env, log_dir: Path
    ):
        self.system = system
        self.scenario = scenario
        self.params = dict(params)
        self.ctx = RunContext(scenario.name, self.params, free_port(), run, env)
        self.log_dir = log_dir
        self.server: Child | None = None
        self.load: Child | None = None

    def _start(self) -> None:
        stem = self.log_dir / f"{self.scenario.name}-{self.system.name}-{self.ctx.run}"
        self.server = Child(self.system.server(self.ctx), "server", f"{stem}-server.log", self.ctx.port)
        self.server.wait_ready()
        self.load = Child(self.system.load(self.ctx), "load", f"{stem}-load.log")
        self.load.wait_ready()
        timeout = float(self.params.get("setup_timeout_s", 120))
        self.setup = self.load.request(
            {"cmd": "setup", "scenario": self.scenario.name, "port": self.ctx.port, "params": self.params},
            timeout_s=timeout,
        )

    def stop(self) -> None:
        for c in (self.load, self.server):
            if c is not None:
                c.stop()

    def measure(self) -> dict[str, Any]:
        try:
            self._start()
            if self.scenario.kind == "memory":
                return self._memory()
            return self._window()
        finally:
            self.stop()

    def _server_stats(self) -> dict[str, Any]:
        if self.server.spec.control:
            return self.server.request({"cmd": "stats"}, timeout_s=10)
        return {}

    def _window(self) -> dict[str, Any]:
        p = self.params
        self.load.request({"cmd": "start"}, timeout_s=30)
        _sleep_watching(float(p["warm_s"]), self.server, self.load)
        s0 = self._server_stats()
        busy0, c0, l0 = machine_busy(), tree_cpu(self.server.pid), tree_cpu(self.load.pid)
        t0 = time.monotonic()
        a = self.load.request({"cmd": "sample"}, timeout_s=30)
        _sleep_watching(float(p["window_s"]), self.server, self.load)
        busy1, c1, l1 = machine_busy(), tree_cpu(self.server.pid), tree_cpu(self.load.pid)
        t1 = time.monotonic()
        b = self.load.request({"cmd": "sample"}, timeout_s=30)
        s1 = self._server_stats()
        mem = tree_memory(self.server.pid)
        stop = self.load.request({"cmd": "stop"}, timeout_s=float(p.get("drain_s", 0)) + 30)
        m = window_metrics(
            self.scenario, c1.cpu - c0.cpu, t1 - t0, a, b, l1.cpu - l0.cpu, busy1 - busy0,
            s0 if s0 or s1 else None, s1 if s0 or s1 else None,
        )
        m["server_processes"] = c1.processes
        m["server_rss_kib"] = mem["rss_kib"]
        if "pss_kib" in mem:
            m["server_pss_kib"] = mem["pss_kib"]
        m["setup"] = {k: v for k, v in self.setup.items() if k != "ok"}
        m["stop"] = {k: v for k, v in stop.items() if k != "ok"}
        return m

    def _memory(self) -> dict[str, Any]:
        p = self.params
        steps = []
        have = 0
        for n in [int(x) for x in p["steps"]]:
            if n > have:
                r = self.load.request(
                    {"cmd": "connect", "n": n - have}, timeout_s=float(p.get("connect_timeout_s", 120))
                )
                have = int(r.get("connected", 0))
                if have < n:
                    raise RunFailed(f"only {have} of {n} connections opened ({r.get('errors', '?')} errors)")
            _sleep_watching(float(p["settle_s"]), self.server, self.load)
            if self.server.spec.control:
                self.server.request({"cmd": "gc"}, timeout_s=30)
                _sleep_watching(0.5, self.server, self.load)
            mem = tree_memory(self.server.pid)
            steps.append({"conns": have, **mem})
        return memory_metrics(steps)


def measure_run(
    system: System, scenario: Scenario, params: Mapping[str, Any], run: int, env: Env, log_dir: Path
) -> dict:
    """Run once and return the figures; raises ChildError or RunFailed."""
    return Run(system, scenario, params, run, env, log_dir).measure()
