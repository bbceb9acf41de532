"""Every limit, with its name and default (codecs/WIRE.md, "Limits").

Limits are plain settings: a server takes a Limits instance (or keyword overrides through
`App(limits=...)` and `tickwire run --limit NAME=VALUE`). Each is checked where memory would
otherwise be allocated: the transport refuses frames over max_frame_size before reading
them, decoders check lengths against what is left of the frame, and the session counts
messages before dispatching them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

__all__ = ["Limits", "TokenBucket"]


@dataclass(frozen=True)
class Limits:
    # frames
    max_frame_size: int = 64 * 1024  # inbound WebSocket message, bytes
    max_out_frame_size: int = 256 * 1024  # outbound: larger content is split into several frames
    max_string_length: int = 4096
    max_vector_length: int = 65536
    max_depth: int = 32  # nesting of self-referencing tables in one message
    # rates
    max_messages_per_second: float = 200.0
    message_burst: int = 400
    flood_close_after: float = 2.0  # seconds over the rate before the connection is closed
    # resources per connection
    max_channels_per_connection: int = 100
    max_channel_name_length: int = 128
    max_pending_calls: int = 64
    send_buffer_high_water: int = 1024 * 1024
    slow_reader_timeout: float = 10.0
    # time
    handshake_timeout: float = 10.0
    ping_interval: float = 8.0
    ping_timeout: float = 20.0
    call_timeout: float = 10.0  # a procedure that runs longer is answered with `timeout`
    # per worker
    max_connections: int = 10000
    max_handshakes_per_ip_per_second: float = 20.0
    handshake_burst: int = 40

    def with_overrides(self, **overrides: object) -> "Limits":
        known = {f.name: f.type for f in fields(self)}
        converted = {}
        for name, value in overrides.items():
            if name not in known:
                raise ValueError(f"unknown limit {name!r}; known limits: {', '.join(known)}")
            default = getattr(self, name)
            converted[name] = type(default)(value)  # type: ignore[call-arg]
        return replace(self, **converted)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class TokenBucket:
    """A rate with a burst: `take(now)` is True while the rate is respected.

    Time is an argument, so tests step it without sleeping.
    """

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float, now: float):
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = now

    def take(self, now: float, n: float = 1.0) -> bool:
        elapsed = now - self.stamp
        if elapsed > 0:
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
            self.stamp = now
        if self.tokens >= n:
            self.tokens -= n
            return True
        return False
