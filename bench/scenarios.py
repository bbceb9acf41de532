"""The scenarios: what is measured, with which parameters, and what counts as a unit.

Two kinds of measurement (bench/measure.py):

- "window": the load runs, the harness waits `warm_s`, then measures server CPU and the
  load's counters over `window_s`. The main figure is server CPU time per unit.
- "memory": the load opens idle connections step by step (`steps`); after `settle_s`
  (and a garbage collection, when the server takes commands) the harness reads the
  server tree's memory. The main figure is KiB per connection at the last step.

Every parameter is passed to the load generator's "setup", so a system's load reads the
ones it needs. `quick` overrides parameters for the smoke-test form (`--quick`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Derived:
    """A figure computed from the window's deltas: numerator / denominator * scale.
    Names available: "cpu_us", "user_us", "sys_us", "wall_s", "units", and every counter
    the load reports in "sample" (for example "bytes", "published", "entity_updates")."""

    name: str
    numerator: str
    denominator: str
    scale: float = 1.0


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    kind: str  # "window" or "memory"
    unit: str  # what one unit is: "delivery", "op", "round trip", "tick", "connection"
    params: Mapping[str, Any]
    quick: Mapping[str, Any] = field(default_factory=dict)
    baseline: str = ""  # the system the others are compared with
    headline: bool = False  # headline scenarios get 5 runs per system, others 3
    main: str = "cpu_us_per_unit"  # the figure compared: table, ratios, chart
    main_label: str = ""  # how the chart's axis names the main figure
    columns: tuple[str, ...] = ()  # further figures shown in the table
    derived: tuple[Derived, ...] = ()
    # further ratios of medians: (figure, system), e.g. ("out_us_per_tick", "websockets"):
    # each system's figure over that system's, beside the main ratio to the baseline
    also_vs: tuple[tuple[str, str], ...] = ()
    what: str = ""  # one sentence for the README: what the load does, with {param} fields

    def describe(self, params: Mapping[str, Any]) -> str:
        return describe(self.what, params)

    def params_for(self, quick: bool, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        p = dict(self.params)
        if quick:
            p.update(self.quick)
        if overrides:
            p.update(overrides)
        if self.kind == "window":
            # The load must stop by itself, even if the harness never sends "stop".
            p.setdefault("max_s", float(p["warm_s"]) + float(p["window_s"]) + 30.0)
        return p

    def runs(self, quick: bool) -> int:
        if quick:
            return 1
        return 5 if self.headline else 3


def describe(what: str, params: Mapping[str, Any]) -> str:
    """`what` with the parameters filled in (left as written if one is missing)."""
    try:
        return what.format(**params)
    except (KeyError, ValueError, IndexError):
        return what


# Frames received by the subscribers (the loads report "frames"): with 20 messages in a
# frame, what a frame costs the server is the figure to hold against a floor's frame.
PER_FRAME = Derived("cpu_us_per_frame", "cpu_us", "frames")

FANOUT = Scenario(
    name="fanout",
    title="Fan-out to 1,000 subscribers of one channel",
    kind="window",
    unit="delivery",
    params={
        "subscribers": 1000,
        "rate": 10,  # publishes per second; every system gets the same offered load
        "burst": 1,  # publishes sent back to back each time (20: twenty share a flush)
        "size": 32,  # bytes of application data per message
        "sample_every": 100,  # one subscriber in 100 measures latency
        "warm_s": 3,
        "window_s": 15,
        "drain_s": 2,
    },
    quick={"warm_s": 1, "window_s": 3, "drain_s": 1},
    baseline="websockets",
    headline=True,
    main_label="server CPU µs per delivered message",
    columns=("units_per_s", "cpu_us_per_frame", "lat_p50_ms", "lat_p99_ms", "server_cpu_util"),
    derived=(PER_FRAME,),
    what="one publisher sends {rate} messages of {size} B per second ({burst} at a time) to a channel "
    "with {subscribers:,} subscribers; the floors broadcast each message, built once, to {subscribers:,} clients",
)

FANOUT_BATCH = Scenario(
    name="fanout-batch",
    title="Fan-out, 20 messages at a time, to 1,000 subscribers",
    kind="window",
    unit="delivery",
    params={**FANOUT.params, "rate": 2, "burst": 20},
    quick=FANOUT.quick,
    baseline="websockets",
    main_label="server CPU µs per delivered message",
    columns=("units_per_s", "cpu_us_per_frame", "lat_p50_ms", "lat_p99_ms", "server_cpu_util"),
    derived=(PER_FRAME,),
    what="one publisher sends {burst} messages of {size} B back to back, {rate} times a second, to a channel "
    "with {subscribers:,} subscribers: a server that batches sends them in one frame per subscriber; "
    "a unit is a message delivered, however many share a frame",
)

CHURN = Scenario(
    name="churn",
    title="Channel churn: subscribe + unsubscribe",
    kind="window",
    unit="op",
    params={"inflight": 1000, "max_channels": 5_000_000, "warm_s": 2, "window_s": 10},
    quick={"warm_s": 1, "window_s": 3},
    baseline="socketcluster",
    headline=True,
    main_label="server CPU µs per subscribe or unsubscribe",
    columns=("units_per_s", "server_cpu_util"),
    what="one connection subscribes to fresh channel names (acknowledged, up to {inflight:,} "
    "in flight) and unsubscribes each again; an op is one subscribe or one unsubscribe",
)

SINGLE = Scenario(
    name="single",
    title="One channel, 10 subscribers, maximum publish rate",
    kind="window",
    unit="delivery",
    params={"subscribers": 10, "inflight": 100, "size": 32, "warm_s": 2, "window_s": 15},
    quick={"warm_s": 1, "window_s": 3},
    baseline="socketcluster",
    main_label="server CPU µs per delivered message",
    columns=("units_per_s", "cpu_us_per_publish", "lat_p50_ms", "server_cpu_util"),
    derived=(Derived("cpu_us_per_publish", "cpu_us", "published"),),
    what="a closed loop: the publisher stays at most {inflight} messages of {size} B ahead of "
    "the slowest of {subscribers} subscribers",
)

RPC = Scenario(
    name="rpc",
    title="Procedure round trips, 100 concurrent clients",
    kind="window",
    unit="round trip",
    params={"clients": 100, "size": 32, "sample_every": 1, "warm_s": 1, "window_s": 10},
    quick={"warm_s": 1, "window_s": 3},
    baseline="websockets",
    main_label="server CPU µs per round trip",
    columns=("units_per_s", "lat_p50_ms", "lat_p99_ms", "server_cpu_util"),
    what="each of {clients} connections keeps one {size}-byte echo request in flight (closed loop)",
)

MEMORY = Scenario(
    name="memory",
    title="Idle connection memory",
    kind="memory",
    unit="connection",
    params={"steps": [0, 1000, 5000], "settle_s": 3},
    quick={"settle_s": 1},
    baseline="websockets",
    headline=True,
    main="kib_per_conn",
    main_label="server KiB per idle connection (at the last step)",
    columns=("kib_per_conn_at_1000", "rss_kib_at_0"),
    what="idle connections (handshake done, nothing subscribed) are opened in steps of {steps}; "
    "the server's resident memory is read at each step after {settle_s} s and a GC",
)

MMO = Scenario(
    name="mmo",
    title="MMO room: moving entities, 20 Hz",
    kind="window",
    unit="tick",
    params={
        "entities": 5000,
        "clients": 100,
        "hz": 20,
        "move_frac": 1.0,  # share of the entities moving each tick
        "view_frac": 0.1,  # share of the entities each client sees (0: all)
        "inputs": 1,  # each client sends one input per frame it gets (0: none)
        "floor_bytes": 0,  # the floor's frame size; 0: the median of Tickwire's room for these params
        "load_procs": 0,  # Tickwire's load processes; 0: one per 500 clients
        "warm_s": 3,
        "window_s": 15,
        "setup_timeout_s": 300,
    },
    quick={"entities": 1000, "clients": 10, "warm_s": 1, "window_s": 5},  # 100 ticks: 10 ms CPU ticks matter here
    baseline="colyseus",
    main_label="server CPU µs per tick",
    columns=(
        "out_us_per_tick",
        "in_us_per_tick",
        "bytes_per_entity_update",
        "bytes_per_client_tick",
        "frames_per_client_tick",
        "units_per_s",
        "server_cpu_util",
    ),
    derived=(
        Derived("bytes_per_entity_update", "bytes", "entity_updates"),
        Derived("bytes_per_client_tick", "bytes", "messages"),
        Derived("frames_per_client_tick", "messages", "client_ticks"),
        Derived("cpu_us_per_frame", "cpu_us", "messages"),
        # The server's own split of its CPU (its `stats`): the room's ticks (simulation,
        # interest, encoding, writes) and everything else (the inputs: read, queued and
        # applied at the tick; the event loop). bench/tickwire_server.py says how.
        Derived("out_us_per_tick", "server.out_cpu_us", "units"),
        Derived("in_us_per_tick", "server.in_cpu_us", "units"),
        Derived("apply_us_per_tick", "server.room_input_cpu_us", "units"),
        Derived("wake_us_per_tick", "server.room_wake_cpu_us", "units"),
        Derived("out_us_per_frame", "server.out_cpu_us", "messages"),
        Derived("in_us_per_input", "server.in_cpu_us", "inputs"),
    ),
    also_vs=(("out_us_per_tick", "websockets"),),
    what="a room of {entities:,} entities {{x, y, k}}, {move_frac:.0%} of them "
    "moving each tick at {hz} Hz; each of {clients:,} clients sees {view_frac:.0%} of them and sends one input a tick",
)

ALL = (FANOUT, FANOUT_BATCH, CHURN, SINGLE, RPC, MEMORY, MMO)
