// The client against a live server (tests/js_app.py): procedures, events, channels, rooms,
// frames, and codec round trips through the client. reconnect.test.mjs restarts servers.

import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { Client, CloseCode, ConnectionClosed, ErrorCode, TickwireError } from "../client.js";
import * as everything from "../../../tests/golden/everything.js";
import { ROOT, Server, WebSocket, eventually, sleep } from "../testing/server.mjs";

// Pings every 250 ms, so the client's answers are tested too (it is closed with 4000
// after 1.5 s without a Pong).
const server = new Server({ limits: { ping_interval: 0.25, ping_timeout: 1.5 } });
const clients = [];
const T = { timeout: 20000 };

before(() => server.start());

after(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await server.stop();
});

async function connect(options = {}) {
  const c = new Client(server.url, { WebSocket, schemas: [everything], minBackoff: 50, maxBackoff: 500, ...options });
  clients.push(c);
  await c.connect();
  return c;
}

test("connect: the handshake's Welcome, and pings answered", T, async () => {
  const c = await connect();
  assert.equal(c.state, "open");
  assert.equal(c.welcome.$type, "Welcome");
  assert.equal(c.welcome.ping_interval_ms, 250);
  assert.match(c.socketId, /^worker-0\./);
  assert.equal(c.process, "worker-0");
  await sleep(2000); // longer than ping_timeout: only Pongs keep the connection open
  assert.equal(c.connects, 1);
  assert.equal(c.state, "open");
  assert.equal(await c.call("echo", 1), 1);
});

test("procedures: results, server errors, timeouts", T, async () => {
  const c = await connect();
  assert.equal(await c.call("add", { a: 2, b: 40 }), 42);
  assert.deepEqual(await c.call("echo", { list: [1, "two", null], nested: { ok: true } }), {
    list: [1, "two", null],
    nested: { ok: true },
  });
  assert.equal(await c.call("echo"), null);

  const refused = await c.call("fail", "not you").catch((e) => e);
  assert.ok(refused instanceof TickwireError);
  assert.equal(refused.code, ErrorCode.FORBIDDEN);
  assert.equal(refused.codeName, "forbidden");
  assert.equal(refused.message, "not you");
  assert.equal(refused.remote, true);

  const missing = await c.call("nope").catch((e) => e);
  assert.equal(missing.code, ErrorCode.NOT_FOUND);
  const crashed = await c.call("crash").catch((e) => e);
  assert.equal(crashed.code, ErrorCode.INTERNAL);
  assert.doesNotMatch(crashed.message, /bug/); // details stay in the server's log

  const started = performance.now();
  const late = await c.call("slow", 1, { timeout: 100 }).catch((e) => e);
  assert.ok(late instanceof TickwireError);
  assert.equal(late.code, ErrorCode.TIMEOUT);
  assert.equal(late.remote, false);
  assert.ok(performance.now() - started < 900);
  assert.equal(c._pending.size, 0);
  assert.equal(await c.call("add", { a: 1, b: 1 }), 2); // the connection is fine
});

test("events both ways", T, async () => {
  const c = await connect();
  const heard = [];
  const off = c.on("shouted", (data) => heard.push(data));
  c.emit("shout", { text: "hello" });
  c.emit("shout", [1, 2]);
  await eventually(() => heard.length === 2, { what: "two events back" });
  assert.deepEqual(heard[0], { heard: { text: "hello" }, socket: c.socketId });
  assert.deepEqual(heard[1].heard, [1, 2]);
  off();
  c.emit("shout", "again");
  assert.equal(await c.call("echo", "sync"), "sync"); // the event's answer came before this
  assert.equal(heard.length, 2);
});

test("a listener that throws is reported, and the rest carry on", T, async () => {
  const c = await connect();
  const errors = [];
  const got = [];
  c.on("#error", (err) => errors.push(err));
  c.on("shouted", () => {
    throw new Error("listener bug");
  });
  c.on("shouted", (data) => got.push(data));
  c.emit("shout", 1);
  await eventually(() => got.length === 1);
  assert.equal(errors.length, 1);
  assert.equal(errors[0].message, "listener bug");
});

