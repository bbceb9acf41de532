// Tickwire's `packed` wire format v1 (codecs/WIRE.md): the JavaScript runtime.
//
// The schema compiler generates one ES module per schema (`tickwire schema compile
// --lang js`): an encoder and a decoder per table and struct, written in terms of the
// Reader and Writer here. This module mirrors engine/packed.py; the golden vectors in
// codecs/vectors/ pin both to the same bytes. It needs no build step and runs unchanged
// in browsers and in Node.
//
// Values (see README.md beside this file for the whole mapping):
//   table          a plain object {$type: "Name", field: value, ...}
//   struct         a plain object {field: value, ...}
//   [Struct]       a struct of arrays: {field: TypedArray, ...} (nested structs nest;
//                  bool fields are arrays of booleans)
//   [scalar]       a typed array (Int16Array for short, BigInt64Array for long, ...);
//                  bools are arrays of booleans (there is no boolean typed array)
//   long, ulong    bigint; every other integer is a number
//   union          the member's object (its $type says which) or null
//   payload        a Payload {typeId, body} or null
//
// Decoders check every length against the bytes that are left before allocating, and
// throw DecodeError, never anything else, on bad input. Encoders throw EncodeError.

export class DecodeError extends Error {
  constructor(message) {
    super(message);
    this.name = "DecodeError";
  }
}

export class EncodeError extends Error {
  constructor(message) {
    super(message);
    this.name = "EncodeError";
  }
}

// A message type id that this codebook does not know (WIRE.md: close 4101, not 4100).
export class UnknownType extends DecodeError {
  constructor(typeId) {
    super(`unknown message type ${typeId}`);
    this.name = "UnknownType";
    this.typeId = typeId;
  }
}

// Typed arrays use the platform's byte order; the wire is little-endian. Every platform
// that runs a browser today is little-endian, and the big-endian path is kept correct.
const LITTLE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
// ignoreBOM: keep a leading U+FEFF as Python's decoder does, rather than dropping it.
const UTF8_DECODER = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const UTF8_ENCODER = new TextEncoder();
const F32_SCRATCH = new Float32Array(1);
const U32_OF_F32 = new Uint32Array(F32_SCRATCH.buffer);
const F32_MAX = 3.4028234663852886e38;
const TWO32 = 4294967296;
const U64_MAX = (1n << 64n) - 1n;
const I64_MIN = -(1n << 63n);
const I64_MAX = (1n << 63n) - 1n;

/** A float32's bit pattern as an unsigned 32-bit number, and back (bit-packed structs). */
export function f32Bits(v) {
  F32_SCRATCH[0] = v;
  return U32_OF_F32[0];
}
export function f32FromBits(u) {
  U32_OF_F32[0] = u;
  return F32_SCRATCH[0];
}

