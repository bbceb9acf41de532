"""The Python runtime of Tickwire's `packed` wire format (codecs/WIRE.md).

The schema compiler generates one module per schema: record classes plus an encoder and a
decoder per table, written in terms of the primitives here. This module holds those
primitives (varints, strings, quantisation, struct layouts that encode numpy arrays without
a Python loop) and the Codebook, which joins the protocol's schema and an application's
into the one codec a connection speaks.

Everything here is pure: bytes and values in, bytes and values out. A decoder given bad
bytes raises DecodeError, never anything else, and checks every length against what is
left of the input before allocating.
"""

from __future__ import annotations

import json
import keyword
import struct as _struct
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np

__all__ = [
    "DecodeError",
    "EncodeError",
    "Record",
    "Payload",
    "StructLayout",
    "DecodeContext",
    "Codebook",
    "w_uvarint",
    "w_svarint",
    "r_uvarint",
    "r_svarint",
    "uvarint_bytes",
]


class DecodeError(ValueError):
    """Bytes that are not a valid encoding under the schema."""


class EncodeError(ValueError):
    """A value that the schema cannot encode (wrong type, out of range)."""


class Record:
    """Base of every generated table and struct class: slots, equality, repr, dicts."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        for name in self.__slots__:
            a, b = getattr(self, name), getattr(other, name)
            if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
                if not np.array_equal(np.asarray(a), np.asarray(b)):
                    return False
            elif a != b:
                return False
        return True

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__)
        return f"{type(self).__name__}({inner})"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (for JSON codecs and logs): a table says which it is with
        "$type" (so a union member can be told from another), a struct is its fields, an
        array of structs a list of them, bytes a list of numbers, and a payload
        {"$payload": type_id, "body": [bytes]}. `from_dict` reads the same form back."""
        out: dict[str, Any] = {"$type": type(self).__name__} if hasattr(type(self), "TYPE_ID") else {}
        for n in self.__slots__:
            out[n] = _plain(getattr(self, n))
        return out

    @classmethod
    def from_dict(cls, data: Any, types: Mapping[str, type] | None = None) -> Any:
        """The record a to_dict() value stands for (what a JSON client sends for a typed
        message). A field it omits takes its default. A nested table or union member names
        its table with "$type", looked up in `types` (Codebook.records); a nested value
        without it is read field by field as it is, which is all a struct needs (a nested
        table given so must then have every field). Nothing is range-checked here: encoding
        the record does that, and says what is wrong (EncodeError)."""
        return _record_from(cls, data, types or {}, 0)


# A value from JSON nests at most this deep in a record: deeper is refused, never recursed.
MAX_PLAIN_DEPTH = 64


def _record_from(cls: type, data: Any, types: Mapping[str, type], depth: int) -> Any:
    if not isinstance(data, Mapping):
        raise EncodeError(f"{cls.__name__} takes an object of its fields, not {type(data).__name__}")
    named = data.get("$type")
    if named is not None and named != cls.__name__:
        raise EncodeError(f"expected {cls.__name__}, not {named!r}")
    slots = cls.__slots__
    fields = {}
    for key, value in data.items():
        if key == "$type":
            continue
        if key not in slots:
            raise EncodeError(f"{cls.__name__} has no field {key!r}")
        fields[key] = _unplain(value, types, depth + 1)
    return cls(**fields)


def _unplain(v: Any, types: Mapping[str, type], depth: int) -> Any:
    if depth > MAX_PLAIN_DEPTH:
        raise EncodeError(f"a value nests more than {MAX_PLAIN_DEPTH} deep")
    if isinstance(v, dict):
        named = v.get("$type")
        if named is not None:
            cls = types.get(named) if isinstance(named, str) else None
            if cls is None:
                raise EncodeError(f"unknown $type {named!r}")
            return _record_from(cls, v, types, depth)
        if "$payload" in v:
            t, body = v.get("$payload"), v.get("body")
            if not isinstance(t, int) or not isinstance(body, list):
                raise EncodeError('a payload is {"$payload": type_id, "body": [bytes]}')
            try:
                return Payload(t, bytes(body))
            except (TypeError, ValueError):
                raise EncodeError("a payload's body is a list of bytes (0-255)") from None
        return _Fields({k: _unplain(x, types, depth + 1) for k, x in v.items()})
    if isinstance(v, list):
        return [_unplain(x, types, depth + 1) for x in v]
    return v


class _Fields:
    """A nested table or struct given as a plain object without "$type": the generated
    encoders read fields as attributes, and so does StructLayout.row."""

    __slots__ = ("_values",)

    def __init__(self, values: dict[str, Any]):
        self._values = values

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"missing field {name!r}") from None


def _plain(v: Any) -> Any:
    if isinstance(v, Record):
        return v.to_dict()
    if isinstance(v, np.ndarray):
        if v.dtype.names:
            return [{n: _plain(row[n]) for n in v.dtype.names} for row in v]
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (bytes, bytearray, memoryview)):
        return list(bytes(v))
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, Payload):
        return {"$payload": v.type_id, "body": list(v.body)}
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    return v


class Payload:
    """A whole message carried inside another one: its type id and its encoded body.

    A server routes payloads without decoding them; `Codebook.payload_value()` decodes one
    when a handler needs the value. Type id 0 is "no payload".
    """

    __slots__ = ("type_id", "body")

    def __init__(self, type_id: int, body: bytes = b""):
        self.type_id = type_id
        self.body = body

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Payload) and other.type_id == self.type_id and other.body == self.body

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Payload({self.type_id}, {self.body!r})"


