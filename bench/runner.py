"""The order of the runs, and running them: systems interleaved run by run within a
scenario (A B C A B C ...), so that slow drifts of a shared machine spread over every
system instead of landing on one. Every run yields one record with a status; a system
that cannot be prepared, or that fails, is reported, never dropped.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from bench.scenarios import Scenario
from bench.system import Env, System, Unavailable

# A system that fails this many runs of a scenario in a row is not run again in it: its
# remaining runs are recorded as "skipped" (a broken anchor must not eat the time budget).
MAX_FAILURES_IN_A_ROW = 2


@dataclass(frozen=True)
class Job:
    scenario: Scenario
    system: System
    run: int  # 0-based index of this system's run in this scenario
    runs: int


def schedule(plan: Sequence[tuple[Scenario, Sequence[System], int]]) -> list[Job]:
    """Jobs in execution order: scenario by scenario, systems interleaved run by run."""
    jobs = []
    for scenario, systems, runs in plan:
        for i in range(runs):
            for system in systems:
                jobs.append(Job(scenario, system, i, runs))
    return jobs


def _fmt_duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


class Progress:
    """A one-line progress bar on stderr (redrawn in place on a terminal, one line per step
    otherwise, so logs stay readable)."""

    def __init__(
        self, total: int, stream: TextIO | None = None, width: int = 24, clock: Callable[[], float] = time.monotonic
    ):
        self.total = max(total, 1)
        self.done = 0
        self.stream = stream or sys.stderr
        self.width = width
        self.clock = clock
        self.start = clock()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def line(self, label: str) -> str:
        filled = int(self.width * self.done / self.total)
        elapsed = self.clock() - self.start
        eta = elapsed / self.done * (self.total - self.done) if self.done else None
        tail = f"elapsed {_fmt_duration(elapsed)}" + (f", about {_fmt_duration(eta)} left" if eta is not None else "")
        return f"[{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total} {label} ({tail})"

    def show(self, label: str) -> None:
        text = self.line(label)
        if self.tty:
            self.stream.write("\r\x1b[2K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        """A line that stays (a result, a warning), printed above the bar."""
        if self.tty:
            self.stream.write("\r\x1b[2K")
        self.stream.write(text + "\n")
        self.stream.flush()

    def advance(self) -> None:
        self.done += 1

    def finish(self) -> None:
        self.stream.write(("\r\x1b[2K" if self.tty else "") + self.line("done") + "\n")
        self.stream.flush()


MeasureFn = Callable[[System, Scenario, Mapping[str, Any], int, Env, Path], dict]


def run_jobs(
    jobs: Sequence[Job],
    params: Mapping[str, Mapping[str, Any]],
    env: Env,
    log_dir: Path,
    measure: MeasureFn,
    progress: Progress | None = None,
    machine: Mapping[str, Any] | None = None,
) -> tuple[list[dict], dict[str, dict]]:
    """Run every job; return (run records, {system name: {"status", "versions", "error"}}).

    Each system is prepared once, before its first run. `measure` is
    bench.measure.measure_run, or a stand-in in tests."""
    progress = progress or Progress(len(jobs))
    prepared: dict[str, dict] = {}
    failures_in_a_row: dict[tuple[str, str], int] = {}
    records = []
    for job in jobs:
        sc, sy = job.scenario, job.system
        label = f"{sc.name} · {sy.name} · run {job.run + 1}/{job.runs}"
        progress.show(label)
        if sy.name not in prepared:
            try:
                versions = dict(sy.prepare(env))
                prepared[sy.name] = {"status": "ok", "versions": versions}
            except Unavailable as exc:
                prepared[sy.name] = {"status": "unavailable", "versions": {}, "error": str(exc)}
                progress.note(f"  {sy.name}: unavailable: {exc}")
        record: dict[str, Any] = {"scenario": sc.name, "system": sy.name, "run": job.run}
        key = (sc.name, sy.name)
        t0 = time.monotonic()
        if prepared[sy.name]["status"] != "ok":
            record.update(status="unavailable", error=prepared[sy.name]["error"])
        elif failures_in_a_row.get(key, 0) >= MAX_FAILURES_IN_A_ROW:
            record.update(status="skipped", error=f"{MAX_FAILURES_IN_A_ROW} failed runs in a row")
        else:
            try:
                metrics = measure(sy, sc, params[sc.name], job.run, env, log_dir)
                record.update(status="ok", **metrics)
                failures_in_a_row[key] = 0
                progress.note(f"  {label}: {summary_line(sc, record)}")
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # a failed run is a result, reported with its reason
                failures_in_a_row[key] = failures_in_a_row.get(key, 0) + 1
                record.update(status="failed", error=f"{type(exc).__name__}: {exc}".strip())
                if not isinstance(exc, (RuntimeError, OSError, TimeoutError)):
                    record["traceback"] = traceback.format_exc(limit=6)
                progress.note(f"  {label}: FAILED: {record['error'].splitlines()[0]}")
        record["elapsed_s"] = round(time.monotonic() - t0, 2)
        if machine is not None:
            record["machine"] = dict(machine)
        records.append(record)
        progress.advance()
    progress.finish()
    return records, prepared


def summary_line(scenario: Scenario, record: Mapping[str, Any]) -> str:
    """A short human line for one successful run."""
    if scenario.kind == "memory":
        parts = [
            f"{k.removeprefix('kib_per_conn_at_')} conns: {v:.1f} KiB/conn"
            for k, v in record.items()
            if k.startswith("kib_per_conn_at_")
        ]
        return ", ".join(parts)
    line = (
        f"{record['cpu_us_per_unit']:.2f} µs CPU/{scenario.unit} ({record['user_us_per_unit']:.2f} user"
        f" + {record['sys_us_per_unit']:.2f} sys), {record['units_per_s']:,.0f} {scenario.unit}/s"
    )
    if "lat_p50_ms" in record:
        line += f", p50 {record['lat_p50_ms']:.1f} ms"
    if record.get("other_cpu_util", 0) > 0.2:
        line += f" [busy machine: {record['other_cpu_util']:.2f} cores used by others]"
    return line


def select(
    scenarios: Iterable[Scenario], systems: Sequence[System], names: Sequence[str] | None
) -> list[tuple[Scenario, list[System]]]:
    """For each scenario, the systems that take part in it (all, or only those named)."""
    out = []
    for sc in scenarios:
        chosen = [s for s in systems if sc.name in s.scenarios and (not names or s.name in names)]
        if chosen:
            out.append((sc, chosen))
    return out