/** Round half to even, as Python's round() and numpy's rint(); x is never negative here. */
export function roundHalfEven(x) {
  const r = Math.round(x); // half up
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * A quantised float (WIRE.md, "Quantised floats"):
 * q = roundHalfEven((clamp(v, min, max) - min) / step), computed in doubles exactly as the
 * Python runtime does, so both give the same bytes.
 */
export class Quant {
  constructor(min, max, bits, step) {
    this.min = min;
    this.max = max;
    this.bits = bits;
    this.step = step;
    this.size = (bits + 7) >> 3;
    this.qmax = 2 ** bits - 1;
  }

  quantise(v, where) {
    if (typeof v !== "number") throw new EncodeError(`${where}: expected a number, not ${typeName(v)}`);
    if (v !== v) throw new EncodeError(`${where}: NaN cannot be quantised`);
    const c = v < this.min ? this.min : v > this.max ? this.max : v;
    const q = roundHalfEven((c - this.min) / this.step);
    return q > this.qmax ? this.qmax : q;
  }

  value(q) {
    return this.min + q * this.step;
  }
}

function typeName(v) {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  return typeof v;
}

// ---------------------------------------------------------------------------------------
// scalar kinds of vectors: fixed width elements (WIRE.md, "scalar elements of a vector")

function kind(name, size, Array, min, max, big) {
  return Object.freeze({ name, size, Array, min, max, big });
}

export const KINDS = Object.freeze({
  bool: kind("bool", 1, Uint8Array, 0, 1, false),
  int8: kind("int8", 1, Int8Array, -128, 127, false),
  uint8: kind("uint8", 1, Uint8Array, 0, 255, false),
  int16: kind("int16", 2, Int16Array, -32768, 32767, false),
  uint16: kind("uint16", 2, Uint16Array, 0, 65535, false),
  int32: kind("int32", 4, Int32Array, -2147483648, 2147483647, false),
  uint32: kind("uint32", 4, Uint32Array, 0, 4294967295, false),
  int64: kind("int64", 8, BigInt64Array, I64_MIN, I64_MAX, true),
  uint64: kind("uint64", 8, BigUint64Array, 0n, U64_MAX, true),
  float32: kind("float32", 4, Float32Array, null, null, false),
  float64: kind("float64", 8, Float64Array, null, null, false),
});

/** The value a 64-bit field was given, as a bigint in range, or EncodeError. */
export function toBigInt(v, min, max, where) {
  let b;
  if (typeof v === "bigint") b = v;
  else if (Number.isSafeInteger(v)) b = BigInt(v);
  else throw new EncodeError(`${where}: expected a bigint or a safe integer, not ${typeName(v)} ${String(v)}`);
  if (b < min || b > max) throw new EncodeError(`${where} = ${b} is out of range ${min}..${max}`);
  return b;
}

/** The value an integer field was given, checked, or EncodeError. */
export function checkInt(v, min, max, where) {
  if (typeof v !== "number" || !Number.isInteger(v)) {
    throw new EncodeError(`${where}: expected an integer, not ${typeName(v)} ${String(v)}`);
  }
  if (v < min || v > max) throw new EncodeError(`${where} = ${v} is out of range ${min}..${max}`);
  return v;
}

// ---------------------------------------------------------------------------------------
// payloads

/**
 * A whole message carried inside another (WIRE.md, "Payloads"): its type id and its
 * encoded body. A channel delivery's payload also holds `message`, the body decoded (the
 * decoder had to decode it to find where it ends).
 */
export class Payload {
  constructor(typeId, body, message) {
    this.typeId = typeId;
    this.body = body;
    if (message !== undefined) this.message = message;
  }
}

// ---------------------------------------------------------------------------------------
// reading

/** Limits and per-connection state a decoder needs: limits, and channel payload types. */
export class DecodeContext {
  constructor(codebook, { maxString = 4096, maxVector = 65536, maxDepth = 32, channelTypes } = {}) {
    this.codebook = codebook;
    this.maxString = maxString;
    this.maxVector = maxVector;
    this.maxDepth = maxDepth;
    this.channelTypes = channelTypes ?? new Map();
  }
}

export class Reader {
  constructor(buf, ctx) {
    this.buf = buf;
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    this.pos = 0;
    this.end = buf.length;
    this.ctx = ctx;
    this.depth = 0;
  }

  /** Claim n bytes; returns where they start. */
  take(n, what = "message") {
    const p = this.pos;
    if (n > this.end - p) throw new DecodeError(`truncated ${what}`);
    this.pos = p + n;
    return p;
  }

  u8() {
    if (this.pos >= this.end) throw new DecodeError("truncated message");
    return this.buf[this.pos++];
  }

  i8() {
    const b = this.u8();
    return b > 127 ? b - 256 : b;
  }

  bool(where) {
    const b = this.u8();
    if (b > 1) throw new DecodeError(`${where}: bool byte is not 0 or 1`);
    return b === 1;
  }

  /** An unsigned varint of at most 64 bits, as a number (exact up to 2**53). */
  varint() {
    const buf = this.buf;
    let p = this.pos;
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (p >= this.end) throw new DecodeError("truncated varint");
      const b = buf[p++];
      if (i === 9 && b > 1) {
        throw new DecodeError(b >= 0x80 ? "varint longer than 10 bytes" : "varint over 64 bits");
      }
      result += (b & 0x7f) * scale;
      if (b < 0x80) {
        this.pos = p;
        return result;
      }
      scale *= 128;
    }
    throw new DecodeError("varint longer than 10 bytes");
  }

  /** An unsigned varint as a bigint (for ulong and long fields). */
  varint64() {
    const start = this.pos;
    const n = this.varint();
    if (n <= Number.MAX_SAFE_INTEGER) return BigInt(n);
    let result = 0n;
    let shift = 0n;
    for (let p = start; p < this.pos; p++, shift += 7n) result |= BigInt(this.buf[p] & 0x7f) << shift;
    return result;
  }

  /** An unsigned varint field of up to 32 bits, at most max. */
  uint(max, where) {
    const p = this.pos;
    if (p < this.end) {
      const b = this.buf[p];
      if (b < 0x80) {
        this.pos = p + 1;
        return b;
      }
    }
    const v = this.varint();
    if (v > max) throw new DecodeError(`${where} is out of range for its type`);
    return v;
  }

  /** A zigzag varint field of up to 32 bits. */
  sint(min, max, where) {
    const u = this.varint();
    const v = u % 2 === 1 ? -(u + 1) / 2 : u / 2;
    if (v < min || v > max) throw new DecodeError(`${where} is out of range for its type`);
    return v;
  }

  uint64() {
    return this.varint64();
  }

  sint64() {
    const u = this.varint64();
    return (u >> 1n) ^ -(u & 1n);
  }

  f32() {
    const p = this.take(4);
    return this.view.getFloat32(p, true);
  }

  f64() {
    const p = this.take(8);
    return this.view.getFloat64(p, true);
  }

  /** A quantised float in a table: ceil(bits/8) bytes holding q. */
  quant(q, where) {
    const p = this.take(q.size);
    const buf = this.buf;
    let raw = 0;
    for (let i = q.size - 1; i >= 0; i--) raw = raw * 256 + buf[p + i];
    if (raw > q.qmax) throw new DecodeError(`${where}: quantised value ${raw} is over its ${q.bits} bits`);
    return q.min + raw * q.step;
  }

  string(maxlen) {
    const n = this.uint(Number.MAX_SAFE_INTEGER, "string length");
    if (n > maxlen) throw new DecodeError(`string of ${n} bytes is over the limit of ${maxlen}`);
    const p = this.take(n, "string");
    const buf = this.buf;
    if (n < 24) {
      // Short ASCII strings (names, events, ids) are the common case; TextDecoder's call
      // costs more than the loop.
      let s = "";
      for (let i = p; i < p + n; i++) {
        const c = buf[i];
        if (c >= 0x80) return decodeUtf8(buf, p, p + n);
        s += String.fromCharCode(c);
      }
      return s;
    }
    return decodeUtf8(buf, p, p + n);
  }

  /** A vector's element count, checked against its limit and the bytes that are left. */
  count(maxlen, minElemSize, what = "vector") {
    const n = this.uint(Number.MAX_SAFE_INTEGER, "vector length");
    if (n > maxlen) throw new DecodeError(`${what} of ${n} elements is over the limit of ${maxlen}`);
    if (n * minElemSize > this.end - this.pos) throw new DecodeError(`truncated ${what}`);
    return n;
  }

  bytes(maxlen) {
    const n = this.count(maxlen, 1, "byte vector");
    const p = this.pos;
    this.pos = p + n;
    return this.buf.slice(p, p + n);
  }

  /** A vector of fixed-width scalars as a typed array (a copy: the frame may be reused);
   * bools as an array of booleans, since JavaScript has no boolean typed array. */
  scalars(k, maxlen) {
    const n = this.count(maxlen, k.size);
    const p = this.take(n * k.size);
    if (k === KINDS.bool) {
      const flags = new Array(n);
      for (let i = 0; i < n; i++) {
        const b = this.buf[p + i];
        if (b > 1) throw new DecodeError("bool byte is not 0 or 1");
        flags[i] = b === 1;
      }
      return flags;
    }
    let out;
    if (LITTLE || k.size === 1) {
      const start = this.buf.byteOffset + p;
      out = new k.Array(this.buf.buffer.slice(start, start + n * k.size));
    } else {
      out = new k.Array(n);
      const get = GETTERS[k.name];
      for (let i = 0; i < n; i++) out[i] = get(this.view, p + i * k.size);
    }
    return out;
  }

  /** A vector of quantised floats, as a Float32Array or Float64Array. */
  quants(q, ArrayType, maxlen, where) {
    const n = this.count(maxlen, q.size);
    const p = this.take(n * q.size);
    const out = new ArrayType(n);
    const buf = this.buf;
    const size = q.size;
    for (let i = 0, s = p; i < n; i++, s += size) {
      let raw = 0;
      for (let j = size - 1; j >= 0; j--) raw = raw * 256 + buf[s + j];
      if (raw > q.qmax) throw new DecodeError(`${where}: quantised value ${raw} is over its ${q.bits} bits`);
      out[i] = q.min + raw * q.step;
    }
    return out;
  }

  /** A tagged payload: varint type id, then (unless 0) varint length and body. */
  payload() {
    const t = this.varint();
    if (t === 0) return null;
    if (!this.ctx.codebook.types.has(t)) throw new DecodeError(`payload of unknown type ${t}`);
    const n = this.varint();
    const p = this.take(n, "payload");
    return new Payload(t, this.buf.slice(p, p + n));
  }

  /** An untagged payload whose type is its channel's (WIRE.md, "Payloads"). */
  channelPayload(channel) {
    const t = this.ctx.channelTypes.get(channel);
    if (t === undefined) {
      throw new DecodeError(`message on channel ${channel}, which this connection has not subscribed`);
    }
    const entry = this.ctx.codebook.types.get(t);
    if (entry === undefined) throw new DecodeError(`channel ${channel} has unknown payload type ${t}`);
    const start = this.pos;
    const message = entry.decode(this);
    return new Payload(t, this.buf.slice(start, this.pos), message);
  }

  /** Entered a table that can hold itself: count the depth (WIRE.md, "Limits"). */
  enter(name) {
    if (++this.depth > this.ctx.maxDepth) throw new DecodeError(`${name} is nested more than maxDepth deep`);
  }

  leave() {
    this.depth--;
  }
}

