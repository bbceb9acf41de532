// Generated code: defaults, structs (byte-aligned, nested, bit-packed) as single values
// and as struct-of-arrays, unions, nesting limits.

import assert from "node:assert/strict";
import { test } from "node:test";

import { Codebook, DecodeError, EncodeError, Reader, Writer } from "../packed.js";
import * as protocol from "../generated/protocol.js";
import * as E from "../../../tests/golden/everything.js";
import { hex, unhex } from "../testing/plain.mjs";

const cb = new Codebook(protocol, E);
const ctx = cb.context();
const roundTrip = (msg) => cb.decodeOne(cb.encode(msg), ctx);

test("module API", () => {
  assert.equal(E.SCHEMA_NAME, "everything");
  assert.match(E.SCHEMA_HASH, /^[0-9a-f]{16}$/);
  assert.deepEqual(
    E.MESSAGES.map((m) => [m.id, m.name]),
    [[64, "Numbers"], [65, "Vectors"], [66, "Composite"], [67, "Reordered"], [68, "Carry"], [69, "Delivery"], [70, "Empty"], [99, "Tag"], [300, "Far"]],
  );
  assert.equal(E.Mood.Happy, 3);
  assert.equal(E.Status.Hidden, 512);
  assert.equal(E.Wide.Huge, 18446744073709551615n);
  assert.equal(E.Team.None, 0);
  assert.equal(E.TYPES.Packed.size, 5);
  assert.equal(E.TYPES.Leaf.id, null);
  assert.ok(Object.isFrozen(E.Mood));
});

test("missing fields take the schema's defaults", () => {
  const n = roundTrip({ $type: "Numbers" });
  assert.equal(n.b, true);
  assert.equal(n.i8, -1);
  assert.equal(n.i32, -100000);
  assert.equal(n.f32, 0.5);
  assert.equal(n.mood, E.Mood.Happy);
  assert.equal(n.status, E.Status.Firing);
  assert.equal(n.wide, E.Wide.Huge);
  assert.equal(n.i64, 0n);
  const v = roundTrip({ $type: "Vectors" });
  assert.deepEqual(v.bools, []);
  assert.ok(v.i16s instanceof Int16Array && v.i64s instanceof BigInt64Array && v.qs instanceof Float32Array);
  assert.ok(v.u8s instanceof Uint8Array && v.u8s.length === 0);
});

test("struct arrays decode as one typed array per field, nested structs nested", () => {
  const v = roundTrip({
    $type: "Vectors",
    placed: [
      { pos: { x: 1.5, y: 2 }, team: 1, heading: 0 },
      { pos: { x: -1, y: 0.25 }, team: 2, heading: 3.15 },
    ],
    scalars: [{ b: true, i8: -1, u8: 2, i16: -3, u16: 4, i32: -5, u32: 6, i64: -7n, u64: 8, f32: 0.5, f64: 1e300 }],
  });
  assert.ok(v.placed.pos.x instanceof Float32Array);
  assert.deepEqual(Array.from(v.placed.pos.x), [1.5, -1]);
  assert.deepEqual(Array.from(v.placed.team), [1, 2]);
  assert.ok(Math.abs(v.placed.heading[1] - 3.15) < 1e-4);
  assert.deepEqual(v.scalars.b, [true]);
  assert.ok(v.scalars.i64 instanceof BigInt64Array && v.scalars.i64[0] === -7n);
  assert.ok(v.scalars.u64 instanceof BigUint64Array && v.scalars.u64[0] === 8n);
  assert.equal(v.scalars.f64[0], 1e300);
});

test("struct arrays encode the same from arrays of objects and from arrays per field", () => {
  const rows = [
    { id: 4095, x: 64, y: 0, neg: -4, on: true, mood: -2 },
    { id: 1, x: 31.9, y: 12.34, neg: 3, on: false, mood: 1 },
  ];
  const columns = {
    id: new Uint16Array([4095, 1]),
    x: new Float32Array([64, 31.9]),
    y: [0, 12.34],
    neg: new Int8Array([-4, 3]),
    on: [true, false],
    mood: new Int16Array([-2, 1]),
  };
  const a = cb.encode({ $type: "Vectors", packed: rows });
  const b = cb.encode({ $type: "Vectors", packed: columns });
  // Float32Array holds 31.9 as float32; quantised to 11 bits both give the same q.
  assert.equal(hex(a), hex(b));
  const back = cb.decodeOne(a, ctx).packed;
  assert.deepEqual(Array.from(back.id), [4095, 1]);
  assert.deepEqual(Array.from(back.neg), [-4, 3]);
  assert.deepEqual(back.on, [true, false]);
  assert.deepEqual(Array.from(back.mood), [-2, 1]);
  assert.equal(back.x[0], 64);
  assert.throws(() => cb.encode({ $type: "Vectors", packed: { ...columns, y: [1] } }), /expected 2 values/);
});

