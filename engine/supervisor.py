"""The supervisor: starts the workers and brokers, restarts what dies, one log, one set of figures.

    tickwire run app:app --workers 2 --brokers 1

It owns the listening sockets. With the default 'reuseport' policy it opens one socket per
worker slot, all bound to the port with SO_REUSEPORT so the kernel spreads connections,
and hands slot i's socket to worker i. Because the supervisor keeps every socket open, a
worker that dies or is replaced never closes its listener: Linux resets the connections
queued on a closed SO_REUSEPORT listener (unless net.ipv4.tcp_migrate_req is on), and a
listener that never closes has nothing to reset. A restarted worker, or the new worker of a
rolling restart, simply accepts on the same socket; the old one stops accepting and drains.
With the 'rr' policy the supervisor accepts on one socket and passes each connection to the
next worker in turn over a socketpair (SCM_RIGHTS), as SocketCluster's 'rr' did.

The supervisor never touches game traffic (beyond accepting it in 'rr'). It gathers every
child's stderr into one log stream (engine/logs.py) and every worker's counters into
cluster-wide figures that any worker serves on /health and /metrics: counters of processes
that died are kept, so totals never go backwards whichever worker answers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .auth import KEY_ENV, generate_key
from .control import ControlLink, send_fd
from .directory import Matchmaker, RoomDirectory, new_room_id, unwrap
from .errors import TickwireError, Unavailable, wire_error
from .logs import LogSink, configure_supervisor, record_from_line
from .metrics import COUNTERS, bus_metrics_text, prometheus_text, room_metrics_text
from .process import CHILD_ENV

__all__ = ["Supervisor", "RestartPolicy"]

log = logging.getLogger("tickwire.supervisor")


@dataclass
class RestartPolicy:
    """Restart at once, then back off; past `storm_limit` restarts in `window` seconds a slot
    is held down for `storm_hold` seconds, so a crash loop does not eat the machine."""

    first_delay: float = 0.05
    max_delay: float = 5.0
    window: float = 60.0
    storm_limit: int = 10
    storm_hold: float = 30.0

    def delay(self, recent: int) -> float:
        if recent >= self.storm_limit:
            return self.storm_hold
        return min(self.max_delay, self.first_delay * (2 ** max(0, recent - 1))) if recent else 0.0


@dataclass
class Child:
    kind: str  # worker or broker
    slot: int
    generation: int = 0
    proc: asyncio.subprocess.Process | None = None
    link: ControlLink | None = None
    fd_sock: socket.socket | None = None  # 'rr': where accepted connections are passed
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    stats: dict[str, Any] = field(default_factory=dict)
    room_stats: dict[str, Any] = field(default_factory=dict)
    bus_stats: dict[str, int] = field(default_factory=dict)
    started_at: float = 0.0
    retiring: bool = False  # being replaced by a rolling restart: its exit is expected

    @property
    def name(self) -> str:
        return f"{self.kind}-{self.slot}"

    @property
    def node(self) -> str:
        """Its identity on the bus and in the room directory: unique per generation, so an
        old and a new worker of a rolling restart never receive each other's traffic."""
        return f"{self.name}.{self.generation}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None