test("channels: batch subscribe in one message, publish, async iteration, unsubscribe", T, async () => {
  const a = await connect();
  const b = await connect();
  const sent = b.framesSent;
  const [news, chat, other] = await b.subscribe("news", "chat", "other");
  assert.equal(b.framesSent, sent + 1); // one Subscribe for three channels
  assert.deepEqual([news.name, chat.name, other.name], ["news", "chat", "other"]);
  assert.equal(new Set([news.id, chat.id, other.id]).size, 3);
  const [again] = await b.subscribe("news");
  assert.equal(again, news);

  await a.publish("news", { n: 1 });
  await a.publish("chat", "hi", { ack: false });
  await a.publish("news", { n: 2 });
  assert.deepEqual(await news.get({ timeout: 2000 }), { n: 1 });
  assert.equal(await chat.get({ timeout: 2000 }), "hi");

  const seen = [];
  const reading = (async () => {
    for await (const msg of news) seen.push(msg); // ends when unsubscribed
  })();
  await a.publish("news", { n: 3 });
  await eventually(() => seen.length === 2, { what: "iterated messages" });
  assert.deepEqual(seen, [{ n: 2 }, { n: 3 }]);

  const late = await other.get({ timeout: 50 }).catch((e) => e);
  assert.equal(late.code, ErrorCode.TIMEOUT);

  const ended = [];
  news.on("end", (reason) => ended.push(reason));
  await b.unsubscribe("news");
  await reading;
  assert.deepEqual(ended, ["unsubscribed"]);
  assert.equal(news.active, false);
  assert.equal(b.channels.has("news"), false);
  await assert.rejects(news.get({ timeout: 100 }), TickwireError);

  // "message" listeners without a reader keep no backlog.
  const heard = [];
  chat.on("message", (m) => heard.push(m));
  await a.publish("chat", "one");
  await eventually(() => heard.length === 1);
  assert.equal(chat.inbox.length, 0);

  // break out of for await: the iterator stops at once, and messages go on queueing.
  await a.publish("other", 1);
  for await (const m of other) {
    assert.equal(m, 1);
    break;
  }
  assert.equal(other.inbox.iterators, 0);
});

test("channels: refused, kicked, typed", T, async () => {
  const c = await connect();
  const err = await c.subscribe("ok.1", "secret.x").catch((e) => e);
  assert.ok(err instanceof TickwireError);
  assert.equal(err.code, ErrorCode.FORBIDDEN);
  assert.match(err.message, /secret.x: secret channels are closed/);
  assert.equal(c.channels.has("secret.x"), false);
  assert.equal(c.channels.has("ok.1"), true);

  const [room] = await c.subscribe("lobby");
  const reading = (async () => {
    const got = [];
    for await (const m of room) got.push(m);
    return got;
  })();
  await c.call("publish", { channel: "lobby", data: "before" });
  await c.call("kick_me", "lobby");
  assert.deepEqual(await reading, ["before"]);
  assert.equal(room.inbox.ended, "kicked: bye");
  assert.equal(c.channels.has("lobby"), false);

  // A typed channel carries one schema message, with no tag on the wire.
  const [typed] = await c.subscribe("typed.scores");
  assert.equal(typed.typeId, 64);
  await c.publish("typed.scores", { $type: "Numbers", i32: -7, u64: 2n ** 64n - 1n, half: 2.25 });
  const got = await typed.get({ timeout: 2000 });
  assert.equal(got.$type, "Numbers");
  assert.equal(got.i32, -7);
  assert.equal(got.u64, 2n ** 64n - 1n);
  assert.equal(got.half, 2.25);
  const wrong = await c.publish("typed.scores", { text: "JSON is not Numbers" }).catch((e) => e);
  assert.equal(wrong.code, ErrorCode.BAD_REQUEST);
});

