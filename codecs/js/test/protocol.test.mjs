// The client against a scripted server (the ws package's WebSocketServer speaking the
// protocol through the codec): frames a real server sends only by chance (a join answer
// and the room's first tick together, a Subscribed and a Message together), a silent or
// broken server, and the timing arithmetic with an injected clock.

import assert from "node:assert/strict";
import { after, test } from "node:test";

import { Client, CloseCode, ConnectionClosed, TickwireError, reconnectDelay } from "../client.js";
import { Codebook } from "../packed.js";
import * as protocol from "../generated/protocol.js";
import { FakeServer, WELCOME, welcoming } from "../testing/fake_server.mjs";
import { WebSocket, eventually } from "../testing/server.mjs";

const T = { timeout: 20000 };
const codebook = new Codebook(protocol);
const servers = [];

after(async () => {
  for (const s of servers) await s.close();
});

function client(server, options = {}) {
  return new Client(server.url, { WebSocket, minBackoff: 10, maxBackoff: 50, connectTimeout: 2000, ...options });
}

const joined = (cid, room, id) => ({
  $type: "RoomJoined",
  cid,
  room,
  room_id: id,
  room_type: "arena",
  player: 1,
  seat: `${id}/token`,
  tick_rate: 20,
  send_rate: 20,
});
const tick = (room, t, fields = {}) => ({ $type: "Tick", room, tick: t, time_ms: t * 50, ...fields });

test("a join answer and the room's first ticks in one frame: nothing is lost", T, async () => {
  const server = await new FakeServer(codebook, 
    welcoming((peer, msg) => {
      if (msg.$type === "JoinRoom") {
        peer.send(
          joined(msg.cid, 5, "r5"),
          tick(5, 1),
          { $type: "RoomState", data: codebook.payload({ hp: 3 }) },
          { $type: "RoomMessage", data: codebook.payload("hi") },
          tick(6, 7), // a room this client is not in: its section is skipped
          { $type: "RoomState", data: codebook.payload({ hp: 0 }) },
          { $type: "RoomMessage", data: codebook.payload("not for r5") },
        );
      }
    }),
  ).start(servers);
  const c = client(server);
  await c.connect();
  const room = await c.joinRoom("arena");
  assert.equal(room.id, "r5");
  assert.equal(room.handle, 5);
  assert.equal(room.tick, 1);
  assert.deepEqual(room.state, { hp: 3 });
  assert.equal(await room.get({ timeout: 1000 }), "hi");
  assert.equal(room.inbox.length, 0);
  await c.close();
});

test("two rooms' sections in one frame; 'tick' after each section", T, async () => {
  let peer;
  const server = await new FakeServer(codebook, 
    welcoming((p, msg) => {
      peer = p;
      if (msg.$type === "JoinRoom") p.send(joined(msg.cid, msg.room_type === "a" ? 1 : 2, msg.room_type));
    }),
  ).start(servers);
  const c = client(server);
  await c.connect();
  const a = await c.joinRoom("a");
  const b = await c.joinRoom("b");
  const seen = [];
  a.on("tick", (r) => seen.push(["a", r.tick, r.state]));
  b.on("tick", (r) => seen.push(["b", r.tick, r.state]));
  peer.send(
    tick(1, 10),
    { $type: "RoomState", data: codebook.payload("A") },
    tick(2, 20),
    { $type: "RoomState", data: codebook.payload("B") },
  );
  await eventually(() => seen.length === 2);
  assert.deepEqual(seen, [
    ["a", 10, "A"],
    ["b", 20, "B"],
  ]);
  const left = [];
  b.on("leave", (why) => left.push(why));
  peer.send({ $type: "RoomLeft", room: 2, code: 3, reason: "kicked" });
  await eventually(() => left.length === 1);
  assert.deepEqual(b.left, { code: 3, reason: "kicked" });
  assert.deepEqual([...c.rooms], [a]);
  await c.close();
});

