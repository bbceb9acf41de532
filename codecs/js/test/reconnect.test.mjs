// Reconnection against a live server that is killed and started again on the same port:
// backoff, resubscription in one message, the token presented again, room seats taken
// back; and the close codes after which the client must not come back.

import assert from "node:assert/strict";
import { after, test } from "node:test";

import { Client, CloseCode, ConnectionClosed, ErrorCode } from "../client.js";
import { Codebook } from "../packed.js";
import * as protocol from "../generated/protocol.js";
import * as everything from "../../../tests/golden/everything.js";
import { Server, WebSocket, eventually, freePort, sleep } from "../testing/server.mjs";

const T = { timeout: 30000 };
// One signing key for every server process, so a token outlives a restart.
const env = { TICKWIRE_AUTH_KEY: "js-client-tests-key-0123456789abcdef" };
const servers = [];
const clients = [];

after(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await Promise.all(servers.map((s) => s.kill()));
});

async function serve() {
  const server = new Server({ env });
  servers.push(server);
  return server.start();
}

function client(server, options = {}) {
  const c = new Client(server.url, { WebSocket, schemas: [everything], minBackoff: 50, maxBackoff: 400, ...options });
  clients.push(c);
  return c;
}

/** A WebSocket that records what the client sends (an injected seam, no patching). */
function recording() {
  const frames = [];
  class Recording extends WebSocket {
    send(data, ...rest) {
      frames.push(new Uint8Array(data));
      return super.send(data, ...rest);
    }
  }
  return { Recording, frames };
}

const codebook = new Codebook(protocol, everything);
function sentMessages(frames, type) {
  const ctx = codebook.context({ maxString: 1 << 20 });
  return frames.flatMap((f) => codebook.decodeFrame(f, ctx)).filter((m) => m.$type === type);
}

test("after a server restart: reconnects, resubscribes in one message, presents its token", T, async () => {
  const server = await serve();
  const { Recording, frames } = recording();
  const c = client(server, { WebSocket: Recording });
  const events = [];
  c.on("#disconnect", (e) => events.push(["disconnect", e.code]));
  c.on("#connect", () => events.push(["connect"]));
  c.on("#token", (t) => events.push(["token", typeof t]));
  await c.connect();
  const [chat, news] = await c.subscribe("chat", "news");
  assert.equal(await c.call("login", "ann"), "ann");
  assert.equal(typeof c.token, "string");
  const room = await c.joinRoom("counter", { name: "ann" });
  const received = [];
  const reading = (async () => {
    for await (const msg of news) received.push(msg); // across the restart
  })();

  await server.kill();
  await eventually(() => c.state !== "open", { what: "the drop" });
  assert.equal(c.closeCode, CloseCode.ABNORMAL);
  await sleep(400); // down for a while: several attempts fail
  assert.equal(c.connects, 1);
  assert.notEqual(c.state, "open");
  await server.start();
  await eventually(() => c.connects === 2, { timeout: 10000, what: "the reconnection" });

  assert.equal(c.welcome.authenticated, true); // the stored token, presented again
  assert.equal(await c.call("whoami"), "ann");
  const subscribes = sentMessages(frames, "Subscribe");
  assert.deepEqual(
    subscribes.map((m) => m.channels),
    [["chat", "news"], ["chat", "news"]],
  ); // once at first, once, for both, after the restart
  const health = await (await fetch(`${server.http}/health`)).json();
  assert.equal(health.channels, 2);
  assert.ok(chat.active && news.active);

  const other = client(server);
  await other.connect();
  await other.publish("news", "back");
  await eventually(() => received.length === 1, { what: "a message after the restart" });
  assert.equal(received[0], "back");

  // The restarted process has no rooms: the seat cannot be taken back.
  await eventually(() => room.left !== null, { what: "the lost seat" });
  assert.match(room.left.reason, /could not take the seat back/);
  assert.equal(c.rooms.size, 0);
  assert.deepEqual(events, [["connect"], ["token", "string"], ["disconnect", 1006], ["connect"]]);

  await c.close();
  await reading; // closing ends the iteration
});

