// Types of entities.js: the client's entity sync decoder (codecs/WIRE.md, "Entity sync").

import type { Quant } from "./packed.js";

/** One synced field of the entity struct, as the server's engine.entities.FieldSpec. */
export interface EntityFieldSpec {
  name: string;
  kind: "quant" | "float" | "int" | "uint" | "bool";
  /** Wire bits (a quantised field's come from its quant). */
  width?: number;
  quant?: Quant | { min: number; max: number; bits: number; step: number };
}

/** The fields of an EntitySyncInfo message (snake_case, as on the wire). */
export interface EntitySyncInfoFields {
  struct_name?: string;
  id_bits: number;
  x_field: number;
  y_field: number;
  cell_steps_x: number;
  cell_steps_y: number;
  columns: number;
  rows: number;
}

export declare class SyncLayout {
  constructor(options: {
    fields: EntityFieldSpec[];
    widths?: number[];
    idBits: number;
    x: number;
    y: number;
    cellStepsX: number;
    cellStepsY: number;
    columns: number;
    rows: number;
    structName?: string;
  });
  /** From the struct's fields (or an object with a `fields` list) and EntitySyncInfo. */
  static fromInfo(struct: readonly EntityFieldSpec[] | { fields: readonly EntityFieldSpec[] }, info: EntitySyncInfoFields): SyncLayout;
  readonly fields: ReadonlyArray<Readonly<Required<Pick<EntityFieldSpec, "name" | "kind" | "width">>> & { quant: Quant | null }>;
  readonly widths: number[];
  readonly idBits: number;
  readonly x: number;
  readonly y: number;
  readonly cellStepsX: number;
  readonly cellStepsY: number;
  readonly columns: number;
  readonly rows: number;
  readonly structName: string;
  readonly cells: number;
  recordBits(mask: number): number;
}

/** Decoded values: numbers (quantised floats as min + q * step), booleans, and bigints
 * for integers wider than 53 bits. */
export type EntityValue = number | boolean | bigint;

export declare class ClientWorld {
  constructor(layout: SyncLayout);
  readonly layout: SyncLayout;
  readonly entities: Map<number, Record<string, EntityValue>>;
  /** The cell each entity was last reported in. */
  readonly cellOf: Map<number, number>;
  /** Ids that appeared and disappeared since the caller last cleared these. */
  readonly spawned: number[];
  readonly despawned: number[];
  inCell(cell: number): number[];
  clear(): void;
}

/** Apply one EntitySync message's data; DecodeError on malformed data. */
export declare function applyEntitySync(world: ClientWorld, data: Uint8Array): void;
