// The Tickwire client for browsers and Node: the JavaScript twin of engine/client.py.
//
//   import { Client } from "/tickwire.js";            // served by every Tickwire server
//   const client = new Client("ws://localhost:8000/", { schemas: [game] });
//   await client.connect();
//   const sum = await client.call("add", { a: 1, b: 2 }, { timeout: 2000 });
//   const [chat] = await client.subscribe("chat");
//   for await (const msg of chat) { ... }
//   const room = await client.joinRoom("arena", { name: "ann" });
//   room.input({ dx: 1 });                             // every frame
//   const entities = room.render();                    // every animation frame
//
// One ES module plus the codec runtime beside it (packed.js, generated/protocol.js), no
// build step. Under Node 20, which has no WebSocket built in, pass one: `{ WebSocket }`
// from the `ws` package.
//
// What it does for the game (codecs/WIRE.md is the protocol):
// - Connects with the subprotocol `tickwire.packed.v1`, sends Handshake (the codebook's
//   schema hash and the stored token) and waits for Welcome.
// - Reconnects by itself with exponential backoff and jitter, unless the server closed
//   with a code of 4500 or more (reconnecting would fail the same way), with 1000, or the
//   application closed it. After a reconnect it presents its token again, resubscribes
//   every channel in ONE Subscribe, and takes its room seats back with their seat tokens.
// - Everything queued in one synchronous run of the caller (one task, before its
//   microtasks) leaves in ONE WebSocket frame, split at 64 KiB (the server's
//   max_frame_size), because frames, not messages, set the cost on both sides.
// - Times are milliseconds (timeouts, rtt, clock offset), as everywhere in JavaScript;
//   the Python client's are seconds.

import { Codebook, DecodeError, Reader, UnknownType } from "./packed.js";
import * as protocol from "./generated/protocol.js";
import { ClientWorld, SyncLayout, applyEntitySync } from "./entities.js";
import { SnapshotBuffer } from "./interpolation.js";

export { Codebook, DecodeError, EncodeError, Payload } from "./packed.js";
export { ClientWorld, SyncLayout, applyEntitySync } from "./entities.js";
export { SnapshotBuffer } from "./interpolation.js";

export const SUBPROTOCOL = "tickwire.packed.v1";
export const CLIENT_NAME = "tickwire-js/0.1";

/** `Error.code` on the wire (WIRE.md, "Errors"). */
export const ErrorCode = Object.freeze({
  BAD_REQUEST: 1,
  NOT_FOUND: 2,
  FORBIDDEN: 3,
  TIMEOUT: 4,
  LIMIT_EXCEEDED: 5,
  INTERNAL: 6,
  UNAUTHENTICATED: 7,
  UNAVAILABLE: 8,
});

const CODE_NAMES = Object.freeze(Object.fromEntries(Object.entries(ErrorCode).map(([k, v]) => [v, k.toLowerCase()])));

/** WebSocket close codes (WIRE.md, "Close codes"). 4500 and up: do not reconnect. */
export const CloseCode = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  ABNORMAL: 1006, // no close frame: the connection dropped (never sent on the wire)
  MESSAGE_TOO_BIG: 1009,
  INTERNAL_ERROR: 1011,
  PING_TIMEOUT: 4000,
  HANDSHAKE_TIMEOUT: 4005,
  HANDSHAKE_REJECTED: 4008,
  MESSAGE_BEFORE_HANDSHAKE: 4009,
  MALFORMED: 4100,
  UNKNOWN_TYPE: 4101,
  FLOOD: 4102,
  SLOW_READER: 4103,
  SCHEMA_MISMATCH: 4500,
  UNSUPPORTED_PROTOCOL: 4501,
});

/** Whether to reconnect after the connection closed with `code` (as engine.errors). */
export function reconnectAllowed(code) {
  return code !== CloseCode.NORMAL && (code == null || code < 4500);
}

/**
 * Exponential backoff with jitter: min * 2**attempt, capped at max, shortened by up to
 * `jitter` of itself (r in [0, 1)), so clients that lost the same server spread out.
 */
export function reconnectDelay(attempt, minBackoff, maxBackoff, jitter, r) {
  return Math.min(maxBackoff, minBackoff * 2 ** Math.min(attempt, 32)) * (1 - jitter * r);
}

/** An error a request ends with: the server's `Error {code, message}`, or the client's own
 * (a timeout is code 4, as the server's; `remote` tells them apart). */
export class TickwireError extends Error {
  constructor(code, message, remote = false) {
    super(message);
    this.name = "TickwireError";
    this.code = code;
    this.remote = remote;
  }

  /** "bad_request", "not_found", ... (WIRE.md, "Errors"). */
  get codeName() {
    return CODE_NAMES[this.code] ?? `error_${this.code}`;
  }
}

/** The connection closed (or was not open) while a request needed it. */
export class ConnectionClosed extends TickwireError {
  constructor(closeCode, reason = "") {
    super(ErrorCode.UNAVAILABLE, `connection closed (${closeCode ?? "not connected"}${reason ? `: ${reason}` : ""})`);
    this.name = "ConnectionClosed";
    this.closeCode = closeCode ?? null;
    this.reason = reason;
  }
}

const DEFAULTS = Object.freeze({
  schemas: [],
  token: null,
  storage: null, // localStorage-like {getItem, setItem, removeItem}: keeps the token across page loads
  tokenKey: "tickwire.token",
  reconnect: true,
  minBackoff: 200,
  maxBackoff: 10000,
  jitter: 0.5,
  callTimeout: 10000,
  connectTimeout: 10000,
  maxQueue: 10000, // messages kept per channel or room for iteration; the oldest go first
  maxSendFrameSize: 64 * 1024, // the server's max_frame_size default
  interpolation: {}, // SnapshotBuffer options for every room
  entityFields: {}, // struct name -> its fields, for rooms that sync entities (entities.js)
  WebSocket: null,
  now: null,
  rng: Math.random,
  onFrame: null,
});

