// A rate from a growing counter (bytes received, frames): the HUD's "down" figure.
// Pure: times are arguments (ms).

export class RateMeter {
  /** @param {number} [windowMs] the rate is averaged over this much time (1000 ms) */
  constructor(windowMs = 1000) {
    this.windowMs = windowMs;
    this.samples = []; // [time, total], oldest first
  }

  /** The counter's value `total` at time `now`. */
  sample(now, total) {
    const s = this.samples;
    s.push([now, total]);
    // Keep one sample at or before the window's start, so the rate spans the whole window.
    while (s.length > 2 && s[1][0] <= now - this.windowMs) s.shift();
  }

  /** Units per second over the window (0 until two samples). */
  rate() {
    const s = this.samples;
    if (s.length < 2) return 0;
    const [t0, v0] = s[0];
    const [t1, v1] = s[s.length - 1];
    return t1 > t0 ? ((v1 - v0) * 1000) / (t1 - t0) : 0;
  }
}

/** 1234 -> "1.2 kB", 999 -> "999 B". */
export function formatBytes(n) {
  if (n < 1000) return `${Math.round(n)} B`;
  if (n < 1e6) return `${(n / 1000).toFixed(1)} kB`;
  return `${(n / 1e6).toFixed(2)} MB`;
}