function decodeUtf8(buf, start, end) {
  try {
    return UTF8_DECODER.decode(buf.subarray(start, end));
  } catch {
    throw new DecodeError("string is not valid UTF-8");
  }
}

const GETTERS = {
  int16: (v, p) => v.getInt16(p, true),
  uint16: (v, p) => v.getUint16(p, true),
  int32: (v, p) => v.getInt32(p, true),
  uint32: (v, p) => v.getUint32(p, true),
  int64: (v, p) => v.getBigInt64(p, true),
  uint64: (v, p) => v.getBigUint64(p, true),
  float32: (v, p) => v.getFloat32(p, true),
  float64: (v, p) => v.getFloat64(p, true),
};

const SETTERS = {
  int16: (v, p, x) => v.setInt16(p, x, true),
  uint16: (v, p, x) => v.setUint16(p, x, true),
  int32: (v, p, x) => v.setInt32(p, x, true),
  uint32: (v, p, x) => v.setUint32(p, x, true),
  int64: (v, p, x) => v.setBigInt64(p, x, true),
  uint64: (v, p, x) => v.setBigUint64(p, x, true),
  float32: (v, p, x) => v.setFloat32(p, x, true),
  float64: (v, p, x) => v.setFloat64(p, x, true),
};

// ---------------------------------------------------------------------------------------
// writing

