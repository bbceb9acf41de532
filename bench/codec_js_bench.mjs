// Times the JavaScript codec on the frames of bench/test_codec_bench.py (which writes the
// frames and the world schema's module, then runs this): decode and re-encode, median of
// rounds. Usage: node bench/codec_js_bench.mjs WORLD_MODULE FRAMES_JSON
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { resolve } from "node:path";

import { Codebook } from "../codecs/js/packed.js";
import * as protocol from "../codecs/js/generated/protocol.js";

const world = await import(pathToFileURL(resolve(process.argv[2])).href);
const frames = JSON.parse(readFileSync(process.argv[3], "utf8"));
const cb = new Codebook(protocol, world);
const ctx = cb.context({ channelTypes: new Map([[1, cb.jsonType], [2, cb.jsonType], [3, cb.jsonType]]) });

function median(fn, ms = 300) {
  for (let i = 0; i < 200; i++) fn(); // warm up: let V8 optimise
  const times = [];
  const end = performance.now() + ms;
  while (performance.now() < end) {
    const t0 = performance.now();
    for (let i = 0; i < 20; i++) fn();
    times.push((performance.now() - t0) / 20);
  }
  times.sort((a, b) => a - b);
  return times[times.length >> 1] * 1000; // us
}

const out = {};
for (const [name, hex] of Object.entries(frames.packed)) {
  const bytes = Uint8Array.from(hex.match(/../g), (h) => parseInt(h, 16));
  const msgs = cb.decodeFrame(bytes, ctx);
  out[name] = {
    decode_us: median(() => cb.decodeFrame(bytes, ctx)),
    encode_us: median(() => cb.encodeFrame(msgs)),
  };
}
for (const [name, text] of Object.entries(frames.json)) {
  const value = JSON.parse(text);
  out[name] = { decode_us: median(() => JSON.parse(text)), encode_us: median(() => JSON.stringify(value)) };
}
process.stdout.write(JSON.stringify(out) + "\n");