test("after a dropped connection: the seat is taken back and inputs go on", T, async () => {
  const server = await serve();
  const c = client(server);
  await c.connect();
  const room = await c.joinRoom("counter", { name: "bo" }, { create: true });
  for (let n = 1; n <= 3; n++) room.input({ n });
  await eventually(() => room.appliedSeq === 3 && room.state?.total === 6, { what: "inputs" });
  const player = room.player;

  const err = await c.call("close_me", { code: 1011, reason: "try again" }).catch((e) => e);
  assert.ok(err instanceof ConnectionClosed);
  assert.equal(err.closeCode, 1011);
  assert.equal(room.input({ n: 100 }), 0); // while away: not sent, counted
  assert.equal(room.inputsDropped, 1);
  await eventually(() => c.connects === 2 && room.attached, { timeout: 10000, what: "the seat back" });
  assert.equal(room.left, null);
  assert.equal(room.player, player);
  assert.equal(room.input({ n: 4 }), 4);
  await eventually(() => room.appliedSeq === 4 && room.state.total === 10, { what: "inputs after the reconnect" });
  assert.deepEqual(room.state.order, [1, 2, 3, 4]);
  await c.close();
});

test("close codes: no reconnection after 4500 or 1000, reconnection after 4102", T, async () => {
  const server = await serve();
  for (const [code, comesBack] of [
    [4500, false],
    [CloseCode.NORMAL, false],
    [4102, true],
  ]) {
    const c = client(server, { minBackoff: 10 });
    await c.connect();
    const [ch] = await c.subscribe("x");
    const err = await c.call("close_me", { code }).catch((e) => e);
    assert.equal(err.closeCode, code);
    if (comesBack) {
      await eventually(() => c.connects === 2, { what: `a reconnection after ${code}` });
      assert.ok(ch.active);
    } else {
      await sleep(200);
      assert.equal(c.connects, 1, `no reconnection after ${code}`);
      assert.equal(c.state, "closed");
      assert.equal(ch.active, false);
      await assert.rejects(c.call("echo", 1), ConnectionClosed);
    }
    await c.close();
  }
});

test("a schema the server does not serve: 4500 at the handshake, connect() rejects", T, async () => {
  const server = await serve();
  const c = new Client(server.url, { WebSocket, minBackoff: 10 }); // the protocol schema only
  clients.push(c);
  const err = await c.connect().catch((e) => e);
  assert.ok(err instanceof ConnectionClosed);
  assert.equal(err.closeCode, CloseCode.SCHEMA_MISMATCH);
  await sleep(100);
  assert.equal(c.connects, 0);
  assert.equal(c.state, "closed");
});

test("the first connection failing rejects connect(); nothing retries", T, async () => {
  const c = new Client(`ws://127.0.0.1:${await freePort()}/`, { WebSocket, minBackoff: 10 });
  const err = await c.connect().catch((e) => e);
  assert.ok(err instanceof ConnectionClosed);
  assert.equal(err.code, ErrorCode.UNAVAILABLE);
  assert.equal(c.state, "closed");
  await sleep(100);
  assert.equal(c.state, "closed");
});

test("the token: kept in storage, presented by the next client, removed", T, async () => {
  const server = await serve();
  const store = new Map();
  const storage = {
    getItem: (k) => store.get(k) ?? null,
    setItem: (k, v) => store.set(k, v),
    removeItem: (k) => store.delete(k),
  };
  const a = client(server, { storage });
  await a.connect();
  assert.equal(a.welcome.authenticated, false);
  await a.call("login", "cy");
  assert.equal(store.get("tickwire.token"), a.token);
  await a.close();

  const b = client(server, { storage }); // a page loaded again
  await b.connect();
  assert.equal(b.welcome.authenticated, true);
  assert.equal(await b.call("whoami"), "cy");
  await b.call("logout");
  assert.equal(b.token, null);
  assert.equal(store.has("tickwire.token"), false);
  assert.equal(await b.call("whoami"), null);

  // A token the server cannot verify is dropped at the handshake, not presented forever.
  const c = client(server, { token: "not.a.token" });
  await c.connect();
  assert.equal(c.welcome.authenticated, false);
  assert.notEqual(c.welcome.auth_error, "");
  assert.equal(c.token, null);
});