/** A growable byte buffer that encoders append to; `finish()` returns the bytes. */
export class Writer {
  constructor(capacity = 256) {
    this.buf = new Uint8Array(capacity);
    this.view = new DataView(this.buf.buffer);
    this.pos = 0;
  }

  /** Make room for n more bytes; returns where they start (pos is not moved). */
  reserve(n) {
    if (this.pos + n > this.buf.length) {
      let size = this.buf.length * 2;
      while (size < this.pos + n) size *= 2;
      const grown = new Uint8Array(size);
      grown.set(this.buf.subarray(0, this.pos));
      this.buf = grown;
      this.view = new DataView(grown.buffer);
    }
    return this.pos;
  }

  /** Claim n bytes and return where they start. */
  take(n) {
    const p = this.reserve(n);
    this.pos = p + n;
    return p;
  }

  finish() {
    return this.buf.slice(0, this.pos);
  }

  u8(b) {
    if (this.pos >= this.buf.length) this.reserve(1);
    this.buf[this.pos++] = b;
  }

  /** An unsigned varint from a non-negative integer number (exact up to 2**53). */
  varint(v) {
    if (v < 0x80) {
      this.u8(v);
      return;
    }
    const p = this.reserve(10);
    const buf = this.buf;
    let i = p;
    while (v >= 0x80) {
      buf[i++] = (v % 128) | 0x80;
      v = Math.floor(v / 128);
    }
    buf[i++] = v;
    this.pos = i;
  }

