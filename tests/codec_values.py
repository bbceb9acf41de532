"""Values for the codec tests: generated modules, Hypothesis strategies per schema type,
and the plain JSON form that the golden vectors and the JavaScript peer use.

The plain form is the same in Python and in JavaScript (codecs/js/test/plain.mjs):
tables are objects with "$type", structs are objects, arrays of structs are lists of
objects, vectors are lists, bytes are lists of ints, an absent table, union or payload is
null, a payload is {"$payload": type_id, "body": hex}, an integer beyond 2**53 is
{"$int": "digits"} and a float that JSON cannot hold is {"$float": "nan"|"inf"|"-inf"|"-0"}.
"""

from __future__ import annotations

import importlib.util
import keyword
import math
import os
import sys
from types import ModuleType
from typing import Any

import numpy as np
from hypothesis import strategies as st

from engine.packed import NO_PAYLOAD, Payload, Record
from engine.schema.model import Enum, Field, FieldType, Model, Struct, Table, Union, load

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = os.path.join(ROOT, "tests", "golden")
SCHEMAS = os.path.join(ROOT, "tests", "schemas")
EVERYTHING = os.path.join(SCHEMAS, "everything.fbs")
PROTOCOL = os.path.join(ROOT, "schemas", "protocol.fbs")
# The channel the vectors and properties deliver on, and its payload type (Tag, 99).
CHANNEL = 5
CHANNEL_TYPE = 99

_SAFE = (1 << 53) - 1


def import_file(path: str, name: str) -> ModuleType:
    """Import a generated Python module from a file (golden files are not a package)."""
    if name in sys.modules and getattr(sys.modules[name], "__file__", None) == path:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def everything() -> tuple[Model, ModuleType]:
    return load(EVERYTHING), import_file(os.path.join(GOLDEN, "everything.py"), "tickwire_golden_everything")


# ----------------------------------------------------------------------------------------
# plain form


def plain(v: Any) -> Any:
    """A decoded (or encodable) Python value in the plain JSON form."""
    if v is None or v is NO_PAYLOAD:
        return None
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        v = int(v)
        return v if -_SAFE <= v <= _SAFE else {"$int": str(v)}
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if math.isnan(v):
            return {"$float": "nan"}
        if math.isinf(v):
            return {"$float": "inf" if v > 0 else "-inf"}
        if v == 0 and math.copysign(1, v) < 0:
            return {"$float": "-0"}  # JavaScript's JSON.stringify(-0) writes 0
        return v
    if isinstance(v, str):
        return v
    if isinstance(v, (bytes, bytearray, memoryview)):
        return list(bytes(v))
    if isinstance(v, Payload):
        if v.type_id == 0:
            return None
        return {"$payload": v.type_id, "body": bytes(v.body).hex()}
    if isinstance(v, Record):
        out: dict[str, Any] = {} if hasattr(type(v), "SIZE") else {"$type": type(v).__name__}
        for name in v.__slots__:
            out[_schema_name(name)] = plain(getattr(v, name))
        return out
    if isinstance(v, np.void):  # one row of a structured array
        return {n: plain(v[n]) for n in v.dtype.names}
    if isinstance(v, np.ndarray):
        return [plain(x) for x in v]
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    raise TypeError(f"no plain form for {type(v).__name__}")


