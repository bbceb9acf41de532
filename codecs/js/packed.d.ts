// Types of packed.js, the runtime of Tickwire's packed wire format (codecs/WIRE.md).
// Generated schema modules (`tickwire schema compile --lang js`) import these.

export declare class DecodeError extends Error {}
export declare class EncodeError extends Error {}
/** A message type id the codebook does not know (close 4101 rather than 4100). */
export declare class UnknownType extends DecodeError {
  readonly typeId: number;
}

/** A whole message inside another: its type id and encoded body. */
export declare class Payload {
  constructor(typeId: number, body: Uint8Array, message?: unknown);
  readonly typeId: number;
  readonly body: Uint8Array;
  /** A channel delivery's body, already decoded. */
  readonly message?: unknown;
}

export interface ScalarKind {
  readonly name: string;
  readonly size: number;
}
export declare const KINDS: Readonly<Record<
  "bool" | "int8" | "uint8" | "int16" | "uint16" | "int32" | "uint32" | "int64" | "uint64" | "float32" | "float64",
  ScalarKind
>>;

export declare class Quant {
  constructor(min: number, max: number, bits: number, step: number);
  readonly min: number;
  readonly max: number;
  readonly bits: number;
  readonly step: number;
  readonly size: number;
  readonly qmax: number;
  quantise(v: number, where: string): number;
  value(q: number): number;
}

export interface DecodeOptions {
  maxString?: number;
  maxVector?: number;
  maxDepth?: number;
  /** The payload type id of each subscribed channel id. */
  channelTypes?: Map<number, number>;
}

export declare class DecodeContext {
  constructor(codebook: Codebook, options?: DecodeOptions);
  readonly codebook: Codebook;
  maxString: number;
  maxVector: number;
  maxDepth: number;
  channelTypes: Map<number, number>;
}

export declare class Reader {
  constructor(buf: Uint8Array, ctx: DecodeContext);
  readonly buf: Uint8Array;
  pos: number;
  readonly end: number;
  readonly ctx: DecodeContext;
}

export declare class Writer {
  constructor(capacity?: number);
  readonly buf: Uint8Array;
  pos: number;
  /** The bytes written so far (a copy). */
  finish(): Uint8Array;
}

/** What a schema module lists per message: Codebook reads these. */
export interface MessageCodec {
  readonly id: number;
  readonly name: string;
  encode(w: Writer, msg: any): void;
  decode(r: Reader): any;
}

export interface TableCodec<T, I> {
  readonly kind: "table";
  readonly id: number | null;
  encode(w: Writer, value: I): void;
  decode(r: Reader): T;
}

export interface StructArrayCodec<T, A, I> {
  readonly name: string;
  readonly size: number;
  decodeOne(r: Reader): T;
  decodeArray(r: Reader, n: number): A;
  encodeOne(w: Writer, value: I, where: string): void;
  encodeArray(w: Writer, value: readonly I[] | object, where: string): void;
}

/** A generated schema module. */
export interface SchemaModule {
  readonly SCHEMA_NAME: string;
  readonly SCHEMA_HASH: string;
  readonly MESSAGES: readonly MessageCodec[];
}

/** An object to encode: `$type` names the message; a missing field takes its default. */
export type MessageLike = { $type: string };

export declare class Codebook {
  constructor(...schemas: SchemaModule[]);
  /** The combined schema hash a client presents in Handshake.schema_hash. */
  readonly hash: string;
  readonly types: Map<number, MessageCodec>;
  readonly byName: Map<string, MessageCodec>;
  readonly jsonType: number;
  readonly bytesType: number;
  context(options?: DecodeOptions): DecodeContext;
  encodeInto<M extends MessageLike>(w: Writer, msg: M): void;
  encode<M extends MessageLike>(msg: M): Uint8Array;
  encodeFrame<M extends MessageLike>(msgs: Iterable<M>): Uint8Array;
  /** Every message of a frame; throws DecodeError (only) on bad bytes. */
  decodeFrame(data: Uint8Array | ArrayBuffer, ctx: DecodeContext): Array<{ $type: string; [field: string]: any }>;
  decodeOne(data: Uint8Array | ArrayBuffer, ctx: DecodeContext): { $type: string; [field: string]: any };
  payload(value: unknown): Payload | null;
  jsonPayload(text: string): Payload;
  payloadValue(p: Payload | null, ctx?: DecodeContext): unknown;
}

export declare function roundHalfEven(x: number): number;
export declare function sha256Hex(text: string): string;
export declare function combineHashes(hashes: readonly string[]): string;
export declare function checkInt(v: unknown, min: number, max: number, where: string): number;
export declare function toBigInt(v: unknown, min: bigint, max: bigint, where: string): bigint;
export declare function f32Bits(v: number): number;
export declare function f32FromBits(u: number): number;
export declare function soaLength(v: object, where: string): number;