  varint64(v) {
    if (v <= 0x1fffffffffffffn) {
      this.varint(Number(v));
      return;
    }
    const p = this.reserve(10);
    let i = p;
    while (v >= 0x80n) {
      this.buf[i++] = Number(v & 0x7fn) | 0x80;
      v >>= 7n;
    }
    this.buf[i++] = Number(v);
    this.pos = i;
  }

  bool(v) {
    this.u8(v ? 1 : 0);
  }

  /** A one-byte integer field: ubyte, or byte when min < 0. */
  byte(v, min, max, where) {
    if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) checkInt(v, min, max, where);
    this.u8(v & 0xff);
  }

  uint(v, max, where) {
    if (typeof v === "number" && v >= 0 && v < 0x80 && (v | 0) === v) {
      this.u8(v);
      return;
    }
    this.varint(checkInt(v, 0, max, where));
  }

  sint(v, min, max, where) {
    checkInt(v, min, max, where);
    this.varint(v < 0 ? -2 * v - 1 : 2 * v);
  }

  uint64(v, where) {
    this.varint64(toBigInt(v, 0n, U64_MAX, where));
  }

  sint64(v, where) {
    const b = toBigInt(v, I64_MIN, I64_MAX, where);
    this.varint64(b < 0n ? -2n * b - 1n : 2n * b);
  }

  f32(v, where) {
    if (typeof v !== "number") throw new EncodeError(`${where}: expected a number, not ${typeName(v)}`);
    if (Math.abs(v) > F32_MAX && Number.isFinite(v) && !Number.isFinite(Math.fround(v))) {
      throw new EncodeError(`${where} = ${v} is too large for a float`);
    }
    const p = this.take(4);
    this.view.setFloat32(p, v, true);
  }

  f64(v, where) {
    if (typeof v !== "number") throw new EncodeError(`${where}: expected a number, not ${typeName(v)}`);
    const p = this.take(8);
    this.view.setFloat64(p, v, true);
  }

  quant(v, q, where) {
    let x = q.quantise(v, where);
    const p = this.take(q.size);
    for (let i = 0; i < q.size; i++) {
      this.buf[p + i] = x % 256;
      x = Math.floor(x / 256);
    }
  }

  string(s, where) {
    if (typeof s !== "string") throw new EncodeError(`${where}: expected a string, not ${typeName(s)}`);
    const n = s.length;
    if (n < 0x80) {
      // ASCII fast path: one length byte, one byte per character.
      const p = this.reserve(n + 1);
      const buf = this.buf;
      let i = 0;
      for (; i < n; i++) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) break;
        buf[p + 1 + i] = c;
      }
      if (i === n) {
        buf[p] = n;
        this.pos = p + 1 + n;
        return;
      }
    }
    if (!isWellFormed(s)) throw new EncodeError(`${where}: string holds a lone surrogate, which UTF-8 cannot encode`);
    const data = UTF8_ENCODER.encode(s);
    this.varint(data.length);
    const p = this.take(data.length);
    this.buf.set(data, p);
  }

  bytes(b, where) {
    const data = asBytes(b, where);
    this.varint(data.length);
    const p = this.take(data.length);
    this.buf.set(data, p);
  }

  scalars(values, k, where) {
    if (values == null || typeof values.length !== "number" || typeof values === "string") {
      throw new EncodeError(`${where}: expected an array, not ${typeName(values)}`);
    }
    const n = values.length;
    this.varint(n);
    const p = this.take(n * k.size);
    if (values instanceof k.Array && (LITTLE || k.size === 1) && k !== KINDS.bool) {
      this.buf.set(new Uint8Array(values.buffer, values.byteOffset, n * k.size), p);
      return;
    }
    if (k === KINDS.bool) {
      for (let i = 0; i < n; i++) this.buf[p + i] = values[i] ? 1 : 0;
    } else if (k.size === 1) {
      for (let i = 0; i < n; i++) this.buf[p + i] = checkInt(values[i], k.min, k.max, where) & 0xff;
    } else {
      const set = SETTERS[k.name];
      for (let i = 0; i < n; i++) {
        let x = values[i];
        if (k.big) x = toBigInt(x, k.min, k.max, where);
        else if (k.min !== null) checkInt(x, k.min, k.max, where);
        else if (typeof x !== "number") throw new EncodeError(`${where}: expected numbers, not ${typeName(x)}`);
        set(this.view, p + i * k.size, x);
      }
    }
  }

  quants(values, q, where) {
    if (values == null || typeof values.length !== "number" || typeof values === "string") {
      throw new EncodeError(`${where}: expected an array, not ${typeName(values)}`);
    }
    const n = values.length;
    this.varint(n);
    const size = q.size;
    const p = this.take(n * size);
    for (let i = 0, s = p; i < n; i++, s += size) {
      let x = q.quantise(values[i], where);
      for (let j = 0; j < size; j++) {
        this.buf[s + j] = x % 256;
        x = Math.floor(x / 256);
      }
    }
  }

  payload(p, where) {
    if (p == null || p.typeId === 0) {
      this.u8(0);
      return;
    }
    if (!(p instanceof Payload)) throw new EncodeError(`${where}: a payload field takes a Payload, not ${typeName(p)}`);
    this.varint(checkInt(p.typeId, 0, Number.MAX_SAFE_INTEGER, where));
    this.bytes(p.body, where);
  }

  channelPayload(p, where) {
    if (!(p instanceof Payload) || p.typeId === 0) throw new EncodeError(`${where}: a channel message needs a payload`);
    const data = asBytes(p.body, where);
    const at = this.take(data.length);
    this.buf.set(data, at);
  }
}