test("bit-packed fields: ranges, signs and the 32-bit boundary", () => {
  const edges = [
    { a: 0, b: 0, c: 0 },
    { a: 2 ** 30 - 1, b: -(2 ** 19), c: 2 ** 14 - 1 },
    { a: 1, b: 2 ** 19 - 1, c: 1 },
    { a: 2 ** 29, b: -1, c: 2 ** 13 },
  ];
  const v = roundTrip({ $type: "Vectors", straddles: edges });
  assert.deepEqual(Array.from(v.straddles.a), edges.map((e) => e.a));
  assert.deepEqual(Array.from(v.straddles.b), edges.map((e) => BigInt(e.b)));
  assert.deepEqual(Array.from(v.straddles.c), edges.map((e) => BigInt(e.c)));
  assert.throws(() => cb.encode({ $type: "Vectors", straddles: [{ a: 2 ** 30, b: 0, c: 0 }] }), EncodeError);
  assert.throws(() => cb.encode({ $type: "Vectors", straddles: [{ a: 0, b: 2 ** 19, c: 0 }] }), EncodeError);
  assert.throws(() => cb.encode({ $type: "Vectors", packed: [{ id: 4096, x: 0, y: 0, neg: 0, on: 0, mood: 0 }] }), EncodeError);
  assert.throws(() => cb.encode({ $type: "Vectors", packed: [{ id: 0, x: 0, y: 0, neg: -5, on: 0, mood: 0 }] }), EncodeError);
});

test("one struct in a table is a plain object; float32 fields are float32 values", () => {
  const c = roundTrip({
    $type: "Composite",
    at: { pos: { x: 0.1, y: 2 }, team: 1, heading: 1 },
    one: { id: 7, x: 1, y: 2, neg: -1, on: true, mood: 0 },
    scalars: { b: false, i8: 0, u8: 0, i16: 0, u16: 0, i32: 0, u32: 0, i64: 0, u64: 0, f32: 0.1, f64: 0.1 },
  });
  assert.equal(c.at.pos.x, Math.fround(0.1));
  assert.equal(c.scalars.f32, Math.fround(0.1));
  assert.equal(c.scalars.f64, 0.1);
  assert.equal(c.one.on, true);
  assert.equal(c.one.heading, undefined);
  assert.equal(c.leaf, null);
  assert.equal(c.shape, null);
  assert.throws(() => cb.encode({ $type: "Composite", one: c.one, scalars: c.scalars }), /Placed is required/);
});

test("unions: each member, null, and a $type that is not a member", () => {
  for (const shape of [{ $type: "Circle", radius: 2 }, { $type: "Leaf", name: "n", value: 1 }, null]) {
    assert.deepEqual(roundTrip({ $type: "Reordered", shape }).shape, shape);
  }
  assert.throws(() => cb.encode({ $type: "Reordered", shape: { $type: "Tag" } }), /not a member of Shape/);
});

test("field ids order the wire, not the declaration", () => {
  // Reordered: a (id 0), shape (ids 1-2), c (id 3), d (id 4)
  assert.equal(hex(cb.encode({ $type: "Reordered", a: 5, c: "z", d: true })), "4305" + "00" + "017a" + "01");
});

test("recursive tables nest up to maxDepth", () => {
  let tree = null;
  for (let i = 0; i < 40; i++) tree = { $type: "Node", label: "", children: [], next: tree };
  const bytes = cb.encode({ $type: "Composite", tree, at: { pos: { x: 0, y: 0 }, team: 0, heading: 0 }, one: { id: 0, x: 0, y: 0, neg: 0, on: false, mood: 0 }, scalars: { b: false, i8: 0, u8: 0, i16: 0, u16: 0, i32: 0, u32: 0, i64: 0, u64: 0, f32: 0, f64: 0 } });
  assert.throws(() => cb.decodeFrame(bytes, ctx), /nested more than maxDepth/);
  assert.equal(cb.decodeFrame(bytes, cb.context({ maxDepth: 40 })).length, 1);
});

test("limits from the context and from maxlen", () => {
  const bytes = cb.encode({ $type: "Vectors", u32s: [1, 2, 3], strings: ["aaaa"] });
  assert.throws(() => cb.decodeFrame(bytes, cb.context({ maxString: 3 })), /over the limit of 3/);
  // u32s has maxlen 100, which stands instead of maxVector
  assert.equal(cb.decodeFrame(bytes, cb.context({ maxVector: 0 })).length, 1);
  const wide = cb.encode({ $type: "Vectors", i16s: [1] });
  assert.throws(() => cb.decodeFrame(wide, cb.context({ maxVector: 0 })), /over the limit of 0/);
  assert.throws(() => cb.encode({ $type: "Vectors", u32s: [-1] }), EncodeError);
});

test("a two-byte message id", () => {
  const bytes = cb.encode({ $type: "Far", note: "" });
  assert.equal(hex(bytes), "ac0200");
  assert.deepEqual(cb.decodeOne(bytes, ctx), { $type: "Far", note: "" });
});

test("generated functions can be called with a Reader and Writer directly", () => {
  const w = new Writer();
  E.TYPES.Leaf.encode(w, { name: "x", value: 5 });
  const r = new Reader(w.finish(), ctx);
  assert.deepEqual(E.TYPES.Leaf.decode(r), { $type: "Leaf", name: "x", value: 5 });
  const w2 = new Writer();
  E.TYPES.Vec2.encodeOne(w2, { x: 1, y: 2 }, "v");
  assert.deepEqual(E.TYPES.Vec2.decodeOne(new Reader(w2.finish(), ctx)), { x: 1, y: 2 });
  assert.throws(() => E.TYPES.Vec2.decodeOne(new Reader(unhex("0000"), ctx)), DecodeError);
});