test("codec round trips through the client and the server", T, async () => {
  const c = await connect();
  const bytes = new Uint8Array([0, 1, 2, 254, 255]);
  assert.deepEqual(await c.call("echo", bytes), bytes);
  assert.equal(await c.call("echo", "naïve ☃ 𝄞"), "naïve ☃ 𝄞");
  const numbers = {
    $type: "Numbers",
    b: false,
    i8: -128,
    i64: -(2n ** 63n),
    f32: 1.5,
    f64: Math.PI,
    q12: 12.3,
    mood: everything.Mood.Sad,
  };
  const back = await c.call("echo", numbers);
  assert.equal(back.$type, "Numbers");
  assert.equal(back.b, false);
  assert.equal(back.i8, -128);
  assert.equal(back.i64, -(2n ** 63n));
  assert.equal(back.f64, Math.PI);
  assert.ok(Math.abs(back.q12 - 12.3) < 0.05 + 1e-9);
  assert.equal(back.mood, everything.Mood.Sad);
  const composite = {
    $type: "Composite",
    title: "t",
    leaf: { name: "leaf", value: 3 },
    shape: { $type: "Circle", radius: 2.5 },
    tree: { label: "root", children: [{ label: "kid", children: [], next: null }], next: null },
    at: { pos: { x: 1.5, y: -2 }, team: 1, heading: 0.5 },
    one: { id: 7, x: 1, y: 2, neg: -1, on: true, mood: -1 },
    scalars: { b: true, i8: 1, u8: 2, i16: 3, u16: 4, i32: 5, u32: 6, i64: 7n, u64: 8n, f32: 0.25, f64: 0.5 },
  };
  const echoed = await c.call("echo", composite);
  assert.equal(echoed.shape.$type, "Circle");
  assert.equal(echoed.shape.radius, 2.5);
  assert.equal(echoed.tree.children[0].label, "kid");
  assert.deepEqual(echoed.at.pos, { x: 1.5, y: -2 });
  assert.equal(echoed.one.neg, -1);
  assert.equal(echoed.one.on, true);
  assert.equal(echoed.scalars.u64, 8n);
  const vectors = { $type: "Vectors", f32s: [1, 2.5], strings: ["a", "bb"], u64s: [1n, 2n] };
  const v = await c.call("echo", vectors);
  assert.deepEqual([...v.f32s], [1, 2.5]);
  assert.deepEqual(v.strings, ["a", "bb"]);
  assert.deepEqual([...v.u64s], [1n, 2n]);
  // What cannot be encoded fails the call at once, and nothing is sent.
  const sent = c.framesSent;
  await assert.rejects(c.call("echo", { $type: "Numbers", i8: 1000 }), /i8/);
  assert.equal(c.framesSent, sent);
});

test("messages queued in one task leave in one frame, split at 64 KiB", T, async () => {
  const c = await connect();
  let sent = c.framesSent;
  const answers = Promise.all([c.call("add", { a: 1, b: 2 }), c.call("echo", "x"), c.publish("chat", 1)]);
  c.emit("shout", "too");
  assert.deepEqual(await answers, [3, "x", undefined]);
  assert.equal(c.framesSent, sent + 1);

  sent = c.framesSent;
  const big = "y".repeat(5000);
  const bigAnswers = await Promise.all(Array.from({ length: 20 }, () => c.call("echo", big)));
  assert.equal(bigAnswers.length, 20);
  assert.ok(bigAnswers.every((s) => s === big));
  assert.equal(c.framesSent, sent + 2); // 100 KB: two frames, each under max_frame_size
  assert.equal(c.connects, 1); // the server did not close 1009

  const tooBig = await c.call("echo", "z".repeat(70000)).catch((e) => e);
  assert.equal(tooBig.code, ErrorCode.LIMIT_EXCEEDED);
});