const SMOOTH_RTT = 0.2; // weight of a new round-trip sample (as engine/client.py)
const SMOOTH_OFFSET = 0.1; // weight of a new clock offset sample
const OFFSET_RESET_MS = 1000; // a sample this far off: the room's clock restarted (it moved)
const MAX_SENT = 256; // inputs remembered for the round-trip echo

// ---------------------------------------------------------------------------------------
// events and queues

/** on/off/once; a listener that throws is reported, never breaks the caller. */
class Emitter {
  #listeners = new Map();

  constructor(report) {
    this._report = report;
  }

  /** Call `fn` for every `event`; returns a function that removes it. */
  on(event, fn) {
    if (typeof fn !== "function") throw new TypeError("a listener must be a function");
    let list = this.#listeners.get(event);
    if (list === undefined) this.#listeners.set(event, (list = []));
    list.push(fn);
    return () => this.off(event, fn);
  }

  once(event, fn) {
    const off = this.on(event, (...args) => {
      off();
      return fn(...args);
    });
    return off;
  }

  off(event, fn) {
    const list = this.#listeners.get(event);
    if (list === undefined) return;
    const i = list.indexOf(fn);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.#listeners.delete(event);
  }

  listenerCount(event) {
    return this.#listeners.get(event)?.length ?? 0;
  }

  _emit(event, ...args) {
    const list = this.#listeners.get(event);
    if (list === undefined) return;
    for (const fn of [...list]) {
      try {
        const result = fn(...args);
        if (result != null && typeof result.then === "function") result.then(undefined, (err) => this._report(err, event));
      } catch (err) {
        this._report(err, event);
      }
    }
  }
}

const END = Symbol("end");
const DONE = Object.freeze({ done: true, value: undefined });

/**
 * Messages waiting to be read by `get()` or `for await`: bounded (the oldest are dropped
 * and counted), and ended when its channel or room is.
 */
class Inbox {
  constructor(max) {
    this.max = max;
    this.items = [];
    this.head = 0;
    this.waiters = [];
    this.iterators = 0;
    this.dropped = 0;
    this.ended = null; // the reason, once ended
  }

  get length() {
    return this.items.length - this.head;
  }

  /** Whether something reads it (an open iterator, a pending get). */
  get reading() {
    return this.iterators > 0 || this.waiters.length > 0;
  }

  put(value) {
    if (this.ended !== null) return;
    const waiter = this.waiters.shift();
    if (waiter !== undefined) {
      waiter(value);
      return;
    }
    this.items.push(value);
    if (this.length > this.max) {
      this.items[this.head++] = undefined;
      this.dropped++;
    }
    this.#compact();
  }