class Supervisor:
    def __init__(
        self,
        app: str,
        *,
        host: str = "0.0.0.0",
        port: int = 8000,
        workers: int | None = None,
        brokers: int = 1,
        scheduling: str = "reuseport",
        settings: dict[str, Any] | None = None,
        limits: dict[str, Any] | None = None,
        policy: RestartPolicy | None = None,
        log_format: str | None = None,
        log_level: str = "INFO",
        pid_file: str | None = None,
        shutdown_timeout: float = 10.0,
    ):
        if scheduling not in ("reuseport", "rr"):
            raise ValueError("scheduling is 'reuseport' or 'rr'")
        self.app = app
        self.host = host
        self.port = port
        self.n_workers = workers or os.cpu_count() or 1
        self.n_brokers = brokers if self.n_workers > 1 else max(0, brokers)
        if self.n_workers > 1 and self.n_brokers < 1:
            raise ValueError("more than one worker needs at least one broker to share channels")
        self.scheduling = scheduling
        self.settings = settings or {}
        self.limits = limits or {}
        self.policy = policy or RestartPolicy()
        self.sink = LogSink(fmt=log_format, level=log_level)
        self.log_level = log_level
        self.pid_file = pid_file
        self.shutdown_timeout = shutdown_timeout
        self.workers = [Child("worker", i) for i in range(self.n_workers)]
        self.brokers = [Child("broker", i) for i in range(self.n_brokers)]
        self.listeners: list[socket.socket] = []
        self.restarts: dict[str, deque[float]] = {}
        self.restart_totals: dict[str, int] = {}
        self.retired: dict[str, dict[str, int]] = {}  # counters of dead generations, per slot
        self.retired_closes: dict[str, dict[str, int]] = {}
        self.retired_bus: dict[str, dict[str, int]] = {}
        self.draining: list[Child] = []
        self.directory = RoomDirectory()
        self.matchmaker = Matchmaker(
            self.directory,
            lambda owner, room_type, options: self._host(owner, room_type, new_room_id(room_type), options),
            self._place,
        )  # old generations finishing during a rolling restart
        self.runtime_dir = ""
        self.stopping = False
        self.signals = 0
        self.rr_next = 0
        self.started = asyncio.Event()
        self._stop_event = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- running -------------------------------------------------------------------------------
    async def run(self) -> int:
        configure_supervisor(self.sink, self.log_level)
        loop = asyncio.get_running_loop()
        self.runtime_dir = tempfile.mkdtemp(prefix="tickwire-")
        if not os.environ.get(KEY_ENV) and not self.settings.get("auth_key"):
            # One key for every process, handed down through the environment.
            os.environ[KEY_ENV] = generate_key()
        self._listen()
        for signum, fn in ((signal.SIGTERM, self._on_stop_signal), (signal.SIGINT, self._on_stop_signal), (signal.SIGHUP, self._on_hup)):
            loop.add_signal_handler(signum, fn, signum)
        if self.pid_file:
            with open(self.pid_file, "w") as fh:
                fh.write(str(os.getpid()))
        try:
            for b in self.brokers:
                if self.stopping:
                    break
                await self._start(b)
            await self._all_ready(self.brokers)
            for w in self.workers:
                await self._start(w)
            await self._all_ready(self.workers)
            log.info(
                "serving %s on %s:%d with %d worker(s), %d broker(s), scheduling %s",
                self.app, self.host, self.port, self.n_workers, self.n_brokers, self.scheduling,
            )
            self.started.set()
            await self._stop_event.wait()  # set by a signal, even one that came during startup
        finally:
            await self._shutdown()
        return 0

    async def _all_ready(self, group: list[Child], timeout: float = 60.0) -> None:
        # Polled, not awaited: a child that crashes at start is restarted with a new event.
        deadline = time.monotonic() + timeout
        while not all(c.ready.is_set() for c in group) and not self.stopping:
            if time.monotonic() > deadline:
                late = [c.name for c in group if not c.ready.is_set()]
                raise SystemExit(f"{', '.join(late)} did not start within {timeout:.0f} s; see the log above")
            await asyncio.sleep(0.02)

    def _listen(self) -> None:
        count = self.n_workers if self.scheduling == "reuseport" else 1
        for _ in range(count):
            s = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self.scheduling == "reuseport":
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.bind((self.host, self.port))
            s.listen(1024)
            s.set_inheritable(True)
            if self.port == 0:
                self.port = s.getsockname()[1]
            self.listeners.append(s)
        if self.scheduling == "rr":
            lst = self.listeners[0]
            lst.setblocking(False)
            asyncio.get_running_loop().add_reader(lst.fileno(), self._accept_rr)

    def _accept_rr(self) -> None:
        lst = self.listeners[0]
        for _ in range(64):
            try:
                conn, _addr = lst.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.error("accept failed: %s", exc)
                return
            targets = [w for w in self.workers if w.ready.is_set() and not w.retiring and w.fd_sock is not None]
            if not targets:
                conn.close()
                continue
            target = targets[self.rr_next % len(targets)]
            self.rr_next += 1
            try:
                send_fd(target.fd_sock, conn.fileno())  # type: ignore[arg-type]
            except OSError:
                pass
            conn.close()

    async def _start(self, child: Child) -> None:
        ctrl_parent, ctrl_child = socket.socketpair()
        cfg: dict[str, Any] = {
            "kind": child.kind,
            "id": child.slot,
            "name": child.name,
            "parent": os.getpid(),
            "control_fd": ctrl_child.fileno(),
            "log_level": self.log_level,
            "node": f"{child.name}.{child.generation + 1}",
        }
        pass_fds = [ctrl_child.fileno()]
        fd_child = None
        if child.kind == "broker":
            cfg["path"] = self.broker_path(child.slot)
        else:
            cfg.update(app=self.app, settings=self.settings, limits=self.limits, brokers=[self.broker_path(b.slot) for b in self.brokers])
            if self.scheduling == "reuseport":
                lst = self.listeners[child.slot]
                cfg["listen_fd"] = lst.fileno()
                pass_fds.append(lst.fileno())
            else:
                fd_parent, fd_child = socket.socketpair()
                cfg["listen_fd"] = None
                cfg["fd_channel"] = fd_child.fileno()
                pass_fds.append(fd_child.fileno())
                child.fd_sock = fd_parent
        env = {**os.environ, CHILD_ENV: json.dumps(cfg)}
        child.ready = asyncio.Event()
        child.generation += 1
        child.started_at = time.monotonic()
        child.stats = {}
        child.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "engine.process",
            env=env, pass_fds=pass_fds, stdin=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )
        ctrl_child.close()
        if fd_child is not None:
            fd_child.close()
        child.link = await ControlLink.from_socket(ctrl_parent)
        self._spawn(self._watch(child, child.proc, child.link))

    def broker_path(self, slot: int) -> str:
        return os.path.join(self.runtime_dir, f"broker-{slot}.sock")

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch(self, child: Child, proc: asyncio.subprocess.Process, link: ControlLink) -> None:
        """Follow one generation of a child: its logs, its messages, its exit."""
        name = child.name

        async def logs() -> None:
            assert proc.stderr is not None
            while True:
                line = await proc.stderr.readline()
                if not line:
                    return
                self.sink.write(record_from_line(line.decode(errors="replace"), name))

        async def handle(msg: dict[str, Any]) -> None:
            op = msg.get("op")
            if op == "ready":
                child.ready.set()
            elif op == "stats":
                child.stats = msg.get("stats", {})
                child.room_stats = msg.get("room_stats", {})
                child.bus_stats = msg.get("bus", {})
                if "rooms" in msg:
                    self.directory.report(child.node, msg["rooms"], int(child.stats.get("connections", 0)))
            elif op == "room.update":
                self.directory.update(child.node, msg["info"])
            elif op == "ask":
                # Answered in a task: an answer may need to ask another worker first.
                self._spawn(self._answer(child, link, msg))

        log_task = asyncio.ensure_future(logs())
        ctrl_task = asyncio.ensure_future(link.serve(handle))
        code = await proc.wait()
        await asyncio.wait([log_task], timeout=1.0)
        ctrl_task.cancel()
        link.close()
        self._retire(child)
        if child.kind == "worker":
            self._owner_gone(child.node)
        if child.proc is not proc:
            return  # a newer generation already runs in this slot (rolling restart)
        if child.fd_sock is not None:
            child.fd_sock.close()
            child.fd_sock = None
        if self.stopping or child.retiring:
            return
        log.error("%s (pid %d) exited with %s; restarting", name, proc.pid, _exit_text(code))
        await self._restart(child)

    # -- the room directory --------------------------------------------------------------------
    async def _answer(self, child: Child, link: ControlLink, msg: dict[str, Any]) -> None:
        what = msg.get("what")
        try:
            if what == "metrics":
                body: Any = self.metrics_text()
            elif what == "health":
                body = self.health()
            elif what == "room.get":
                body = {"ok": self.directory.get(msg["room_id"])}
            elif what == "room.listing":
                body = {"ok": self.directory.listing(msg.get("type", ""), msg.get("filters"))}
            elif what == "room.find_or_create":
                body = {"ok": await self._find_or_create(msg["type"], msg.get("filters"), msg.get("options"), bool(msg.get("create")))}
            elif what == "room.move":
                body = {"ok": await self._move(child, msg["room_id"], msg["type"], msg.get("restore"))}
            else:
                body = {"error": [1, f"unknown question {what!r}"]}
        except Exception as exc:
            if not isinstance(exc, TickwireError):
                log.exception("answering %s", what)
            body = {"error": list(wire_error(exc))}
        link.answer(msg, body)

    def _worker_by_node(self, node: str) -> Child | None:
        return next((w for w in self.workers + self.draining if w.node == node), None)

    async def _host(self, node: str, room_type: str, room_id: str, options: Any = None, restore: Any = None) -> dict[str, Any]:
        child = self._worker_by_node(node)
        if child is None or child.link is None:
            raise Unavailable(f"{node} is gone")
        info = unwrap(await child.link.ask("host", type=room_type, room_id=room_id, options=options, restore=restore, timeout=10.0))
        self.directory.add(node, info)
        return self.directory.rooms[room_id]

    async def _find_or_create(self, room_type: str, filters: Any, options: Any, create: bool) -> dict[str, Any]:
        return await self.matchmaker.find_or_create(room_type, filters, options, create)

    def _place(self, avoid: str = "") -> str:
        live = {w.node for w in self.workers if _up(w) and not w.retiring and w.node != avoid}
        self.directory.up &= live | {d.node for d in self.draining}
        for node in live:
            self.directory.up.add(node)
        candidates = [n for n in self.directory.up if n in live]
        if not candidates:
            raise Unavailable("no worker can host a room right now")
        return min(sorted(candidates), key=lambda n: self.directory.loads.get(n, 0))

    async def _move(self, child: Child, room_id: str, room_type: str, restore: Any) -> dict[str, Any]:
        """A draining worker hands a room over: host it elsewhere, point every seat there."""
        old = self.directory.get(room_id)
        target = self._place(avoid=child.node)
        info = await self._host(target, room_type, room_id, restore=restore)
        for w in self.workers + self.draining:
            if w.link is not None:
                w.link.send({"op": "room_moved", "room_id": room_id, "owner": target})
        log.info("room %s moved from %s to %s", room_id, old["owner"] if old else child.node, target)
        return info

    def _owner_gone(self, node: str) -> None:
        """A worker exited: its rooms are gone. Recreate those whose policy says so, and
        tell every worker, so no player waits on a dead room."""
        lost = self.directory.owner_lost(node)
        if not lost:
            return
        self._spawn(self._after_owner_gone(node, lost))

    async def _after_owner_gone(self, node: str, lost: list[dict[str, Any]]) -> None:
        recreated = []
        for info in lost:
            if info.get("on_owner_lost") == "recreate" and not self.stopping:
                try:
                    await self._host(self._place(avoid=node), info["type"], info["room_id"])
                    recreated.append(info["room_id"])
                except Exception as exc:
                    log.error("could not recreate room %s: %s", info["room_id"], exc)
        log.warning("%s died with %d room(s); %d recreated", node, len(lost), len(recreated))
        for w in self.workers + self.draining:
            if w.link is not None:
                w.link.send({"op": "owners_lost", "owner": node, "lost": [i["room_id"] for i in lost], "recreated": recreated})

    def _retire(self, child: Child) -> None:
        """Keep a dead generation's counters so cluster totals never go backwards."""
        if child.kind != "worker" or not child.stats:
            return
        kept = self.retired.setdefault(child.name, {})
        for k in COUNTERS:
            kept[k] = kept.get(k, 0) + int(child.stats.get(k, 0))
        closes = self.retired_closes.setdefault(child.name, {})
        for code, n in (child.stats.get("closes") or {}).items():
            closes[code] = closes.get(code, 0) + n
        bus = self.retired_bus.setdefault(child.name, {})
        for k, n in child.bus_stats.items():
            bus[k] = bus.get(k, 0) + int(n)
        child.stats = {}
        child.bus_stats = {}

    async def _restart(self, child: Child) -> None:
        now = time.monotonic()
        recent = self.restarts.setdefault(child.name, deque())
        while recent and now - recent[0] > self.policy.window:
            recent.popleft()
        delay = self.policy.delay(len(recent))
        if len(recent) >= self.policy.storm_limit:
            log.critical("%s keeps crashing (%d restarts in %.0f s): holding it down for %.0f s", child.name, len(recent), self.policy.window, delay)
        recent.append(now)
        self.restart_totals[child.name] = self.restart_totals.get(child.name, 0) + 1
        if delay:
            await asyncio.sleep(delay)
        if not self.stopping:
            await self._start(child)

    # -- rolling restart -------------------------------------------------------------------------
    def _on_hup(self, signum: int) -> None:
        log.info("SIGHUP: rolling restart of the workers")
        self._spawn(self.rolling_restart())

    async def rolling_restart(self, drain_timeout: float = 10.0) -> None:
        """Replace each worker in turn; the service answers throughout."""
        for i, old in enumerate(list(self.workers)):
            if self.stopping:
                return
            new = Child("worker", old.slot, generation=old.generation)
            old.retiring = True
            self.draining.append(old)  # it serves (and counts) until the new one has taken over
            self.workers[i] = new
            await self._start(new)
            try:
                await asyncio.wait_for(new.ready.wait(), 30)
            except asyncio.TimeoutError:
                log.error("%s did not start during the rolling restart", new.name)
                continue
            # The new worker accepts on the same listening socket; now the old one stops
            # accepting, closes its clients with 1001 so they reconnect, and exits.
            if old.link is not None:
                old.link.send({"op": "drain"})
            if old.proc is not None:
                try:
                    await asyncio.wait_for(old.proc.wait(), drain_timeout)
                except asyncio.TimeoutError:
                    log.warning("%s did not drain in %.0f s; killing it", old.name, drain_timeout)
                    old.proc.kill()
                    await old.proc.wait()
            await asyncio.sleep(0)  # let _watch retire its counters
            self._retire(old)
            if old in self.draining:
                self.draining.remove(old)
            log.info("%s replaced (pid %s -> %s)", new.name, old.pid, new.pid)
        log.info("rolling restart done")

    # -- stopping ------------------------------------------------------------------------------
    def _on_stop_signal(self, signum: int) -> None:
        self.signals += 1
        if self.signals > 1:
            log.warning("second %s: killing every process now", signal.Signals(signum).name)
            for c in self.workers + self.brokers:
                if c.proc is not None and c.proc.returncode is None:
                    c.proc.kill()
            os._exit(130)
        log.info("%s: shutting down", signal.Signals(signum).name)
        self.stop()

    def stop(self) -> None:
        self.stopping = True
        self._stop_event.set()

    async def _shutdown(self) -> None:
        self.stopping = True
        # Workers first (they close their clients with 1001), brokers after.
        for group in (self.workers, self.brokers):
            for c in group:
                if c.link is not None:
                    c.link.send({"op": "stop"})
            procs = [c.proc for c in group if c.proc is not None and c.proc.returncode is None]
            if procs:
                done, pending = await asyncio.wait([asyncio.ensure_future(p.wait()) for p in procs], timeout=self.shutdown_timeout)
                for p in procs:
                    if p.returncode is None:
                        log.warning("pid %d did not stop in time; killing it", p.pid)
                        p.kill()
                        await p.wait()
        for s in self.listeners:
            s.close()
        for t in list(self._tasks):
            t.cancel()
        try:
            for name in os.listdir(self.runtime_dir):
                os.unlink(os.path.join(self.runtime_dir, name))
            os.rmdir(self.runtime_dir)
        except OSError:
            pass
        if self.pid_file:
            try:
                os.unlink(self.pid_file)
            except OSError:
                pass
        log.info("stopped")

    # -- figures -------------------------------------------------------------------------------
    def process_stats(self) -> list[tuple[dict[str, str], dict[str, Any]]]:
        """(labels, counters) per worker slot: the live generation plus the retired ones."""
        out = []
        for w in self.workers:
            live = [w] + [d for d in self.draining if d.slot == w.slot]
            kept = self.retired.get(w.name, {})
            snap: dict[str, Any] = {k: kept.get(k, 0) + sum(int(c.stats.get(k, 0)) for c in live) for k in COUNTERS}
            snap["connections"] = sum(int(c.stats.get("connections", 0)) for c in live)
            closes: dict[str, int] = dict(self.retired_closes.get(w.name, {}))
            for c in live:
                for code, n in (c.stats.get("closes") or {}).items():
                    closes[code] = closes.get(code, 0) + n
            snap["closes"] = closes
            out.append(({"process": w.name}, snap))
        return out

    def metrics_text(self) -> str:
        text = prometheus_text(self.process_stats())
        lines = ["# HELP tickwire_restarts_total processes restarted after they died", "# TYPE tickwire_restarts_total counter"]
        for c in self.workers + self.brokers:
            lines.append(f'tickwire_restarts_total{{process="{c.name}"}} {self.restart_totals.get(c.name, 0)}')
        lines.append("# HELP tickwire_process_up whether the process is running and ready")
        lines.append("# TYPE tickwire_process_up gauge")
        for c in self.workers + self.brokers:
            up = int(c.proc is not None and c.proc.returncode is None and c.ready.is_set())
            lines.append(f'tickwire_process_up{{process="{c.name}"}} {up}')
        rooms = [({"process": w.name}, room_id, st) for w in self.workers + self.draining for room_id, st in w.room_stats.items()]
        buses = []
        for w in self.workers:
            live = [w] + [d for d in self.draining if d.slot == w.slot]
            kept = self.retired_bus.get(w.name, {})
            names = set(kept) | {k for c in live for k in c.bus_stats}
            buses.append(({"process": w.name}, {k: kept.get(k, 0) + sum(int(c.bus_stats.get(k, 0)) for c in live) for k in names}))
        return text + "\n".join(lines) + "\n" + room_metrics_text(rooms) + bus_metrics_text(buses)

    def health(self) -> dict[str, Any]:
        procs = []
        for c in self.workers + self.brokers:
            alive = _up(c) or any(_up(d) for d in self.draining if d.slot == c.slot and d.kind == c.kind)
            procs.append({
                "process": c.name,
                "pid": c.pid,
                "up": alive,
                "restarts": self.restart_totals.get(c.name, 0),
                "connections": c.stats.get("connections", 0) if c.kind == "worker" else None,
            })
        totals: dict[str, int] = {}
        for _, snap in self.process_stats():
            for k in COUNTERS:
                totals[k] = totals.get(k, 0) + int(snap[k])
        return {
            "status": "ok" if all(p["up"] for p in procs) else "degraded",
            "processes": procs,
            "connections": sum(p["connections"] or 0 for p in procs),
            "totals": totals,
        }


def _up(c: Child) -> bool:
    return c.proc is not None and c.proc.returncode is None and c.ready.is_set()


def _exit_text(code: int | None) -> str:
    if code is None:
        return "no code"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"