test("rooms: join, inputs applied in order, state, messages, timing", T, async () => {
  const a = await connect();
  const b = await connect();
  const room = await a.joinRoom("counter", { name: "ann" }, { create: true });
  assert.equal(room.type, "counter");
  assert.equal(room.player, 1);
  assert.equal(room.tickRate, 20);
  assert.match(room.seat, new RegExp(`^${room.id}/`));
  assert.ok(a.rooms.has(room));

  const ticks = [];
  room.on("tick", (r) => ticks.push(r.tick));
  await eventually(() => room.state !== null, { what: "the room state" });
  const seqs = [];
  for (let n = 1; n <= 10; n++) seqs.push(room.input({ n }));
  assert.deepEqual(seqs, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  await eventually(() => room.appliedSeq === 10, { what: "inputs applied" });
  await eventually(() => room.state.total === 55);
  assert.deepEqual(room.state.order, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  assert.ok(ticks.length > 0 && ticks.every((t, i) => i === 0 || t > ticks[i - 1]));

  // Round-trip time from the echo of the newest input; the clock offset follows.
  assert.ok(room.rtt !== null && room.rtt >= 0 && room.rtt < 500, `rtt ${room.rtt}`);
  const now = performance.now();
  assert.ok(Math.abs(room.serverTime(now) - room.receiveTime(now)) <= room.rtt / 2 + 60);
  assert.ok(room.serverTime(now) >= room.timeMs - 5);

  // A private message, a broadcast to a second player, iteration over room messages.
  room.input({ n: 0, say: "me" });
  const said = await room.get({ timeout: 2000 });
  assert.ok(said.joined === 1 || said.said === "me");
  const other = await b.joinRoom("counter", { name: "bob" }, { roomId: room.id });
  assert.equal(other.id, room.id);
  assert.equal(other.player, 2);
  const heard = [];
  for await (const msg of room) {
    heard.push(msg);
    if (msg.joined === 2) break;
  }
  assert.equal(heard.at(-1).name, "bob");
  await eventually(() => other.state !== null && other.state.total === 55, { what: "the newcomer's state" });

  const listed = await b.listRooms("counter");
  assert.deepEqual(
    listed.map((r) => [r.room_id, r.players]),
    [[room.id, 2]],
  );

  const leaves = [];
  other.on("leave", (why) => leaves.push(why));
  await other.leave();
  assert.deepEqual(leaves, [{ code: 0, reason: "left" }]);
  assert.equal(b.rooms.size, 0);
  assert.equal(other.input({ n: 1 }), 0); // out of the room: nothing sent
  const gone = await b.joinRoom("nowhere").catch((e) => e);
  assert.equal(gone.code, ErrorCode.NOT_FOUND);
  await room.leave();
});

test("rooms: the interpolation buffer follows the tick timing", T, async () => {
  const c = await connect({ interpolation: { delay: 100 } });
  const room = await c.joinRoom("counter", { name: "render" }, { create: true });
  // The game feeds its entities each tick; here the room state holds one moving entity.
  room.on("tick", (r) => r.snapshots.push(r.timeMs, { 1: { x: r.state.x } }));
  await eventually(() => room.snapshots.size >= 6, { what: "snapshots" });
  let inside = 0;
  for (let i = 0; i < 10; i++) {
    const now = performance.now();
    const t = room.receiveTime(now) - 100; // what render() draws
    const between = t > room.snapshots.oldest && t < room.snapshots.newest;
    const drawn = room.render(now).get(1);
    assert.ok(drawn !== undefined);
    if (between) {
      // x = 100 units per second of room time; the room state lags its send time by the
      // timer's lateness only.
      inside++;
      assert.ok(Math.abs(drawn.x - t / 10) < 3, `x ${drawn.x} at ${t} ms`);
    }
    await sleep(23);
  }
  // 100 ms behind at 20 Hz: the render time has snapshots on both sides (unless the
  // machine stalls a send tick for more than 50 ms).
  assert.ok(inside >= 7, `${inside} of 10 renders between snapshots`);
  await room.leave();
});

test("the server serves the client at /tickwire.js and /tickwire/", T, async () => {
  const entry = await fetch(`${server.http}/tickwire.js`);
  assert.equal(entry.status, 200);
  assert.match(entry.headers.get("content-type"), /javascript/);
  assert.equal(await entry.text(), 'export * from "./tickwire/client.js";\n');
  for (const path of ["client.js", "interpolation.js", "entities.js", "packed.js", "generated/protocol.js"]) {
    const res = await fetch(`${server.http}/tickwire/${path}`);
    assert.equal(res.status, 200, path);
    assert.equal(await res.text(), await readFile(join(ROOT, "codecs", "js", path), "utf8"));
  }
});

test("close: requests fail at once, no reconnection, iterators end", T, async () => {
  const c = await connect();
  const [ch] = await c.subscribe("closing");
  const iterating = (async () => {
    for await (const _ of ch) {
      // nothing arrives
    }
    return "ended";
  })();
  const pending = c.call("slow", 0.5);
  const closing = c.close();
  const err = await pending.catch((e) => e);
  assert.ok(err instanceof ConnectionClosed);
  assert.equal(err.closeCode, CloseCode.NORMAL);
  assert.equal(await iterating, "ended");
  await closing;
  assert.equal(c.state, "closed");
  assert.throws(() => c.emit("shout", 1), ConnectionClosed);
  await assert.rejects(c.call("echo", 1, { timeout: 100 }), ConnectionClosed);
  await sleep(200);
  assert.equal(c.connects, 1);
});
