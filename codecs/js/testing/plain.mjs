// The plain JSON form of decoded values, shared with the Python tests (tests/codec_values.py):
// tables are objects with "$type", structs are objects, arrays of structs are arrays of
// objects, vectors are arrays, bytes are arrays of numbers, an absent table, union or
// payload is null, a payload is {"$payload": typeId, "body": hex}, an integer beyond 2**53
// is {"$int": "digits"}, and a float that JSON cannot hold is {"$float": "nan"|"inf"|"-inf"|"-0"}.

import { Payload } from "../packed.js";

const SAFE = BigInt(Number.MAX_SAFE_INTEGER);

export function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function unhex(text) {
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function isTypedArray(v) {
  return ArrayBuffer.isView(v) && !(v instanceof DataView);
}

function isColumn(v) {
  return isTypedArray(v) || Array.isArray(v);
}

/** A struct of arrays (every leaf an array) as an array of row objects. */
function rows(soa) {
  const length = (o) => {
    for (const k in o) return isColumn(o[k]) ? o[k].length : length(o[k]);
    return 0;
  };
  const row = (o, i) => {
    const out = {};
    for (const k in o) out[k] = isColumn(o[k]) ? toPlain(o[k][i]) : row(o[k], i);
    return out;
  };
  const n = length(soa);
  return Array.from({ length: n }, (_, i) => row(soa, i));
}

function isSoa(v) {
  for (const k in v) {
    const x = v[k];
    if (isColumn(x)) return true;
    if (x !== null && typeof x === "object" && !(x instanceof Payload) && !("$type" in x)) return isSoa(x);
    return false;
  }
  return false;
}

export function toPlain(v) {
  if (v === null || v === undefined) return null;
  if (typeof v === "bigint") {
    return v >= -SAFE && v <= SAFE ? Number(v) : { $int: v.toString() };
  }
  if (typeof v === "number") {
    if (Number.isNaN(v)) return { $float: "nan" };
    if (v === Infinity) return { $float: "inf" };
    if (v === -Infinity) return { $float: "-inf" };
    if (Object.is(v, -0)) return { $float: "-0" }; // JSON.stringify(-0) writes 0
    return v;
  }
  if (typeof v === "boolean" || typeof v === "string") return v;
  if (v instanceof Payload) return v.typeId === 0 ? null : { $payload: v.typeId, body: hex(v.body) };
  if (isTypedArray(v) || Array.isArray(v)) return Array.from(v, toPlain);
  if (typeof v === "object") {
    if (!("$type" in v) && isSoa(v)) return rows(v);
    const out = {};
    for (const k in v) out[k] = toPlain(v[k]);
    return out;
  }
  throw new Error(`no plain form for ${typeof v}`);
}

/** Plain values back to what the encoders take (arrays of structs stay arrays of objects). */
export function fromPlain(v) {
  if (v === null || typeof v !== "object") return v;
  if (Array.isArray(v)) return v.map(fromPlain);
  if ("$int" in v) return BigInt(v.$int);
  if ("$float" in v) return { nan: NaN, inf: Infinity, "-inf": -Infinity, "-0": -0 }[v.$float];
  if ("$payload" in v) return new Payload(v.$payload, unhex(v.body));
  const out = {};
  for (const k in v) out[k] = fromPlain(v[k]);
  return out;
}