test("a section split over two frames: the same Tick heads both, one tick is counted", T, async () => {
  let peer;
  const server = await new FakeServer(codebook, 
    welcoming((p, msg) => {
      peer = p;
      if (msg.$type === "JoinRoom") p.send(joined(msg.cid, 3, "r3"));
    }),
  ).start(servers);
  const c = client(server);
  await c.connect();
  const room = await c.joinRoom("arena");
  peer.send(tick(3, 8), { $type: "RoomMessage", data: codebook.payload("one") });
  peer.send(tick(3, 8), { $type: "RoomMessage", data: codebook.payload("two") }); // the continuation
  peer.send(tick(3, 9), { $type: "RoomMessage", data: codebook.payload("three") });
  assert.equal(await room.get({ timeout: 1000 }), "one");
  assert.equal(await room.get({ timeout: 1000 }), "two");
  assert.equal(await room.get({ timeout: 1000 }), "three");
  assert.equal(room.ticks, 2);
  assert.equal(room.tick, 9);
  await c.close();
});

test("a Subscribed and a Message on it in one frame", T, async () => {
  const server = await new FakeServer(codebook, 
    welcoming((peer, msg) => {
      if (msg.$type === "Subscribe") {
        peer.send(
          {
            $type: "Subscribed",
            cid: msg.cid,
            channels: msg.channels.map((name, i) => ({ name, id: i + 1, type_id: codebook.jsonType })),
          },
          { $type: "Message", channel: 2, payload: codebook.jsonPayload('"first"') },
        );
      }
    }),
  ).start(servers);
  const c = client(server);
  await c.connect();
  const [, second] = await c.subscribe("one", "two");
  assert.equal(await second.get({ timeout: 1000 }), "first");
  await c.close();
});

test("round-trip time and clock offsets from the Tick echo, with an injected clock", T, async () => {
  let clock = 1000;
  let peer;
  const server = await new FakeServer(codebook, 
    welcoming((p, msg) => {
      peer = p;
      if (msg.$type === "JoinRoom") p.send(joined(msg.cid, 1, "r"));
    }),
  ).start(servers);
  const c = client(server, { now: () => clock });
  await c.connect();
  const room = await c.joinRoom("r");
  assert.equal(room.input(), 1); // sent at 1000
  await eventually(() => peer.received.some((m) => m.$type === "Input"));
  clock = 1100;
  peer.send(tick(1, 1, { time_ms: 5000, applied_seq: 1, echo_seq: 1, echo_age_ms: 20 }));
  await eventually(() => room.ticks === 1);
  assert.equal(room.rtt, 80); // 1100 - 1000 - 20
  assert.equal(room.clockOffset, 5000 + 40 - 1100);
  assert.equal(room.receiveOffset, 5000 - 1100);
  assert.equal(room.serverTime(1200), 5140);
  assert.equal(room.receiveTime(1200), 5100);

  clock = 1150; // the same echo 50 ms later: another sample of the same round trip
  peer.send(tick(1, 2, { time_ms: 5060, applied_seq: 1, echo_seq: 1, echo_age_ms: 70 }));
  await eventually(() => room.ticks === 2);
  assert.equal(room.rtt, 80);
  assert.ok(Math.abs(room.receiveOffset - (3900 + 0.1 * (3910 - 3900))) < 1e-9); // smoothed

  clock = 1200; // the room moved to another process: its clock starts again
  peer.send(tick(1, 3, { time_ms: 30, echo_seq: 1, echo_age_ms: 120 }));
  await eventually(() => room.ticks === 3);
  assert.equal(room.receiveOffset, 30 - 1200);
  await c.close();
});

test("a silent server is dropped with 4000 after its ping timeout, and the client comes back", T, async () => {
  const script = welcoming(() => {}, { ping_interval_ms: 100, ping_timeout_ms: 200 });
  const server = await new FakeServer(codebook, script).start(servers);
  const c = client(server);
  await c.connect();
  await eventually(() => c.connects === 2, { what: "a reconnection" });
  assert.equal(server.closes[0], CloseCode.PING_TIMEOUT);
  await c.close();
});

