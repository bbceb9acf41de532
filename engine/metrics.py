"""Counters of one process: plain integers, cheap to bump on hot paths.

A worker reports them as a snapshot (`as_dict()`); /health and /metrics show them, and in a
cluster the supervisor sums every process's snapshots so figures never jump between
scrapes, whichever worker answers.
"""

from __future__ import annotations

from typing import Iterable

__all__ = ["Metrics", "prometheus_text", "room_metrics_text", "bus_metrics_text"]

COUNTERS = (
    "connections_opened",
    "connections_closed",
    "handshakes",
    "http_requests",
    "http_rejected",
    "frames_in",
    "bytes_in",
    "messages_in",
    "frames_out",
    "bytes_out",
    "messages_out",
    "frames_split",
    "calls",
    "call_errors",
    "events",
    "publishes",
    "deliveries",
    "drops",
    "rate_limited",
    "limit_errors",
    "middleware_blocks",
    "protocol_errors",
    "rejected",
)

_HELP = {
    "connections_opened": "WebSocket connections accepted",
    "connections_closed": "WebSocket connections closed",
    "handshakes": "Tickwire handshakes completed",
    "http_requests": "plain HTTP requests answered",
    "http_rejected": "WebSocket upgrades refused (origin, rate, capacity)",
    "frames_in": "WebSocket frames received",
    "bytes_in": "bytes received in frames",
    "messages_in": "protocol messages received",
    "frames_out": "WebSocket frames sent",
    "bytes_out": "bytes sent in frames",
    "messages_out": "channel messages delivered",
    "frames_split": "extra frames because content exceeded max_out_frame_size",
    "calls": "procedure calls",
    "call_errors": "procedure calls answered with an error",
    "events": "events received",
    "publishes": "publishes accepted",
    "deliveries": "channel messages queued for subscribers",
    "drops": "channel messages dropped for slow readers",
    "rate_limited": "messages refused for max_messages_per_second",
    "limit_errors": "requests refused for a named limit",
    "middleware_blocks": "requests blocked by middleware",
    "protocol_errors": "connections closed for a protocol violation",
    "rejected": "packets a codec could not map to a protocol message (SocketCluster's raw or malformed packets)",
}


class Metrics:
    __slots__ = COUNTERS + ("closes", "connections")

    def __init__(self) -> None:
        for name in COUNTERS:
            setattr(self, name, 0)
        self.closes: dict[int, int] = {}
        self.connections = 0  # open now (a gauge)

    def count_close(self, code: int) -> None:
        self.closes[code] = self.closes.get(code, 0) + 1
        if code >= 4000 or code in (1002, 1003, 1007, 1009):
            self.protocol_errors += 1

    def as_dict(self) -> dict[str, object]:
        d: dict[str, object] = {name: getattr(self, name) for name in COUNTERS}
        d["connections"] = self.connections
        d["closes"] = {str(k): v for k, v in sorted(self.closes.items())}
        return d


def prometheus_text(snapshots: Iterable[tuple[dict[str, str], dict[str, object]]], prefix: str = "tickwire") -> str:
    """Prometheus text format for (labels, snapshot) pairs, one pair per process."""
    snaps = list(snapshots)
    lines: list[str] = []

    def labels(base: dict[str, str], extra: dict[str, str] | None = None) -> str:
        items = {**base, **(extra or {})}
        return "{" + ",".join(f'{k}="{v}"' for k, v in items.items()) + "}" if items else ""

    for name in COUNTERS:
        metric = f"{prefix}_{name}_total"
        lines.append(f"# HELP {metric} {_HELP[name]}")
        lines.append(f"# TYPE {metric} counter")
        for base, snap in snaps:
            lines.append(f"{metric}{labels(base)} {snap.get(name, 0)}")
    lines.append(f"# HELP {prefix}_connections open WebSocket connections")
    lines.append(f"# TYPE {prefix}_connections gauge")
    for base, snap in snaps:
        lines.append(f"{prefix}_connections{labels(base)} {snap.get('connections', 0)}")
    lines.append(f"# HELP {prefix}_closes_total connections closed, by close code")
    lines.append(f"# TYPE {prefix}_closes_total counter")
    for base, snap in snaps:
        closes = snap.get("closes", {})
        assert isinstance(closes, dict)
        for code, n in closes.items():
            lines.append(f"{prefix}_closes_total{labels(base, {'code': str(code)})} {n}")
    return "\n".join(lines) + "\n"