function asBytes(b, where) {
  if (b instanceof Uint8Array) return b;
  if (b instanceof ArrayBuffer) return new Uint8Array(b);
  if (Array.isArray(b)) {
    const out = new Uint8Array(b.length);
    for (let i = 0; i < b.length; i++) out[i] = checkInt(b[i], 0, 255, where);
    return out;
  }
  throw new EncodeError(`${where}: expected a Uint8Array, not ${typeName(b)}`);
}

const isWellFormed =
  typeof String.prototype.isWellFormed === "function"
    ? (s) => s.isWellFormed()
    : (s) => !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?:^|[^\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(s);

/** The length of the first array of a struct-of-arrays value (nested structs nest). */
export function soaLength(v, where) {
  for (const key in v) {
    const col = v[key];
    if (col != null && typeof col.length === "number") return col.length;
    if (col != null && typeof col === "object") return soaLength(col, where);
  }
  throw new EncodeError(`${where}: expected an array of structs or an object of arrays`);
}

// ---------------------------------------------------------------------------------------
// the schema hash (WIRE.md, "Schema hash"): SHA-256, synchronous so that a Codebook is
// ready when it is constructed (WebCrypto's digest is async only)

const K256 = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

/** The SHA-256 of a string's UTF-8 bytes, as 64 hex digits. */
export function sha256Hex(text) {
  const data = UTF8_ENCODER.encode(text);
  const blocks = Math.ceil((data.length + 9) / 64);
  const m = new Uint8Array(blocks * 64);
  m.set(data);
  m[data.length] = 0x80;
  const bits = data.length * 8;
  const tail = new DataView(m.buffer);
  tail.setUint32(m.length - 8, Math.floor(bits / TWO32));
  tail.setUint32(m.length - 4, bits >>> 0);
  const h = new Uint32Array([
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
  ]);
  const w = new Uint32Array(64);
  const rotr = (x, n) => (x >>> n) | (x << (32 - n));
  for (let b = 0; b < blocks; b++) {
    for (let i = 0; i < 16; i++) w[i] = tail.getUint32(b * 64 + i * 4);
    for (let i = 16; i < 64; i++) {
      const s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >>> 3);
      const s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >>> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    let [a, bb, c, d, e, f, g, hh] = h;
    for (let i = 0; i < 64; i++) {
      const t1 = (hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K256[i] + w[i]) >>> 0;
      const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & bb) ^ (a & c) ^ (bb & c))) >>> 0;
      hh = g;
      g = f;
      f = e;
      e = (d + t1) >>> 0;
      d = c;
      c = bb;
      bb = a;
      a = (t1 + t2) >>> 0;
    }
    h[0] += a;
    h[1] += bb;
    h[2] += c;
    h[3] += d;
    h[4] += e;
    h[5] += f;
    h[6] += g;
    h[7] += hh;
  }
  return Array.from(h, (x) => x.toString(16).padStart(8, "0")).join("");
}

