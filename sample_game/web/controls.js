// What the player wants, turned into the room's Move inputs (game.fbs). Pure: no DOM, no
// clock (times are arguments), so node --test runs it (sample_game/test/).
//
// The server walks the avatar by the latest intent it has: a direction held (dx, dy in
// -100..100) or a point to walk to. A held direction is only good for the room's
// `intent_timeout` (1 s), so while keys are down the intent is sent again every
// `heartbeat` ms. The echo of each input is also what the room's round-trip time is
// measured from, so an idle player still repeats its intent every `idleHeartbeat` ms.

const KEYS = new Map([
  ["ArrowLeft", [-1, 0]],
  ["KeyA", [-1, 0]],
  ["ArrowRight", [1, 0]],
  ["KeyD", [1, 0]],
  ["ArrowUp", [0, -1]],
  ["KeyW", [0, -1]],
  ["ArrowDown", [0, 1]],
  ["KeyS", [0, 1]],
]);

/** Whether a KeyboardEvent.code moves the avatar. */
export function isMoveKey(code) {
  return KEYS.has(code);
}

/** The direction of the keys held, as the Move fields dx, dy (-100, 0 or 100 each). */
export function keyVector(held) {
  let x = 0;
  let y = 0;
  for (const code of held) {
    const v = KEYS.get(code);
    if (v !== undefined) {
      x += v[0];
      y += v[1];
    }
  }
  return { dx: Math.sign(x) * 100, dy: Math.sign(y) * 100 };
}

export class Controls {
  /**
   * @param {object} [options]
   * @param {number} [options.heartbeat] ms between repeats of a held direction (200)
   * @param {number} [options.idleHeartbeat] ms between repeats otherwise (1000)
   * @param {number} [options.worldSize] targets are clamped to [0, worldSize] (4000)
   */
  constructor({ heartbeat = 200, idleHeartbeat = 1000, worldSize = 4000 } = {}) {
    this.heartbeat = heartbeat;
    this.idleHeartbeat = idleHeartbeat;
    this.worldSize = worldSize;
    this.held = new Set();
    this.target = null; // {x, y}: walking there (a click or a tap)
    this.sent = null; // the last Move sent
    this.sentAt = -Infinity;
  }

  press(code) {
    if (!isMoveKey(code)) return false;
    this.held.add(code);
    this.target = null; // keys take over from a click
    return true;
  }

  release(code) {
    return this.held.delete(code);
  }

  /** Every key up (the window lost focus: its keyup events will never come). */
  releaseAll() {
    this.held.clear();
  }

  /** Walk to a point of the world (a click, a tap, or a drag's newest point). */
  walkTo(x, y) {
    const clamp = (v) => Math.min(this.worldSize, Math.max(0, v));
    this.target = { x: clamp(x), y: clamp(y) };
    this.held.clear();
  }

  /** The target reached (or dropped): the marker goes. */
  arrived() {
    this.target = null;
  }

  /** The Move that says the current intent. */
  intent() {
    if (this.target !== null) {
      return { $type: "Move", dx: 0, dy: 0, to: true, tx: this.target.x, ty: this.target.y };
    }
    const { dx, dy } = keyVector(this.held);
    return { $type: "Move", dx, dy, to: false, tx: 0, ty: 0 };
  }

  /** The Move to send at `now` (ms), or null: on a change, and as a heartbeat (often
   * while a direction is held, seldom otherwise). */
  next(now) {
    const move = this.intent();
    const changed = !sameMove(move, this.sent);
    const moving = !move.to && (move.dx !== 0 || move.dy !== 0);
    const period = moving ? this.heartbeat : this.idleHeartbeat;
    if (!changed && now - this.sentAt < period) return null;
    this.sent = move;
    this.sentAt = now;
    return move;
  }
}

function sameMove(a, b) {
  return (
    b !== null && a.dx === b.dx && a.dy === b.dy && a.to === b.to && Math.abs(a.tx - b.tx) < 0.125 && Math.abs(a.ty - b.ty) < 0.125
  );
}
