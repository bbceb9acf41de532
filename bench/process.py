"""Starting, talking to and always ending the processes of a run: the server under test
and the load generator, never the same process.

A child is described by a ProcessSpec. It talks JSON lines: commands on its stdin, one
reply line per command on its stdout (other stdout lines are kept in its log), logs on
stderr; a server that takes no commands only writes its log. Each child gets its own
session (process group), dies with the harness (PR_SET_PDEATHSIG), and is ended by
`stop()`: a polite quit, then SIGTERM to the child,
then SIGKILL to every process of its tree and its group. Nothing is ever ended by name.
"""

from __future__ import annotations

import ctypes
import json
import os
import queue
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from bench.proc import tree_pids

READY_TIMEOUT_S = 60.0
REPLY_TIMEOUT_S = 60.0
MAX_LOG_LINE = 4096  # bytes of a non-reply stdout line kept in the log


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

    def __post_init__(self) -> None:
        if self.ready not in ("line", "port"):
            raise ValueError(f"ready must be 'line' or 'port', not {self.ready!r}")
        if self.ready == "line" and not self.control:
            raise ValueError("a process that takes no commands must use ready='port'")


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
    """One running process of a run.

    A thread reads the child's stdout all the time: JSON lines go to a queue that
    `request()` takes replies from, anything else to the child's log. So a chatty child
    never blocks on a full pipe, whether or not the harness is waiting for a reply."""

    def __init__(self, spec: ProcessSpec, name: str, log_path: str, port: int | None = None):
        self.spec = spec
        self.name = name
        self.log_path = log_path
        self.port = port
        self.ready_info: dict = {}
        self._log = open(log_path, "ab")
        self._log_lock = threading.Lock()
        self._replies: queue.Queue[dict | None] = queue.Queue()
        env = dict(os.environ)
        env.update(spec.env)
        self.popen = subprocess.Popen(
            list(spec.argv),
            cwd=spec.cwd,
            env=env,
            stdin=subprocess.PIPE if spec.control else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.pid = self.popen.pid
        self._reader = threading.Thread(target=self._read_stdout, name=f"{name}-stdout", daemon=True)
        self._reader.start()

    def _read_stdout(self) -> None:
        for line in self.popen.stdout:  # ends at EOF, when the child exits
            text = line.strip()
            if self.spec.control and text.startswith(b"{"):
                try:
                    self._replies.put(json.loads(text))
                    continue
                except ValueError:
                    pass
            with self._log_lock:
                if not self._log.closed:
                    self._log.write(b"[stdout] " + line[:MAX_LOG_LINE])
        self._replies.put(None)  # EOF

    # ------------------------------------------------------------------ lifecycle
    def wait_ready(self) -> dict:
        deadline = time.monotonic() + self.spec.ready_timeout_s
        if self.spec.ready == "line":
            while True:
                msg = self._next_reply(deadline - time.monotonic(), "its ready line")
                if msg.get("ready"):
                    self.ready_info = msg
                    return msg
        if self.port is None:
            raise ChildError(f"{self.name}: ready='port' but no port was given")
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
        self._reader.join(timeout=5)
        for stream in (self.popen.stdin, self.popen.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        with self._log_lock:
            self._log.close()

    # ------------------------------------------------------------------ JSON lines
    def send(self, obj: dict) -> None:
        self.popen.stdin.write(json.dumps(obj).encode() + b"\n")
        self.popen.stdin.flush()

    def request(self, obj: dict, timeout_s: float = REPLY_TIMEOUT_S) -> dict:
        """Send a command and return its reply; a reply with "error" raises."""
        try:
            self.send(obj)
        except (BrokenPipeError, ValueError, AttributeError) as exc:
            raise ChildError(f"{self.name}: cannot send {obj.get('cmd')!r}: {exc}{self.log_tail()}") from exc
        reply = self._next_reply(timeout_s, f"a reply to {obj.get('cmd')!r}")
        if reply.get("error"):
            raise ChildError(f"{self.name}: {obj.get('cmd')!r} failed: {reply['error']}")
        return reply

    def _next_reply(self, timeout_s: float, what: str) -> dict:
        try:
            reply = self._replies.get(timeout=max(timeout_s, 0.0))
        except queue.Empty:
            raise ChildError(f"{self.name}: no {what} in {timeout_s:.0f}s{self.log_tail()}") from None
        if reply is None:
            self._replies.put(None)  # stays at EOF for whoever asks next
            try:
                rc = self.popen.wait(timeout=2)
            except subprocess.TimeoutExpired:
                raise ChildError(f"{self.name} closed its stdout{self.log_tail()}") from None
            raise ChildError(f"{self.name} exited with code {rc}{self.log_tail()}")
        return reply

    def log_tail(self, lines: int = 8) -> str:
        try:
            with self._log_lock:
                if not self._log.closed:
                    self._log.flush()
            with open(self.log_path, "rb") as f:
                f.seek(max(0, os.path.getsize(self.log_path) - 4000))
                tail = f.read().decode(errors="replace").strip().splitlines()[-lines:]
        except (OSError, ValueError):
            return ""
        return ("\n  | " + "\n  | ".join(tail)) if tail else ""
