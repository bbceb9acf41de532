// The sample game's controls (web/controls.js): keys, clicks and heartbeats to Move inputs.

import assert from "node:assert/strict";
import { test } from "node:test";

import { Controls, isMoveKey, keyVector } from "../web/controls.js";

test("keys held make a direction; opposite keys cancel", () => {
  assert.deepEqual(keyVector(new Set(["KeyD"])), { dx: 100, dy: 0 });
  assert.deepEqual(keyVector(new Set(["ArrowUp", "KeyA"])), { dx: -100, dy: -100 });
  assert.deepEqual(keyVector(new Set(["KeyA", "KeyD", "KeyS"])), { dx: 0, dy: 100 });
  assert.deepEqual(keyVector(new Set(["ArrowRight", "KeyD"])), { dx: 100, dy: 0 }); // same way twice: still 100
  assert.deepEqual(keyVector(new Set(["Space"])), { dx: 0, dy: 0 });
  assert.equal(isMoveKey("KeyW"), true);
  assert.equal(isMoveKey("Enter"), false);
});

test("a change is sent at once; a held direction is repeated every heartbeat", () => {
  const c = new Controls({ heartbeat: 200, idleHeartbeat: 1000 });
  assert.deepEqual(c.next(0), { $type: "Move", dx: 0, dy: 0, to: false, tx: 0, ty: 0 }); // the first says "standing"
  assert.equal(c.next(10), null);
  assert.equal(c.press("KeyD"), true);
  assert.equal(c.press("Tab"), false);
  assert.equal(c.next(20).dx, 100);
  assert.equal(c.next(100), null);
  assert.equal(c.next(219), null);
  assert.equal(c.next(220).dx, 100); // heartbeat: the room's intent timeout is not reached
  c.release("KeyD");
  assert.deepEqual(c.next(230), { $type: "Move", dx: 0, dy: 0, to: false, tx: 0, ty: 0 });
  assert.equal(c.next(900), null); // standing: only the slow heartbeat (round-trip time)
  assert.notEqual(c.next(1230), null);
});

test("a click walks to the point until keys take over", () => {
  const c = new Controls({ worldSize: 4000 });
  c.press("KeyW");
  c.walkTo(120.5, 4200);
  assert.deepEqual(c.target, { x: 120.5, y: 4000 }); // clamped to the world
  assert.deepEqual(c.next(0), { $type: "Move", dx: 0, dy: 0, to: true, tx: 120.5, ty: 4000 });
  assert.equal(c.next(500), null); // a target needs no quick heartbeat: the room holds it
  c.walkTo(120.55, 4000); // below the wire's precision (1/8): nothing new to say
  assert.equal(c.next(501), null);
  c.press("KeyA");
  assert.equal(c.target, null);
  const m = c.next(502);
  assert.equal(m.to, false);
  assert.equal(m.dx, -100);
});

test("losing focus lets go of every key", () => {
  const c = new Controls();
  c.press("KeyW");
  c.press("KeyD");
  c.next(0);
  c.releaseAll();
  const m = c.next(1);
  assert.equal(m.dx, 0);
  assert.equal(m.dy, 0);
});
