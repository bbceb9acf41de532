// The HUD's rate meter (web/meter.js).

import assert from "node:assert/strict";
import { test } from "node:test";

import { RateMeter, formatBytes } from "../web/meter.js";

test("the rate of a counter over the last window", () => {
  const m = new RateMeter(1000);
  assert.equal(m.rate(), 0);
  m.sample(0, 0);
  assert.equal(m.rate(), 0);
  m.sample(500, 1000);
  assert.equal(m.rate(), 2000);
  for (let t = 750; t <= 5000; t += 250) m.sample(t, 1000 + (t - 500) * 3); // 3000 per second now
  assert.equal(m.rate(), 3000);
  assert.ok(m.samples.length <= 6); // the window's samples, not the whole history
});

test("bytes for people", () => {
  assert.equal(formatBytes(999), "999 B");
  assert.equal(formatBytes(1234), "1.2 kB");
  assert.equal(formatBytes(2_500_000), "2.50 MB");
});