def room_metrics_text(rooms: Iterable[tuple[dict[str, str], str, dict[str, object]]], prefix: str = "tickwire") -> str:
    """Per-room figures: players, ticks, late and skipped ticks, bytes, and the histogram
    of how long each wake-up of the room took (simulation steps plus the send tick).
    `rooms` holds (process labels, room id, that room's stats) triples."""
    rooms = list(rooms)
    lines: list[str] = []
    gauges = [("players", "players seated in the room", "gauge")]
    counters = [
        ("ticks", "simulation steps run"),
        ("late_ticks", "steps run late, to catch up"),
        ("skipped_ticks", "steps dropped by the late policy"),
        ("sends", "send ticks"),
        ("bytes_sent", "bytes of room sections sent"),
        ("inputs", "inputs queued"),
        ("inputs_dropped", "inputs dropped (rate, order, queue, or a bad payload)"),
    ]

    def lab(base: dict[str, str], room: str, stats: dict[str, object], extra: str = "") -> str:
        items = {**base, "room": room, "type": str(stats.get("type", ""))}
        inner = ",".join(f'{k}="{v}"' for k, v in items.items())
        return "{" + inner + (("," + extra) if extra else "") + "}"

    for name, help_text, kind in gauges:
        lines += [f"# HELP {prefix}_room_{name} {help_text}", f"# TYPE {prefix}_room_{name} {kind}"]
        lines += [f"{prefix}_room_{name}{lab(b, r, s)} {s.get(name, 0)}" for b, r, s in rooms]
    for name, help_text in counters:
        lines += [f"# HELP {prefix}_room_{name}_total {help_text}", f"# TYPE {prefix}_room_{name}_total counter"]
        lines += [f"{prefix}_room_{name}_total{lab(b, r, s)} {s.get(name, 0)}" for b, r, s in rooms]
    metric = f"{prefix}_room_tick_ms"
    lines += [f"# HELP {metric} time a room's wake-up took (ms)", f"# TYPE {metric} histogram"]
    for b, r, s in rooms:
        hist = s.get("tick_ms") or {}
        assert isinstance(hist, dict)
        running = 0
        for bound, n in hist.items():
            running += int(n)
            le = "+Inf" if bound in ("inf", "+Inf") else bound
            extra = 'le="' + le + '"'
            lines.append(f"{metric}_bucket{lab(b, r, s, extra)} {running}")
        lines.append(f"{metric}_sum{lab(b, r, s)} {s.get('tick_ms_sum', 0)}")
        lines.append(f"{metric}_count{lab(b, r, s)} {running}")
    for name, key, help_text in (
        ("tick_cpu", "tick_cpu_ms_sum", "CPU time of the room's wake-ups (process time while it ran)"),
        ("input_cpu", "input_cpu_ms_sum", "The part of the wake-ups' CPU time spent applying queued inputs"),
    ):
        metric = f"{prefix}_room_{name}_seconds_total"
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} counter"]
        lines += [f"{metric}{lab(b, r, s)} {float(s.get(key, 0)) / 1000:.6f}" for b, r, s in rooms]
    return "\n".join(lines) + "\n" if lines else ""


def bus_metrics_text(buses: Iterable[tuple[dict[str, str], dict[str, int]]], prefix: str = "tickwire") -> str:
    """A worker's bus to the brokers: publishes, drops while a broker was down, requests."""
    buses = [(labels, stats) for labels, stats in buses if stats]
    if not buses:
        return ""
    lines: list[str] = []
    for name in sorted({k for _, stats in buses for k in stats}):
        metric = f"{prefix}_bus_{name}_total"
        lines += [f"# HELP {metric} bus (worker to brokers): {name.replace('_', ' ')}", f"# TYPE {metric} counter"]
        for labels, stats in buses:
            inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
            lines.append(f"{metric}{{{inner}}} {stats.get(name, 0)}")
    return "\n".join(lines) + "\n"
