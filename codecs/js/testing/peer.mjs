// The JavaScript side of the cross-language tests (tests/test_vectors.py): reads one JSON
// request per line on stdin and answers one JSON line on stdout, so that Hypothesis can
// drive thousands of examples through one node process.
//
//   {"op": "decode", "schemas": [...], "hex": "...", "context": {...}}
//       -> {"ok": true, "messages": [plain...], "hex": "<messages encoded again>"}
//   {"op": "encode", "schemas": [...], "messages": [plain...]}
//       -> {"ok": true, "hex": "..."}
//   {"op": "hash", "schemas": [...]} -> {"ok": true, "hash": "..."}
// Errors answer {"ok": false, "error": "<class name>", "message": "..."}.
//
// Schema modules are loaded by name from the paths given on the command line:
//   node peer.mjs protocol=codecs/js/generated/protocol.js everything=tests/golden/everything.js

import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";
import { resolve } from "node:path";

import { Codebook } from "../packed.js";
import { fromPlain, hex, toPlain, unhex } from "./plain.mjs";

const modules = {};
for (const arg of process.argv.slice(2)) {
  const [name, path] = arg.split("=");
  modules[name] = await import(pathToFileURL(resolve(path)).href);
}

const codebooks = new Map();
function codebook(names) {
  const key = names.join(",");
  if (!codebooks.has(key)) codebooks.set(key, new Codebook(...names.map((n) => modules[n])));
  return codebooks.get(key);
}

function context(cb, spec = {}) {
  const channelTypes = new Map(Object.entries(spec.channel_types ?? {}).map(([k, v]) => [Number(k), v]));
  return cb.context({
    maxString: spec.max_string ?? 4096,
    maxVector: spec.max_vector ?? 65536,
    maxDepth: spec.max_depth ?? 32,
    channelTypes,
  });
}

function answer(req) {
  const cb = codebook(req.schemas);
  switch (req.op) {
    case "decode": {
      const msgs = cb.decodeFrame(unhex(req.hex), context(cb, req.context));
      return { ok: true, messages: msgs.map(toPlain), hex: hex(cb.encodeFrame(msgs)) };
    }
    case "encode":
      return { ok: true, hex: hex(cb.encodeFrame(req.messages.map(fromPlain))) };
    case "hash":
      return { ok: true, hash: cb.hash };
    default:
      throw new Error(`unknown op ${req.op}`);
  }
}

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  let out;
  try {
    out = answer(JSON.parse(line));
  } catch (err) {
    out = { ok: false, error: err.name, message: err.message };
  }
  process.stdout.write(JSON.stringify(out) + "\n");
}