NO_PAYLOAD = Payload(0, b"")


# ----------------------------------------------------------------------------------------
# scalars


def w_uvarint(out: bytearray, v: int) -> None:
    if v < 0x80:
        if v < 0:
            raise EncodeError(f"{v} is negative; the field is unsigned")
        out.append(v)
        return
    if v >> 64:
        raise EncodeError(f"{v} does not fit in 64 bits")
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)


# The varints of 0 to 2**14 - 1 (one or two bytes), looked up instead of encoded: type ids,
# counts and channel ids in segment headers, and the input sequence numbers and echo ages
# of every Tick header (a room's send tick indexes this table directly, per player).
SMALL_UVARINTS = tuple(bytes((i,)) if i < 128 else bytes((i & 0x7F | 0x80, i >> 7)) for i in range(1 << 14))


def uvarint_bytes(v: int) -> bytes:
    if 0 <= v < 16384:
        return SMALL_UVARINTS[v]
    out = bytearray()
    w_uvarint(out, v)
    return bytes(out)


def w_svarint(out: bytearray, v: int) -> None:
    if not -(1 << 63) <= v < (1 << 63):
        raise EncodeError(f"{v} does not fit in 64 bits")
    w_uvarint(out, ((v << 1) ^ (v >> 63)) & 0xFFFFFFFFFFFFFFFF)


def r_uvarint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    end = len(buf)
    while True:
        if pos >= end:
            raise DecodeError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            if result >> 64:
                raise DecodeError("varint over 64 bits")
            return result, pos
        shift += 7
        if shift >= 70:
            raise DecodeError("varint longer than 10 bytes")


def r_svarint(buf: bytes, pos: int) -> tuple[int, int]:
    u, pos = r_uvarint(buf, pos)
    return (u >> 1) ^ -(u & 1), pos


def check_int(v: Any, lo: int, hi: int, name: str) -> int:
    """An integer field's value, or EncodeError (bools count as 0 and 1)."""
    if not isinstance(v, (int, np.integer)):
        raise EncodeError(f"{name} must be an integer, not {type(v).__name__}")
    if not lo <= v <= hi:
        raise EncodeError(f"{name} = {v} is out of range {lo}..{hi}")
    return int(v)


def r_string(buf: bytes, pos: int, maxlen: int) -> tuple[str, int]:
    n = buf[pos]
    pos += 1
    if n >= 0x80:
        n, pos = r_uvarint(buf, pos - 1)
    if n > maxlen:
        raise DecodeError(f"string of {n} bytes is over the limit of {maxlen}")
    end = pos + n
    if end > len(buf):
        raise DecodeError("truncated string")
    try:
        return str(buf[pos:end], "utf-8"), end
    except UnicodeDecodeError:
        raise DecodeError("string is not valid UTF-8") from None


def w_string(out: bytearray, s: str) -> None:
    if type(s) is not str:
        raise EncodeError(f"expected a str, not {type(s).__name__}")
    if s.isascii():
        n = len(s)
        if n < 0x80:
            out.append(n)
        else:
            w_uvarint(out, n)
        out += s.encode("ascii")
        return
    try:
        data = s.encode("utf-8")
    except UnicodeEncodeError:
        raise EncodeError("string holds a lone surrogate, which UTF-8 cannot encode") from None
    w_uvarint(out, len(data))
    out += data


def r_bytes(buf: bytes, pos: int, maxlen: int) -> tuple[bytes, int]:
    n, pos = r_uvarint(buf, pos)
    if n > maxlen:
        raise DecodeError(f"byte vector of {n} bytes is over the limit of {maxlen}")
    end = pos + n
    if end > len(buf):
        raise DecodeError("truncated byte vector")
    return bytes(buf[pos:end]), end


def w_bytes(out: bytearray, b: bytes | bytearray | memoryview | list[int]) -> None:
    if not isinstance(b, (bytes, bytearray, memoryview)):
        if not isinstance(b, list):
            raise EncodeError(f"expected bytes, not {type(b).__name__}")
        try:  # a list of numbers: the JSON form of bytes (Record.to_dict)
            b = bytes(b)
        except (TypeError, ValueError):
            raise EncodeError("expected bytes or a list of numbers 0-255") from None
    w_uvarint(out, len(b))
    out += b


def r_bool(buf: bytes, pos: int) -> tuple[bool, int]:
    b = buf[pos]
    if b > 1:
        raise DecodeError(f"bool byte is {b}, not 0 or 1")
    return b == 1, pos + 1


def r_count(buf: bytes, pos: int, maxlen: int, min_elem_size: int) -> tuple[int, int]:
    """A vector's element count, checked against the limit and the bytes that are left."""
    n = buf[pos]
    if n < 0x80:
        pos += 1
    else:
        n, pos = r_uvarint(buf, pos)
    if n > maxlen:
        raise DecodeError(f"vector of {n} elements is over the limit of {maxlen}")
    if n * min_elem_size > len(buf) - pos:
        raise DecodeError("truncated vector")
    return n, pos


_FIXED = {
    ("int8", 1): _struct.Struct("<b"),
    ("uint8", 1): _struct.Struct("<B"),
    ("int16", 2): _struct.Struct("<h"),
    ("uint16", 2): _struct.Struct("<H"),
    ("int32", 4): _struct.Struct("<i"),
    ("uint32", 4): _struct.Struct("<I"),
    ("int64", 8): _struct.Struct("<q"),
    ("uint64", 8): _struct.Struct("<Q"),
    ("float32", 4): _struct.Struct("<f"),
    ("float64", 8): _struct.Struct("<d"),
}
F32 = _FIXED[("float32", 4)]
F64 = _FIXED[("float64", 8)]


