// Entity sync for the client: the JavaScript twin of the reference decoder in
// engine/interest.py (`SyncLayout.from_info`, `ClientWorld`, `apply_entity_sync`).
// codecs/WIRE.md, "Entity sync", is the format; tests/test_js_entities.py checks this
// decoder against the Python one on the same bytes, valid and mutated.
//
// A room that syncs entities sends EntitySyncInfo once (how to read the records: the
// schema struct, the id width, the grid) and then at most one EntitySync per send tick in
// its section of the frame. The client keeps a ClientWorld per room: entities by id, each
// filed under the cell it was last reported in. Pure: no clock, no I/O.

import { DecodeError, Quant, Reader, f32FromBits } from "./packed.js";

const UPDATE = 0;
const ENTER = 1;
const DEPART = 2;
const TWO32 = 4294967296;
const F64 = new DataView(new ArrayBuffer(8));

function bitLength(n) {
  return n <= 0 ? 0 : Math.floor(Math.log2(n)) + 1;
}

/**
 * One synced field: `kind` is "quant", "float", "int", "uint" or "bool"; `width` its wire
 * bits (before a position is narrowed to its cell offset); `quant` for a quantised float.
 */
function fieldSpec(f) {
  const { name, kind, width } = f;
  if (typeof name !== "string" || !["quant", "float", "int", "uint", "bool"].includes(kind)) {
    throw new TypeError(`an entity field needs a name and a kind (quant, float, int, uint, bool): ${JSON.stringify(f)}`);
  }
  let quant = null;
  if (kind === "quant") {
    const q = f.quant;
    quant = q instanceof Quant ? q : new Quant(q.min, q.max, q.bits, q.step);
  }
  const bits = kind === "quant" ? quant.bits : width;
  if (!(Number.isInteger(bits) && bits >= 1 && bits <= 64)) throw new TypeError(`entity field '${name}' has width ${bits}`);
  if (kind === "float" && bits !== 32 && bits !== 64) throw new TypeError(`float field '${name}' must be 32 or 64 bits`);
  return Object.freeze({ name, kind, width: bits, quant });
}

/** Everything a decoder needs besides the bytes (engine/interest.py SyncLayout). */
export class SyncLayout {
  constructor({ fields, widths, idBits, x, y, cellStepsX, cellStepsY, columns, rows, structName = "" }) {
    this.fields = fields.map(fieldSpec);
    this.widths = widths ?? this.fields.map((f) => f.width);
    this.idBits = idBits;
    this.x = x;
    this.y = y;
    this.cellStepsX = cellStepsX;
    this.cellStepsY = cellStepsY;
    this.columns = columns;
    this.rows = rows;
    this.structName = structName;
    if (this.fields.length > 48) throw new TypeError("entity sync carries at most 48 fields");
    for (const i of [x, y]) {
      if (this.fields[i]?.kind !== "quant") throw new TypeError("the position fields of entity sync must be quantised");
    }
  }

  /**
   * A client's layout from its struct's fields (an array of {name, kind, width, quant},
   * or an object with such a `fields` array) and an EntitySyncInfo message (or its fields
   * in snake_case, as the server's `SyncLayout.info()`).
   */
  static fromInfo(struct, info) {
    const fields = (Array.isArray(struct) ? struct : struct?.fields)?.map(fieldSpec);
    if (fields === undefined) throw new TypeError(`no field list for entity struct '${info.struct_name}'`);
    const widths = fields.map((f) => f.width);
    widths[info.x_field] = bitLength(info.cell_steps_x - 1);
    widths[info.y_field] = bitLength(info.cell_steps_y - 1);
    return new SyncLayout({
      fields,
      widths,
      idBits: info.id_bits,
      x: info.x_field,
      y: info.y_field,
      cellStepsX: info.cell_steps_x,
      cellStepsY: info.cell_steps_y,
      columns: info.columns,
      rows: info.rows,
      structName: info.struct_name ?? "",
    });
  }

  get cells() {
    return this.columns * this.rows;
  }

  /** Bits of one record carrying the fields of `mask` (bit i: field i), its id included. */
  recordBits(mask) {
    let bits = this.idBits;
    for (let i = 0; i < this.fields.length; i++) if (Math.floor(mask / 2 ** i) % 2) bits += this.widths[i];
    return bits;
  }
}

/**
 * A client's copy of the entities it sees, built only from EntitySync data. `entities`
 * maps ids to {field: value}; `cellOf` ids to the cell they were last reported in;
 * `spawned` and `despawned` collect the ids that appeared and disappeared (the caller
 * clears them when it has read them).
 */
export class ClientWorld {
  constructor(layout) {
    this.layout = layout;
    this.entities = new Map();
    this.cellOf = new Map();
    this.spawned = [];
    this.despawned = [];
  }

  inCell(cell) {
    const out = [];
    for (const [id, c] of this.cellOf) if (c === cell) out.push(id);
    return out.sort((a, b) => a - b);
  }

  clear() {
    this.entities.clear();
    this.cellOf.clear();
    this.spawned.length = 0;
    this.despawned.length = 0;
  }
}

/** `width` (at most 32) bits at bit `bitpos` of buf[start, end), LSB first; 0 past end. */
function readBits(buf, start, end, bitpos, width) {
  const at = start + Math.floor(bitpos / 8);
  const shift = bitpos % 8;
  const n = (shift + width + 7) >> 3; // at most 5 bytes: under 2**40, exact in a double
  let v = 0;
  let scale = 1;
  for (let i = 0; i < n; i++) {
    if (at + i < end) v += buf[at + i] * scale;
    scale *= 256;
  }
  return Math.floor(v / 2 ** shift) % 2 ** width;
}

