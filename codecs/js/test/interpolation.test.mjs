// The snapshot interpolation buffer, on its own: pure, no clock, no server.

import assert from "node:assert/strict";
import { test } from "node:test";

import { SnapshotBuffer } from "../interpolation.js";

const close = (a, b, eps = 1e-9) => assert.ok(Math.abs(a - b) <= eps, `${a} is not ${b}`);

test("numeric fields interpolate linearly; other fields step", () => {
  const buf = new SnapshotBuffer();
  assert.deepEqual(buf.at(0), new Map());
  buf.push(1000, new Map([[1, { x: 0, y: 10, name: "a", alive: true, big: 1n }]]));
  buf.push(1100, new Map([[1, { x: 10, y: 20, name: "b", alive: false, big: 2n }]]));
  assert.deepEqual(buf.at(1025).get(1), { x: 2.5, y: 12.5, name: "a", alive: true, big: 1n });
  assert.deepEqual(buf.at(1050).get(1), { x: 5, y: 15, name: "a", alive: true, big: 1n });
  assert.deepEqual(buf.at(1100).get(1), { x: 10, y: 20, name: "b", alive: false, big: 2n });
});

test("render draws `delay` behind the time it is given", () => {
  const buf = new SnapshotBuffer({ delay: 100 });
  buf.push(0, { 7: { x: 0 } });
  buf.push(50, { 7: { x: 5 } });
  buf.push(100, { 7: { x: 10 } });
  close(buf.render(130).get(7).x, 3);
  close(buf.render(175).get(7).x, 7.5);
});

test("before the oldest snapshot: the oldest; after the newest: held, or extrapolated within a bound", () => {
  const buf = new SnapshotBuffer({ maxExtrapolation: 50 });
  buf.push(100, { 1: { x: 0 } });
  buf.push(200, { 1: { x: 10 } });
  assert.equal(buf.at(50).get(1).x, 0);
  assert.equal(buf.early, 1);
  close(buf.at(230).get(1).x, 13);
  close(buf.at(1000).get(1).x, 15); // no further than 50 ms past the newest
  assert.equal(buf.starved, 2);
  const held = new SnapshotBuffer();
  held.push(100, { 1: { x: 0 } });
  held.push(200, { 1: { x: 10 } });
  assert.equal(held.at(260).get(1).x, 10);
  assert.equal(held.size, 1); // what the render time passed is gone
});

test("spawns and despawns follow the delayed timeline", () => {
  const buf = new SnapshotBuffer();
  buf.push(0, { 1: { x: 0 }, 3: { x: 30 } }); // 3 despawns before the next snapshot
  buf.push(100, { 1: { x: 10 }, 2: { x: 20 } }); // 2 spawned
  const mid = buf.at(50);
  assert.deepEqual([...mid.keys()].sort(), [1, 3]);
  assert.equal(mid.get(3).x, 30); // held where it was last seen
  assert.deepEqual([...buf.at(100).keys()].sort(), [1, 2]);
});

test("angle fields turn the short way around", () => {
  const buf = new SnapshotBuffer({ angles: ["heading"] });
  buf.push(0, { 1: { heading: 3.0, x: 0 } });
  buf.push(100, { 1: { heading: -3.0, x: 0 } });
  const h = buf.at(50).get(1).heading;
  close(Math.cos(h), Math.cos(Math.PI), 1e-9); // through π, not through 0
  const degrees = new SnapshotBuffer({ angles: { yaw: 360 } });
  degrees.push(0, { 1: { yaw: 350 } });
  degrees.push(100, { 1: { yaw: 10 } });
  close(degrees.at(25).get(1).yaw, 355);
  close(degrees.at(75).get(1).yaw, 365); // 5 degrees, unwrapped: the renderer takes it
});

test("snapshots are copied in and out", () => {
  const buf = new SnapshotBuffer();
  const world = new Map([[1, { x: 1 }]]);
  buf.push(0, world);
  world.get(1).x = 99; // a decoder updating its entities in place
  buf.push(100, world);
  const out = buf.at(0);
  assert.equal(out.get(1).x, 1);
  out.get(1).x = -1;
  assert.equal(buf.at(0).get(1).x, 1);
});

test("entities from a Map, a plain object (numeric keys) or pairs", () => {
  for (const entities of [new Map([[4, { x: 1 }]]), { 4: { x: 1 } }, [[4, { x: 1 }]]]) {
    const buf = new SnapshotBuffer();
    buf.push(0, entities);
    assert.deepEqual([...buf.at(0)], [[4, { x: 1 }]]);
  }
});

test("the same time replaces; an earlier time starts over (the room's clock restarted)", () => {
  const buf = new SnapshotBuffer();
  buf.push(100, { 1: { x: 1 } });
  buf.push(100, { 1: { x: 2 } });
  assert.equal(buf.size, 1);
  assert.equal(buf.at(100).get(1).x, 2);
  buf.push(200, { 1: { x: 3 } });
  buf.push(20, { 1: { x: 4 } });
  assert.equal(buf.resets, 1);
  assert.equal(buf.size, 1);
  assert.equal(buf.oldest, 20);
  assert.equal(buf.newest, 20);
});

test("bounded: old snapshots are dropped past maxSnapshots and behind the render time", () => {
  const buf = new SnapshotBuffer({ maxSnapshots: 4 });
  for (let t = 0; t < 10; t++) buf.push(t * 50, { 1: { x: t } });
  assert.equal(buf.size, 4);
  assert.equal(buf.oldest, 300);
  close(buf.at(360).get(1).x, 7.2);
  assert.equal(buf.size, 3); // 350 (just before the render time) and what follows
  assert.equal(buf.oldest, 350);
  buf.clear();
  assert.equal(buf.size, 0);
  assert.equal(buf.newest, null);
});

test("bad options and times are refused", () => {
  assert.throws(() => new SnapshotBuffer({ delay: -1 }), RangeError);
  assert.throws(() => new SnapshotBuffer({ maxSnapshots: 1 }), RangeError);
  assert.throws(() => new SnapshotBuffer().push(NaN, {}), RangeError);
});
