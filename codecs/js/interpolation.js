// Snapshot interpolation for rendering entities between the server's send ticks.
//
// A room sends its entities at its send rate (20 Hz is typical: one frame every 50 ms).
// Drawing each frame's positions as they arrive makes movement jump 20 times a second, and
// an entity stands still whenever a frame is late. So a client draws the world a little in
// the past: it keeps the last few snapshots, each stamped with the room time of the Tick
// that carried it, and renders at `receive time - delay`, interpolating numeric fields
// linearly between the two snapshots around that time. With the default 100 ms delay at
// 20 Hz the render time has two snapshots after it: one late or lost frame still
// interpolates instead of freezing.
//
// The buffer knows nothing of the wire: whatever decodes entity state (the entity sync
// decoder, or a game that keeps its entities in the room state) pushes "the entities at
// room time t" as a map of id -> fields. It has no clock either: the caller passes the
// time to render (Room.render() passes the room's receive time, from its Tick timing).
//
// Spawns and despawns follow the same delayed timeline: an entity is drawn from the first
// snapshot that holds it (once the render time reaches that snapshot) and disappears when
// the render time reaches the first snapshot without it. Non-numeric fields (booleans,
// strings, bigints) step: they take the older snapshot's value. Angle fields, named in
// `angles`, turn the short way around.

const DEFAULTS = Object.freeze({
  delay: 100, // ms behind the receive time
  maxSnapshots: 64,
  maxExtrapolation: 0, // ms past the newest snapshot to extrapolate (0: hold it)
});

const TWO_PI = 2 * Math.PI;

/** Entities as a Map of id -> fields, from a Map, a plain object or [id, fields] pairs. */
function entityMap(entities) {
  const out = new Map();
  if (entities == null) return out;
  const pairs =
    entities instanceof Map || typeof entities[Symbol.iterator] === "function" ? entities : Object.entries(entities);
  for (const [key, fields] of pairs) {
    const id = typeof key === "string" && /^\d+$/.test(key) ? Number(key) : key;
    out.set(id, { ...fields }); // a copy: decoders update their entity objects in place
  }
  return out;
}

export class SnapshotBuffer {
  /**
   * @param {object} [options]
   * @param {number} [options.delay] ms the render time runs behind the receive time (100)
   * @param {number} [options.maxSnapshots] snapshots kept at most (64)
   * @param {number} [options.maxExtrapolation] ms past the newest snapshot that numeric
   *   fields may be extrapolated when the render time outruns the buffer (0: hold)
   * @param {Iterable<string>|Record<string, number>} [options.angles] angle fields: names
   *   (period 2π) or {name: period}
   */
  constructor(options = {}) {
    const o = { ...DEFAULTS, ...options };
    if (!(o.delay >= 0)) throw new RangeError("delay must be a number of ms, 0 or more");
    if (!(o.maxSnapshots >= 2)) throw new RangeError("maxSnapshots must be 2 or more");
    this.delay = o.delay;
    this.maxSnapshots = o.maxSnapshots;
    this.maxExtrapolation = o.maxExtrapolation;
    this.angles = new Map();
    if (o.angles != null) {
      const named = typeof o.angles[Symbol.iterator] === "function";
      const pairs = named ? [...o.angles].map((n) => [n, TWO_PI]) : Object.entries(o.angles);
      for (const [name, period] of pairs) this.angles.set(name, period);
    }
    this.snapshots = []; // [{time, entities: Map}], oldest first
    this.resets = 0; // times the room clock went backwards (a room moved), clearing the buffer
    this.starved = 0; // renders past the newest snapshot (the delay is too short for the link)
    this.early = 0; // renders before the oldest snapshot (just joined, or after a reset)
  }

  get size() {
    return this.snapshots.length;
  }

  /** The room time of the newest snapshot, or null. */
  get newest() {
    const n = this.snapshots.length;
    return n ? this.snapshots[n - 1].time : null;
  }

  get oldest() {
    return this.snapshots.length ? this.snapshots[0].time : null;
  }

  clear() {
    this.snapshots.length = 0;
  }

  /**
   * Add the entities at room time `time` (ms). The entities are copied. A time equal to
   * the newest replaces it; an earlier one means the room's clock started again (the room
   * moved to another process): the buffer starts over from it.
   */
  push(time, entities) {
    if (!Number.isFinite(time)) throw new RangeError(`snapshot time must be a finite number of ms, not ${time}`);
    const snap = { time, entities: entityMap(entities) };
    const list = this.snapshots;
    const last = list.length ? list[list.length - 1].time : -Infinity;
    if (time === last) {
      list[list.length - 1] = snap;
    } else {
      if (time < last) {
        list.length = 0;
        this.resets++;
      }
      list.push(snap);
      if (list.length > this.maxSnapshots) list.splice(0, list.length - this.maxSnapshots);
    }
  }

  /** The entities as they are drawn at `serverTime - delay` (see Room.render). */
  render(serverTime) {
    return this.at(serverTime - this.delay);
  }

  /**
   * The entities at room time `time`: a new Map of id -> fields, numeric fields
   * interpolated between the snapshots around `time`. Snapshots that the render time has
   * passed are dropped (the one just before it is kept), so call it with times that grow.
   */
  at(time) {
    const list = this.snapshots;
    const n = list.length;
    if (n === 0) return new Map();
    if (time <= list[0].time) {
      if (time < list[0].time) this.early++;
      return copyAll(list[0].entities);
    }
    if (time >= list[n - 1].time) {
      if (time > list[n - 1].time) this.starved++;
      if (n >= 2 && this.maxExtrapolation > 0) {
        const ahead = Math.min(time, list[n - 1].time + this.maxExtrapolation);
        if (n > 2) list.splice(0, n - 2);
        const [a, b] = list;
        return this.#blend(b.entities, a.entities, (ahead - b.time) / (a.time - b.time));
      }
      if (n > 1) list.splice(0, n - 1);
      return copyAll(list[list.length - 1].entities);
    }
    let i = n - 2; // the newest snapshot at or before `time` (render times stay near the end)
    while (list[i].time > time) i--;
    const a = list[i];
    const b = list[i + 1];
    const out = this.#blend(a.entities, b.entities, (time - a.time) / (b.time - a.time));
    if (i > 0) list.splice(0, i);
    return out;
  }

  // The entities of `a`, their numeric fields moved `t` of the way towards `b`. When
  // extrapolating, `a` is the newest snapshot, `b` the one before and `t` negative. An
  // entity missing from `b` keeps its values in `a`.
  #blend(a, b, t) {
    const out = new Map();
    for (const [id, fa] of a) {
      const fb = b.get(id);
      if (fb === undefined) {
        out.set(id, { ...fa });
        continue;
      }
      const f = {};
      for (const key in fa) {
        const va = fa[key];
        const vb = fb[key];
        if (typeof va === "number" && typeof vb === "number") {
          const period = this.angles.get(key);
          if (period !== undefined) {
            let d = (vb - va) % period;
            if (d > period / 2) d -= period;
            else if (d < -period / 2) d += period;
            f[key] = va + d * t;
          } else {
            f[key] = va + (vb - va) * t;
          }
        } else {
          f[key] = va; // steps: the value of `a`
        }
      }
      out.set(id, f);
    }
    return out;
  }
}

function copyAll(entities) {
  const out = new Map();
  for (const [id, f] of entities) out.set(id, { ...f });
  return out;
}
