"""Starting, talking to and always ending the processes of a run: the server under test
and the load generator, never the same process.

A child is described by a ProcessSpec. It talks JSON lines: commands on its stdin, one
reply line per command on its stdout (other stdout lines are kept in its log), logs on
stderr. Each child gets its own session (process group), dies with the harness
(PR_SET_PDEATHSIG), and is ended by `stop()`: a polite quit, then SIGTERM to the child,
then SIGKILL to every process of its tree and its group. Nothing is ever ended by name.
"""

from __future__ import annotations

import ctypes
import json
import os
import selectors
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from bench.proc import tree_pids

READY_TIMEOUT_S = 60.0
REPLY_TIMEOUT_S = 60.0
MAX_LINE_BYTES = 16 << 20


class ChildError(RuntimeError):
    """A child died, timed out, or answered with an error."""


@dataclass(frozen=True)
class ProcessSpec:
    """How to start one process of a run.

    ready: "line" - the process prints {"ready": true, ...} on stdout when it listens
           (what every script of the harness does); "port" - the harness waits until
           the TCP port accepts a connection (for a server that prints nothing, such as
           `tickwire run`).
    control: the process reads JSON-line commands on stdin (always true for a load
           generator; for a server, it enables {"cmd": "gc"} before memory readings and
           {"cmd": "stats"} counters in each window).
    """

    argv: Sequence[str]
    cwd: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    ready: str = "line"
    control: bool = True
    ready_timeout_s: float = READY_TIMEOUT_S


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: SIGKILL it if the harness dies.
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Child:
    """One running process of a run."""

    def __init__(self, spec: ProcessSpec, name: str, log_path: str, port: int | None = None):
        self.spec = spec
        self.name = name
        self.log_path = log_path
        self.port = port
        self.ready_info: dict = {}
        self._buf = b""
        self._log = open(log_path, "ab")
        env = dict(os.environ)
        env.update(spec.env)
        self.popen = subprocess.Popen(
            list(spec.argv),
            cwd=spec.cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.pid = self.popen.pid
        os.set_blocking(self.popen.stdout.fileno(), False)

    # ------------------------------------------------------------------ lifecycle
    def wait_ready(self) -> dict:
        deadline = time.monotonic() + self.spec.ready_timeout_s
        if self.spec.ready == "line":
            while True:
                msg = self._read_json(deadline - time.monotonic())
                if msg.get("ready"):
                    self.ready_info = msg
                    return msg
        if self.spec.ready != "port" or self.port is None:
            raise ChildError(f"{self.name}: unknown ready mode {self.spec.ready!r}")
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                    return {"ready": True}
            except OSError:
                time.sleep(0.1)
        raise ChildError(f"{self.name}: port {self.port} not open after {self.spec.ready_timeout_s:.0f}s")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def _check_alive(self) -> None:
        rc = self.popen.poll()
        if rc is not None:
            raise ChildError(f"{self.name} exited with code {rc}{self.log_tail()}")

    def stop(self, grace_s: float = 3.0) -> None:
        """End this child and everything it started. Safe to call twice."""
        pids = tree_pids(self.pid) if self.alive() else []  # before it can orphan anything
        if self.alive() and self.spec.control:
            try:
                self.send({"cmd": "quit"})
            except (OSError, ValueError):
                pass
        try:
            self.popen.wait(timeout=min(grace_s, 1.0))
        except subprocess.TimeoutExpired:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
        # Whatever is left of the tree (workers whose supervisor died first, ...).
        pids = set(pids) | set(tree_pids(self.pid) if self.alive() else [])
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            os.killpg(self.pid, signal.SIGKILL)  # our child's own group: its pgid is its pid
        except (ProcessLookupError, PermissionError):
            pass
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait()
        for stream in (self.popen.stdin, self.popen.stdout):
            try:
                stream.close()
            except OSError:
                pass
        self._log.close()

    # ------------------------------------------------------------------ JSON lines
    def send(self, obj: dict) -> None:
        self.popen.stdin.write(json.dumps(obj).encode() + b"\n")
        self.popen.stdin.flush()

    def request(self, obj: dict, timeout_s: float = REPLY_TIMEOUT_S) -> dict:
        """Send a command and return its reply; a reply with "error" raises."""
        try:
            self.send(obj)
        except (BrokenPipeError, ValueError) as exc:
            raise ChildError(f"{self.name}: cannot send {obj.get('cmd')!r}: {exc}{self.log_tail()}") from exc
        reply = self._read_json(timeout_s)
        if reply.get("error"):
            raise ChildError(f"{self.name}: {obj.get('cmd')!r} failed: {reply['error']}")
        return reply

    def _read_json(self, timeout_s: float) -> dict:
        deadline = time.monotonic() + max(timeout_s, 0.0)
        while True:
            line = self._read_line(deadline)
            text = line.strip()
            if text.startswith(b"{"):
                try:
                    return json.loads(text)
                except ValueError:
                    pass
            self._log.write(b"[stdout] " + line + b"\n")  # not a reply: keep it with the logs

    def _read_line(self, deadline: float) -> bytes:
        fd = self.popen.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ChildError(f"{self.name}: no reply in time{self.log_tail()}")
                if not sel.select(min(left, 0.5)):
                    self._check_alive()
                    continue
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    try:
                        rc = self.popen.wait(timeout=2)
                    except subprocess.TimeoutExpired:
                        raise ChildError(f"{self.name} closed its stdout{self.log_tail()}") from None
                    raise ChildError(f"{self.name} exited with code {rc}{self.log_tail()}")
                self._buf += chunk
                if len(self._buf) > MAX_LINE_BYTES:
                    raise ChildError(f"{self.name}: reply line over {MAX_LINE_BYTES} bytes")
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def log_tail(self, lines: int = 8) -> str:
        try:
            self._log.flush()
            with open(self.log_path, "rb") as f:
                f.seek(max(0, os.path.getsize(self.log_path) - 4000))
                tail = f.read().decode(errors="replace").strip().splitlines()[-lines:]
        except (OSError, ValueError):
            return ""
        return ("\n  | " + "\n  | ".join(tail)) if tail else ""