def w_f32(out: bytearray, v: float) -> None:
    try:
        out += F32.pack(v)
    except (_struct.error, TypeError) as exc:
        raise EncodeError(f"cannot encode {v!r} as a float: {exc}") from None


def w_f64(out: bytearray, v: float) -> None:
    try:
        out += F64.pack(v)
    except (_struct.error, TypeError) as exc:
        raise EncodeError(f"cannot encode {v!r} as a double: {exc}") from None


# ----------------------------------------------------------------------------------------
# quantisation


@dataclass(frozen=True)
class Quant:
    """q = round_half_even((clamp(v, min, max) - min) / step), in IEEE doubles (WIRE.md).

    Every path (one value, numpy arrays, the JavaScript runtime) computes exactly this, so
    the same value gives the same bytes everywhere.
    """

    min: float
    max: float
    bits: int
    step: float

    @property
    def qmax(self) -> int:
        return (1 << self.bits) - 1

    @property
    def qtop(self) -> int:
        """The largest q the range produces: round((max - min) / step), at most qmax."""
        return min(round((self.max - self.min) / self.step), self.qmax)

    def __post_init__(self) -> None:
        # Cached for quantise_array, which runs once per field per send tick.
        object.__setattr__(self, "_qtop_f", float(self.qtop))

    @property
    def size(self) -> int:
        return (self.bits + 7) // 8

    def quantise(self, v: float) -> int:
        if v != v:  # NaN
            raise EncodeError("NaN cannot be quantised")
        q = round((min(max(v, self.min), self.max) - self.min) / self.step)
        return q if q <= self.qmax else self.qmax

    def value(self, q: int) -> float:
        return self.min + q * self.step

    def quantise_array(self, v: np.ndarray, dtype: Any = np.uint64) -> np.ndarray:
        return self.quantise_floats(v).astype(dtype)

    def quantise_floats(self, v: np.ndarray) -> np.ndarray:
        """q of every value, as float64 integers (exact: q < 2**53)."""
        # Rounding is monotonic, so clamping q to [0, qtop] after rounding gives what
        # clamping v before it gives, with one numpy pass fewer (this is the hot path of
        # every entity update: each pass over 1,000 values costs about 0.5-1 us).
        if self.min == 0.0:  # cell-relative coordinates: one pass fewer
            q = np.divide(v, self.step, dtype=np.float64)
        else:
            q = np.subtract(v, self.min, dtype=np.float64)
            np.divide(q, self.step, out=q)
        np.rint(q, out=q)
        np.maximum(q, 0.0, out=q)
        np.minimum(q, self._qtop_f, out=q)
        if q.size:
            top = _MAX(q)
            if top != top:  # the max of an array with a NaN is NaN
                raise EncodeError("NaN cannot be quantised")
        return q

    def value_array(self, q: np.ndarray, dtype: Any) -> np.ndarray:
        return (q.astype(np.float64) * self.step + self.min).astype(dtype)


def w_quant(out: bytearray, v: float, q: Quant) -> None:
    try:
        out += q.quantise(float(v)).to_bytes(q.size, "little")
    except TypeError:
        raise EncodeError(f"expected a number, not {type(v).__name__}") from None


def r_quant(buf: bytes, pos: int, q: Quant) -> tuple[float, int]:
    end = pos + q.size
    if end > len(buf):
        raise DecodeError("truncated quantised value")
    raw = int.from_bytes(buf[pos:end], "little")
    if raw > q.qmax:
        raise DecodeError(f"quantised value {raw} is over its {q.bits} bits")
    return q.min + raw * q.step, end


# ----------------------------------------------------------------------------------------
# vectors of scalars: fixed width, read and written by numpy


def scalar_dtype(name: str) -> np.dtype:
    return np.dtype({"bool": "?", "int8": "i1", "uint8": "u1", "int16": "<i2", "uint16": "<u2",
                     "int32": "<i4", "uint32": "<u4", "int64": "<i8", "uint64": "<u8",
                     "float32": "<f4", "float64": "<f8"}[name])


def _uint_dtype(size: int) -> np.dtype | None:
    return {1: np.dtype("u1"), 2: np.dtype("<u2"), 4: np.dtype("<u4"), 8: np.dtype("<u8")}.get(size)


def w_scalar_vector(out: bytearray, values: Any, dtype: np.dtype) -> None:
    if isinstance(values, np.ndarray):
        arr = values
    elif dtype.kind in "iu":
        # A list of Python ints: numpy would turn [1, 2**64 - 1] into floats.
        if not all(isinstance(x, (int, np.integer)) for x in values):
            raise EncodeError(f"expected integers for a vector of {dtype}")
        try:
            arr = np.array(values, dtype=dtype)
        except OverflowError:
            raise EncodeError(f"a value is out of range for {dtype}") from None
    else:
        arr = np.asarray(values)
    if arr.ndim != 1:
        raise EncodeError("a vector of scalars must be one-dimensional")
    if dtype.kind in "iu" and arr.size and arr.dtype.kind not in "iub":
        raise EncodeError(f"expected integers, not {arr.dtype}")
    if dtype.kind in "iu" and arr.size:
        info = np.iinfo(dtype)
        if arr.min() < info.min or arr.max() > info.max:
            raise EncodeError(f"a value is out of range for {dtype}")
    w_uvarint(out, arr.size)
    out += arr.astype(dtype, copy=False).tobytes()