  #shift() {
    const v = this.items[this.head];
    this.items[this.head++] = undefined;
    this.#compact();
    return v;
  }

  #compact() {
    if (this.head === this.items.length) {
      this.items.length = 0;
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
  }

  /**
   * Wait for the next item: {promise, cancel}. The promise resolves with the item, or END
   * once the inbox ends or the wait is cancelled; after `timeout` ms it rejects.
   */
  wait(timeout, what) {
    if (this.length > 0) return { promise: Promise.resolve(this.#shift()), cancel() {} };
    if (this.ended !== null) return { promise: Promise.resolve(END), cancel() {} };
    let waiter;
    let timer = null;
    const promise = new Promise((resolve, reject) => {
      waiter = (v) => {
        clearTimeout(timer);
        resolve(v);
      };
      if (timeout != null) {
        timer = setTimeout(() => {
          this.#remove(waiter);
          reject(new TickwireError(ErrorCode.TIMEOUT, `no message on ${what} within ${timeout} ms`));
        }, timeout);
      }
    });
    this.waiters.push(waiter);
    const cancel = () => {
      if (this.#remove(waiter)) waiter(END);
    };
    return { promise, cancel };
  }

  #remove(waiter) {
    const i = this.waiters.indexOf(waiter);
    if (i < 0) return false;
    this.waiters.splice(i, 1);
    return true;
  }

  end(reason) {
    if (this.ended !== null) return;
    this.ended = reason;
    for (const waiter of this.waiters.splice(0)) waiter(END);
  }

  /** An async iterator over the items until the inbox ends; `return()` (a `break` out of
   * `for await`) stops it at once, even while it waits. */
  iterator() {
    this.iterators++;
    let open = true;
    let current = null;
    const close = () => {
      if (open) {
        open = false;
        this.iterators--;
      }
    };
    return {
      next: () => {
        if (!open) return Promise.resolve(DONE);
        current = this.wait(null);
        return current.promise.then((v) => {
          current = null;
          if (v === END) {
            close();
            return DONE;
          }
          return { done: false, value: v };
        });
      },
      return: () => {
        close();
        current?.cancel();
        return Promise.resolve(DONE);
      },
      [Symbol.asyncIterator]() {
        return this;
      },
    };
  }
}

// ---------------------------------------------------------------------------------------
// channels

/**
 * A channel this client subscribes. Read it with `for await (const msg of channel)`,
 * `await channel.get({timeout})`, or `channel.on("message", fn)`. Messages wait in its
 * queue for `get()` and iteration unless the channel has "message" listeners and nothing
 * is reading it (so a listener-only channel keeps no backlog). Events: "message" (data),
 * "end" (reason: unsubscribed, kicked, refused, or the client closed).
 */
export class Channel extends Emitter {
  constructor(client, name) {
    super(client._report);
    this.client = client;
    this.name = name;
    this.id = 0; // the server's id for it on the current connection (0 until subscribed)
    this.typeId = 0; // the payload type of its messages
    this.inbox = new Inbox(client.maxQueue);
  }

  get active() {
    return this.inbox.ended === null;
  }

  /** Messages dropped because the queue was full (nothing read them). */
  get dropped() {
    return this.inbox.dropped;
  }

  /** The next message; rejects after `timeout` ms, or when the channel ends. */
  async get({ timeout } = {}) {
    const v = await this.inbox.wait(timeout, `channel '${this.name}'`).promise;
    if (v === END) throw new TickwireError(ErrorCode.UNAVAILABLE, `channel '${this.name}' ended: ${this.inbox.ended}`);
    return v;
  }

  [Symbol.asyncIterator]() {
    return this.inbox.iterator();
  }

  publish(data, options) {
    return this.client.publish(this.name, data, options);
  }

  unsubscribe(options) {
    return this.client.unsubscribe(this.name, options ?? {});
  }

  _deliver(value) {
    if (this.listenerCount("message") === 0 || this.inbox.reading) this.inbox.put(value);
    this._emit("message", value);
  }

  _end(reason) {
    if (this.inbox.ended !== null) return;
    this.inbox.end(reason);
    this._emit("end", reason);
  }

  toString() {
    return `Channel(${this.name}, id=${this.id})`;
  }
}

// ---------------------------------------------------------------------------------------
// rooms

/**
 * A seat in a room: send inputs, read its state and messages, measure the clock, render
 * its entities.
 *
 * Each send tick the server sends a Tick header; the room keeps the newest tick number and
 * room time, the last input sequence the simulation applied, a smoothed round-trip time
 * (from the echo of the newest input: rtt = now - sent(echo_seq) - echo_age_ms) and the
 * offset between the room's clock and the local one. Events: "tick" (room, after the
 * tick's state and messages), "state" (state), "message" (data), "leave" ({code, reason}).
 */
export class Room extends Emitter {
  constructor(client, joined, interpolation) {
    super(client._report);
    this.client = client;
    this.handle = joined.room; // its handle on the current connection (Tick.room)
    this.id = joined.room_id;
    this.type = joined.room_type;
    this.player = joined.player;
    this.seat = joined.seat; // takes the same seat again after a dropped connection
    this.tickRate = joined.tick_rate;
    this.sendRate = joined.send_rate;
    this.attached = true; // the seat is held on the current connection
    this.state = null;
    this.tick = 0;
    this.timeMs = 0; // room time of the newest Tick (ms since the room was created)
    this.appliedSeq = 0; // the last input of ours the simulation applied
    this.seq = 0; // the last input sent
    this.ticks = 0; // Tick headers received
    this.inputsDropped = 0; // inputs not sent: the seat was not attached
    this.rtt = null; // smoothed round-trip time, ms
    this.clockOffset = null; // room time minus local time, ms, corrected by rtt / 2
    this.receiveOffset = null; // room time minus local time as Ticks arrive (no rtt correction)
    this.left = null; // {code, reason} once out of the room
    this.snapshots = new SnapshotBuffer({ ...client.interpolation, ...interpolation });
    this.entities = null; // a ClientWorld, once the room says how it syncs entities
    this.inbox = new Inbox(client.maxQueue);
    this._sent = new Map(); // seq -> local send time
  }

  /** Send one input for the room's next tick; its sequence number (0: not sent, because
   * the seat is not attached while the client reconnects). */
  input(data = null) {
    const client = this.client;
    if (!this.attached || !client.connected) {
      this.inputsDropped++;
      return 0;
    }
    const payload = client.codebook.payload(data);
    const seq = this.seq + 1;
    client._queue({ $type: "Input", room: this.handle, seq, data: payload });
    this.seq = seq;
    this._sent.set(seq, client._now());
    if (this._sent.size > MAX_SENT) {
      for (const old of this._sent.keys()) {
        this._sent.delete(old);
        if (this._sent.size <= MAX_SENT / 2) break;
      }
    }
    return seq;
  }

  /** Leave the room (the server answers when the seat is given up). */
  async leave({ timeout } = {}) {
    const client = this.client;
    if (this.left !== null) return;
    if (this.attached && client.connected) {
      await client._request((cid) => ({ $type: "LeaveRoom", cid, room: this.handle }), timeout, "LeaveRoom");
    }
    this._left(0, "left");
  }

  /** The next room message; rejects after `timeout` ms, or once out of the room. */
  async get({ timeout } = {}) {
    const v = await this.inbox.wait(timeout, `room '${this.id}'`).promise;
    if (v === END) throw new TickwireError(ErrorCode.UNAVAILABLE, `out of room '${this.id}': ${this.left?.reason}`);
    return v;
  }

  [Symbol.asyncIterator]() {
    return this.inbox.iterator();
  }

  /** The room time now, estimated (ms): local time plus the clock offset. */
  serverTime(now = this.client._now()) {
    return this.clockOffset === null ? this.timeMs : now + this.clockOffset;
  }

  /** The room time of the Tick stream as it arrives, advanced by local time (ms): what
   * the interpolation buffer renders `delay` behind. */
  receiveTime(now = this.client._now()) {
    return this.receiveOffset === null ? this.timeMs : now + this.receiveOffset;
  }

  /** The entities to draw now: `snapshots` sampled `delay` ms behind the receive time. */
  render(now = this.client._now()) {
    return this.snapshots.render(this.receiveTime(now));
  }

  _tick(msg, now) {
    this.tick = msg.tick;
    this.timeMs = msg.time_ms;
    this.appliedSeq = msg.applied_seq;
    this.ticks++;
    const sent = this._sent.get(msg.echo_seq);
    if (sent !== undefined) {
      const rtt = Math.max(0, now - sent - msg.echo_age_ms);
      this.rtt = this.rtt === null ? rtt : this.rtt * (1 - SMOOTH_RTT) + rtt * SMOOTH_RTT;
      // Older inputs will never be echoed again: the echo is always the newest received.
      for (const seq of this._sent.keys()) {
        if (seq >= msg.echo_seq) break;
        this._sent.delete(seq);
      }
    }
    this.clockOffset = smooth(this.clockOffset, msg.time_ms + (this.rtt ?? 0) / 2 - now);
    this.receiveOffset = smooth(this.receiveOffset, msg.time_ms - now);
  }

  _sectionEnd() {
    const world = this.entities;
    if (world === null) {
      this._emit("tick", this);
      return;
    }
    // Every tick, changed or not: an entity that stopped must be drawn still, not
    // interpolated across the ticks it did not move in.
    this.snapshots.push(this.timeMs, world.entities);
    this._emit("tick", this); // world.spawned and world.despawned hold this tick's
    world.spawned.length = 0;
    world.despawned.length = 0;
  }

  _syncEntities(layout) {
    this.entities = new ClientWorld(layout);
    this.snapshots.clear();
  }

  _setState(state) {
    this.state = state;
    this._emit("state", state);
  }

  _message(value) {
    if (this.listenerCount("message") === 0 || this.inbox.reading) this.inbox.put(value);
    this._emit("message", value);
  }

  _attach(joined) {
    this.handle = joined.room;
    this.seat = joined.seat;
    this.attached = true;
  }

  _detach() {
    this.attached = false;
    // The server sends the view afresh (snapshots) to a seat taken back.
    this.entities?.clear();
    this.snapshots.clear();
  }

  _left(code, reason) {
    if (this.left !== null) return;
    this.attached = false;
    this.left = { code, reason };
    this.client._forgetRoom(this);
    this.inbox.end(reason);
    this._emit("leave", this.left);
  }

  toString() {
    return `Room(${this.id}, player=${this.player}, tick=${this.tick})`;
  }
}

function smooth(current, sample) {
  if (current === null || Math.abs(sample - current) > OFFSET_RESET_MS) return sample;
  return current + (sample - current) * SMOOTH_OFFSET;
}

// ---------------------------------------------------------------------------------------
// the client

/**
 * A connection to a Tickwire server that comes back by itself. Events on `client.on`:
 * the server's events by name, and "#connect" (Welcome), "#disconnect" ({code, reason}),
 * "#token" (token or null), "#error" (an Error the server sent without a request, or a
 * listener that threw).
 */
export class Client extends Emitter {
  constructor(url, options = {}) {
    const o = { ...DEFAULTS, ...options };
    super((err, where) => this.#reportError(err, where));
    this.url = url;
    this.codebook = new Codebook(protocol, ...o.schemas);
    this.storage = o.storage;
    this.tokenKey = o.tokenKey;
    this.token = o.token ?? this.#loadToken();
    this.reconnect = o.reconnect;
    this.minBackoff = o.minBackoff;
    this.maxBackoff = o.maxBackoff;
    this.jitter = o.jitter;
    this.callTimeout = o.callTimeout;
    this.connectTimeout = o.connectTimeout;
    this.maxQueue = o.maxQueue;
    this.maxSendFrameSize = o.maxSendFrameSize;
    this.interpolation = o.interpolation;
    this.entityFields = o.entityFields;
    this.schemas = o.schemas;
    this.rng = o.rng;
    this.onFrame = o.onFrame; // test seam: every frame received, raw
    this._now = o.now ?? (() => performance.now());
    this._WebSocket = o.WebSocket ?? globalThis.WebSocket;
    if (typeof this._WebSocket !== "function") {
      throw new TypeError("no WebSocket here: pass one as the WebSocket option (under Node: the ws package)");
    }
    this.welcome = null;
    this.channels = new Map(); // name -> Channel
    this.rooms = new Set(); // every Room this client sits in, attached or not
    this.connects = 0; // successful handshakes, reconnections included
    this.framesReceived = 0;
    this.bytesReceived = 0;
    this.framesSent = 0;
    this.bytesSent = 0;
    this.closeCode = null;
    this.closeReason = "";
    this.state = "closed"; // "connecting" until Welcome, then "open"
    this._ctx = this.codebook.context({ maxString: 1 << 20, maxVector: 1 << 20 });
    this._ws = null;
    this._byId = new Map(); // channel id -> Channel, on the current connection
    this._byHandle = new Map(); // room handle -> Room, on the current connection
    this._pending = new Map(); // cid -> {resolve, reject, reply, timer}
    this._cid = 0;
    this._out = [];
    this._flushScheduled = false;
    this._flush = this._flush.bind(this);
    this._running = false; // connect() was called and close() was not
    this._closing = false;
    this._first = null; // connect()'s promise callbacks, until the first Welcome
    this._openWaiters = new Set();
    this._attempt = 0;
    this._reconnectTimer = null;
    this._connectTimer = null;
    this._watchdog = null;
    this._heard = 0;
    this._localClose = null; // [code, reason] when this side closed the socket
    this._closeWaiters = [];
  }

  get connected() {
    return this.state === "open";
  }

  get socketId() {
    return this.welcome?.socket_id ?? "";
  }

  /** The server process holding this connection (from Welcome). */
  get process() {
    return this.welcome?.process ?? "";
  }

  /** Bytes the WebSocket has queued and not yet sent. */
  get bufferedAmount() {
    return this._ws?.bufferedAmount ?? 0;
  }

  // -- connection ------------------------------------------------------------------------

  /** Connect and handshake; rejects if the first attempt fails. Resolves with Welcome. */
  connect() {
    if (this.state === "open") return Promise.resolve(this.welcome);
    if (this._running) return this.waitConnected().then(() => this.welcome);
    this._running = true;
    this._closing = false;
    this._attempt = 0;
    const first = new Promise((resolve, reject) => (this._first = { resolve, reject }));
    this.#open();
    return first;
  }

  /** Resolves once connected (now, or after the reconnection under way). */
  waitConnected({ timeout = this.connectTimeout } = {}) {
    if (this.state === "open") return Promise.resolve();
    return new Promise((resolve, reject) => this.#whenOpen(resolve, reject, timeout, "connection"));
  }

  /** Close for good (no reconnection); resolves when the socket has closed. */
  close(code = CloseCode.NORMAL, reason = "") {
    this._closing = true;
    this._running = false;
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = null;
    const ws = this._ws;
    if (ws === null) {
      this.#finish(new ConnectionClosed(code, reason || "closed by the application"));
      return Promise.resolve();
    }
    const closed = new Promise((resolve) => {
      const timer = setTimeout(resolve, 5000); // a server that never answers the close
      this._closeWaiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    this._localClose = [code, reason];
    try {
      ws.close(code, reason);
    } catch {
      ws.close();
    }
    this.#closed(ws, code, reason); // now: requests fail at once, not after the close handshake
    return closed;
  }

  #open() {
    this.state = "connecting";
    this.closeCode = null;
    this.closeReason = "";
    this._localClose = null;
    let ws;
    try {
      ws = new this._WebSocket(this.url, [SUBPROTOCOL]);
    } catch (err) {
      queueMicrotask(() => this.#failedOpen(err));
      return;
    }
    ws.binaryType = "arraybuffer";
    this._ws = ws;
    let openError = null;
    this._connectTimer = setTimeout(() => {
      if (this._ws === ws && this.state === "connecting") {
        this.#drop(ws, CloseCode.HANDSHAKE_TIMEOUT, `no Welcome within ${this.connectTimeout} ms`);
      }
    }, this.connectTimeout);
    ws.onopen = () => {
      if (this._ws !== ws) return;
      const handshake = { $type: "Handshake", schema_hash: this.codebook.hash, token: this.token ?? "", client: CLIENT_NAME };
      this.#send(ws, this.codebook.encode(handshake));
    };
    ws.onmessage = (event) => {
      if (this._ws === ws) this.#frame(ws, event.data);
    };
    ws.onerror = (event) => {
      openError = event?.error ?? event?.message ?? openError;
    };
    ws.onclose = (event) => {
      for (const resolve of this._closeWaiters.splice(0)) resolve();
      if (this._ws !== ws) return;
      const reason = event.reason || (openError ? String(openError.message ?? openError) : "");
      this.#closed(ws, event.code, reason);
    };
  }

  #failedOpen(err) {
    this.state = "closed";
    this.closeCode = CloseCode.ABNORMAL;
    this.closeReason = String(err?.message ?? err);
    this.#afterClose(false);
  }

  /** Close the socket from this side for a protocol reason, and carry on as if it closed. */
  #drop(ws, code, reason) {
    this._localClose = [code, reason];
    try {
      ws.close(code, reason);
    } catch {
      ws.close();
    }
    this.#closed(ws, code, reason);
  }

  #closed(ws, code, reason) {
    if (this._ws !== ws) return;
    this._ws = null;
    // onerror stays (the ws package throws an error event nobody listens to), and so does
    // onclose (it releases close() waiters when the close handshake ends).
    ws.onopen = ws.onmessage = null;
    clearTimeout(this._connectTimer);
    clearTimeout(this._watchdog);
    this._connectTimer = this._watchdog = null;
    const [localCode, localReason] = this._localClose ?? [code, reason];
    const wasOpen = this.state === "open";
    this.state = "closed";
    this.closeCode = localCode;
    this.closeReason = localReason ?? "";
    this._out = [];
    this._byId.clear();
    this._ctx.channelTypes.clear();
    this._byHandle.clear();
    for (const room of this.rooms) room._detach();
    this.#failPending(new ConnectionClosed(this.closeCode, this.closeReason));
    if (wasOpen) this._emit("#disconnect", { code: this.closeCode, reason: this.closeReason });
    this.#afterClose(wasOpen);
  }

  #afterClose(wasOpen) {
    const error = new ConnectionClosed(this.closeCode, this.closeReason);
    if (this._first !== null && !wasOpen) {
      // The first attempt failed: the caller of connect() hears it; no retrying.
      const first = this._first;
      this._first = null;
      this._running = false;
      this.#finish(error);
      first.reject(error);
      return;
    }
    if (this._closing || !this._running || !this.reconnect || !reconnectAllowed(this.closeCode)) {
      this._running = false;
      this.#finish(error);
      return;
    }
    const delay = reconnectDelay(this._attempt++, this.minBackoff, this.maxBackoff, this.jitter, this.rng());
    this._reconnectTimer = setTimeout(() => {
      this._reconnectTimer = null;
      if (this._running) this.#open();
    }, delay);
  }

  /** No more connections: end the channels and rooms, fail whoever waits. */
  #finish(error) {
    this.#failPending(error);
    for (const w of [...this._openWaiters]) w.reject(error);
    this._openWaiters.clear();
    for (const ch of this.channels.values()) ch._end(this._closing ? "the client closed" : error.message);
    this.channels.clear();
    for (const room of [...this.rooms]) room._left(ErrorCode.UNAVAILABLE, this._closing ? "the client closed" : error.message);
  }

  #welcomed(ws, welcome) {
    clearTimeout(this._connectTimer);
    this._connectTimer = null;
    this.welcome = welcome;
    this.state = "open";
    this.connects++;
    this._attempt = 0;
    if (welcome.auth_error && this.token) {
      // The token we presented is invalid or expired: presenting it again cannot help.
      this.#setToken(null);
    }
    if (welcome.ping_timeout_ms > 0) this.#watch(ws, welcome.ping_timeout_ms);
    if (this.channels.size > 0) this.#subscribeAll([...this.channels.values()], false);
    for (const room of this.rooms) this.#retakeSeat(room);
    const first = this._first;
    this._first = null;
    first?.resolve(welcome);
    for (const w of [...this._openWaiters]) w.resolve();
    this._openWaiters.clear();
    this._emit("#connect", welcome);
  }

  /** Close with 4000 when the server has been silent for its ping timeout. */
  #watch(ws, timeout) {
    this._heard = this._now();
    const check = () => {
      if (this._ws !== ws) return;
      const quiet = this._now() - this._heard;
      if (quiet >= timeout) {
        this.#drop(ws, CloseCode.PING_TIMEOUT, "server ping timeout");
      } else {
        this._watchdog = setTimeout(check, timeout - quiet + 5);
      }
    };
    this._watchdog = setTimeout(check, timeout);
  }

  /** Run `resolve` once connected; returns a function that stops waiting. */
  #whenOpen(resolve, reject, timeout, what) {
    if (!this._running) {
      reject(new ConnectionClosed(this.closeCode, "not connected (call connect() first)"));
      return () => {};
    }
    let timer = null;
    const waiter = {
      resolve: () => {
        clearTimeout(timer);
        resolve();
      },
      reject: (err) => {
        clearTimeout(timer);
        reject(err);
      },
    };
    if (timeout != null) {
      timer = setTimeout(() => {
        this._openWaiters.delete(waiter);
        reject(new TickwireError(ErrorCode.TIMEOUT, `not connected within ${timeout} ms (${what})`));
      }, timeout);
    }
    this._openWaiters.add(waiter);
    return () => {
      clearTimeout(timer);
      this._openWaiters.delete(waiter);
    };
  }

  // -- outbound ----------------------------------------------------------------------------

  /** Queue a message for this task's frame; throws if not connected or not encodable. */
  _queue(msg) {
    if (this.state !== "open") throw new ConnectionClosed(this.closeCode, "not connected");
    const bytes = this.codebook.encode(msg);
    if (bytes.length > this.maxSendFrameSize) {
      throw new TickwireError(
        ErrorCode.LIMIT_EXCEEDED,
        `a ${msg.$type} of ${bytes.length} bytes is over max_frame_size (${this.maxSendFrameSize})`,
      );
    }
    this._out.push(bytes);
    if (!this._flushScheduled) {
      this._flushScheduled = true;
      queueMicrotask(this._flush);
    }
  }

  /** Everything queued, in as few frames as max_frame_size allows (cut at messages). */
  _flush() {
    this._flushScheduled = false;
    const parts = this._out;
    this._out = [];
    const ws = this._ws;
    if (ws === null || this.state !== "open" || parts.length === 0) return;
    if (parts.length === 1) {
      this.#send(ws, parts[0]);
      return;
    }
    let start = 0;
    while (start < parts.length) {
      let end = start;
      let size = 0;
      while (end < parts.length && (end === start || size + parts[end].length <= this.maxSendFrameSize)) {
        size += parts[end++].length;
      }
      const frame = new Uint8Array(size);
      let at = 0;
      for (let i = start; i < end; i++) {
        frame.set(parts[i], at);
        at += parts[i].length;
      }
      this.#send(ws, frame);
      start = end;
    }
  }

  #send(ws, bytes) {
    try {
      ws.send(bytes);
    } catch {
      return; // closing: its close event follows
    }
    this.framesSent++;
    this.bytesSent += bytes.length;
  }

  // -- inbound -----------------------------------------------------------------------------

  #frame(ws, data) {
    this._heard = this._now();
    if (typeof data === "string") {
      this.#drop(ws, CloseCode.MALFORMED, "text frame from a Tickwire server");
      return;
    }
    const bytes =
      data instanceof ArrayBuffer ? new Uint8Array(data) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    this.framesReceived++;
    this.bytesReceived += bytes.length;
    if (this.onFrame !== null) this.onFrame(bytes);
    const now = this._now();
    const r = new Reader(bytes, this._ctx);
    const codebook = this.codebook;
    let room = null; // the room whose section of the frame this is
    let ticked = null; // rooms whose sections ended, for their "tick" events
    try {
      if (bytes.length === 0) throw new DecodeError("empty frame");
      while (r.pos < r.end && this._ws === ws) {
        // Decoded one at a time: a Subscribed maps channel ids that Messages after it in
        // the same frame use.
        let msg;
        try {
          const t = r.varint();
          const mt = codebook.types.get(t);
          if (mt === undefined) throw new UnknownType(t);
          msg = mt.decode(r);
        } catch (err) {
          if (err instanceof DecodeError) throw err;
          throw new DecodeError(`malformed frame (${err.name}: ${err.message})`);
        }
        if (msg.$type === "Tick") {
          if (room !== null) (ticked ??= []).push(room);
          room = this._byHandle.get(msg.room) ?? null;
          // The same Tick again continues a section the server split over several frames.
          if (room !== null && !(room.ticks > 0 && msg.tick === room.tick && msg.time_ms === room.timeMs)) room._tick(msg, now);
          continue;
        }
        this.#message(ws, msg, room);
      }
    } catch (err) {
      this.#reportError(err, "frame");
      if (err instanceof UnknownType) this.#drop(ws, CloseCode.UNKNOWN_TYPE, "unknown message type from server");
      else this.#drop(ws, CloseCode.MALFORMED, "malformed frame from server");
    } finally {
      if (room !== null) (ticked ??= []).push(room);
      if (ticked !== null) for (const t of ticked) t._sectionEnd();
    }
  }

  #message(ws, msg, room) {
    switch (msg.$type) {
      case "RoomState":
        room?._setState(this.#value(msg.data, "RoomState"));
        break;
      case "RoomMessage":
        if (room !== null) room._message(this.#value(msg.data, "RoomMessage"));
        break;
      case "EntitySync":
        // Malformed data throws DecodeError: the frame is refused (close 4100), and the
        // seat, taken back, gets its view afresh.
        if (room?.entities) applyEntitySync(room.entities, msg.data);
        break;
      case "EntitySyncInfo": {
        const target = this._byHandle.get(msg.room);
        if (target !== undefined) this.#syncEntities(target, msg);
        break;
      }
      case "Message": {
        const ch = this._byId.get(msg.channel);
        if (ch !== undefined) ch._deliver(this.#value(msg.payload, `channel ${ch.name}`));
        break;
      }
      case "Result":
        this.#answer(msg.cid, msg, null);
        break;
      case "Error":
        if (msg.cid) {
          this.#answer(msg.cid, null, new TickwireError(msg.code, msg.message, true));
        } else {
          this._emit("#error", new TickwireError(msg.code, msg.message, true));
        }
        break;
      case "Subscribed":
      case "RoomJoined":
        this.#answer(msg.cid, msg, null);
        break;
      case "RoomLeft": {
        const left = this._byHandle.get(msg.room);
        if (left !== undefined) left._left(msg.code, msg.reason);
        break;
      }
      case "Emit":
        this._emit(msg.event, this.#value(msg.data, `event ${msg.event}`));
        break;
      case "Ping":
        if (this.state === "open") this._queue({ $type: "Pong" });
        break;
      case "Welcome":
        if (this.state === "connecting") this.#welcomed(ws, msg);
        break;
      case "SetToken":
        this.#setToken(msg.token);
        break;
      case "RemoveToken":
        this.#setToken(null);
        break;
      case "Kicked": {
        const ch = this._byId.get(msg.channel);
        if (ch !== undefined) {
          this._byId.delete(msg.channel);
          this._ctx.channelTypes.delete(msg.channel);
          this.channels.delete(ch.name);
          ch._end(`kicked${msg.reason ? `: ${msg.reason}` : ""}`);
        }
        break;
      }
      default:
        break; // Pong, and messages a server does not send
    }
  }

  /** A room syncs entities of a schema struct: its fields from the entityFields option,
   * or from a schema module whose struct codec lists them. */
  #syncEntities(room, info) {
    const name = info.struct_name;
    const fields = this.entityFields[name] ?? this.schemas.map((m) => m.TYPES?.[name]).find((t) => t?.fields);
    if (fields === undefined) {
      this.#reportError(
        new TypeError(`room ${room.id} syncs entities of struct '${name}': give its fields in the entityFields option`),
        "EntitySyncInfo",
      );
      return;
    }
    try {
      room._syncEntities(SyncLayout.fromInfo(fields, info));
    } catch (err) {
      this.#reportError(err, "EntitySyncInfo");
    }
  }

  /** A payload's value; bad JSON or bytes in it are reported, and the message skipped. */
  #value(payload, where) {
    try {
      return this.codebook.payloadValue(payload, this._ctx);
    } catch (err) {
      this.#reportError(err, where);
      return undefined;
    }
  }

  #answer(cid, msg, error) {
    const p = this._pending.get(cid);
    if (p === undefined) return;
    this._pending.delete(cid);
    clearTimeout(p.timer);
    if (error !== null) {
      p.reject(error);
      return;
    }
    let value;
    try {
      value = p.reply ? p.reply(msg) : msg;
    } catch (err) {
      p.reject(err);
      return;
    }
    p.resolve(value);
  }

  #failPending(error) {
    const pending = [...this._pending.values()];
    this._pending.clear();
    for (const p of pending) {
      clearTimeout(p.timer);
      p.reject(error);
    }
  }

  #setToken(token) {
    this.token = token || null;
    if (this.storage !== null) {
      try {
        if (this.token === null) this.storage.removeItem(this.tokenKey);
        else this.storage.setItem(this.tokenKey, this.token);
      } catch {
        // storage full or denied (private browsing): the token lives in memory only
      }
    }
    this._emit("#token", this.token);
  }

  #loadToken() {
    try {
      return this.storage?.getItem(this.tokenKey) || null;
    } catch {
      return null;
    }
  }

  #reportError(err, where) {
    if (where !== "#error" && this.listenerCount("#error") > 0) {
      this._emit("#error", err);
    } else {
      console.error(`tickwire: ${where}:`, err);
    }
  }

  // -- requests ----------------------------------------------------------------------------

  /**
   * Send `make(cid)` once connected (waiting for a reconnection if need be) and resolve
   * with its answer (through `reply(msg)`, which runs as the answer is decoded, before any
   * message after it in the same frame). The whole wait is bounded by `timeout` ms.
   */
  _request(make, timeout, what, reply = null) {
    const ms = timeout ?? this.callTimeout;
    return new Promise((resolve, reject) => {
      let settled = false;
      let cid = 0;
      let cancelWait = null;
      const done = (fn) => (v) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        cancelWait?.();
        fn(v);
      };
      const ok = done(resolve);
      const fail = done(reject);
      const timer = setTimeout(() => {
        if (cid) this._pending.delete(cid);
        fail(new TickwireError(ErrorCode.TIMEOUT, `no answer to ${what} within ${ms} ms`));
      }, ms);
      const send = () => {
        if (settled) return;
        cid = this.#nextCid();
        this._pending.set(cid, { resolve: ok, reject: fail, reply, timer: null });
        try {
          this._queue(make(cid));
        } catch (err) {
          this._pending.delete(cid);
          fail(err);
        }
      };
      if (this.state === "open") send();
      else cancelWait = this.#whenOpen(send, fail, null, what);
    });
  }

  #nextCid() {
    this._cid = this._cid >= 0xffffffff ? 1 : this._cid + 1;
    return this._cid;
  }

  /** Call a procedure; its result, or a TickwireError (the server's, a timeout, or
   * ConnectionClosed). */
  call(procedure, data = null, { timeout } = {}) {
    let payload;
    try {
      payload = this.codebook.payload(data);
    } catch (err) {
      return Promise.reject(err);
    }
    return this._request(
      (cid) => ({ $type: "Call", cid, procedure, data: payload }),
      timeout,
      `'${procedure}'`,
      (msg) => this.codebook.payloadValue(msg.data, this._ctx),
    );
  }

  /** Send an event to a server receiver (no answer). Throws when not connected. */
  emit(event, data = null) {
    this._queue({ $type: "Emit", event, data: this.codebook.payload(data) });
  }

  /** Publish on a channel; with `ack` (the default) resolves when the server accepted it. */
  publish(channel, data, { ack = true, timeout } = {}) {
    let payload;
    try {
      payload = this.codebook.payload(data);
      if (!ack) {
        this._queue({ $type: "Publish", cid: 0, channel, data: payload });
        return Promise.resolve();
      }
    } catch (err) {
      return Promise.reject(err);
    }
    return this._request(
      (cid) => ({ $type: "Publish", cid, channel, data: payload }),
      timeout,
      `the publish to '${channel}'`,
      () => undefined,
    );
  }

  /**
   * Subscribe to channels in ONE message: `subscribe("a", "b", {timeout})`. Resolves with
   * one Channel per name, in order (the same object for a name already subscribed).
   */
  async subscribe(...args) {
    const options = args.length && typeof args[args.length - 1] === "object" ? args.pop() : {};
    const channels = [];
    const fresh = [];
    for (const name of args) {
      if (typeof name !== "string" || name === "") throw new TypeError("a channel name is a non-empty string");
      let ch = this.channels.get(name);
      if (ch === undefined) {
        ch = new Channel(this, name);
        this.channels.set(name, ch);
        fresh.push(ch);
      }
      channels.push(ch);
    }
    if (fresh.length > 0) {
      try {
        await this.#subscribeAll(fresh, true, options.timeout);
      } catch (err) {
        if (!err.remote) {
          // No answer: none of them is known to be subscribed.
          for (const ch of fresh) {
            if (this.channels.get(ch.name) === ch) this.channels.delete(ch.name);
            ch._end(err.message);
          }
        }
        // Refused by the server: the refused channels have ended; the others are
        // subscribed, and stay (client.channels).
        throw err;
      }
    }
    return channels;
  }

  /** One Subscribe for `channels`; its answer maps their ids as soon as it is decoded. */
  #subscribeAll(channels, wait, timeout) {
    const names = channels.map((ch) => ch.name);
    const reply = (msg) => this.#subscribed(channels, msg.channels);
    const make = (cid) => ({ $type: "Subscribe", cid, channels: names });
    if (!wait) {
      // Resubscribing after a reconnect: the answer is applied when it comes.
      const cid = this.#nextCid();
      this._pending.set(cid, { resolve: () => {}, reject: () => {}, reply, timer: null });
      this._queue(make(cid));
      return Promise.resolve();
    }
    return this._request(make, timeout, "Subscribe", reply).then((errors) => {
      if (errors.length > 0) throw errors[0];
    });
  }

  #subscribed(channels, infos) {
    const errors = [];
    const byName = new Map(channels.map((ch) => [ch.name, ch]));
    for (const info of infos) {
      const ch = byName.get(info.name);
      if (ch === undefined) continue;
      if (info.error) {
        const err = new TickwireError(info.error, `${info.name}: ${info.message}`, true);
        errors.push(err);
        if (this.channels.get(ch.name) === ch) this.channels.delete(ch.name);
        ch._end(`refused: ${info.message}`);
        continue;
      }
      ch.id = info.id;
      ch.typeId = info.type_id;
      this._byId.set(info.id, ch);
      this._ctx.channelTypes.set(info.id, info.type_id);
    }
    return errors;
  }

  /** Leave channels (their iterators end). */
  async unsubscribe(...args) {
    const options = args.length && typeof args[args.length - 1] === "object" ? args.pop() : {};
    const ids = [];
    for (const name of args) {
      const ch = this.channels.get(name);
      if (ch === undefined) continue;
      this.channels.delete(name);
      if (ch.id && this._byId.get(ch.id) === ch) {
        this._byId.delete(ch.id);
        ids.push(ch.id);
      }
      ch._end("unsubscribed");
    }
    if (ids.length > 0 && this.connected) {
      await this._request((cid) => ({ $type: "Unsubscribe", cid, channels: ids }), options.timeout, "Unsubscribe");
      for (const id of ids) if (!this._byId.has(id)) this._ctx.channelTypes.delete(id);
    }
  }

  /**
   * Join a room: the fullest joinable room of `type` (created if there is none), or
   * `{roomId}`, or a new one with `{create: true}`, or a reserved or dropped seat with
   * `{seat}`. `options` reach the room's on_join. `interpolation` overrides the client's
   * SnapshotBuffer options for this room.
   */
  joinRoom(type = "", options = null, { roomId = "", create = false, seat = "", timeout, interpolation } = {}) {
    let payload;
    try {
      payload = this.codebook.payload(options);
    } catch (err) {
      return Promise.reject(err);
    }
    return this._request(
      (cid) => ({ $type: "JoinRoom", cid, room_type: type, room_id: roomId, create, seat, options: payload }),
      timeout,
      "JoinRoom",
      (joined) => {
        // Registered now: the room's first Tick may follow in this very frame.
        const room = new Room(this, joined, interpolation);
        this._byHandle.set(room.handle, room);
        this.rooms.add(room);
        return room;
      },
    );
  }

  /** After a reconnect: the same seat again, with its token (within the grace period). */
  #retakeSeat(room) {
    const cid = this.#nextCid();
    const fail = (err) => room._left(err.code ?? ErrorCode.UNAVAILABLE, `could not take the seat back: ${err.message}`);
    const reply = (joined) => {
      room._attach(joined);
      this._byHandle.set(room.handle, room);
    };
    // No timer: the answer comes, or the connection drops (and this is tried again).
    this._pending.set(cid, {
      resolve: () => {},
      reject: (err) => {
        if (!(err instanceof ConnectionClosed)) fail(err);
      },
      reply,
      timer: null,
    });
    this._queue({ $type: "JoinRoom", cid, room_type: "", room_id: "", create: false, seat: room.seat, options: null });
  }

  _forgetRoom(room) {
    this.rooms.delete(room);
    if (this._byHandle.get(room.handle) === room) this._byHandle.delete(room.handle);
  }

  /** Joinable rooms: [{room_id, type, players, max_players, locked, private, metadata}]. */
  listRooms(type = "", filters = null, { timeout } = {}) {
    return this._request(
      (cid) => ({ $type: "ListRooms", cid, room_type: type, filters: this.codebook.payload(filters) }),
      timeout,
      "ListRooms",
      (msg) => this.codebook.payloadValue(msg.data, this._ctx),
    );
  }

  /** Present a token on the open connection; kept for the next handshakes if accepted. */
  async authenticate(token, { timeout } = {}) {
    await this._request((cid) => ({ $type: "Authenticate", cid, token }), timeout, "Authenticate");
    this.#setToken(token);
  }

  /** Drop the token, here and on the server. */
  deauthenticate() {
    if (this.connected) this._queue({ $type: "Deauthenticate" });
    this.#setToken(null);
  }

  /** A value as a payload (to send the same bytes several times). */
  payload(value) {
    return this.codebook.payload(value);
  }

  /** Test seam: write one frame of arbitrary bytes (malformed-input tests). */
  sendRaw(bytes) {
    if (this._ws === null || this.state !== "open") throw new ConnectionClosed(this.closeCode, "not connected");
    this.#send(this._ws, bytes);
  }

  toString() {
    return `Client(${this.url}, ${this.state})`;
  }
}
