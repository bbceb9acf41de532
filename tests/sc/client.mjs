// The unmodified socketcluster-client 20 against a live Tickwire server (tests/test_sc_compat.py).
//
//   node tests/sc/client.mjs SCENARIO --port P
//
// Prints one JSON line per observation ({"step": name, ...}) and {"done": true} at the end;
// a failure prints {"failed": "..."} and exits 1. Scenarios that wait for the test (a server
// restart, a Tickwire client's publish) print {"step": "ready"} and read one line of stdin
// before they go on. Every wait is bounded.

import { createInterface } from "node:readline";
import scClient from "socketcluster-client";

const args = process.argv.slice(2);
const scenario = args[0];
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const port = Number(opt("port"));

const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function within(ms, promise, what) {
  let t;
  const timeout = new Promise((_, reject) => {
    t = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(t));
}

const stdinLines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function waitForTest(what) {
  out({ step: "ready", what });
  const { value, done } = await within(30000, stdinLines.next(), `the test: ${what}`);
  if (done) throw new Error("stdin closed");
  return value.trim() ? JSON.parse(value) : null;
}

function connect(options = {}) {
  return scClient.create({
    hostname: "127.0.0.1",
    port,
    autoReconnectOptions: { initialDelay: 100, randomness: 100, multiplier: 1.2, maxDelay: 1000 },
    ...options,
  });
}

const errors = [];
function watchErrors(socket, label) {
  (async () => {
    for await (const { error } of socket.listener("error")) errors.push({ label, name: error.name, message: error.message });
  })();
}

function collect(iterable) {
  const got = [];
  (async () => {
    for await (const d of iterable) got.push(d);
  })();
  return got;
}

async function until(check, ms, what) {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await sleep(10);
  }
}

async function failure(promise) {
  try {
    const value = await promise;
    return { ok: value };
  } catch (e) {
    return { name: e.name, message: e.message, code: e.code };
  }
}

