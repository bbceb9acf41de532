// The runtime's primitives: varints, zigzag, strings, quantisation, the SHA-256 behind the
// schema hash, payloads and the codebook's error handling.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { test } from "node:test";

import {
  Codebook,
  DecodeError,
  EncodeError,
  Payload,
  Quant,
  Reader,
  Writer,
  combineHashes,
  roundHalfEven,
  sha256Hex,
} from "../packed.js";
import * as protocol from "../generated/protocol.js";
import * as everything from "../../../tests/golden/everything.js";
import { hex, unhex } from "../testing/plain.mjs";

const cb = new Codebook(protocol, everything);
const reader = (h, opts) => new Reader(unhex(h), cb.context(opts));

test("varints: edges encode as LEB128 and read back", () => {
  const cases = [
    [0, "00"],
    [127, "7f"],
    [128, "8001"],
    [16383, "ff7f"],
    [16384, "808001"],
    [4294967295, "ffffffff0f"],
    [Number.MAX_SAFE_INTEGER, "ffffffffffffff0f"],
  ];
  for (const [v, h] of cases) {
    const w = new Writer(1);
    w.varint(v);
    assert.equal(hex(w.finish()), h);
    assert.equal(reader(h).varint(), v);
  }
  const w = new Writer();
  w.varint64((1n << 64n) - 1n);
  assert.equal(hex(w.finish()), "ffffffffffffffffff01");
  assert.equal(reader("ffffffffffffffffff01").varint64(), (1n << 64n) - 1n);
  // non-minimal encodings are read, as in Python
  assert.equal(reader("8000").varint(), 0);
});

test("varints: too long, over 64 bits, truncated", () => {
  assert.throws(() => reader("ffffffffffffffffff02").varint(), DecodeError);
  assert.throws(() => reader("8080808080808080808000").varint(), DecodeError);
  assert.throws(() => reader("80").varint(), DecodeError);
  assert.throws(() => reader("").uint(10, "x"), DecodeError);
});

test("zigzag: signed fields", () => {
  for (const [v, h] of [
    [0, "00"],
    [-1, "01"],
    [1, "02"],
    [-64, "7f"],
    [63, "7e"],
    [-2147483648, "ffffffff0f"],
    [2147483647, "feffffff0f"],
  ]) {
    const w = new Writer();
    w.sint(v, -2147483648, 2147483647, "x");
    assert.equal(hex(w.finish()), h);
    assert.equal(reader(h).sint(-2147483648, 2147483647, "x"), v);
  }
  const w = new Writer();
  w.sint64(-(1n << 63n), "x");
  assert.equal(hex(w.finish()), "ffffffffffffffffff01");
  assert.equal(reader("ffffffffffffffffff01").sint64(), -(1n << 63n));
  assert.equal(reader("feffffffffffffffff01").sint64(), (1n << 63n) - 1n);
});

test("integers out of range or of the wrong type are EncodeErrors", () => {
  const w = new Writer();
  assert.throws(() => w.uint(-1, 255, "f"), EncodeError);
  assert.throws(() => w.uint(1.5, 255, "f"), EncodeError);
  assert.throws(() => w.uint("1", 255, "f"), EncodeError);
  assert.throws(() => w.uint(256, 255, "f"), EncodeError);
  assert.throws(() => w.byte(128, -128, 127, "f"), EncodeError);
  assert.throws(() => w.uint64(2 ** 60, "f"), EncodeError); // not a safe integer: give a bigint
  assert.throws(() => w.uint64(-1n, "f"), EncodeError);
  assert.throws(() => w.f32("x", "f"), EncodeError);
  assert.throws(() => w.f32(1e39, "f"), EncodeError);
  w.f32(Infinity, "f"); // infinities are floats like any other
  assert.equal(w.pos, 4);
});

test("strings: ASCII and UTF-8, limits checked before reading, BOM kept", () => {
  for (const s of ["", "abc", "é", "🎮", "\ufeffbom", "x".repeat(200)]) {
    const w = new Writer(2);
    w.string(s, "s");
    const r = new Reader(w.finish(), cb.context());
    assert.equal(r.string(4096), s);
    assert.equal(r.pos, r.end);
  }
  assert.throws(() => reader("05616263").string(4096), DecodeError); // truncated
  assert.throws(() => reader("0561626364ff").string(3), /over the limit/);
  assert.throws(() => reader("02c328").string(10), /UTF-8/);
  assert.throws(() => new Writer().string("\ud800", "s"), EncodeError);
  assert.throws(() => new Writer().string(5, "s"), EncodeError);
  // a huge declared length is refused before anything is allocated
  assert.throws(() => reader("ffffffff0f").string(2 ** 40), /truncated/);
});

