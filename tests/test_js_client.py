"""The JavaScript client (codecs/js/client.js) under node's test runner.

codecs/js/test/ holds the client's tests: against a live server started by the tests
themselves (`tickwire run tests.js_app:app --single`, killed and restarted on the same
port for the reconnection tests), against a scripted server (protocol.test.mjs) and the
pure interpolation buffer. They need `node` and the `ws` package of tests/package.json
(`make node-deps`); the server runs on this interpreter.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import IN_CI, require_tool
from test_gen_js import CODEC_NODE_TESTS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NODE_TESTS = os.path.join(ROOT, "codecs", "js", "test")
CLIENT_NODE_TESTS = [
    "client.test.mjs",
    "reconnect.test.mjs",
    "protocol.test.mjs",
    "interpolation.test.mjs",
    "entities.test.mjs",
]


def require_node_package(name: str) -> None:
    if not os.path.isdir(os.path.join(ROOT, "tests", "node_modules", name)):
        message = f"tests/node_modules has no '{name}' (make node-deps installs it)"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def test_every_node_test_file_is_run():
    present = sorted(f for f in os.listdir(NODE_TESTS) if f.endswith((".js", ".mjs", ".cjs")))
    assert present == sorted(CODEC_NODE_TESTS + CLIENT_NODE_TESTS)


def test_node_client_suite():
    node = require_tool("node")
    require_node_package("ws")
    result = subprocess.run(
        [node, "--test", *(f"codecs/js/test/{name}" for name in CLIENT_NODE_TESTS)],
        cwd=ROOT,
        env={**os.environ, "TICKWIRE_PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-3000:]


TS_CHECK = """
import { Client, Channel, Room, TickwireError, ConnectionClosed, ErrorCode, CloseCode, SnapshotBuffer, reconnectDelay } from "%(root)s/codecs/js/client.js";
import { ClientWorld, SyncLayout, applyEntitySync } from "%(root)s/codecs/js/client.js";
import * as E from "%(root)s/tests/golden/everything.js";

async function main(): Promise<void> {
  const client = new Client("ws://localhost:8000/", {
    schemas: [E], minBackoff: 100, interpolation: { delay: 120 },
    entityFields: { Mob: [{ name: "hp", kind: "int", width: 5 }] },
  });
  const welcome = await client.connect();
  const sid: string = welcome.socket_id;
  const n = await client.call<number>("add", { a: 1, b: 2 }, { timeout: 500 });
  const off = client.on("#disconnect", (e) => console.log(e.code, e.reason));
  off();
  client.on("chat", (data) => console.log(data));
  client.emit("hello", { x: 1 });
  const [chat, news]: Channel[] = await client.subscribe("chat", "news", { timeout: 100 });
  for await (const msg of chat) console.log(msg);
  chat.on("end", (why: string) => console.log(why));
  await client.publish("chat", "hi", { ack: false });
  await client.unsubscribe("chat");
  const room: Room<{ total: number }> = await client.joinRoom("arena", { name: "ann" }, { create: true });
  const seq: number = room.input({ dx: 1 });
  const total: number | undefined = room.state?.total;
  const rtt: number | null = room.rtt;
  room.on("tick", (r) => r.snapshots.push(r.timeMs, { 1: { x: 1 } }));
  for (const [id, f] of room.render()) console.log(id, f.x);
  for await (const m of room) console.log(m);
  await room.leave();
  const rooms = await client.listRooms("arena");
  console.log(rooms[0].room_id, sid, n, seq, total, rtt, news.id);
  try {
    await client.call("x");
  } catch (e) {
    if (e instanceof ConnectionClosed) console.log(e.closeCode === CloseCode.NORMAL);
    else if (e instanceof TickwireError) console.log(e.code === ErrorCode.TIMEOUT, e.codeName);
  }
  const world: ClientWorld | null = room.entities;
  if (world !== null) for (const [id, f] of world.entities) console.log(id, f.x, world.cellOf.get(id));
  const layout = SyncLayout.fromInfo([{ name: "x", kind: "quant", quant: { min: 0, max: 1, bits: 4, step: 0.1 } }], {
    id_bits: 4, x_field: 0, y_field: 0, cell_steps_x: 4, cell_steps_y: 4, columns: 1, rows: 1,
  });
  applyEntitySync(new ClientWorld(layout), new Uint8Array());
  const buf = new SnapshotBuffer({ angles: ["heading"], maxExtrapolation: 50 });
  buf.push(0, new Map([[1, { x: 0 }]]));
  console.log(buf.render(100).size, reconnectDelay(1, 1, 2, 0, 0));
  await client.close();
}
main();
"""


def test_typescript_declarations_compile(tmp_path):
    # typescript is pinned in tests/package.json: missing, this skips (fails in CI).
    from conftest import require_node_bin

    tsc = require_node_bin("tsc")
    check = tmp_path / "check.ts"
    check.write_text(TS_CHECK % {"root": ROOT})
    files = [str(check), "codecs/js/client.d.ts", "codecs/js/interpolation.d.ts", "codecs/js/entities.d.ts"]
    result = subprocess.run(
        [tsc, "--noEmit", "--strict", "--target", "es2022", "--module", "es2022", "--moduleResolution", "node", *files],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
