"""The Tickwire app every benchmark scenario runs: `tickwire run bench.apps:app`.

It is what a game server would register for the same work as the anchors do, and nothing
more:

- channel `c` carries `Bytes` (the protocol's opaque binary message), so a delivery of
  `size` bytes of data is `Message` + channel id + length + data (35 B for 32 B): the
  load generator counts deliveries by frame length, and the server never decodes them;
- other channels (churn's fresh names) are untyped (`Json`), as in any app;
- procedure `echo` returns what it gets (round trips);
- the per-connection limits a benchmark load would hit are lifted (a game server tunes
  them too): one publisher, one churning connection or one RPC client sends far more than
  `max_messages_per_second` (200), churn keeps up to 1,000 fresh channels in flight on one
  connection (`max_channels_per_connection` 100), and every client comes from 127.0.0.1
  (`max_handshakes_per_ip_per_second` 20). The checks still run on every message: only
  their thresholds move.

Fan-out is published by a client, as in every anchor: the publisher's frame is received,
decoded and checked on the server, so its cost is in the figure (shared by the 1,000
deliveries of each message).
"""

from __future__ import annotations

from engine import App, Limits
from engine._generated import protocol as P

CHANNEL = "c"

LIMITS = Limits(
    max_messages_per_second=1e9,
    message_burst=10**9,
    max_channels_per_connection=100_000,
    max_handshakes_per_ip_per_second=1e6,
    handshake_burst=10**6,
)

app = App(limits=LIMITS, name="tickwire-bench")
app.channel_type(CHANNEL, P.Bytes)


@app.procedure("echo")
def echo(socket, data):
    return data
