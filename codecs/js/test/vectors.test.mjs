// The golden vectors (codecs/vectors/*.json) in JavaScript: every frame decodes to its
// messages and its messages encode to its bytes; every invalid frame, every truncation
// of a valid one and random bytes are refused with a DecodeError and nothing else.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { Codebook, DecodeError } from "../packed.js";
import * as protocol from "../generated/protocol.js";
import * as everything from "../../../tests/golden/everything.js";
import { fromPlain, hex, toPlain, unhex } from "../testing/plain.mjs";

const MODULES = { protocol, everything };
const FILES = ["protocol.json", "everything.json"];

function load(file) {
  const spec = JSON.parse(readFileSync(new URL(`../../vectors/${file}`, import.meta.url), "utf8"));
  const cb = new Codebook(...spec.schemas.map((n) => MODULES[n]));
  const channelTypes = new Map(Object.entries(spec.context.channel_types).map(([k, v]) => [Number(k), v]));
  return { spec, cb, ctx: cb.context({ channelTypes }) };
}

for (const file of FILES) {
  const { spec, cb, ctx } = load(file);

  test(`${file}: the codebook hash`, () => {
    assert.equal(cb.hash, spec.codebook_hash);
  });

  for (const frame of spec.frames) {
    test(`${file}: ${frame.name}`, () => {
      const decoded = cb.decodeFrame(unhex(frame.hex), ctx);
      assert.deepEqual(toPlain(decoded), frame.messages);
      assert.equal(hex(cb.encodeFrame(frame.messages.map(fromPlain))), frame.hex);
      // and what was decoded encodes to the same bytes
      assert.equal(hex(cb.encodeFrame(decoded)), frame.hex);
    });
  }

  for (const bad of spec.invalid) {
    test(`${file}: invalid: ${bad.name}`, () => {
      assert.throws(
        () => cb.decodeFrame(unhex(bad.hex), ctx),
        (err) => err instanceof DecodeError && err.name === bad.error,
      );
    });
  }

  test(`${file}: every truncation of a one-message frame is a DecodeError`, () => {
    for (const frame of spec.frames.filter((f) => f.messages.length === 1)) {
      const bytes = unhex(frame.hex);
      for (let n = 0; n < bytes.length; n++) {
        assert.throws(
          () => cb.decodeFrame(bytes.subarray(0, n), ctx),
          (err) => err instanceof DecodeError,
          `${frame.name} cut to ${n} bytes`,
        );
      }
    }
  });

  test(`${file}: random and mutated bytes give DecodeError or messages, nothing else`, () => {
    let seed = 0x2545f491;
    const random = () => {
      // xorshift32: reproducible without a dependency
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) / 4294967296;
    };
    const valid = spec.frames.map((f) => unhex(f.hex));
    const started = Date.now();
    for (let i = 0; i < 20000; i++) {
      let bytes;
      if (i % 2 === 0) {
        bytes = new Uint8Array(Math.floor(random() * 48));
        for (let j = 0; j < bytes.length; j++) bytes[j] = Math.floor(random() * 256);
      } else {
        bytes = valid[i % valid.length].slice();
        const flips = 1 + Math.floor(random() * 3);
        for (let j = 0; j < flips && bytes.length; j++) bytes[Math.floor(random() * bytes.length)] = Math.floor(random() * 256);
      }
      try {
        const msgs = cb.decodeFrame(bytes, ctx);
        assert.ok(Array.isArray(msgs) && msgs.length > 0);
      } catch (err) {
        if (!(err instanceof DecodeError) || err.message.startsWith("malformed frame (")) {
          assert.fail(`${hex(bytes)}: ${err.name}: ${err.message}`);
        }
      }
    }
    assert.ok(Date.now() - started < 20000, "decoding random bytes is slow");
  });
}