test("quantisation: clamps, rounds half to even, stays within its bits", () => {
  const q = new Quant(0, 16, 7, 0.25);
  assert.equal(q.quantise(0.125, "q"), 0); // 0.5 -> 0
  assert.equal(q.quantise(0.375, "q"), 2); // 1.5 -> 2
  assert.equal(q.quantise(0.625, "q"), 2); // 2.5 -> 2
  assert.equal(q.quantise(-5, "q"), 0);
  assert.equal(q.quantise(99, "q"), 64);
  assert.equal(q.quantise(Infinity, "q"), 64);
  assert.throws(() => q.quantise(NaN, "q"), EncodeError);
  assert.throws(() => q.quantise("1", "q"), EncodeError);
  assert.equal(roundHalfEven(3.5), 4);
  assert.equal(roundHalfEven(4.5), 4);
  assert.equal(roundHalfEven(4.4999), 4);
});

test("sha256 agrees with node:crypto; the combined hash is the schemas' in id order", () => {
  for (const text of ["", "abc", "a".repeat(55), "a".repeat(56), "a".repeat(64), "é".repeat(1000)]) {
    assert.equal(sha256Hex(text), createHash("sha256").update(text, "utf8").digest("hex"));
  }
  const expected = createHash("sha256").update(`${protocol.SCHEMA_HASH},${everything.SCHEMA_HASH}`).digest("hex");
  assert.equal(cb.hash, expected.slice(0, 16));
  assert.equal(new Codebook(everything, protocol).hash, cb.hash);
  assert.equal(combineHashes([protocol.SCHEMA_HASH]), new Codebook(protocol).hash);
});

test("payloads: values, JSON, bytes and messages", () => {
  const p = cb.payload({ a: [1, "x"] });
  assert.equal(p.typeId, 2);
  assert.deepEqual(cb.payloadValue(p), { a: [1, "x"] });
  const b = cb.payload(new Uint8Array([1, 2, 3]));
  assert.equal(b.typeId, 3);
  assert.deepEqual(cb.payloadValue(b), new Uint8Array([1, 2, 3]));
  const t = cb.payload({ $type: "Tag", label: "x", team: 2 });
  assert.equal(t.typeId, 99);
  assert.deepEqual(cb.payloadValue(t), { $type: "Tag", label: "x", team: 2 });
  assert.equal(cb.payload(null), null);
  assert.equal(cb.payloadValue(null), null);
  assert.throws(() => cb.payloadValue(new Payload(2, unhex("027b"))), DecodeError); // bad JSON
  assert.throws(() => cb.payloadValue(new Payload(99, unhex("007801"))), /trailing/);
  assert.throws(() => cb.payloadValue(new Payload(63, unhex(""))), DecodeError);
  assert.throws(() => cb.payload(() => 1), EncodeError);
});

test("channel payloads carry the decoded message", () => {
  const ctx = cb.context({ channelTypes: new Map([[5, 99]]) });
  const frame = cb.encode({ $type: "Message", channel: 5, payload: cb.payload({ $type: "Tag", label: "a", team: 1 }) });
  const [msg] = cb.decodeFrame(frame, ctx);
  assert.deepEqual(msg.payload.message, { $type: "Tag", label: "a", team: 1 });
  assert.deepEqual(cb.payloadValue(msg.payload), { $type: "Tag", label: "a", team: 1 });
  assert.throws(() => cb.encode({ $type: "Message", channel: 5 }), EncodeError);
});

test("encodeInto leaves the writer as it was when a message cannot be encoded", () => {
  const w = new Writer();
  cb.encodeInto(w, { $type: "Ping" });
  assert.throws(() => cb.encodeInto(w, { $type: "Error", cid: 1, code: -1 }), EncodeError);
  assert.throws(() => cb.encodeInto(w, { $type: "Subscribe", channels: "lobby" }), EncodeError);
  assert.throws(() => cb.encodeInto(w, { $type: "Composite", at: null }), EncodeError);
  assert.throws(() => cb.encodeInto(w, { $type: "Nope" }), EncodeError);
  assert.throws(() => cb.encodeInto(w, null), EncodeError);
  assert.equal(hex(w.finish()), "05");
});

test("decodeFrame: empty frames, unknown types, and plain ArrayBuffers", () => {
  const ctx = cb.context();
  assert.throws(() => cb.decodeFrame(new Uint8Array(0), ctx), DecodeError);
  assert.throws(() => cb.decodeFrame(unhex("3f"), ctx), (e) => e.name === "UnknownType" && e.typeId === 63);
  assert.deepEqual(cb.decodeFrame(unhex("0506").buffer, ctx), [{ $type: "Ping" }, { $type: "Pong" }]);
  assert.deepEqual(cb.decodeOne(unhex("05"), ctx), { $type: "Ping" });
  assert.throws(() => cb.decodeOne(unhex("0505"), ctx), DecodeError);
});

test("a codebook refuses two schemas that share a message id", () => {
  assert.throws(() => new Codebook(protocol, protocol), /message id 1/);
});