/** The hash a client presents: of the protocol plus application schemas (WIRE.md). */
export function combineHashes(hashes) {
  return sha256Hex(hashes.join(",")).slice(0, 16);
}

// ---------------------------------------------------------------------------------------
// the codebook

/**
 * The message types a connection speaks: the protocol's plus the application's, from
 * generated schema modules. It encodes messages (type id then body), decodes frames into
 * arrays of message objects, and converts values to and from payloads. It holds no
 * connection state (that is the DecodeContext's).
 */
export class Codebook {
  constructor(...schemas) {
    this.schemas = schemas;
    this.types = new Map(); // type id -> {id, name, encode, decode}
    this.byName = new Map();
    for (const mod of schemas) {
      for (const mt of mod.MESSAGES) {
        if (this.types.has(mt.id)) {
          throw new Error(`message id ${mt.id} is both ${this.types.get(mt.id).name} and ${mt.name}`);
        }
        if (this.byName.has(mt.name)) throw new Error(`two schemas define a message named ${mt.name}`);
        this.types.set(mt.id, mt);
        this.byName.set(mt.name, mt);
      }
    }
    const firstId = (mod) => Math.min(...mod.MESSAGES.map((mt) => mt.id), 2 ** 30);
    const ordered = [...schemas].sort((a, b) => firstId(a) - firstId(b));
    this.hash = combineHashes(ordered.map((mod) => mod.SCHEMA_HASH));
    this.jsonType = this.byName.get("Json")?.id ?? 0;
    this.bytesType = this.byName.get("Bytes")?.id ?? 0;
  }

  context(options) {
    return new DecodeContext(this, options);
  }

