"""The app `tickwire-scjson` serves (bench/tickwire_sc.py): bench/apps.py's limits, and
channel `c` untyped (`Json`), as a SocketCluster app's channels are: SocketCluster's load
publishes JSON to it, and every subscriber gets the publisher's JSON text spliced into
one `#publish` packet, built once per message for the whole worker."""

from __future__ import annotations

from engine import App

from bench.apps import LIMITS

app = App(limits=LIMITS, name="tickwire-bench-scjson")


@app.procedure("echo")
def echo(socket, data):
    return data