const scenarios = {
  // Handshake, invoke (result and errors), transmit, subscribe/publish/unsubscribe, a typed
  // channel, batches both ways.
  async basics() {
    const s = connect();
    watchErrors(s, "s");
    const status = await within(5000, s.listener("connect").once(), "connect");
    out({ step: "handshake", id: status.id, pingTimeout: status.pingTimeout, isAuthenticated: status.isAuthenticated, state: s.state });

    out({ step: "invoke", result: await within(5000, s.invoke("echo", { a: 1, list: [1, "two", null], s: "é✓" }), "echo") });
    out({ step: "invoke-no-data", result: await within(5000, s.invoke("echo"), "echo without data") ?? null });
    out({ step: "invoke-error", error: await failure(s.invoke("fail", 7)) });
    out({ step: "invoke-crash", error: await failure(s.invoke("crash")) });
    out({ step: "invoke-unknown", error: await failure(s.invoke("no-such-procedure")) });

    const noted = collect(s.receiver("noted"));
    s.transmit("note", { hello: "world" });
    await until(() => noted.length === 1, 5000, "the receiver's answer");
    out({ step: "transmit", noted: noted[0] });

    const ch = s.subscribe("room");
    await within(5000, ch.listener("subscribe").once(), "subscribe");
    const got = collect(ch);
    await s.invokePublish("room", { n: 1, text: "invoked" });
    s.transmitPublish("room", [2, "transmitted"]);
    await s.invoke("serverPublish", { channel: "room", data: { n: 3, from: "server" } });
    await until(() => got.length === 3, 5000, "three deliveries");
    out({ step: "publish", got: got.slice() });

    s.unsubscribe("room");
    await sleep(100);
    await s.invokePublish("room", "after unsubscribe");
    const other = s.subscribe("probe");
    await within(5000, other.listener("subscribe").once(), "subscribe probe");
    const probe = collect(other);
    await s.invokePublish("probe", "marker");
    await until(() => probe.length === 1, 5000, "the marker");
    out({ step: "unsubscribe", got: got.length });

    const typed = s.subscribe("pos.1");
    await within(5000, typed.listener("subscribe").once(), "subscribe pos.1");
    const positions = collect(typed);
    await s.invokePublish("pos.1", { who: "bob", at: { x: 1.5, y: -2 }, hp: 7, tags: ["a", "b"] });
    await until(() => positions.length === 1, 5000, "the typed delivery");
    out({ step: "typed", got: positions[0] });
    out({ step: "typed-error", error: await failure(s.invokePublish("pos.1", { who: 5 })) });
    out({ step: "typed-not-object", error: await failure(s.invokePublish("pos.1", "a string")) });

    // Batches: the client's (one frame, an array of packets) and the server's (everything
    // queued in one flush travels as one array).
    const frames = [];
    (async () => {
      for await (const { message } of s.listener("message")) frames.push(message);
    })();
    const shouts = collect(s.receiver("shouted"));
    s.startBatching();
    const answers = Promise.all([s.invoke("shout", 1), s.invoke("shout", 2), s.invoke("echo", "three")]);
    s.stopBatching();
    const results = await within(5000, answers, "batched invokes");
    await until(() => shouts.length === 2, 5000, "the shouts");
    const batched = frames.filter((m) => typeof m === "string" && m.startsWith("["));
    out({ step: "batch", results, shouts: shouts.slice(), batchedFrames: batched.length, firstBatch: batched[0] ? JSON.parse(batched[0]).length : 0 });

    out({ step: "errors", errors });
    s.disconnect();
  },

  // Ping and pong in the style of the protocol version the client was given.
  async ping() {
    const version = Number(opt("version", "2"));
    const seconds = Number(opt("seconds", "6"));
    const s = connect({ protocolVersion: version, autoReconnect: false });
    const closes = [];
    (async () => {
      for await (const e of s.listener("close")) closes.push(e.code);
    })();
    const raw = [];
    (async () => {
      for await (const { message } of s.listener("message")) raw.push(message);
    })();
    await within(5000, s.listener("connect").once(), "connect");
    await sleep(seconds * 1000);
    out({ step: "ping", version, state: s.state, closes, pings: raw.filter((m) => m === "" || m === "#1").length, echo: await within(5000, s.invoke("echo", "alive"), "echo") });
    s.disconnect();
  },

  // A token the server sets, kept by the client across reconnects (and across workers in a
  // cluster), presented with #authenticate, refused when bad, and removed by the server.
  async tokens() {
    const workers = Number(opt("workers", "1"));
    const s = connect();
    watchErrors(s, "s");
    await within(5000, s.listener("connect").once(), "connect");
    const authenticated = s.listener("authenticate").once();
    out({ step: "login", result: await s.invoke("login", { user: "ann" }) });
    await within(5000, authenticated, "the #setAuthToken");
    const token = s.signedAuthToken;
    out({ step: "token", authState: s.authState, user: s.authToken && s.authToken.user, hasExp: !!(s.authToken && s.authToken.exp) });

    const seen = new Set([await s.invoke("where")]);
    const reconnects = [];
    for (let i = 0; i < 60 && (seen.size < workers || reconnects.length < 2); i++) {
      const connected = s.listener("connect").once();
      s.reconnect();
      const status = await within(5000, connected, "reconnect");
      const where = await s.invoke("where");
      seen.add(where);
      reconnects.push({ where, isAuthenticated: status.isAuthenticated, whoami: await s.invoke("whoami") });
    }
    out({ step: "reconnects", workers: [...seen].sort(), all: reconnects.every((r) => r.isAuthenticated && r.whoami === "ann"), count: reconnects.length });

    const t = connect();
    await within(5000, t.listener("connect").once(), "second client");
    const status = await t.authenticate(token);
    out({ step: "authenticate", isAuthenticated: status.isAuthenticated, authError: status.authError ?? null, whoami: (await t.invoke("whoami")) ?? null });
    out({ step: "authenticate-bad", error: await failure(t.authenticate("not.a.token")), authState: t.authState, whoami: (await t.invoke("whoami")) ?? null });
    t.disconnect();

    const badEngine = {
      saveToken: async (name, tok) => tok,
      removeToken: async () => null,
      loadToken: async () => "e30.e30.bad",
    };
    const u = connect({ authEngine: badEngine });
    const ustatus = await within(5000, u.listener("connect").once(), "connect with a bad token");
    out({ step: "handshake-bad-token", isAuthenticated: ustatus.isAuthenticated, authError: ustatus.authError && { name: ustatus.authError.name, message: ustatus.authError.message } });
    u.disconnect();

    const removed = s.listener("deauthenticate").once();
    await s.invoke("logout");
    await within(5000, removed, "#removeAuthToken");
    out({ step: "logout", authState: s.authState, whoami: (await s.invoke("whoami")) ?? null });
    out({ step: "errors", errors });
    s.disconnect();
  },

  // The server restarts under a subscribed client: it reconnects and resubscribes by itself.
  async restart() {
    const s = connect();
    await within(5000, s.listener("connect").once(), "connect");
    const ch = s.subscribe("news");
    await within(5000, ch.listener("subscribe").once(), "subscribe");
    const got = collect(ch);
    await s.invokePublish("news", "before");
    await until(() => got.length === 1, 5000, "before");
    const closes = [];
    (async () => {
      for await (const e of s.listener("close")) closes.push(e.code);
    })();
    const reconnected = s.listener("connect").once();
    const resubscribed = ch.listener("subscribe").once();
    await waitForTest("restart the server");
    await within(20000, reconnected, "reconnect after the restart");
    await within(5000, resubscribed, "resubscribe after the restart");
    await s.invokePublish("news", "after");
    await until(() => got.length === 2, 5000, "after");
    out({ step: "restart", got: got.slice(), closes, state: s.state });
    s.disconnect();
  },

  // SocketCluster clients and Tickwire clients on one channel: each sees the other's publishes.
  async mixed() {
    const s = connect();
    await within(5000, s.listener("connect").once(), "connect");
    const ch = s.subscribe("mix");
    const typed = s.subscribe("pos.mix");
    await within(5000, Promise.all([ch.listener("subscribe").once(), typed.listener("subscribe").once()]), "subscribe");
    const got = collect(ch);
    const positions = collect(typed);
    out({ step: "where", where: await s.invoke("where") });
    await waitForTest("the Tickwire client publishes");
    await until(() => got.length === 1 && positions.length === 1, 5000, "the Tickwire client's publishes");
    out({ step: "from-tickwire", got: got[0], position: positions[0] });
    await s.invokePublish("mix", { from: "sc", n: 2, text: "é✓", list: [1.5, null, true] });
    await s.invokePublish("pos.mix", { who: "sc", at: { x: 0.25, y: 8 }, hp: 65535, tags: [] });
    await waitForTest("the Tickwire client got them");
    s.disconnect();
  },
};

(async () => {
  const run = scenarios[scenario];
  if (!run) throw new Error(`unknown scenario ${scenario}`);
  await run();
  out({ done: true });
  process.exit(0);
})().catch((e) => {
  out({ failed: String((e && e.stack) || e) });
  process.exit(1);
});
setTimeout(() => {
  out({ failed: "the scenario took over 60 s" });
  process.exit(2);
}, 60000).unref();
