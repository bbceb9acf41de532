// The meadow's scenery: grass, flowers, stones and ponds, the same for every player and
// never sent over the wire. Each tile of ground gets its decorations from a hash of its
// coordinates, so any part of the world is drawn the same way by anyone, any time. Pure:
// node --test checks it (sample_game/test/).

export const WORLD_SIZE = 4000;
export const TILE = 125; // world units per tile of scenery
export const PLAZA = Object.freeze({ x: 2000, y: 2000, r: 120 });

/** A 32-bit hash of integers (a mix of multiply-xorshift rounds). */
export function hash(...ints) {
  let h = 0x9e3779b9;
  for (const v of ints) {
    h = Math.imul(h ^ (v | 0), 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
  }
  return h >>> 0;
}

/** A deterministic stream of numbers in [0, 1) for one tile. */
export function tileRandom(tx, ty, salt = 0) {
  let n = 0;
  return () => hash(tx, ty, salt, n++) / 4294967296;
}

const FLOWERS = ["#f4d35e", "#f7f7f2", "#ee6c8a", "#b48ef0", "#ff9f5a"];

/** Smooth value noise in [0, 1) at (x, y), features about `scale` units across. */
export function valueNoise(x, y, scale, salt = 0) {
  const gx = x / scale;
  const gy = y / scale;
  const ix = Math.floor(gx);
  const iy = Math.floor(gy);
  const fx = gx - ix;
  const fy = gy - iy;
  const sx = fx * fx * (3 - 2 * fx);
  const sy = fy * fy * (3 - 2 * fy);
  const v = (i, j) => hash(ix + i, iy + j, salt) / 4294967296;
  const top = v(0, 0) + (v(1, 0) - v(0, 0)) * sx;
  const bottom = v(0, 1) + (v(1, 1) - v(0, 1)) * sx;
  return top + (bottom - top) * sy;
}

/** How lush the grass is at (x, y), 0 to 1: two octaves of noise (the ground's colour). */
export function lushness(x, y) {
  return valueNoise(x, y, 420, 1) * 0.65 + valueNoise(x, y, 110, 2) * 0.35;
}

/**
 * What grows on tile (tx, ty): tufts, flower clusters, stones, mushrooms, in world
 * coordinates. [{type, x, y, r, color?, rot?}]
 */
export function tileDecor(tx, ty) {
  const rnd = tileRandom(tx, ty);
  const x0 = tx * TILE;
  const y0 = ty * TILE;
  const out = [];
  const at = () => [x0 + rnd() * TILE, y0 + rnd() * TILE];
  const tufts = 5 + Math.floor(rnd() * 6);
  for (let i = 0; i < tufts; i++) {
    const [x, y] = at();
    out.push({ type: "tuft", x, y, r: 3 + rnd() * 3, rot: rnd() * 0.6 - 0.3 });
  }
  if (rnd() < 0.55) {
    const [cx, cy] = at();
    const color = FLOWERS[Math.floor(rnd() * FLOWERS.length)];
    const n = 3 + Math.floor(rnd() * 7);
    for (let i = 0; i < n; i++) {
      out.push({ type: "flower", x: cx + (rnd() - 0.5) * 40, y: cy + (rnd() - 0.5) * 40, r: 1.8 + rnd() * 1.4, color });
    }
  }
  if (rnd() < 0.3) {
    const [x, y] = at();
    out.push({ type: "stone", x, y, r: 4 + rnd() * 7, rot: rnd() * Math.PI });
  }
  if (rnd() < 0.08) {
    const [x, y] = at();
    out.push({ type: "mushroom", x, y, r: 4 + rnd() * 2 });
  }
  return out.filter((d) => !onPlaza(d.x, d.y, 12) && !inPond(d.x, d.y));
}

/** Ponds, placed once from a fixed seed, none on the plaza. [{x, y, rx, ry, rot}] */
export const PONDS = Object.freeze(
  (() => {
    const rnd = tileRandom(-1, -1, 7);
    const out = [];
    while (out.length < 16) {
      const p = { x: 200 + rnd() * 3600, y: 200 + rnd() * 3600, rx: 60 + rnd() * 90, ry: 40 + rnd() * 60, rot: rnd() * Math.PI };
      if (Math.hypot(p.x - PLAZA.x, p.y - PLAZA.y) > PLAZA.r + 260) out.push(Object.freeze(p));
    }
    return out;
  })(),
);

export function onPlaza(x, y, margin = 0) {
  return Math.hypot(x - PLAZA.x, y - PLAZA.y) < PLAZA.r + margin;
}

export function inPond(x, y) {
  for (const p of PONDS) {
    const c = Math.cos(-p.rot);
    const s = Math.sin(-p.rot);
    const dx = x - p.x;
    const dy = y - p.y;
    const u = (dx * c - dy * s) / p.rx;
    const v = (dx * s + dy * c) / p.ry;
    if (u * u + v * v < 1) return true;
  }
  return false;
}
