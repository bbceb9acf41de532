// The scenery (web/terrain.js): the same for everyone, away from the plaza and the ponds.

import assert from "node:assert/strict";
import { test } from "node:test";

import { PLAZA, PONDS, TILE, WORLD_SIZE, hash, inPond, lushness, onPlaza, tileDecor, valueNoise } from "../web/terrain.js";

test("a tile's decorations depend on the tile alone", () => {
  assert.deepEqual(tileDecor(7, 11), tileDecor(7, 11));
  assert.notDeepEqual(tileDecor(7, 11), tileDecor(11, 7));
  assert.notEqual(hash(1, 2), hash(2, 1));
  for (const d of tileDecor(3, 4)) {
    assert.ok(d.x >= 3 * TILE - 20 && d.x <= 4 * TILE + 20, `${d.type} at x ${d.x}`);
    assert.ok(d.y >= 4 * TILE - 20 && d.y <= 5 * TILE + 20, `${d.type} at y ${d.y}`);
  }
});

test("nothing grows on the plaza or in a pond", () => {
  const t = Math.floor(PLAZA.x / TILE);
  for (let tx = t - 2; tx <= t + 2; tx++) {
    for (let ty = t - 2; ty <= t + 2; ty++) {
      for (const d of tileDecor(tx, ty)) assert.ok(!onPlaza(d.x, d.y), `${d.type} on the plaza`);
    }
  }
  const p = PONDS[0];
  assert.equal(inPond(p.x, p.y), true);
  const tx = Math.floor(p.x / TILE);
  const ty = Math.floor(p.y / TILE);
  for (const d of tileDecor(tx, ty)) assert.equal(inPond(d.x, d.y), false);
});

test("ponds are in the world and clear of the plaza", () => {
  assert.equal(PONDS.length, 16);
  for (const p of PONDS) {
    assert.ok(p.x > 0 && p.x < WORLD_SIZE && p.y > 0 && p.y < WORLD_SIZE);
    assert.equal(onPlaza(p.x, p.y, 200), false);
  }
});

test("the ground's noise is smooth and in [0, 1)", () => {
  let max = 0;
  for (let x = 0; x < 2000; x += 7) {
    const a = lushness(x, 900);
    const b = lushness(x + 1, 900);
    assert.ok(a >= 0 && a < 1);
    max = Math.max(max, Math.abs(a - b));
  }
  assert.ok(max < 0.02, `a step of one unit changes the ground by ${max}`);
  assert.equal(valueNoise(0, 0, 100), valueNoise(0, 0, 100));
});