def r_scalar_vector(buf: bytes, pos: int, dtype: np.dtype, maxlen: int) -> tuple[np.ndarray, int]:
    n, pos = r_count(buf, pos, maxlen, dtype.itemsize)
    end = pos + n * dtype.itemsize
    arr = np.frombuffer(buf, dtype, n, pos).copy()
    if dtype.kind == "b" and arr.view(np.uint8).max(initial=0) > 1:
        raise DecodeError("bool byte is not 0 or 1")
    return arr, end


def w_quant_vector(out: bytearray, values: Any, q: Quant) -> None:
    qs = q.quantise_array(np.asarray(values, dtype=np.float64))
    w_uvarint(out, qs.size)
    out += _le_bytes(qs, q.size)


def r_quant_vector(buf: bytes, pos: int, q: Quant, dtype: np.dtype, maxlen: int) -> tuple[np.ndarray, int]:
    n, pos = r_count(buf, pos, maxlen, q.size)
    raw = _from_le_bytes(buf, pos, n, q.size)
    if raw.size and raw.max() > q.qmax:
        raise DecodeError(f"quantised value over its {q.bits} bits")
    return q.value_array(raw, dtype), pos + n * q.size


def _le_bytes(v: np.ndarray, size: int) -> bytes:
    """The low `size` bytes of each uint64, little-endian, back to back."""
    dt = _uint_dtype(size)
    if dt is not None:
        return v.astype(dt).tobytes()
    return v.astype("<u8").view(np.uint8).reshape(-1, 8)[:, :size].tobytes()


def _from_le_bytes(buf: bytes, pos: int, n: int, size: int) -> np.ndarray:
    dt = _uint_dtype(size)
    if dt is not None:
        return np.frombuffer(buf, dt, n, pos).astype(np.uint64)
    raw = np.frombuffer(buf, np.uint8, n * size, pos).reshape(n, size)
    wide = np.zeros((n, 8), np.uint8)
    wide[:, :size] = raw
    return wide.view("<u8").reshape(n)


def _pack_words(words: np.ndarray, size: int) -> bytes:
    """The low `size` bytes of each word, little-endian, back to back."""
    if size == words.itemsize:
        return words.astype(words.dtype.newbyteorder("<"), copy=False).tobytes()
    if _OVERLAPPING_STORE_OK:
        # Store each word at a stride of `size` bytes, in element order, so that word i+1
        # overwrites the high bytes of word i: one pass, where slicing [:, :size] out of
        # the words costs 3-4 times as much (a 3-byte Move: 1.7 us against 5.5 us).
        n = words.shape[0]
        buf = np.empty(n * size + words.itemsize, np.uint8)
        np.ndarray((n,), dtype=_LE[words.dtype], buffer=buf, strides=(size,))[:] = words
        return buf[: n * size].tobytes()
    return words.astype(words.dtype.newbyteorder("<")).view(np.uint8).reshape(-1, words.itemsize)[:, :size].tobytes()


_LE = {np.dtype(np.uint32): np.dtype("<u4"), np.dtype(np.uint64): np.dtype("<u8")}


def _unpack_words(buf: bytes, pos: int, n: int, size: int, word: np.dtype) -> np.ndarray:
    """n words of `size` bytes each, as `word` (its high bytes zero)."""
    le = word.newbyteorder("<")
    if size == word.itemsize:
        return np.frombuffer(buf, le, n, pos).astype(word)
    if n == 0:
        return np.zeros(0, word)
    # Read each word at a stride of `size` (its top bytes belong to the next element),
    # then mask. The last word reads past the array: pad when the buffer ends there.
    need = pos + (n - 1) * size + word.itemsize
    if need > len(buf):
        buf = bytes(buf[pos : pos + n * size]) + bytes(word.itemsize)
        pos = 0
    words = np.ndarray((n,), dtype=le, buffer=buf, offset=pos, strides=(size,)).astype(word)
    np.bitwise_and(words, word.type((1 << (8 * size)) - 1), out=words)
    return words


def _overlapping_store_works() -> bool:
    """numpy stores a strided array in element order (what _pack_words relies on)."""
    words = (np.arange(1000, dtype=np.uint64) * 0x9E3779B97F4A7C15).astype(np.uint32)
    expected = words.view(np.uint8).reshape(-1, 4)[:, :3].tobytes() if words.dtype.byteorder != ">" else b""
    buf = np.empty(1000 * 3 + 4, np.uint8)
    np.ndarray((1000,), dtype="<u4", buffer=buf, strides=(3,))[:] = words
    return buf[:3000].tobytes() == expected


_OVERLAPPING_STORE_OK = _overlapping_store_works()


# ----------------------------------------------------------------------------------------
# structs


@dataclass(frozen=True)
class StructField:
    name: str
    kind: str  # int, uint, float, bool, struct
    scalar: str  # canonical scalar name ("" for struct)
    offset: int  # bits from the least significant end
    width: int  # bits
    quant: Quant | None = None
    sub: "StructLayout | None" = None