  /** Append one message; on error the writer is left as it was. */
  encodeInto(w, msg) {
    const mt = msg == null ? undefined : this.byName.get(msg.$type);
    if (mt === undefined) {
      throw new EncodeError(`${msg == null ? typeName(msg) : msg.$type} is not a message of this codebook`);
    }
    const start = w.pos;
    try {
      w.varint(mt.id);
      mt.encode(w, msg);
    } catch (err) {
      w.pos = start;
      if (err instanceof EncodeError) throw err;
      throw new EncodeError(`cannot encode ${mt.name}: ${err.message}`);
    }
  }

  /** One message's bytes. */
  encode(msg) {
    const w = new Writer(64);
    this.encodeInto(w, msg);
    return w.finish();
  }

  /** Several messages joined into one frame. */
  encodeFrame(msgs) {
    const w = new Writer(256);
    for (const msg of msgs) this.encodeInto(w, msg);
    return w.finish();
  }

  /** Every message in a frame, or DecodeError; never another exception. */
  decodeFrame(data, ctx) {
    const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
    if (bytes.length === 0) throw new DecodeError("empty frame");
    const r = new Reader(bytes, ctx);
    const out = [];
    try {
      while (r.pos < r.end) {
        const t = r.varint();
        const mt = this.types.get(t);
        if (mt === undefined) throw new UnknownType(t);
        out.push(mt.decode(r));
      }
    } catch (err) {
      if (err instanceof DecodeError) throw err;
      // Defence in depth: every read is bounds-checked, so this means a runtime bug.
      throw new DecodeError(`malformed frame (${err.name}: ${err.message})`);
    }
    return out;
  }

  decodeOne(data, ctx) {
    const msgs = this.decodeFrame(data, ctx);
    if (msgs.length !== 1) throw new DecodeError(`expected one message, found ${msgs.length}`);
    return msgs[0];
  }

  /** A value as a payload: null, a message object, bytes, or anything JSON can hold. */
  payload(value) {
    if (value == null) return null;
    if (value instanceof Payload) return value;
    if (typeof value.$type === "string" && this.byName.has(value.$type)) {
      const mt = this.byName.get(value.$type);
      const w = new Writer(64);
      this.encodeInto(w, value);
      const all = w.finish();
      return new Payload(mt.id, all.slice(varintSize(mt.id)));
    }
    if (value instanceof Uint8Array || value instanceof ArrayBuffer) {
      const w = new Writer(16);
      w.bytes(value, "Bytes");
      return new Payload(this.bytesType, w.finish());
    }
    let text;
    try {
      text = JSON.stringify(value);
    } catch (err) {
      throw new EncodeError(`cannot send as JSON: ${err.message}`);
    }
    if (text === undefined) throw new EncodeError(`cannot send ${typeof value} as JSON`);
    return this.jsonPayload(text);
  }

  jsonPayload(text) {
    const w = new Writer(text.length + 8);
    w.string(text, "Json.text");
    return new Payload(this.jsonType, w.finish());
  }

  /** A payload's value: JSON as data, Bytes as a Uint8Array, else a message object. */
  payloadValue(p, ctx) {
    if (p == null || p.typeId === 0) return null;
    const mt = this.types.get(p.typeId);
    if (mt === undefined) throw new DecodeError(`payload of unknown type ${p.typeId}`);
    let value = p.message;
    if (value === undefined) {
      const r = new Reader(p.body, ctx ?? this.context({ maxString: 2 ** 30, maxVector: 2 ** 30 }));
      try {
        value = mt.decode(r);
      } catch (err) {
        if (err instanceof DecodeError) throw err;
        throw new DecodeError(`malformed ${mt.name} payload (${err.name}: ${err.message})`);
      }
      if (r.pos !== r.end) throw new DecodeError(`${mt.name} payload has trailing bytes`);
    }
    if (p.typeId === this.jsonType) {
      try {
        return JSON.parse(value.text);
      } catch (err) {
        throw new DecodeError(`payload is not valid JSON: ${err.message}`);
      }
    }
    if (p.typeId === this.bytesType) return value.data;
    return value;
  }
}

function varintSize(v) {
  let n = 1;
  while (v >= 0x80) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}