test("no Welcome within connectTimeout: 4005, and connect() rejects", T, async () => {
  const server = await new FakeServer(codebook, () => {}).start(servers);
  const c = client(server, { connectTimeout: 200 });
  const err = await c.connect().catch((e) => e);
  assert.ok(err instanceof ConnectionClosed);
  assert.equal(err.closeCode, CloseCode.HANDSHAKE_TIMEOUT);
  await eventually(() => server.closes.length === 1);
  assert.equal(server.closes[0], CloseCode.HANDSHAKE_TIMEOUT);
});

test("bad frames from the server: 4101 for an unknown type, 4100 for the rest", T, async () => {
  const frames = [new Uint8Array([63]), new Uint8Array([8, 1]), "text"];
  let n = 0;
  const server = await new FakeServer(codebook, 
    welcoming((peer, msg) => {
      if (msg.$type === "Call") peer.ws.send(frames[n++]);
    }),
  ).start(servers);
  const c = client(server);
  const errors = [];
  c.on("#error", (e) => errors.push(e));
  await c.connect();
  for (let i = 0; i < frames.length; i++) {
    const err = await c.call("x").catch((e) => e);
    assert.ok(err instanceof ConnectionClosed);
    await eventually(() => c.connects === i + 2, { what: "a reconnection" });
  }
  assert.deepEqual(server.closes, [CloseCode.UNKNOWN_TYPE, CloseCode.MALFORMED, CloseCode.MALFORMED]);
  assert.equal(errors.length, 2); // the decode errors (the text frame needs no decoding)
  await c.close();
});

test("an Error without a request is an '#error' event", T, async () => {
  const server = await new FakeServer(codebook, 
    welcoming((peer, msg) => {
      if (msg.$type === "Emit") peer.send({ $type: "Error", cid: 0, code: 1, message: "input for room handle 9" });
    }),
  ).start(servers);
  const c = client(server);
  await c.connect();
  const errors = [];
  c.on("#error", (e) => errors.push(e));
  c.emit("anything");
  await eventually(() => errors.length === 1);
  assert.ok(errors[0] instanceof TickwireError);
  assert.equal(errors[0].codeName, "bad_request");
  await c.close();
});

test("backoff grows exponentially to its cap, with jitter", () => {
  const delays = Array.from({ length: 7 }, (_, a) => reconnectDelay(a, 250, 4000, 0.5, 0));
  assert.deepEqual(delays, [250, 500, 1000, 2000, 4000, 4000, 4000]);
  assert.ok(Math.abs(reconnectDelay(2, 250, 4000, 0.5, 0.999) - 500.5) < 1e-9);
  assert.equal(reconnectDelay(1000, 250, 4000, 0, 0.5), 4000); // no overflow after long outages
});

test("the server going away: backoff between attempts, then back", T, async () => {
  let refusals = 0; // handshakes to answer with a close, as a restarting server does
  const server = await new FakeServer(codebook, (peer, msg) => {
    if (msg.$type !== "Handshake") return;
    if (refusals > 0) {
      refusals--;
      peer.ws.close(CloseCode.GOING_AWAY, "restarting");
    } else {
      peer.send(WELCOME);
    }
  }).start(servers);
  const c = client(server, { minBackoff: 40, maxBackoff: 1000, jitter: 0 });
  await c.connect();
  refusals = 2;
  const started = Date.now();
  server.peers[0].ws.close(CloseCode.GOING_AWAY, "restarting");
  await eventually(() => c.connects === 2, { what: "the reconnection" });
  const took = Date.now() - started;
  assert.ok(took >= 40 + 80 + 160 - 5 && took < 2000, `back after ${took} ms`); // 3 attempts
  assert.equal(server.peers.length, 4);
  await c.close();
});
