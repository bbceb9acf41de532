// Types of interpolation.js: the snapshot interpolation buffer for rendering entities.

/** One entity's fields: numbers interpolate; anything else steps. */
export type EntityFields = Record<string, unknown>;

/** The entities at one room time, however the caller holds them. */
export type EntitySnapshot =
  | ReadonlyMap<number, EntityFields>
  | Iterable<readonly [number, EntityFields]>
  | Record<number | string, EntityFields>;

export interface SnapshotBufferOptions {
  /** ms the render time runs behind the time given to render() (default 100). */
  delay?: number;
  /** Snapshots kept at most (default 64). */
  maxSnapshots?: number;
  /** ms past the newest snapshot that numeric fields may be extrapolated (default 0: hold). */
  maxExtrapolation?: number;
  /** Angle fields, turned the short way around: names (period 2π) or {name: period}. */
  angles?: Iterable<string> | Record<string, number>;
}

export declare class SnapshotBuffer {
  constructor(options?: SnapshotBufferOptions);
  delay: number;
  maxSnapshots: number;
  maxExtrapolation: number;
  readonly angles: Map<string, number>;
  /** Times the room clock went backwards (the room moved) and the buffer started over. */
  readonly resets: number;
  /** Renders past the newest snapshot: the delay is short for this link. */
  readonly starved: number;
  /** Renders before the oldest snapshot. */
  readonly early: number;
  readonly size: number;
  /** Room time (ms) of the newest snapshot, or null. */
  readonly newest: number | null;
  readonly oldest: number | null;
  /** Add the entities at room time `time` (ms); they are copied. */
  push(time: number, entities: EntitySnapshot): void;
  /** The entities at `serverTime - delay`. */
  render(serverTime: number): Map<number, EntityFields>;
  /** The entities at room time `time`, interpolated; a new Map of new objects. */
  at(time: number): Map<number, EntityFields>;
  clear(): void;
}