def same(a: Any, b: Any) -> bool:
    """Plain values equal, with bools apart from numbers and NaN equal to NaN."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, float) or isinstance(b, float):
            # JSON from JavaScript writes 6.8e16 as the integer 68461168410732020: compare
            # as doubles, and tell -0.0 from 0.0.
            a, b = float(a), float(b)
            return a == b and (a != 0 or math.copysign(1, a) == math.copysign(1, b))
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


class FromPlain:
    """Plain values back to what the Python encoders take, guided by the model."""

    def __init__(self, model: Model, module: ModuleType, *more: ModuleType):
        self.model = model
        self.types: dict[str, Any] = {}
        for mod in (module, *more):
            self.types.update(mod.TYPES)

    def message(self, value: dict) -> Record:
        return self.table(self.model.decls[value["$type"]], value) if value["$type"] in self.model.decls else self._foreign(value)

    def _foreign(self, value: dict) -> Record:
        # A message of another schema (the protocol's, in a frame): its module has it.
        cls = self.types[value["$type"]]
        return cls(**{k: v for k, v in value.items() if k != "$type"})

    def table(self, t: Table, value: dict) -> Record:
        cls = self.types[t.name]
        kwargs = {}
        for f in t.live_fields:
            if f.name in value:
                kwargs[_py(f.name)] = self.field(f, f.type, value[f.name])
        return cls(**kwargs)

    def field(self, f: Field | None, t: FieldType, v: Any) -> Any:
        if f is not None and f.payload:
            return None if v is None else Payload(v["$payload"], bytes.fromhex(v["body"]))
        if v is None:
            return None
        if t.kind in ("scalar", "enum"):
            return self.scalar(v)
        if t.kind == "string":
            return v
        if t.kind == "struct":
            return self.struct(self.model.decls[t.ref], v)
        if t.kind == "table":
            return self.table(self.model.decls[t.ref], v)
        if t.kind == "union":
            return self.table(self.model.decls[v["$type"]], v)
        assert t.kind == "vector" and t.elem is not None
        e = t.elem
        if e.kind in ("scalar", "enum"):
            if e.scalar and e.scalar.name == "uint8" and not (f and f.quant):
                return bytes(v)
            return [self.scalar(x) for x in v]
        if e.kind == "struct":
            return [self.struct(self.model.decls[e.ref], x) for x in v]
        return [self.field(None, e, x) for x in v]

    def struct(self, s: Struct, v: dict) -> Record:
        cls = self.types[s.name]
        return cls(**{_py(f.name): self.field(f, f.type, v[f.name]) for f in s.fields})

    @staticmethod
    def scalar(v: Any) -> Any:
        if isinstance(v, dict):
            if "$int" in v:
                return int(v["$int"])
            return float(v["$float"])
        return v


_RESERVED = ("self",)  # as engine.packed.attr_name


def _py(name: str) -> str:
    return name + "_" if keyword.iskeyword(name) or name in _RESERVED else name


def _schema_name(slot: str) -> str:
    base = slot[:-1]
    return base if slot.endswith("_") and (keyword.iskeyword(base) or base in _RESERVED) else slot


UPDATE_GOLDEN = os.environ.get("TICKWIRE_UPDATE_GOLDEN", "") not in ("", "0")


def check_golden(path: str, text: str) -> None:
    """Compare a generated text with its golden file; TICKWIRE_UPDATE_GOLDEN=1 rewrites it."""
    if UPDATE_GOLDEN:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        return
    try:
        with open(path, encoding="utf-8") as fh:
            golden = fh.read()
    except FileNotFoundError:
        golden = None
    assert golden == text, (
        f"{os.path.relpath(path, ROOT)} differs from the generator's output; if the change is "
        "intended, refresh with: TICKWIRE_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/"
    )


# ----------------------------------------------------------------------------------------
# Hypothesis strategies: encodable values of every schema type


def _int_range(bits: int, signed: bool) -> tuple[int, int]:
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


class Strategies:
    """Values a schema's encoders accept, built from its model."""

    def __init__(self, model: Model, module: ModuleType, payload_types: list[int], channel_body: Any = None):
        self.model = model
        self.mod = module
        self.payload_types = payload_types
        # Channel payloads must be a valid body of the channel's type: a strategy of bytes.
        self.channel_body = channel_body
        self._tables: dict[str, st.SearchStrategy] = {}

    def message(self, t: Table) -> st.SearchStrategy:
        return self.table(t.name)

    def table(self, name: str) -> st.SearchStrategy:
        if name not in self._tables:
            self._tables[name] = st.deferred(lambda: self._table(name))
        return self._tables[name]

    def _table(self, name: str) -> st.SearchStrategy:
        t = self.model.decls[name]
        assert isinstance(t, Table)
        cls = self.mod.TYPES[name]
        fields = {_py(f.name): self.field(f, f.type, in_struct=False) for f in t.live_fields}
        return st.builds(cls, **fields)

    def scalar(self, f: Field | None, t: FieldType, in_struct: bool) -> st.SearchStrategy:
        sc = t.scalar
        assert sc is not None
        if f is not None and f.quant is not None:
            q = f.quant
            span = q.max - q.min
            return st.floats(q.min - span, q.max + span, allow_nan=False) | st.sampled_from(
                [q.min, q.max, (q.min + q.max) / 2, float("inf"), float("-inf")]
            )
        if sc.name == "bool":
            return st.booleans()
        if sc.is_float:
            # NaN only as the one quiet NaN: JavaScript does not keep a NaN's payload bits.
            finite = st.floats(width=32, allow_nan=False) if sc.bits == 32 else st.floats(allow_nan=False)
            return finite | st.just(float("nan"))
        bits = f.bits if (f is not None and in_struct and f.bits) else sc.bits
        lo, hi = _int_range(bits, sc.signed)
        edges = [x for x in (lo, hi, 0, 127, 128, -64, -65, 16383, 16384) if lo <= x <= hi]
        return st.integers(lo, hi) | st.sampled_from(edges)

    def field(self, f: Field | None, t: FieldType, in_struct: bool) -> st.SearchStrategy:
        if f is not None and f.payload == "any":
            return st.none() | st.builds(Payload, st.sampled_from(self.payload_types), st.binary(max_size=12))
        if f is not None and f.payload == "channel":
            return st.builds(lambda body: Payload(CHANNEL_TYPE, body), self.channel_body)
        if f is not None and f.name == "channel" and self.channel_body is not None:
            return st.just(CHANNEL)
        k = t.kind
        if k in ("scalar", "enum"):
            return self.scalar(f, t, in_struct)
        if k == "string":
            limit = f.maxlen if f is not None and f.maxlen is not None else 64
            return st.text(max_size=min(limit, 24)).filter(lambda s: len(s.encode()) <= limit)
        if k == "struct":
            return self.struct(t.ref)
        if k == "table":
            return st.none() | self.table(t.ref)
        if k == "union":
            u = self.model.decls[t.ref]
            assert isinstance(u, Union)
            return st.none() | st.one_of([self.table(m) for m in u.members])
        assert k == "vector" and t.elem is not None
        e = t.elem
        limit = min(f.maxlen if f is not None and f.maxlen is not None else 6, 6)
        if e.kind in ("scalar", "enum"):
            assert e.scalar is not None
            if e.scalar.name == "uint8" and not (f and f.quant):
                return st.binary(max_size=limit)
            return st.lists(self.scalar(f, e, in_struct=False), max_size=limit)
        if e.kind == "struct":
            return st.lists(self.struct(e.ref), max_size=limit)
        if e.kind == "string":
            return st.lists(st.text(max_size=8), max_size=limit)
        return st.lists(self.table(e.ref), max_size=min(limit, 3))

    def struct(self, name: str) -> st.SearchStrategy:
        s = self.model.decls[name]
        assert isinstance(s, Struct)
        cls = self.mod.TYPES[name]
        return st.builds(cls, **{_py(f.name): self.field(f, f.type, in_struct=True) for f in s.fields})


def exact_fields(model: Model, t: Table) -> list[Field]:
    """Fields whose value comes back exactly (not floats, which round or quantise)."""
    out = []
    for f in t.live_fields:
        ft = f.type.elem if f.type.kind == "vector" and f.type.elem else f.type
        if f.quant or (ft.scalar is not None and ft.scalar.is_float):
            continue
        if ft.kind in ("scalar", "enum", "string") or f.payload:
            out.append(f)
    return out


def decls_of(model: Model, kind: type) -> list[Any]:
    return [d for d in model.decls.values() if isinstance(d, kind)]


__all__ = [
    "CHANNEL",
    "CHANNEL_TYPE",
    "UPDATE_GOLDEN",
    "check_golden",
    "EVERYTHING",
    "FromPlain",
    "GOLDEN",
    "PROTOCOL",
    "ROOT",
    "SCHEMAS",
    "Strategies",
    "decls_of",
    "everything",
    "exact_fields",
    "import_file",
    "plain",
    "same",
    "Enum",
]
