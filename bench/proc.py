"""What the harness reads from the kernel: CPU time and memory of a process tree, the
machine's total busy time, and a description of the machine.

A server under test may be one process or a tree (supervisor, workers, brokers), so CPU
is summed over the tree. For each process the sum is utime + stime of the process itself
plus cutime + cstime, the CPU of children it has already reaped. Taking that sum over the
tree as it stands at two instants and subtracting charges the window with exactly the CPU
spent in it, even when a worker exits and is reaped in between: its CPU moves from its own
line into its parent's "children" fields. Only a child that dies and is never reaped is
lost, and the kernel keeps no record of that one anywhere.

/proc/PID/stat counts in clock ticks (10 ms here), so a window of a few seconds at a
fraction of a core is accurate to a few tenths of a percent.
"""

from __future__ import annotations

import datetime
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuTimes:
    """CPU seconds, split as the kernel splits them."""

    user: float = 0.0
    sys: float = 0.0

    @property
    def total(self) -> float:
        return self.user + self.sys

    def __add__(self, other: CpuTimes) -> CpuTimes:
        return CpuTimes(self.user + other.user, self.sys + other.sys)

    def __sub__(self, other: CpuTimes) -> CpuTimes:
        return CpuTimes(self.user - other.user, self.sys - other.sys)


@dataclass(frozen=True)
class ProcStat:
    pid: int
    ppid: int
    own: CpuTimes
    reaped: CpuTimes  # cutime + cstime: children already waited for


def parse_stat(text: str) -> ProcStat:
    """One /proc/PID/stat line. The command name (field 2) may hold spaces and
    parentheses, so fields are counted from the last ')'."""
    pid = int(text[: text.index(" ")])
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); ppid is field 4; utime..cstime are fields 14-17.
    ticks = [int(x) / CLOCK_TICKS for x in fields[11:15]]
    return ProcStat(pid, int(fields[1]), CpuTimes(ticks[0], ticks[1]), CpuTimes(ticks[2], ticks[3]))


def read_stat(pid: int) -> ProcStat | None:
    """The stat line of a process, or None if it has gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return parse_stat(f.read())
    except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
        return None


def all_stats() -> dict[int, ProcStat]:
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = read_stat(int(name))
            if st is not None:
                out[st.pid] = st
    return out


def tree_of(root: int, stats: dict[int, ProcStat]) -> list[int]:
    """root and all its descendants present in `stats`, root first."""
    children: dict[int, list[int]] = {}
    for st in stats.values():
        children.setdefault(st.ppid, []).append(st.pid)
    if root not in stats:
        return []
    out, todo = [], [root]
    while todo and len(out) < 100_000:  # bounded: a pid table never gets that deep
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def tree_pids(root: int) -> list[int]:
    return tree_of(root, all_stats())


@dataclass(frozen=True)
class TreeCpu:
    cpu: CpuTimes
    processes: int


def tree_cpu(root: int) -> TreeCpu:
    """CPU of a process tree so far (see the module docstring for what is counted)."""
    stats = all_stats()
    pids = tree_of(root, stats)
    total = CpuTimes()
    for pid in pids:
        total = total + stats[pid].own + stats[pid].reaped
    return TreeCpu(total, len(pids))


def _status_kib(pid: int, keys: tuple[str, ...]) -> dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in keys:
                    out[k] = int(v.split()[0])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return out


def _pss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return None


def tree_memory(root: int) -> dict[str, int]:
    """Resident memory of a process tree, KiB.

    rss_kib sums VmRSS and so counts pages shared between processes (code, forked
    copy-on-write pages) once per process; pss_kib shares each page out among the
    processes mapping it, which is the fair figure for a tree of several processes.
    For a single process the two differ only by its shared libraries' pages."""
    pids = tree_pids(root)
    rss = anon = pss = 0
    pss_known = True
    for pid in pids:
        st = _status_kib(pid, ("VmRSS", "RssAnon"))
        rss += st.get("VmRSS", 0)
        anon += st.get("RssAnon", 0)
        p = _pss_kib(pid)
        if p is None:
            pss_known = False
        else:
            pss += p
    out = {"rss_kib": rss, "anon_kib": anon, "processes": len(pids)}
    if pss_known:
        out["pss_kib"] = pss
    return out


def machine_busy() -> float:
    """Busy CPU seconds of the whole machine, all cores (user, nice, system, irq, softirq,
    steal) from the first line of /proc/stat. Used to tell how much CPU something other
    than the server and the load generator took during a window."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / CLOCK_TICKS


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_kib() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def tool_version(argv: list[str]) -> str | None:
    """`node --version` and the like, or None when the tool is missing or fails."""
    if shutil.which(argv[0]) is None:
        return None
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def machine_description(now: datetime.datetime | None = None) -> dict:
    """What the figures were measured on."""
    now = now or datetime.datetime.now(datetime.UTC)
    mem = _mem_total_kib()
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "memory_gib": round(mem / 1024 / 1024, 1) if mem else None,
        "kernel": platform.release(),
        "os": platform.system(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "node": tool_version(["node", "--version"]),
        "date": now.isoformat(timespec="seconds"),
    }