class StructLayout:
    """Packs a struct's fields LSB-first into `size` bytes (WIRE.md, "Structs").

    Arrays of a struct are numpy structured arrays with `dtype` (floats as floats even when
    quantised); encode_array and decode_array convert them with a fixed number of numpy
    operations per field, never a loop over elements.
    """

    def __init__(self, name: str, fields: list[StructField], bits: int, record: type | None = None):
        self.name = name
        self.fields = fields
        self.bits = bits
        self.size = (bits + 7) // 8
        self.record = record
        self.bitpacked = any(f.width not in (8, 16, 32, 64) for f in fields)
        self._word = np.dtype(np.uint32) if bits <= 32 else np.dtype(np.uint64)
        self._float_fields = [f for f in fields if f.quant is not None and f.offset + f.width <= 53]
        self._word_fields = [(f, self._word.type(f.offset)) for f in fields if f not in self._float_fields]
        self.dtype = np.dtype([(f.name, self._logical(f)) for f in fields])
        if not self.bitpacked:
            self.wire_dtype = np.dtype([(f.name, self._wire(f)) for f in fields])
            assert self.wire_dtype.itemsize == self.size
            self.plain = self.wire_dtype == self.dtype
        else:
            self.wire_dtype = None
            self.plain = False

    @staticmethod
    def _logical(f: StructField) -> Any:
        if f.sub is not None:
            return f.sub.dtype
        return scalar_dtype(f.scalar)

    @staticmethod
    def _wire(f: StructField) -> Any:
        if f.sub is not None:
            return f.sub.wire_dtype
        if f.quant is not None or f.kind == "bool":
            return _uint_dtype(f.width // 8)
        if f.kind in ("int", "uint"):
            # `bits: 16` on an int field makes it 16 bits wide on the wire, not 32.
            return np.dtype(f"<{'i' if f.kind == 'int' else 'u'}{f.width // 8}")
        return scalar_dtype(f.scalar)

    # -- arrays ----------------------------------------------------------------------------
    def encode_array(self, arr: Any) -> bytes:
        """Bytes of an array of this struct: a numpy structured array, or a mapping of field
        name to column (numpy state kept as one array per field needs no copy into a
        structured array; nested structs are mappings too)."""
        if isinstance(arr, dict) or (not isinstance(arr, (np.ndarray, _Columns)) and isinstance(arr, Mapping)):
            arr = self._columns(arr)
        elif not isinstance(arr, _Columns):
            arr = np.asarray(arr)
            if arr.dtype.names is None or set(arr.dtype.names) != set(self.dtype.names or ()):
                raise EncodeError(f"expected a structured array with fields {self.dtype.names}")
            if self.plain and arr.dtype == self.dtype:
                return arr.tobytes()
        if not self.bitpacked:
            return self._wire_array(arr).tobytes()
        # One word per element (uint32 when the struct fits, which halves the memory
        # traffic), each field shifted and OR-ed in place: a fixed number of numpy passes
        # per field, never a loop over elements.
        word = self._word
        # Quantised fields are combined as float64 integers (exact below 2**53: scaling
        # by 2**offset and adding disjoint bits round nothing) and converted to words
        # once, which saves a conversion, a shift and an OR per extra quantised field.
        fsum = None
        for f in self._float_fields:
            q = f.quant.quantise_floats(arr[f.name])  # type: ignore[union-attr]
            if f.offset:
                np.multiply(q, float(1 << f.offset), out=q)
            if fsum is None:
                fsum = q
            else:
                np.add(fsum, q, out=fsum)
        acc = fsum.astype(word) if fsum is not None else None
        for f, shift in self._word_fields:
            bits = self._field_bits(f, arr[f.name], word)
            if shift:
                np.left_shift(bits, shift, out=bits)
            if acc is None:
                acc = bits
            else:
                np.bitwise_or(acc, bits, out=acc)
        assert acc is not None
        return _pack_words(acc, self.size)

    def _columns(self, cols: Mapping[str, Any]) -> "_Columns":
        if set(cols) != {f.name for f in self.fields}:
            raise EncodeError(f"expected the columns {self.dtype.names}, not {tuple(cols)}")
        out = {}
        n = None
        for f in self.fields:
            col = cols[f.name]
            col = f.sub._columns(col) if f.sub is not None and isinstance(col, Mapping) else np.asarray(col)
            if col.ndim != 1 or (n is not None and col.shape[0] != n):
                raise EncodeError(f"{self.name}.{f.name}: columns must be one-dimensional and of one length")
            n = col.shape[0]
            out[f.name] = col
        return _Columns(out, n or 0)

    def _wire_array(self, arr: np.ndarray) -> np.ndarray:
        assert self.wire_dtype is not None
        w = np.empty(arr.shape[0], self.wire_dtype)
        for f in self.fields:
            col = arr[f.name]
            if f.sub is not None:
                w[f.name] = f.sub._wire_array(col) if not f.sub.plain or isinstance(col, _Columns) else col
            elif f.quant is not None:
                w[f.name] = f.quant.quantise_array(col)
            else:
                w[f.name] = self._checked(f, col)
        return w

    def _checked(self, f: StructField, col: np.ndarray) -> np.ndarray:
        if f.kind in ("int", "uint") and col.size:
            lo, hi = _int_range(f.kind == "int", f.width)
            kind = col.dtype.kind
            if kind not in "iub":
                raise EncodeError(f"{self.name}.{f.name}: expected integers, not {col.dtype}")
            # Only the bounds the column's dtype can cross are read (a uint8 column for a
            # 2-bit field needs max() only; for an 8-bit field, nothing).
            dmin, dmax = _dtype_range(col.dtype)
            if (dmin < lo and _MIN(col) < lo) or (dmax > hi and _MAX(col) > hi):
                raise EncodeError(f"{self.name}.{f.name}: a value is out of range {lo}..{hi}")
        return col

    def _field_bits(self, f: StructField, col: np.ndarray, word: np.dtype) -> np.ndarray:
        """A field's bits as a fresh array of `word` (not yet shifted)."""
        if f.quant is not None:
            return f.quant.quantise_array(col, word)
        if f.kind == "float":
            return col.astype("<f4" if f.width == 32 else "<f8").view("<u4" if f.width == 32 else "<u8").astype(word)
        if f.kind == "bool":
            return (col if col.dtype == np.bool_ else col != 0).astype(word)
        self._checked(f, col)
        bits = col.astype(word)  # a negative value wraps to its two's complement
        if f.kind == "int" and f.width < word.itemsize * 8:
            np.bitwise_and(bits, word.type((1 << f.width) - 1), out=bits)
        return bits

    def decode_array(self, buf: bytes, pos: int, n: int) -> tuple[np.ndarray, int]:
        end = pos + n * self.size
        if end > len(buf):
            raise DecodeError(f"truncated array of {self.name}")
        if self.plain:
            return np.frombuffer(buf, self.dtype, n, pos).copy(), end
        if not self.bitpacked:
            w = np.frombuffer(buf, self.wire_dtype, n, pos)
            return self._from_wire(w), end
        word = self._word
        acc = _unpack_words(buf, pos, n, self.size, word)
        out = np.empty(n, self.dtype)
        for f in self.fields:
            raw = np.right_shift(acc, word.type(f.offset)) if f.offset else acc.copy()
            if f.width < word.itemsize * 8:
                np.bitwise_and(raw, word.type((1 << f.width) - 1), out=raw)
            out[f.name] = self._field_value(f, raw)
        return out, end

    def _from_wire(self, w: np.ndarray) -> np.ndarray:
        out = np.empty(w.shape[0], self.dtype)
        for f in self.fields:
            col = w[f.name]
            if f.sub is not None:
                out[f.name] = col if f.sub.plain else f.sub._from_wire(col)
            elif f.quant is not None:
                if col.size and col.max() > f.quant.qmax:
                    raise DecodeError(f"quantised {self.name}.{f.name} is over its {f.quant.bits} bits")
                out[f.name] = f.quant.value_array(col, out.dtype[f.name])
            else:
                if f.kind == "bool" and col.size and col.view(np.uint8).max() > 1:
                    raise DecodeError("bool byte is not 0 or 1")
                out[f.name] = col
        return out

    def _field_value(self, f: StructField, raw: np.ndarray) -> np.ndarray:
        if f.quant is not None:
            return f.quant.value_array(raw, self.dtype[f.name])
        if f.kind == "float":
            return raw.astype("<u4" if f.width == 32 else "<u8").view("<f4" if f.width == 32 else "<f8")
        if f.kind == "int":
            # sign-extend: flip the sign bit, then subtract it
            sign = raw.dtype.type(1 << (f.width - 1))
            return (raw ^ sign).astype(np.int64) - np.int64(1 << (f.width - 1))
        if f.kind == "bool":
            if raw.size and raw.max() > 1:
                raise DecodeError("bool bit field is over 1")
            return raw.astype(bool)
        return raw

    # -- one value -------------------------------------------------------------------------
    def encode_one(self, out: bytearray, value: Any) -> None:
        out += self.encode_array(_rows_to_array([value], self))

    def row(self, value: Any) -> tuple:
        items = []
        for f in self.fields:
            v = getattr(value, attr_name(f.name)) if not isinstance(value, Mapping) else value[f.name]
            items.append(f.sub.row(v) if f.sub is not None else v)
        return tuple(items)

    def decode_one(self, buf: bytes, pos: int) -> tuple[Any, int]:
        arr, pos = self.decode_array(buf, pos, 1)
        return self.from_row(arr[0]), pos

    def from_row(self, row: Any) -> Any:
        values = []
        for f in self.fields:
            v = row[f.name]
            values.append(f.sub.from_row(v) if f.sub is not None else v.item())
        return self.record(*values) if self.record else tuple(values)


class _Columns:
    """Columns of a struct array given one array per field: indexes like a structured
    array (`cols["x"]`, `cols.shape[0]`), which is all StructLayout needs of one."""

    __slots__ = ("cols", "shape", "ndim")

    def __init__(self, cols: dict[str, Any], n: int):
        self.cols = cols
        self.shape = (n,)
        self.ndim = 1

    def __getitem__(self, name: str) -> Any:
        return self.cols[name]


_DTYPE_RANGES: dict[np.dtype, tuple[int, int]] = {}
# The reductions without ndarray.max's Python wrapper (a third of its cost on 1,000 values).
_MAX = np.maximum.reduce
_MIN = np.minimum.reduce


def _dtype_range(dtype: np.dtype) -> tuple[int, int]:
    r = _DTYPE_RANGES.get(dtype)
    if r is None:
        info = np.iinfo(dtype) if dtype.kind in "iu" else None
        r = (int(info.min), int(info.max)) if info else (0, 1)
        _DTYPE_RANGES[dtype] = r
    return r


def attr_name(name: str) -> str:
    """The attribute of a generated record that holds the schema field `name`: the name
    itself, with an underscore after a Python keyword (`class_`)."""
    return name + "_" if keyword.iskeyword(name) or name == "self" else name


def _int_range(signed: bool, bits: int) -> tuple[int, int]:
    if signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def w_struct_vector(out: bytearray, values: Any, layout: StructLayout) -> None:
    """A count and the structs: from a structured array, a mapping of columns (one array
    per field), or a list of records or dicts."""
    if isinstance(values, Mapping):
        values = layout._columns(values)
    elif not isinstance(values, (np.ndarray, _Columns)):
        values = _rows_to_array(values, layout)
    w_uvarint(out, values.shape[0])
    out += layout.encode_array(values)


def _rows_to_array(values: Iterable[Any], layout: StructLayout) -> np.ndarray:
    try:
        return np.array([layout.row(v) for v in values], dtype=layout.dtype)
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as exc:
        raise EncodeError(f"cannot make an array of {layout.name}: {exc}") from None


def r_struct_vector(buf: bytes, pos: int, layout: StructLayout, maxlen: int) -> tuple[np.ndarray, int]:
    n, pos = r_count(buf, pos, maxlen, layout.size)
    return layout.decode_array(buf, pos, n)


# ----------------------------------------------------------------------------------------
# decoding context and the codebook


class DecodeContext:
    """What a decoder needs beyond the bytes: limits, and each channel's payload type."""

    __slots__ = ("max_string", "max_vector", "max_depth", "depth", "channel_types", "codebook")

    def __init__(
        self,
        codebook: "Codebook",
        max_string: int = 4096,
        max_vector: int = 65536,
        channel_types: Mapping[int, int] | None = None,
        max_depth: int = 32,
    ):
        self.codebook = codebook
        self.max_string = max_string
        self.max_vector = max_vector
        # How deeply a table may hold itself (Node.children[i].next...): the decoders of
        # recursive tables count it, so no input can exhaust the stack (WIRE.md, "Limits").
        self.max_depth = max_depth
        self.depth = 0
        self.channel_types = channel_types if channel_types is not None else {}


def too_deep(name: str) -> DecodeError:
    return DecodeError(f"{name} is nested more than max_depth deep")


def r_payload(buf: bytes, pos: int, ctx: DecodeContext) -> tuple[Payload, int]:
    """A tagged payload: varint type id, then (unless 0) varint length and body."""
    t = buf[pos]
    pos += 1
    if t >= 0x80:
        t, pos = r_uvarint(buf, pos - 1)
    if t == 0:
        return NO_PAYLOAD, pos
    if t not in ctx.codebook.types:
        raise DecodeError(f"payload of unknown type {t}")
    n, pos = r_uvarint(buf, pos)
    end = pos + n
    if end > len(buf):
        raise DecodeError("truncated payload")
    body = bytes(buf[pos:end])
    return Payload(t, body), end


def w_payload(out: bytearray, p: Payload | None) -> None:
    if p is None or p.type_id == 0:
        out.append(0)
        return
    if not isinstance(p, Payload):
        raise EncodeError(f"a payload field takes a Payload, not {type(p).__name__}")
    w_uvarint(out, p.type_id)
    w_uvarint(out, len(p.body))
    out += p.body


def r_channel_payload(buf: bytes, pos: int, channel: int, ctx: DecodeContext) -> tuple[Payload, int]:
    """An untagged payload whose type is its channel's (WIRE.md, "Payloads")."""
    t = ctx.channel_types.get(channel)
    if t is None:
        raise DecodeError(f"message on channel {channel}, which this connection has not subscribed")
    entry = ctx.codebook.types.get(t)
    if entry is None:
        raise DecodeError(f"channel {channel} has unknown payload type {t}")
    _, end = entry.decode(buf, pos, ctx)
    return Payload(t, bytes(buf[pos:end])), end


def w_channel_payload(out: bytearray, p: Payload) -> None:
    if not isinstance(p, Payload) or p.type_id == 0:
        raise EncodeError("a channel message needs a payload")
    out += p.body


@dataclass(frozen=True)
class MessageType:
    type_id: int
    cls: type
    encode: Callable[[bytearray, Any], None]  # the body only
    decode: Callable[[bytes, int, DecodeContext], tuple[Any, int]]


class Codebook:
    """The message types a connection speaks: the protocol's plus the application's.

    It encodes messages (type id then body), decodes frames into lists of messages, and
    converts between Python values and payloads. It holds no connection state.
    """

    def __init__(self, *schemas: Any):
        self.schemas = schemas
        self.types: dict[int, MessageType] = {}
        self.by_class: dict[type, MessageType] = {}
        self.by_name: dict[str, MessageType] = {}
        for mod in schemas:
            for type_id, (cls, enc, dec) in mod.MESSAGES.items():
                if type_id in self.types:
                    other = self.types[type_id].cls.__name__
                    raise ValueError(f"message id {type_id} is both {other} and {cls.__name__}")
                mt = MessageType(type_id, cls, enc, dec)
                self.types[type_id] = mt
                self.by_class[cls] = mt
                self.by_name[cls.__name__] = mt
        from .schema.model import combine_hashes

        # WIRE.md: the schemas' hashes in message-id order, whatever order they are given in.
        ordered = sorted(schemas, key=lambda mod: min(mod.MESSAGES, default=1 << 30))
        self.hash = combine_hashes(mod.SCHEMA_HASH for mod in ordered)
        # Every table and struct by name, for the "$type" of plain values (Record.from_dict).
        self.records: dict[str, type] = {
            name: cls
            for mod in schemas
            for name, cls in getattr(mod, "TYPES", {}).items()
            if isinstance(cls, type) and issubclass(cls, Record)
        }
        self.json_type = self.by_name["Json"].type_id if "Json" in self.by_name else 0
        self.bytes_type = self.by_name["Bytes"].type_id if "Bytes" in self.by_name else 0
        # type id bytes, cached: the first byte of every message
        self._prefix = {t: uvarint_bytes(t) for t in self.types}

    def context(self, **kwargs: Any) -> DecodeContext:
        return DecodeContext(self, **kwargs)

    # -- messages ------------------------------------------------------------------------
    def encode_into(self, out: bytearray, msg: Any) -> None:
        """Append one message; on EncodeError `out` is left as it was, so a frame being
        built never holds half a message."""
        mt = self.by_class.get(type(msg))
        if mt is None:
            raise EncodeError(f"{type(msg).__name__} is not a message of this codebook")
        start = len(out)
        out += self._prefix[mt.type_id]
        try:
            mt.encode(out, msg)
        except EncodeError:
            del out[start:]
            raise
        except (TypeError, ValueError, AttributeError, KeyError, IndexError, OverflowError) as exc:
            # A field of the wrong type (None for an int, a str for bytes...).
            del out[start:]
            raise EncodeError(f"cannot encode {type(msg).__name__}: {exc}") from None

    def encode(self, msg: Any) -> bytes:
        out = bytearray()
        self.encode_into(out, msg)
        return bytes(out)

    def encode_body(self, msg: Any) -> bytes:
        out = bytearray()
        self.encode_into(out, msg)
        return bytes(out[len(self._prefix[self.by_class[type(msg)].type_id]):])

    def decode_frame(self, data: bytes, ctx: DecodeContext) -> list[Any]:
        """Every message in a frame, or DecodeError; never another exception."""
        return list(self.iter_frame(data, ctx))

    def iter_frame(self, data: bytes, ctx: DecodeContext) -> Iterator[Any]:
        """The messages of a frame one by one, so the caller can update `ctx` between
        them (a Subscribed announces the channel types of the Messages after it)."""
        pos, end = 0, len(data)
        if end == 0:
            raise DecodeError("empty frame")
        types = self.types
        ctx.depth = 0
        try:
            while pos < end:
                t = data[pos]
                pos += 1
                if t >= 0x80:
                    t, pos = r_uvarint(data, pos - 1)
                mt = types.get(t)
                if mt is None:
                    raise UnknownType(t)
                msg, pos = mt.decode(data, pos, ctx)
                yield msg
        except (IndexError, _struct.error, OverflowError) as exc:
            raise DecodeError(f"truncated message ({exc})") from None
        if pos != end:
            raise DecodeError("message runs past the end of the frame")

    def decode_one(self, data: bytes, ctx: DecodeContext) -> Any:
        msgs = self.decode_frame(data, ctx)
        if len(msgs) != 1:
            raise DecodeError(f"expected one message, found {len(msgs)}")
        return msgs[0]

    # -- payloads ------------------------------------------------------------------------
    def payload(self, value: Any) -> Payload:
        """A Python value as a payload: None, a message, bytes, or anything JSON can hold."""
        if value is None:
            return NO_PAYLOAD
        if isinstance(value, Payload):
            return value
        mt = self.by_class.get(type(value))
        if mt is not None:
            return Payload(mt.type_id, self.encode_body(value))
        if isinstance(value, (bytes, bytearray, memoryview)):
            out = bytearray()
            w_bytes(out, value)
            return Payload(self.bytes_type, bytes(out))
        return self.json_payload(json_text(value))

    def json_payload(self, text: str) -> Payload:
        out = bytearray()
        w_string(out, text)
        return Payload(self.json_type, bytes(out))

    def payload_value(self, p: Payload, ctx: DecodeContext | None = None) -> Any:
        """The Python value of a payload: JSON as Python data, Bytes as bytes, else a record."""
        if p.type_id == 0:
            return None
        mt = self.types.get(p.type_id)
        if mt is None:
            raise DecodeError(f"payload of unknown type {p.type_id}")
        ctx = ctx or DecodeContext(self, max_string=1 << 30, max_vector=1 << 30)
        ctx.depth = 0
        try:
            value, end = mt.decode(p.body, 0, ctx)
        except (IndexError, _struct.error, OverflowError):
            raise DecodeError(f"truncated {mt.cls.__name__} payload") from None
        if end != len(p.body):
            raise DecodeError(f"{mt.cls.__name__} payload has trailing bytes")
        if p.type_id == self.json_type:
            try:
                return json.loads(value.text)
            except ValueError as exc:
                raise DecodeError(f"payload is not valid JSON: {exc}") from None
        if p.type_id == self.bytes_type:
            return value.data
        return value

    def payload_from_plain(self, type_id: int, value: Any) -> Payload:
        """A message of type `type_id` from its plain form (Record.to_dict: what a JSON
        client sends for a typed message), as a payload; EncodeError when it does not fit."""
        mt = self.types.get(type_id)
        if mt is None:
            raise EncodeError(f"no message type {type_id}")
        record = mt.cls.from_dict(value, self.records)
        return Payload(type_id, self.encode_body(record))

    def check_payload(self, p: Payload, ctx: DecodeContext) -> None:
        """Raise DecodeError unless the payload's body is exactly one valid value."""
        self.payload_value(p, ctx)


class UnknownType(DecodeError):
    def __init__(self, type_id: int):
        super().__init__(f"unknown message type {type_id}")
        self.type_id = type_id


def json_text(value: Any) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise EncodeError(f"cannot send {type(value).__name__} as JSON: {exc}") from None

