"""Stage 2 of the schema compiler: syntax trees to a checked model.

The model resolves names across namespaces and includes, assigns message ids, computes
quantisation and the bit layout of structs, and checks everything a generator relies on.
Each mistake is a SchemaError with the file, line and column of the offending text.
`load()` is the one function here that reads files; `build()` is pure.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from typing import Callable, Iterable

from .parse import Attr, EnumNode, FieldNode, FileNode, ObjectNode, Pos, SchemaError, TypeExpr, parse

__all__ = [
    "Scalar",
    "Quant",
    "FieldType",
    "Field",
    "Enum",
    "Union",
    "Struct",
    "Table",
    "Model",
    "SCALARS",
    "PROTOCOL_IDS",
    "APP_IDS",
    "build",
    "load",
    "combine_hashes",
]


@dataclass(frozen=True)
class Scalar:
    name: str  # canonical: bool, int8 … uint64, float32, float64
    bits: int
    signed: bool
    is_float: bool

    @property
    def size(self) -> int:
        return self.bits // 8


SCALARS: dict[str, Scalar] = {}
for _names, _bits, _signed, _float in [
    (("bool",), 8, False, False),
    (("byte", "int8"), 8, True, False),
    (("ubyte", "uint8"), 8, False, False),
    (("short", "int16"), 16, True, False),
    (("ushort", "uint16"), 16, False, False),
    (("int", "int32"), 32, True, False),
    (("uint", "uint32"), 32, False, False),
    (("long", "int64"), 64, True, False),
    (("ulong", "uint64"), 64, False, False),
    (("float", "float32"), 32, True, True),
    (("double", "float64"), 64, True, True),
]:
    _canonical = Scalar(_names[-1], _bits, _signed, _float)
    for _n in _names:
        SCALARS[_n] = _canonical

# Which message ids a schema may declare: the protocol's own namespace gets 1-63.
PROTOCOL_NAMESPACE = "tickwire.protocol"
PROTOCOL_IDS = range(1, 64)
APP_IDS = range(64, 16384)
MAX_BITPACKED_BITS = 64
# A quantised value is computed in IEEE doubles on both sides of the wire (WIRE.md), so it
# has at most the 53 bits a double holds exactly; JavaScript then needs no BigInt for it.
MAX_QUANT_BITS = 53

# Attributes whose meaning the compiler knows. Others are allowed when declared.
_FLATBUFFERS_ATTRS = {
    "id", "deprecated", "required", "key", "force_align", "bit_flags", "nested_flatbuffer",
    "flexbuffers", "hash", "original_order", "shared", "native_type", "native_inline",
    "native_default", "cpp_type", "cpp_ptr_type", "cpp_str_type", "private", "streaming",
}
_TICKWIRE_ATTRS = {"msgid", "payload", "maxlen", "range", "precision", "bits"}


@dataclass(frozen=True)
class Quant:
    """A float sent as an unsigned integer: v = min + q * step, q < 2**bits."""

    min: float
    max: float
    bits: int
    step: float

    @property
    def size(self) -> int:
        return (self.bits + 7) // 8


@dataclass(frozen=True)
class FieldType:
    kind: str  # scalar, enum, string, vector, struct, table, union, payload
    scalar: Scalar | None = None  # for scalar, and the underlying type of enum
    ref: str = ""  # the short name of an enum, struct, table or union
    elem: "FieldType | None" = None  # for vector

    def describe(self) -> str:
        if self.kind == "vector" and self.elem is not None:
            return f"[{self.elem.describe()}]"
        if self.kind == "scalar" and self.scalar is not None:
            return self.scalar.name
        return self.ref or self.kind


@dataclass
class Field:
    name: str
    type: FieldType
    pos: Pos
    default: int | float | bool | None = None
    deprecated: bool = False
    quant: Quant | None = None
    bits: int | None = None  # explicit bit width, for bit-packed integers in structs
    maxlen: int | None = None
    payload: str | None = None  # "any" or "channel"
    doc: str = ""
    # struct layout, in bits from the least significant end
    offset: int = 0
    width: int = 0


@dataclass
class Enum:
    name: str
    fqname: str
    scalar: Scalar
    values: dict[str, int]
    pos: Pos
    bit_flags: bool = False
    doc: str = ""


@dataclass
class Union:
    name: str
    fqname: str
    members: list[str]  # table names; member index i+1 on the wire
    pos: Pos
    doc: str = ""


@dataclass
class Struct:
    name: str
    fqname: str
    fields: list[Field]
    pos: Pos
    bits: int = 0
    bitpacked: bool = False  # some field is not a whole number of bytes
    doc: str = ""

    @property
    def size(self) -> int:
        return (self.bits + 7) // 8


@dataclass
class Table:
    name: str
    fqname: str
    fields: list[Field]  # in wire order, deprecated ones included
    pos: Pos
    msgid: int | None = None
    doc: str = ""

    @property
    def live_fields(self) -> list[Field]:
        return [f for f in self.fields if not f.deprecated]


Decl = Enum | Union | Struct | Table


@dataclass
class Model:
    name: str  # the root schema's file stem
    source: str  # the root schema's path as given
    decls: dict[str, Decl]  # by short name, in declaration order (dependencies first)
    root_type: str | None = None
    files: list[str] = field(default_factory=list)

    @property
    def messages(self) -> list[Table]:
        tables = [d for d in self.decls.values() if isinstance(d, Table) and d.msgid is not None]
        return sorted(tables, key=lambda t: t.msgid or 0)

    def of(self, kind: type) -> list:
        return [d for d in self.decls.values() if isinstance(d, kind)]

    def recursive_tables(self) -> set[str]:
        """Tables that can hold themselves, through fields, vectors and unions: their
        decoders count nesting depth, so that no input can recurse without bound."""

        def refs(name: str) -> set[str]:
            d = self.decls[name]
            if isinstance(d, Union):
                return set(d.members)
            out: set[str] = set()
            if isinstance(d, Table):
                for f in d.live_fields:
                    t = f.type.elem if f.type.kind == "vector" and f.type.elem else f.type
                    if t.kind in ("table", "union"):
                        out.add(t.ref)
            return out

        found = set()
        for start in self.decls:
            if not isinstance(self.decls[start], Table):
                continue
            seen, todo = set(), list(refs(start))
            while todo:
                n = todo.pop()
                if n == start:
                    found.add(start)
                    break
                if n not in seen:
                    seen.add(n)
                    todo.extend(refs(n))
        return found

    def canonical(self) -> dict:
        """Everything that decides the bytes on the wire and the names in the API."""

        def ftype(t: FieldType) -> object:
            if t.kind == "vector" and t.elem is not None:
                return ["vector", ftype(t.elem)]
            if t.kind in ("scalar", "enum") and t.scalar is not None:
                return [t.kind, t.ref, t.scalar.name]
            return [t.kind, t.ref]

        def fdesc(f: Field) -> dict:
            out: dict = {"name": f.name, "type": ftype(f.type)}
            if f.deprecated:
                out["deprecated"] = True
            if f.quant:
                out["quant"] = [f.quant.min, f.quant.max, f.quant.bits]
            if f.bits:
                out["bits"] = f.bits
            if f.payload:
                out["payload"] = f.payload
            if f.maxlen is not None:
                out["maxlen"] = f.maxlen
            return out

        types = {}
        for name, d in sorted(self.decls.items(), key=lambda kv: kv[1].fqname):
            if isinstance(d, Enum):
                types[d.fqname] = {"enum": d.scalar.name, "values": d.values}
            elif isinstance(d, Union):
                types[d.fqname] = {"union": d.members}
            elif isinstance(d, Struct):
                types[d.fqname] = {"struct": [fdesc(f) for f in d.fields]}
            else:
                types[d.fqname] = {"table": [fdesc(f) for f in d.fields], "msgid": d.msgid}
        return {"format": "tickwire.packed.v1", "types": types}

    @property
    def hash(self) -> str:
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def combine_hashes(hashes: Iterable[str]) -> str:
    """The hash a client presents: protocol plus application schemas (WIRE.md)."""
    return hashlib.sha256(",".join(hashes).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------------------
# build


def _attrs(node_attrs: tuple[Attr, ...], declared: set[str]) -> dict[str, Attr]:
    out: dict[str, Attr] = {}
    for a in node_attrs:
        if a.name not in _FLATBUFFERS_ATTRS and a.name not in declared:
            raise SchemaError(a.pos, f"attribute '{a.name}' is not declared: add `attribute \"{a.name}\";`")
        if a.name in out:
            raise SchemaError(a.pos, f"attribute '{a.name}' is given twice")
        out[a.name] = a
    return out


def _number_attr(a: Attr) -> float | None:
    """A number given bare or quoted: flatc 2 accepts only integers and strings as
    attribute values, so a fractional precision is written `precision: "0.05"`."""
    v = a.value
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    return None


def _int_attr(a: Attr, lo: int, hi: int) -> int:
    if not isinstance(a.value, int) or isinstance(a.value, bool):
        raise SchemaError(a.pos, f"'{a.name}' needs an integer")
    if not lo <= a.value <= hi:
        raise SchemaError(a.pos, f"'{a.name}' is {a.value}, out of range {lo}..{hi}")
    return a.value


class _Builder:
    def __init__(self, files: list[FileNode]):
        self.files = files
        self.nodes: dict[str, tuple[EnumNode | ObjectNode, set[str]]] = {}  # fqname -> node
        self.short: dict[str, str] = {}  # short name -> fqname
        self.decls: dict[str, Decl] = {}
        self.building: set[str] = set()

    def run(self, name: str, source: str) -> Model:
        for f in self.files:
            declared = {n for n, _ in f.attributes}
            for n, pos in f.attributes:
                if n in _FLATBUFFERS_ATTRS:
                    raise SchemaError(pos, f"'{n}' is a FlatBuffers attribute and needs no declaration")
            for node in f.decls:
                fq = f"{node.namespace}.{node.name}" if node.namespace else node.name
                if fq in self.nodes:
                    raise SchemaError(node.pos, f"'{fq}' is declared twice (first at {self.nodes[fq][0].pos})")
                if node.name in self.short:
                    first = self.nodes[self.short[node.name]][0]
                    raise SchemaError(
                        node.pos,
                        f"'{node.name}' is also declared at {first.pos}; generated code uses short "
                        "names, so names must be unique across namespaces",
                    )
                self.nodes[fq] = (node, declared)
                self.short[node.name] = fq
        for fq in self.nodes:
            self.decl(fq)
        # Declaration order with dependencies first, so generated code can refer backwards.
        decls = {d.name: d for d in self.decls.values()}
        root = None
        last = self.files[-1]
        if last.root_type is not None:
            rname, rns, rpos = last.root_type
            fq = self.resolve(rname, rns, rpos)
            node = self.nodes[fq][0]
            if not (isinstance(node, ObjectNode) and node.kind == "table"):
                raise SchemaError(rpos, f"root_type '{rname}' must be a table")
            root = node.name
        self.check_msgids()
        return Model(name, source, decls, root, [f.path for f in self.files])

    def resolve(self, name: str, namespace: str, pos: Pos) -> str:
        if "." in name and name in self.nodes:
            return name
        parts = namespace.split(".") if namespace else []
        while True:
            fq = ".".join(parts + [name])
            if fq in self.nodes:
                return fq
            if not parts:
                break
            parts.pop()
        raise SchemaError(pos, f"unknown type '{name}'")

    def decl(self, fq: str) -> Decl:
        if fq in self.decls:
            return self.decls[fq]
        node, declared = self.nodes[fq]
        if fq in self.building:
            raise SchemaError(node.pos, f"struct '{node.name}' contains itself")
        self.building.add(fq)
        if isinstance(node, EnumNode):
            d: Decl = self.enum(node, fq, declared) if node.kind == "enum" else self.union(node, fq, declared)
        elif node.kind == "struct":
            d = self.struct(node, fq, declared)
        else:
            # Tables may refer to each other (and to themselves): register before fields.
            d = Table(node.name, fq, [], node.pos, doc=node.doc)
            self.decls[fq] = d
            self.building.discard(fq)
            self.table(node, d, declared)
            return d
        self.building.discard(fq)
        self.decls[fq] = d
        return d

    def enum(self, node: EnumNode, fq: str, declared: set[str]) -> Enum:
        attrs = _attrs(node.attrs, declared)
        assert node.underlying is not None
        scalar = SCALARS.get(node.underlying.name)
        if scalar is None or scalar.is_float or scalar.name == "bool":
            raise SchemaError(node.underlying.pos, f"enum '{node.name}' needs an integer type, not '{node.underlying.name}'")
        if node.underlying.vector:
            raise SchemaError(node.underlying.pos, "an enum's type cannot be a vector")
        lo = -(1 << (scalar.bits - 1)) if scalar.signed else 0
        hi = (1 << (scalar.bits - 1)) - 1 if scalar.signed else (1 << scalar.bits) - 1
        bit_flags = "bit_flags" in attrs
        values: dict[str, int] = {}
        nxt = 0
        for v in node.values:
            if v.name in values:
                raise SchemaError(v.pos, f"enum '{node.name}' has two values named '{v.name}'")
            value = v.value if v.value is not None else nxt
            if values and v.value is not None and value <= max(values.values()) and not bit_flags:
                raise SchemaError(v.pos, f"enum values must be ascending; '{v.name}' = {value}")
            shown = (1 << value) if bit_flags else value
            if not lo <= shown <= hi:
                raise SchemaError(v.pos, f"value {shown} of '{v.name}' does not fit in {scalar.name}")
            values[v.name] = shown
            nxt = value + 1
        if not values:
            raise SchemaError(node.pos, f"enum '{node.name}' has no values")
        return Enum(node.name, fq, scalar, values, node.pos, bit_flags, node.doc)

    def union(self, node: EnumNode, fq: str, declared: set[str]) -> Union:
        _attrs(node.attrs, declared)
        members: list[str] = []
        for v in node.values:
            mfq = self.resolve(v.name, node.namespace, v.pos)
            mnode = self.nodes[mfq][0]
            if not (isinstance(mnode, ObjectNode) and mnode.kind == "table"):
                raise SchemaError(v.pos, f"union member '{v.name}' must be a table")
            if v.value is not None and v.value != len(members) + 1:
                raise SchemaError(v.pos, "union members are numbered in order from 1")
            if mnode.name in members:
                raise SchemaError(v.pos, f"'{v.name}' is in union '{node.name}' twice")
            members.append(mnode.name)
        if not members:
            raise SchemaError(node.pos, f"union '{node.name}' has no members")
        return Union(node.name, fq, members, node.pos, node.doc)

    def field_type(self, t: TypeExpr, namespace: str, in_struct: bool) -> FieldType:
        if t.vector:
            if in_struct:
                raise SchemaError(t.pos, "a struct cannot hold a vector")
            elem = self.field_type(TypeExpr(t.name, False, t.pos), namespace, False)
            if elem.kind == "union":
                raise SchemaError(t.pos, "vectors of unions are not supported")
            return FieldType("vector", elem=elem)
        if t.name in SCALARS:
            return FieldType("scalar", scalar=SCALARS[t.name])
        if t.name == "string":
            if in_struct:
                raise SchemaError(t.pos, "a struct cannot hold a string")
            return FieldType("string")
        d = self.decl(self.resolve(t.name, namespace, t.pos))
        if isinstance(d, Enum):
            return FieldType("enum", scalar=d.scalar, ref=d.name)
        if isinstance(d, Struct):
            return FieldType("struct", ref=d.name)
        if in_struct:
            raise SchemaError(t.pos, f"a struct can only hold scalars, enums and structs, not '{t.name}'")
        if isinstance(d, Union):
            return FieldType("union", ref=d.name)
        return FieldType("table", ref=d.name)

    def field(self, node: FieldNode, namespace: str, declared: set[str], in_struct: bool) -> Field:
        attrs = _attrs(node.attrs, declared)
        ftype = self.field_type(node.type, namespace, in_struct)
        f = Field(node.name, ftype, node.pos, doc=node.doc)
        f.deprecated = "deprecated" in attrs
        if in_struct and f.deprecated:
            raise SchemaError(node.pos, "struct fields cannot be deprecated")
        scalar_like = ftype if ftype.kind != "vector" else ftype.elem
        assert scalar_like is not None

        if "payload" in attrs:
            a = attrs.pop("payload")
            kind = "any" if a.value is None else a.value
            if kind not in ("any", "channel"):
                raise SchemaError(a.pos, "payload is \"any\" or \"channel\"")
            if not (ftype.kind == "vector" and ftype.elem and ftype.elem.scalar and ftype.elem.scalar.name == "uint8"):
                raise SchemaError(a.pos, "a payload field must be declared as [ubyte]")
            f.payload = str(kind)
            f.type = FieldType("payload")

        if "maxlen" in attrs:
            a = attrs.pop("maxlen")
            if ftype.kind not in ("string", "vector"):
                raise SchemaError(a.pos, "maxlen applies to strings and vectors")
            f.maxlen = _int_attr(a, 0, 1 << 30)

        quant_attrs = {k: attrs.pop(k) for k in ("range", "precision") if k in attrs}
        bits_attr = attrs.pop("bits", None)
        if quant_attrs or (bits_attr and scalar_like.scalar and scalar_like.scalar.is_float):
            f.quant = self.quant(node, scalar_like, quant_attrs, bits_attr)
        elif bits_attr is not None:
            if not in_struct:
                raise SchemaError(bits_attr.pos, "bits on an integer field applies inside structs only")
            if ftype.kind not in ("scalar", "enum") or ftype.scalar is None:
                raise SchemaError(bits_attr.pos, "bits applies to integer, bool and float fields")
            f.bits = _int_attr(bits_attr, 1, ftype.scalar.bits)

        if node.default is not None:
            if in_struct:
                raise SchemaError(node.pos, "struct fields cannot have default values (every struct field is always sent)")
            f.default = self.default(node, ftype)
        elif ftype.kind == "enum":
            enum = self.decl(self.short[ftype.ref])
            assert isinstance(enum, Enum)
            if not enum.bit_flags and 0 not in enum.values.values():
                # flatc refuses this too: the implicit default 0 must name a value.
                raise SchemaError(
                    node.pos,
                    f"enum '{enum.name}' has no value 0, so field '{node.name}' needs a default, e.g. "
                    f"= {next(iter(enum.values))}",
                )
        if "id" in attrs:
            _int_attr(attrs["id"], 0, 65535)
        return f

    def quant(self, node: FieldNode, t: FieldType, qa: dict[str, Attr], bits_attr: Attr | None) -> Quant:
        pos = (qa.get("range") or qa.get("precision") or bits_attr).pos  # type: ignore[union-attr]
        if t.kind != "scalar" or t.scalar is None or not t.scalar.is_float:
            raise SchemaError(pos, f"quantisation applies to float fields; '{node.name}' is {t.describe()}")
        if "range" not in qa:
            raise SchemaError(pos, f"quantised field '{node.name}' needs range: \"MIN MAX\"")
        r = qa["range"]
        try:
            lo, hi = (float(x) for x in str(r.value).split())
        except ValueError:
            raise SchemaError(r.pos, "range is two numbers in quotes: \"MIN MAX\"") from None
        if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
            raise SchemaError(r.pos, f"range \"{r.value}\" must have MIN < MAX")
        if "precision" in qa:
            p = _number_attr(qa["precision"])
            if p is None or not p > 0 or not math.isfinite(p):
                raise SchemaError(qa["precision"].pos, "precision is a positive number, e.g. precision: \"0.05\"")
            steps = (hi - lo) / p
            need = max(1, math.ceil(math.log2(round(steps, 9) + 1)))
            if bits_attr is not None:
                bits = _int_attr(bits_attr, 1, MAX_QUANT_BITS)
                if need > bits:
                    raise SchemaError(
                        bits_attr.pos,
                        f"range {lo:g}..{hi:g} at precision {p:g} needs {need} bits, more than the {bits} given",
                    )
                return Quant(lo, hi, bits, float(p))
            if need > MAX_QUANT_BITS:
                raise SchemaError(
                    qa["precision"].pos,
                    f"range {lo:g}..{hi:g} at precision {p:g} needs {need} bits; a quantised value has at most "
                    f"{MAX_QUANT_BITS} (what a double holds exactly)",
                )
            return Quant(lo, hi, need, float(p))
        if bits_attr is None:
            raise SchemaError(r.pos, f"quantised field '{node.name}' needs precision or bits")
        bits = _int_attr(bits_attr, 1, MAX_QUANT_BITS)
        return Quant(lo, hi, bits, (hi - lo) / ((1 << bits) - 1))

    def default(self, node: FieldNode, t: FieldType) -> int | float | bool:
        v = node.default
        if t.kind == "enum":
            enum = self.decl(self.short[t.ref])
            assert isinstance(enum, Enum)
            if isinstance(v, str):
                if v not in enum.values:
                    raise SchemaError(node.pos, f"'{v}' is not a value of enum '{enum.name}'")
                return enum.values[v]
            if isinstance(v, int) and not isinstance(v, bool):
                return v
            raise SchemaError(node.pos, f"default of '{node.name}' must be a value of '{enum.name}'")
        if t.kind != "scalar" or t.scalar is None:
            raise SchemaError(node.pos, "only scalar fields can have a default value")
        if t.scalar.name == "bool":
            if isinstance(v, bool) or v in (0, 1):
                return bool(v)
            raise SchemaError(node.pos, f"default of bool field '{node.name}' must be true or false")
        if isinstance(v, str) or isinstance(v, bool):
            raise SchemaError(node.pos, f"default of '{node.name}' must be a number")
        if t.scalar.is_float:
            return float(v)
        if not isinstance(v, int):
            raise SchemaError(node.pos, f"default of integer field '{node.name}' must be an integer")
        bits = t.scalar.bits
        lo = -(1 << (bits - 1)) if t.scalar.signed else 0
        hi = (1 << (bits - 1)) - 1 if t.scalar.signed else (1 << bits) - 1
        if not lo <= v <= hi:
            raise SchemaError(node.pos, f"default {v} does not fit in {t.scalar.name}")
        return v

    def struct(self, node: ObjectNode, fq: str, declared: set[str]) -> Struct:
        attrs = _attrs(node.attrs, declared)
        for a in ("msgid",):
            if a in attrs:
                raise SchemaError(attrs[a].pos, "only tables can be messages")
        fields = self.fields(node, declared, in_struct=True)
        if not fields:
            raise SchemaError(node.pos, f"struct '{node.name}' has no fields")
        offset = 0
        for f in fields:
            if f.quant:
                f.width = f.quant.bits
            elif f.bits:
                f.width = f.bits
            elif f.type.kind == "struct":
                inner = self.decls[self.short[f.type.ref]]
                assert isinstance(inner, Struct)
                f.width = inner.size * 8
            else:
                assert f.type.scalar is not None
                f.width = f.type.scalar.bits
            f.offset = offset
            offset += f.width
        s = Struct(node.name, fq, fields, node.pos, offset, doc=node.doc)
        s.bitpacked = any(f.width not in (8, 16, 32, 64) for f in fields)
        if s.bitpacked and any(f.type.kind == "struct" for f in fields):
            raise SchemaError(node.pos, f"struct '{node.name}' packs bits, so it cannot hold another struct")
        if s.bitpacked and offset > MAX_BITPACKED_BITS:
            raise SchemaError(
                node.pos,
                f"struct '{node.name}' packs {offset} bits; a struct with sub-byte fields holds at most 64",
            )
        return s

    def table(self, node: ObjectNode, t: Table, declared: set[str]) -> None:
        attrs = _attrs(node.attrs, declared)
        t.fields = self.fields(node, declared, in_struct=False)
        if "msgid" in attrs:
            a = attrs["msgid"]
            allowed = PROTOCOL_IDS if node.namespace == PROTOCOL_NAMESPACE else APP_IDS
            t.msgid = _int_attr(a, allowed.start, allowed.stop - 1)

    def fields(self, node: ObjectNode, declared: set[str], in_struct: bool) -> list[Field]:
        seen: dict[str, Pos] = {}
        ids: dict[int, Pos] = {}
        out: list[tuple[int, Field]] = []
        with_id = [f for f in node.fields if any(a.name == "id" for a in f.attrs)]
        if with_id and len(with_id) != len(node.fields):
            missing = next(f for f in node.fields if f not in with_id)
            raise SchemaError(missing.pos, "either every field of a table has an id or none has")
        for i, fn in enumerate(node.fields):
            if fn.name in seen:
                raise SchemaError(fn.pos, f"field '{fn.name}' is declared twice (first at {seen[fn.name]})")
            seen[fn.name] = fn.pos
            f = self.field(fn, node.namespace, declared, in_struct)
            order = i
            if with_id:
                if in_struct:
                    raise SchemaError(fn.pos, "struct fields cannot have ids")
                a = next(a for a in fn.attrs if a.name == "id")
                order = _int_attr(a, 0, 65535)
                # As in flatc, a union takes two ids: its type's (id - 1) and its value's.
                taken = [order - 1, order] if f.type.kind == "union" else [order]
                if taken[0] < 0:
                    raise SchemaError(a.pos, f"union field '{fn.name}' takes two ids, id - 1 for its type, so its id must be at least 1")
                for t in taken:
                    if t in ids:
                        raise SchemaError(a.pos, f"duplicate id {t} (also at {ids[t]})")
                    ids[t] = a.pos
            out.append((order, f))
        if with_id:
            expected = set(range(len(ids)))
            if set(ids) != expected:
                gap = min(expected - set(ids))
                raise SchemaError(node.pos, f"field ids must run 0..{len(ids) - 1} without gaps; {gap} is missing")
        return [f for _, f in sorted(out, key=lambda p: p[0])]

    def check_msgids(self) -> None:
        seen: dict[int, Table] = {}
        for d in self.decls.values():
            if isinstance(d, Table) and d.msgid is not None:
                if d.msgid in seen:
                    raise SchemaError(d.pos, f"duplicate message id {d.msgid} (also '{seen[d.msgid].name}' at {seen[d.msgid].pos})")
                seen[d.msgid] = d


def build(files: list[FileNode], name: str, source: str) -> Model:
    """Check and resolve parsed files (includes first, the root schema last)."""
    return _Builder(files).run(name, source)


def load(
    path: str,
    include_dirs: Iterable[str] = (),
    read: Callable[[str], str] | None = None,
) -> Model:
    """Read a schema and everything it includes, and build its model."""
    read = read or (lambda p: open(p, encoding="utf-8").read())
    dirs = list(include_dirs)
    ordered: list[FileNode] = []
    done: set[str] = set()
    stack: list[str] = []

    def visit(p: str, pos: Pos | None) -> None:
        key = os.path.realpath(p)
        if key in stack:
            cycle = " -> ".join(os.path.basename(s) for s in stack[stack.index(key):] + [key])
            raise SchemaError(pos, f"cyclic include: {cycle}")
        if key in done:
            return
        try:
            text = read(p)
        except OSError as exc:
            raise SchemaError(pos, f"cannot read '{p}': {exc.strerror}") from None
        stack.append(key)
        node = parse(text, p)
        for inc, ipos in node.includes:
            candidates = [os.path.join(os.path.dirname(p), inc)] + [os.path.join(d, inc) for d in dirs]
            found = next((c for c in candidates if os.path.exists(c)), None)
            if found is None:
                raise SchemaError(ipos, f"included file '{inc}' not found")
            visit(found, ipos)
        stack.pop()
        done.add(key)
        ordered.append(node)

    visit(path, None)
    stem = os.path.splitext(os.path.basename(path))[0]
    return build(ordered, stem, path)