/** A field's value from its wire bits (lo: the low 32, hi: the rest; engine FieldSpec.value). */
function fieldValue(spec, lo, hi) {
  const w = spec.width;
  switch (spec.kind) {
    case "quant":
      return spec.quant.value(lo);
    case "float":
      if (w === 32) return f32FromBits(lo);
      F64.setUint32(0, lo, true);
      F64.setUint32(4, hi, true);
      return F64.getFloat64(0, true);
    case "bool":
      return lo === 1 && hi === 0;
    default: {
      if (w <= 32) {
        if (spec.kind === "int" && lo >= 2 ** (w - 1)) return lo - 2 ** w;
        return lo;
      }
      let big = (BigInt(hi) << 32n) | BigInt(lo);
      if (spec.kind === "int" && big >> BigInt(w - 1)) big -= 1n << BigInt(w);
      // Integers wider than 53 bits (64-bit fields) stay exact as bigints.
      return w > 53 ? big : Number(big);
    }
  }
}

/**
 * Apply the data of one EntitySync message (a sequence of ops) to `world`, as a whole:
 * removals wait for the end of it, so an entity that crosses between two cells the client
 * sees never flickers out and back in. Throws DecodeError on malformed data (the world
 * may then be partly updated: drop it).
 */
export function applyEntitySync(world, data) {
  const lay = world.layout;
  const fields = lay.fields;
  const nf = fields.length;
  const fullMask = 2 ** nf - 1;
  const idBits = lay.idBits;
  const ents = world.entities;
  const cells = world.cellOf;
  const entered = new Set();
  const departs = [];
  const left = new Set();
  const r = new Reader(data, null);
  const end = data.length;
  const buf = data;
  while (r.pos < end) {
    const tag = r.varint();
    const cell = Math.floor(tag / 2);
    if (cell >= lay.cells) throw new DecodeError(`cell ${cell} is outside the grid`);
    if (tag % 2) {
      left.add(cell);
      continue;
    }
    const baseX = (cell % lay.columns) * lay.cellStepsX;
    const baseY = Math.floor(cell / lay.columns) * lay.cellStepsY;
    const ngroups = r.varint();
    for (let g = 0; g < ngroups; g++) {
      const code = r.varint();
      const count = r.varint();
      const kind = code % 4;
      let mask = Math.floor(code / 4);
      if (kind === UPDATE) {
        if (mask === 0 || mask > fullMask) throw new DecodeError(`update group with field mask ${mask}`);
      } else if (kind === ENTER || kind === DEPART) {
        if (mask) throw new DecodeError("enter and departure groups carry no field mask");
        mask = kind === ENTER ? fullMask : 0;
      } else {
        throw new DecodeError(`unknown group kind ${kind}`);
      }
      if (count === 0 || r.pos >= end) throw new DecodeError("empty or truncated entity group");
      const gapBits = buf[r.pos++];
      if (gapBits > 32) throw new DecodeError(`id gaps of ${gapBits} bits`);
      let eid = 0;
      if (gapBits) eid = r.varint();
      const carried = [];
      for (let i = 0; i < nf; i++) if (Math.floor(mask / 2 ** i) % 2) carried.push(i);
      const rbits = lay.recordBits(mask) - (gapBits ? idBits - gapBits : 0);
      const nbytes = Math.floor((count * rbits - gapBits + 7) / 8);
      if (nbytes > end - r.pos) throw new DecodeError("truncated entity group");
      const start = r.pos;
      const stop = start + nbytes;
      r.pos = stop;
      let bit = 0;
      for (let k = 0; k < count; k++) {
        if (!gapBits) {
          eid = readBits(buf, start, stop, bit, Math.min(idBits, 32));
          if (idBits > 32) eid += readBits(buf, start, stop, bit + 32, idBits - 32) * TWO32;
          bit += idBits;
        } else if (k) {
          eid += 1 + readBits(buf, start, stop, bit, gapBits);
          bit += gapBits;
        }
        if (eid >= 2 ** idBits) throw new DecodeError(`entity id ${eid} is over ${idBits} bits`);
        const values = {};
        for (const i of carried) {
          const w = lay.widths[i];
          let lo = readBits(buf, start, stop, bit, Math.min(w, 32));
          const hi = w > 32 ? readBits(buf, start, stop, bit + 32, w - 32) : 0;
          bit += w;
          if (i === lay.x) lo += baseX;
          else if (i === lay.y) lo += baseY;
          const spec = fields[i];
          if (spec.quant !== null && lo > spec.quant.qmax) throw new DecodeError(`${spec.name} is outside the world`);
          values[spec.name] = fieldValue(spec, lo, hi);
        }
        if (kind === UPDATE) {
          if (ents.has(eid) && cells.get(eid) === cell) Object.assign(ents.get(eid), values);
        } else if (kind === ENTER) {
          if (!ents.has(eid)) world.spawned.push(eid);
          ents.set(eid, values);
          cells.set(eid, cell);
          entered.add(eid);
        } else {
          departs.push(eid, cell);
        }
      }
    }
  }
  for (let i = 0; i < departs.length; i += 2) {
    const eid = departs[i];
    // An entity that moved to another cell of this client's was re-filed there by its
    // enter record, in this message: it no longer sits in this cell.
    if (cells.get(eid) === departs[i + 1]) {
      ents.delete(eid);
      cells.delete(eid);
      world.despawned.push(eid);
    }
  }
  if (left.size) {
    for (const [eid, c] of [...cells]) {
      if (left.has(c) && !entered.has(eid)) {
        ents.delete(eid);
        cells.delete(eid);
        world.despawned.push(eid);
      }
    }
  }
}
