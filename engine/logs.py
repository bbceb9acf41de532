"""One central log for every process of a server.

Each child process writes its log records to its stderr as JSON lines (uncaught errors
included, through sys.excepthook and the loop's exception handler); the supervisor reads
every child's stderr, tags each record with the process it came from, and writes one stream:
JSON lines, or readable text when its output is a terminal. A line from a child that is not
JSON (a crash before logging was set up, a C library writing to stderr) is kept as a record
of its own, never lost.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
import traceback
from typing import Any, TextIO

__all__ = ["JsonLineHandler", "LogSink", "configure_child", "configure_supervisor", "record_from_line"]


def as_record(record: logging.LogRecord, process: str) -> dict[str, Any]:
    """The one shape of a log record in the central log (what JSON lines hold)."""
    out: dict[str, Any] = {
        "t": round(record.created, 6),
        "level": record.levelname,
        "process": process,
        "logger": record.name,
        "msg": record.getMessage(),
    }
    if record.exc_info:
        out["exc"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
    return out


class JsonLineHandler(logging.Handler):
    """Writes each record as one JSON line (what a child sends to the supervisor)."""

    def __init__(self, stream: TextIO, process: str):
        super().__init__()
        self.stream = stream
        self.process = process

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(json.dumps(as_record(record, self.process), ensure_ascii=False) + "\n")
            self.stream.flush()
        except Exception:  # logging must never take a process down
            self.handleError(record)


def configure_child(process: str, level: str = "INFO") -> None:
    """Send this process's records (and its uncaught errors) to stderr as JSON lines."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(JsonLineHandler(sys.stderr, process))
    root.setLevel(getattr(logging, level.upper(), logging.INFO))

    def excepthook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        logging.getLogger("tickwire").critical("uncaught exception", exc_info=(kind, value, tb))

    sys.excepthook = excepthook


def loop_exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    exc = context.get("exception")
    logging.getLogger("tickwire.loop").error(
        context.get("message", "unhandled error in the event loop"),
        exc_info=(type(exc), exc, exc.__traceback__) if exc else None,
    )


def record_from_line(line: str, process: str) -> dict[str, Any]:
    """A child's stderr line as a record, tagged with the process it came from."""
    line = line.rstrip("\n")
    if line.startswith("{"):
        try:
            rec = json.loads(line)
            if isinstance(rec, dict) and "msg" in rec:
                rec["process"] = process
                return rec
        except ValueError:
            pass
    return {"t": round(time.time(), 6), "level": "ERROR", "process": process, "logger": "stderr", "msg": line}


_LEVEL_NO = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}


class LogSink:
    """Where the supervisor writes the one stream: JSON lines or readable text."""

    def __init__(self, stream: TextIO | None = None, fmt: str | None = None, level: str = "INFO"):
        self.stream = stream or sys.stdout
        self.fmt = fmt or ("text" if self.stream.isatty() else "json")
        self.level = _LEVEL_NO.get(level.upper(), 20)

    def write(self, rec: dict[str, Any]) -> None:
        if _LEVEL_NO.get(str(rec.get("level", "INFO")), 20) < self.level:
            return
        if self.fmt == "json":
            line = json.dumps(rec, ensure_ascii=False)
        else:
            stamp = time.strftime("%H:%M:%S", time.localtime(rec.get("t", time.time())))
            millis = int((rec.get("t", 0) % 1) * 1000)
            line = f"{stamp}.{millis:03d} {rec.get('process', '?'):<12} {rec.get('level', 'INFO'):<8} {rec.get('logger', '')}: {rec.get('msg', '')}"
            if rec.get("exc"):
                line += "\n" + str(rec["exc"])
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (BrokenPipeError, ValueError):
            pass


class _SinkHandler(logging.Handler):
    def __init__(self, sink: LogSink, process: str):
        super().__init__()
        self.sink = sink
        self.process = process

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.write(as_record(record, self.process))


def configure_supervisor(sink: LogSink, level: str = "INFO") -> None:
    """The supervisor's own records go to the same stream as its children's."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(_SinkHandler(sink, "supervisor"))
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
