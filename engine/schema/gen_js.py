"""Stage 3 of the schema compiler, for browsers and Node: a model to an ES module and its
TypeScript declarations.

The module imports the hand-written runtime (codecs/js/packed.js) and holds, per table,
an encoder and a decoder specialised to its fields, and per struct the code that packs one
value and arrays of values (a struct of typed arrays, read and written in one loop with
the bit layout unrolled). Decoded tables are plain objects whose `$type` names the table;
codecs/js/README.md gives the whole mapping from schema types to JavaScript values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .gen_python import header
from .model import Enum, Field, FieldType, Model, Quant, Struct, Table, Union
from .parse import SchemaError

__all__ = ["generate_js", "generate_dts", "DEFAULT_RUNTIME"]

# Where a generated module finds the runtime: generated modules live in a `generated/`
# folder beside packed.js (codecs/js/generated/protocol.js; an application serves its own
# the same way), so one relative import works in browsers and Node with no build step.
DEFAULT_RUNTIME = "../packed.js"

_TYPED = {
    "bool": "Uint8Array",
    "int8": "Int8Array",
    "uint8": "Uint8Array",
    "int16": "Int16Array",
    "uint16": "Uint16Array",
    "int32": "Int32Array",
    "uint32": "Uint32Array",
    "int64": "BigInt64Array",
    "uint64": "BigUint64Array",
    "float32": "Float32Array",
    "float64": "Float64Array",
}
_DV = {  # DataView accessor suffix per (kind, width)
    ("int", 8): "Int8",
    ("uint", 8): "Uint8",
    ("int", 16): "Int16",
    ("uint", 16): "Uint16",
    ("int", 32): "Int32",
    ("uint", 32): "Uint32",
    ("int", 64): "BigInt64",
    ("uint", 64): "BigUint64",
    ("float", 32): "Float32",
    ("float", 64): "Float64",
}


def _num(v: float | int) -> str:
    """A number literal that JavaScript parses to the same double as Python's float."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    text = repr(float(v))
    return text


def _int_range(bits: int, signed: bool) -> tuple[int, int]:
    if signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def _key(name: str) -> str:
    """An object literal key: `__proto__` would set the prototype instead of a field."""
    return '["__proto__"]' if name == "__proto__" else name


@dataclass
class _Leaf:
    """A scalar field of a struct, with nested structs flattened: where and how it lies."""

    path: tuple[str, ...]  # field names from the outer struct down
    field: Field
    offset: int  # bits from the least significant end of the outer struct
    width: int
    kind: str  # int, uint, float, bool
    scalar: str  # canonical scalar name (the enum's underlying type for enums)
    quant: Quant | None

    @property
    def var(self) -> str:
        return "x_" + "_".join(self.path)

    @property
    def big(self) -> bool:
        return self.scalar in ("int64", "uint64") and self.quant is None

    @property
    def where(self) -> str:
        return ".".join(self.path)


class _Gen:
    def __init__(self, model: Model, runtime: str):
        self.model = model
        self.runtime = runtime
        self.lines: list[str] = []
        self.recursive = model.recursive_tables()
        self.quants: dict[str, Quant] = {}

    def emit(self, line: str = "", indent: int = 0) -> None:
        self.lines.append("  " * indent + line if line else "")

    # -- the module -----------------------------------------------------------------------
    def run(self) -> str:
        m = self.model
        self.lines.append(header(m, "//").rstrip("\n"))
        self.emit(f"// Message codecs for the {m.name} schema; codecs/WIRE.md says how each is encoded.")
        self.emit()
        self.emit("import {")
        self.emit("DecodeError as _DE,", 1)
        self.emit("EncodeError as _EE,", 1)
        self.emit("KINDS as _K,", 1)
        self.emit("Quant as _Quant,", 1)
        self.emit("checkInt as _int,", 1)
        self.emit("f32Bits as _f32bits,", 1)
        self.emit("f32FromBits as _f32,", 1)
        self.emit("soaLength as _soaLength,", 1)
        self.emit("toBigInt as _big,", 1)
        self.emit(f"}} from {json.dumps(self.runtime)};")
        self.emit()
        self.emit(f"export const SCHEMA_NAME = {json.dumps(m.name)};")
        self.emit(f"export const SCHEMA_HASH = {json.dumps(m.hash)};")
        self.collect_quants()
        if self.quants:
            self.emit()
            for name, q in self.quants.items():
                self.emit(f"const {name} = new _Quant({_num(q.min)}, {_num(q.max)}, {q.bits}, {_num(q.step)});")
        for d in m.decls.values():
            if isinstance(d, Enum):
                self.emit()
                self.enum(d)
        for d in m.decls.values():
            if isinstance(d, Struct):
                self.emit()
                self.struct(d)
        for d in m.decls.values():
            if isinstance(d, Table):
                self.emit()
                self.encoder(d)
                self.emit()
                self.decoder(d)
        self.emit()
        self.emit("export const MESSAGES = Object.freeze([")
        for t in m.messages:
            self.emit(f'{{ id: {t.msgid}, name: "{t.name}", encode: enc_{t.name}, decode: dec_{t.name} }},', 1)
        self.emit("]);")
        self.emit()
        self.emit("export const TYPES = Object.freeze({")
        for d in m.decls.values():
            if isinstance(d, Table):
                tid = "null" if d.msgid is None else str(d.msgid)
                self.emit(f'{d.name}: {{ kind: "table", id: {tid}, encode: enc_{d.name}, decode: dec_{d.name} }},', 1)
            elif isinstance(d, Struct):
                self.emit(f"{d.name}: S_{d.name},", 1)
        self.emit("});")
        return "\n".join(self.lines) + "\n"

    def collect_quants(self) -> None:
        for d in self.model.decls.values():
            if isinstance(d, (Struct, Table)):
                for f in d.fields:
                    if f.quant and not f.deprecated:
                        self.quants[f"Q_{d.name}_{f.name}"] = f.quant

    def enum(self, e: Enum) -> None:
        big = e.scalar.bits == 64
        items = ", ".join(f"{_key(n)}: {v}{'n' if big else ''}" for n, v in e.values.items())
        if e.doc:
            self.emit(f"/** {e.doc} */")
        self.emit(f"export const {e.name} = Object.freeze({{ {items} }});")

    # -- structs --------------------------------------------------------------------------
    def leaves(self, s: Struct, path: tuple[str, ...] = (), base: int = 0) -> list[_Leaf]:
        out = []
        for f in s.fields:
            if f.type.kind == "struct":
                inner = self.model.decls[f.type.ref]
                assert isinstance(inner, Struct)
                out += self.leaves(inner, path + (f.name,), base + f.offset)
                continue
            sc = f.type.scalar
            assert sc is not None
            kind = "bool" if sc.name == "bool" else "float" if sc.is_float else "int" if sc.signed else "uint"
            out.append(_Leaf(path + (f.name,), f, base + f.offset, f.width, kind, sc.name, f.quant))
        return out

    def qname(self, owner: str, f: Field) -> str:
        return f"Q_{owner}_{f.name}"

    def struct(self, s: Struct) -> None:
        leaves = self.leaves(s)
        owner = {id(f): st.name for st in self.model.of(Struct) for f in st.fields}
        for leaf in leaves:
            leaf.qvar = self.qname(owner[id(leaf.field)], leaf.field) if leaf.quant else ""  # type: ignore[attr-defined]
        self.emit(f"// struct {s.name}: {s.size} bytes" + (", bit-packed" if s.bitpacked else ""))
        self.emit(f"const S_{s.name} = {{")
        self.emit(f'name: "{s.name}",', 1)
        self.emit(f"size: {s.size},", 1)
        # The fields with their wire widths: what entity sync (entities.js) reads records by.
        specs = []
        for f in s.fields:
            if f.type.kind == "struct":
                kind = "struct"
            elif f.quant is not None:
                kind = "quant"
            else:
                sc = f.type.scalar
                assert sc is not None
                kind = "bool" if sc.name == "bool" else "float" if sc.is_float else "int" if sc.signed else "uint"
            quant = f", quant: {self.qname(s.name, f)}" if f.quant is not None else ""
            specs.append(f'{{ name: "{f.name}", kind: "{kind}", width: {f.width}{quant} }}')
        self.emit(f"fields: [{', '.join(specs)}],", 1)
        # one value
        self.emit("decodeOne(r) {", 1)
        self.emit(f'const p = r.take({s.size}, "{s.name}");', 2)
        self.emit("const dv = r.view;" if not s.bitpacked else "const b = r.buf;", 2)
        self.read_leaves(s, leaves, 2, single=True)
        self.emit(f"return {self.nest(s, leaves, lambda lf: lf.var)};", 2)
        self.emit("},", 1)
        self.emit("decodeArray(r, n) {", 1)
        self.emit(f'const p0 = r.take(n * {s.size}, "array of {s.name}");', 2)
        self.emit("const dv = r.view;" if not s.bitpacked else "const b = r.buf;", 2)
        for lf in leaves:
            self.emit(f"const c_{lf.var} = new {self.array_type(lf)}(n);", 2)
        self.emit(f"for (let i = 0, p = p0; i < n; i++, p += {s.size}) {{", 2)
        self.read_leaves(s, leaves, 3, single=False)
        for lf in leaves:
            self.emit(f"c_{lf.var}[i] = {lf.var};", 3)
        self.emit("}", 2)
        self.emit(f"return {self.nest(s, leaves, lambda lf: 'c_' + lf.var)};", 2)
        self.emit("},", 1)
        self.emit("encodeOne(w, v, where) {", 1)
        self.emit(f'if (v == null || typeof v !== "object") throw new _EE(`${{where}}: a {s.name} is required`);', 2)
        self.emit(f"const p = w.take({s.size});", 2)
        self.emit("const dv = w.view;" if not s.bitpacked else "const b = w.buf;", 2)
        self.write_leaves(s, leaves, 2, lambda lf: "v." + ".".join(lf.path))
        self.emit("},", 1)
        self.emit("encodeArray(w, v, where) {", 1)
        self.emit("if (Array.isArray(v)) {", 2)
        self.emit("w.varint(v.length);", 3)
        self.emit("for (let i = 0; i < v.length; i++) this.encodeOne(w, v[i], where);", 3)
        self.emit("return;", 3)
        self.emit("}", 2)
        self.emit(f'if (v == null || typeof v !== "object") throw new _EE(`${{where}}: expected an array of {s.name}`);', 2)
        self.emit("const n = _soaLength(v, where);", 2)
        for lf in leaves:
            access = "v" + "".join(f"?.{p}" for p in lf.path)
            self.emit(f"const c_{lf.var} = {access};", 2)
            self.emit(
                f'if (c_{lf.var} == null || c_{lf.var}.length !== n) throw new _EE(`${{where}}.{lf.where}: expected ${{n}} values`);',
                2,
            )
        self.emit("w.varint(n);", 2)
        self.emit(f"const p0 = w.take(n * {s.size});", 2)
        self.emit("const dv = w.view;" if not s.bitpacked else "const b = w.buf;", 2)
        self.emit(f"for (let i = 0, p = p0; i < n; i++, p += {s.size}) {{", 2)
        self.write_leaves(s, leaves, 3, lambda lf: f"c_{lf.var}[i]")
        self.emit("}", 2)
        self.emit("},", 1)
        self.emit("};")

    def array_type(self, lf: _Leaf) -> str:
        if lf.kind == "bool":
            return "Array"  # of booleans: there is no boolean typed array
        if lf.quant is not None:
            return "Float64Array" if lf.scalar == "float64" else "Float32Array"
        return _TYPED[lf.scalar]

    def nest(self, s: Struct, leaves: list[_Leaf], value) -> str:
        """An object literal with the struct's shape, leaves given by value(leaf)."""

        def build(st: Struct, prefix: tuple[str, ...]) -> str:
            parts = []
            for f in st.fields:
                if f.type.kind == "struct":
                    inner = self.model.decls[f.type.ref]
                    assert isinstance(inner, Struct)
                    parts.append(f"{_key(f.name)}: {build(inner, prefix + (f.name,))}")
                else:
                    leaf = next(lf for lf in leaves if lf.path == prefix + (f.name,))
                    parts.append(f"{_key(f.name)}: {value(leaf)}")
            return "{ " + ", ".join(parts) + " }"

        return build(s, ())

    def read_leaves(self, s: Struct, leaves: list[_Leaf], ind: int, single: bool) -> None:
        """Statements that set a local per leaf from the bytes at p."""
        where = s.name
        if not s.bitpacked:
            for lf in leaves:
                at = f"p + {lf.offset // 8}" if lf.offset else "p"
                if lf.quant is not None:
                    raw = f"dv.get{_DV[('uint', lf.width)]}({at}{', true' if lf.width > 8 else ''})"
                    val = f"{lf.qvar}.min + {raw} * {lf.qvar}.step"  # type: ignore[attr-defined]
                    if single and lf.scalar == "float32":
                        val = f"Math.fround({val})"
                    self.emit(f"const {lf.var} = {val};", ind)
                elif lf.kind == "bool":
                    self.emit(f"const {lf.var}_raw = dv.getUint8({at});", ind)
                    self.emit(f'if ({lf.var}_raw > 1) throw new _DE("{where}.{lf.where}: bool byte is not 0 or 1");', ind)
                    self.emit(f"const {lf.var} = {lf.var}_raw === 1;", ind)
                else:
                    acc = _DV[(lf.kind, lf.width)]
                    endian = ", true" if lf.width > 8 else ""
                    self.emit(f"const {lf.var} = dv.get{acc}({at}{endian});", ind)
            return
        size = s.size
        lo = " | ".join(f"b[p + {i}] << {8 * i}" if i else "b[p]" for i in range(min(size, 4)))
        self.emit(f"const lo = ({lo}) >>> 0;" if size >= 4 else f"const lo = {lo};", ind)
        if size > 4:
            hi = " | ".join(f"b[p + {i}] << {8 * (i - 4)}" if i > 4 else "b[p + 4]" for i in range(4, size))
            self.emit(f"const hi = ({hi}) >>> 0;" if size == 8 else f"const hi = {hi};", ind)
        for lf in leaves:
            raw = self.bits_of(lf)
            w = lf.width
            if lf.quant is not None:
                val = f"{lf.qvar}.min + {raw} * {lf.qvar}.step"  # type: ignore[attr-defined]
                if single and lf.scalar == "float32":
                    val = f"Math.fround({val})"
            elif lf.kind == "bool":
                self.emit(f"const {lf.var}_raw = {raw};", ind)
                if w > 1:
                    self.emit(f'if ({lf.var}_raw > 1) throw new _DE("{where}.{lf.where}: bool bit field is over 1");', ind)
                val = f"{lf.var}_raw === 1"
            elif lf.kind == "float":
                val = f"_f32({raw})"
            elif lf.scalar in ("int64", "uint64"):
                big = raw if w > 53 else f"BigInt({raw})"
                val = f"BigInt.asIntN({w}, {big})" if lf.kind == "int" else big
            elif lf.kind == "int":
                self.emit(f"const {lf.var}_raw = {raw};", ind)
                val = f"{lf.var}_raw >= {1 << (w - 1)} ? {lf.var}_raw - {1 << w} : {lf.var}_raw"
            else:
                val = raw
            self.emit(f"const {lf.var} = {val};", ind)

    @staticmethod
    def bits_of(lf: _Leaf) -> str:
        """The expression for a leaf's raw bits, from the words lo (bits 0-31) and hi."""
        o, w = lf.offset, lf.width

        def part(word: str, off: int, width: int) -> str:
            if width == 32:
                return word
            shifted = f"({word} >>> {off})" if off else word
            return f"({shifted} & {(1 << width) - 1})"

        if o + w <= 32:
            return part("lo", o, w)
        if o >= 32:
            return part("hi", o - 32, w)
        k = 32 - o
        low = f"(lo >>> {o})"
        high = part("hi", 0, w - k)
        if w > 53:
            return f"(BigInt({low}) | (BigInt({high}) << {k}n))"
        return f"({low} + {high} * {1 << k})"

    def write_leaves(self, s: Struct, leaves: list[_Leaf], ind: int, value) -> None:
        """Statements that write every leaf, values given by the expression value(leaf)."""
        where = f"${{where}}"
        if not s.bitpacked:
            for lf in leaves:
                at = f"p + {lf.offset // 8}" if lf.offset else "p"
                v = value(lf)
                wh = f"`{where}.{lf.where}`"
                if lf.quant is not None:
                    x = f"{lf.qvar}.quantise({v}, {wh})"  # type: ignore[attr-defined]
                    acc = _DV[("uint", lf.width)]
                elif lf.kind == "bool":
                    x, acc = f"{v} ? 1 : 0", "Uint8"
                elif lf.kind == "float":
                    self.emit(f'if (typeof {v} !== "number") throw new _EE(`{where}.{lf.where}: expected a number`);', ind)
                    x, acc = v, _DV[("float", lf.width)]
                elif lf.scalar in ("int64", "uint64") and lf.width == 64:
                    lo_, hi_ = _int_range(64, lf.kind == "int")
                    x, acc = f"_big({v}, {lo_}n, {hi_}n, {wh})", _DV[(lf.kind, 64)]
                else:
                    lo_, hi_ = _int_range(lf.width, lf.kind == "int")
                    x, acc = f"_int({v}, {lo_}, {hi_}, {wh})", _DV[(lf.kind, lf.width)]
                endian = ", true" if lf.width > 8 else ""
                self.emit(f"dv.set{acc}({at}, {x}{endian});", ind)
            return
        size = s.size
        self.emit("let lo = 0;", ind)
        if size > 4:
            self.emit("let hi = 0;", ind)
        for lf in leaves:
            v = value(lf)
            wh = f"`{where}.{lf.where}`"
            w, o = lf.width, lf.offset
            r = f"r_{lf.var}"
            if lf.quant is not None:
                self.emit(f"const {r} = {lf.qvar}.quantise({v}, {wh});", ind)  # type: ignore[attr-defined]
            elif lf.kind == "bool":
                self.emit(f"const {r} = {v} ? 1 : 0;", ind)
            elif lf.kind == "float":
                self.emit(f'if (typeof {v} !== "number") throw new _EE(`{where}.{lf.where}: expected a number`);', ind)
                self.emit(f"const {r} = _f32bits({v});", ind)
            elif lf.scalar in ("int64", "uint64"):
                lo_, hi_ = _int_range(w, lf.kind == "int")
                big = f"BigInt.asUintN({w}, _big({v}, {lo_}n, {hi_}n, {wh}))"
                self.emit(f"const {r} = {big if w > 53 else f'Number({big})'};", ind)
            else:
                lo_, hi_ = _int_range(w, lf.kind == "int")
                if lf.kind == "int":
                    self.emit(f"let {r} = _int({v}, {lo_}, {hi_}, {wh});", ind)
                    self.emit(f"if ({r} < 0) {r} += {1 << w};", ind)
                else:
                    self.emit(f"const {r} = _int({v}, {lo_}, {hi_}, {wh});", ind)
            if o + w <= 32:
                self.emit(f"lo += {r} * {1 << o};" if o else f"lo += {r};", ind)
            elif o >= 32:
                self.emit(f"hi += {r} * {1 << (o - 32)};" if o > 32 else f"hi += {r};", ind)
            elif w > 53:
                k = 32 - o
                self.emit(f"lo += Number({r} & {(1 << k) - 1}n) * {1 << o};", ind)
                self.emit(f"hi += Number({r} >> {k}n);", ind)
            else:
                k = 32 - o
                self.emit(f"lo += ({r} % {1 << k}) * {1 << o};", ind)
                self.emit(f"hi += Math.floor({r} / {1 << k});", ind)
        for i in range(min(size, 4)):
            shift = f"lo >>> {8 * i}" if i else "lo"
            self.emit(f"b[p + {i}] = {shift} & 255;" if i < 3 else f"b[p + {i}] = {shift};", ind)
        for i in range(4, size):
            shift = f"hi >>> {8 * (i - 4)}" if i > 4 else "hi"
            self.emit(f"b[p + {i}] = {shift} & 255;" if i < 7 else f"b[p + {i}] = {shift};", ind)

    # -- tables ---------------------------------------------------------------------------
    def default(self, f: Field) -> str:
        t = f.type
        if t.kind == "payload":
            return "null"
        if t.kind in ("scalar", "enum") and t.scalar is not None:
            big = t.scalar.bits == 64 and f.quant is None and not t.scalar.is_float
            if f.default is not None:
                if isinstance(f.default, bool):
                    return "true" if f.default else "false"
                if big:
                    return f"{int(f.default)}n"
                return _num(f.default)
            if t.scalar.name == "bool":
                return "false"
            return "0n" if big else "0"
        if t.kind == "string":
            return '""'
        if t.kind == "vector":
            return "[]"
        return "null"

    def encoder(self, t: Table) -> None:
        self.emit(f"function enc_{t.name}(w, m) {{")
        for f in t.live_fields:
            v = f"m.{f.name}"
            if f.type.kind == "struct" or (f.payload == "channel"):
                val = v  # required: no default stands in for them
            else:
                val = f"({v} === undefined ? {self.default(f)} : {v})"
            self.encode_value(t, f, f.type, val, 1)
        self.emit("}")

    def encode_value(self, t: Table, f: Field, ft: FieldType, v: str, ind: int) -> None:
        where = f'"{t.name}.{f.name}"'
        k = ft.kind
        if f.payload:
            method = "payload" if f.payload == "any" else "channelPayload"
            self.emit(f"w.{method}({v}, {where});", ind)
        elif k in ("scalar", "enum"):
            sc = ft.scalar
            assert sc is not None
            if f.quant:
                self.emit(f"w.quant({v}, {self.qname(t.name, f)}, {where});", ind)
            elif sc.name == "bool":
                self.emit(f"w.bool({v});", ind)
            elif sc.is_float:
                self.emit(f"w.f{sc.bits}({v}, {where});", ind)
            elif sc.bits == 8:
                lo, hi = _int_range(8, sc.signed)
                self.emit(f"w.byte({v}, {lo}, {hi}, {where});", ind)
            elif sc.bits == 64:
                self.emit(f"w.{'sint64' if sc.signed else 'uint64'}({v}, {where});", ind)
            elif sc.signed:
                lo, hi = _int_range(sc.bits, True)
                self.emit(f"w.sint({v}, {lo}, {hi}, {where});", ind)
            else:
                self.emit(f"w.uint({v}, {(1 << sc.bits) - 1}, {where});", ind)
        elif k == "string":
            self.emit(f"w.string({v}, {where});", ind)
        elif k == "struct":
            self.emit(f"S_{ft.ref}.encodeOne(w, {v}, {where});", ind)
        elif k == "table":
            self.emit("{", ind)
            self.emit(f"const x = {v};", ind + 1)
            self.emit("if (x === null) {", ind + 1)
            self.emit("w.u8(0);", ind + 2)
            self.emit("} else {", ind + 1)
            self.emit("w.u8(1);", ind + 2)
            self.emit(f"enc_{ft.ref}(w, x);", ind + 2)
            self.emit("}", ind + 1)
            self.emit("}", ind)
        elif k == "union":
            u = self.model.decls[ft.ref]
            assert isinstance(u, Union)
            self.emit("{", ind)
            self.emit(f"const x = {v};", ind + 1)
            self.emit("if (x === null) {", ind + 1)
            self.emit("w.u8(0);", ind + 2)
            self.emit("} else {", ind + 1)
            self.emit("switch (x.$type) {", ind + 2)
            for i, member in enumerate(u.members):
                self.emit(f'case "{member}":', ind + 3)
                self.emit(f"w.varint({i + 1});", ind + 4)
                self.emit(f"enc_{member}(w, x);", ind + 4)
                self.emit("break;", ind + 4)
            self.emit("default:", ind + 3)
            self.emit(
                f"throw new _EE(`{t.name}.{f.name}: ${{x.$type}} is not a member of {u.name} "
                f"({', '.join(u.members)})`);",
                ind + 4,
            )
            self.emit("}", ind + 2)
            self.emit("}", ind + 1)
            self.emit("}", ind)
        elif k == "vector":
            e = ft.elem
            assert e is not None
            if e.kind in ("scalar", "enum") and e.scalar:
                if f.quant:
                    self.emit(f"w.quants({v}, {self.qname(t.name, f)}, {where});", ind)
                elif e.scalar.name == "uint8":
                    self.emit(f"w.bytes({v}, {where});", ind)
                else:
                    self.emit(f"w.scalars({v}, _K.{e.scalar.name}, {where});", ind)
            elif e.kind == "struct":
                self.emit(f"S_{e.ref}.encodeArray(w, {v}, {where});", ind)
            else:
                self.emit("{", ind)
                self.emit(f"const xs = {v};", ind + 1)
                self.emit(f'if (!Array.isArray(xs)) throw new _EE({where} + ": expected an array");', ind + 1)
                self.emit("w.varint(xs.length);", ind + 1)
                if e.kind == "string":
                    self.emit(f"for (let i = 0; i < xs.length; i++) w.string(xs[i], {where});", ind + 1)
                else:
                    self.emit(f"for (let i = 0; i < xs.length; i++) enc_{e.ref}(w, xs[i]);", ind + 1)
                self.emit("}", ind)
        else:
            raise AssertionError(k)

    def decoder(self, t: Table) -> None:
        self.emit(f"function dec_{t.name}(r) {{")
        recursive = t.name in self.recursive
        if recursive:
            self.emit(f'r.enter("{t.name}");', 1)
        names: dict[str, str] = {}
        for i, f in enumerate(t.live_fields):
            var = f"f{i}"
            self.decode_value(t, f, f.type, var, 1, names)
            names[f.name] = var
        if recursive:
            self.emit("r.leave();", 1)
        fields = "".join(f", {_key(f.name)}: {names[f.name]}" for f in t.live_fields)
        self.emit(f'return {{ $type: "{t.name}"{fields} }};', 1)
        self.emit("}")

    def maxlen(self, f: Field, kind: str) -> str:
        if f.maxlen is not None:
            return str(f.maxlen)
        return "r.ctx.maxString" if kind == "string" else "r.ctx.maxVector"

    def decode_value(self, t: Table, f: Field, ft: FieldType, v: str, ind: int, names: dict[str, str]) -> None:
        where = f"{t.name}.{f.name}"
        k = ft.kind
        if f.payload:
            if f.payload == "any":
                self.emit(f"const {v} = r.payload();", ind)
            else:
                chan = names.get("channel")
                if chan is None:
                    raise SchemaError(f.pos, f"'{f.name}' is typed by its channel, so a field 'channel' must come before it")
                self.emit(f"const {v} = r.channelPayload({chan});", ind)
        elif k in ("scalar", "enum"):
            sc = ft.scalar
            assert sc is not None
            if f.quant:
                self.emit(f'const {v} = r.quant({self.qname(t.name, f)}, "{where}");', ind)
            elif sc.name == "bool":
                self.emit(f'const {v} = r.bool("{where}");', ind)
            elif sc.is_float:
                self.emit(f"const {v} = r.f{sc.bits}();", ind)
            elif sc.bits == 8:
                self.emit(f"const {v} = r.{'i8' if sc.signed else 'u8'}();", ind)
            elif sc.bits == 64:
                self.emit(f"const {v} = r.{'sint64' if sc.signed else 'uint64'}();", ind)
            elif sc.signed:
                lo, hi = _int_range(sc.bits, True)
                self.emit(f'const {v} = r.sint({lo}, {hi}, "{where}");', ind)
            else:
                self.emit(f'const {v} = r.uint({(1 << sc.bits) - 1}, "{where}");', ind)
        elif k == "string":
            self.emit(f"const {v} = r.string({self.maxlen(f, 'string')});", ind)
        elif k == "struct":
            self.emit(f"const {v} = S_{ft.ref}.decodeOne(r);", ind)
        elif k == "table":
            self.emit(f"let {v} = null;", ind)
            self.emit(f"switch (r.u8()) {{", ind)
            self.emit("case 0:", ind + 1)
            self.emit("break;", ind + 2)
            self.emit("case 1:", ind + 1)
            self.emit(f"{v} = dec_{ft.ref}(r);", ind + 2)
            self.emit("break;", ind + 2)
            self.emit("default:", ind + 1)
            self.emit(f'throw new _DE("{where}: presence byte is not 0 or 1");', ind + 2)
            self.emit("}", ind)
        elif k == "union":
            u = self.model.decls[ft.ref]
            assert isinstance(u, Union)
            self.emit(f"let {v} = null;", ind)
            self.emit(f"const {v}_i = r.varint();", ind)
            self.emit(f"switch ({v}_i) {{", ind)
            self.emit("case 0:", ind + 1)
            self.emit("break;", ind + 2)
            for i, member in enumerate(u.members):
                self.emit(f"case {i + 1}:", ind + 1)
                self.emit(f"{v} = dec_{member}(r);", ind + 2)
                self.emit("break;", ind + 2)
            self.emit("default:", ind + 1)
            self.emit(f"throw new _DE(`{where}: union member ${{{v}_i}} does not exist`);", ind + 2)
            self.emit("}", ind)
        elif k == "vector":
            e = ft.elem
            assert e is not None
            lim = self.maxlen(f, "vector")
            if e.kind in ("scalar", "enum") and e.scalar:
                if f.quant:
                    arr = "Float64Array" if e.scalar.bits == 64 else "Float32Array"
                    self.emit(f'const {v} = r.quants({self.qname(t.name, f)}, {arr}, {lim}, "{where}");', ind)
                elif e.scalar.name == "uint8":
                    self.emit(f"const {v} = r.bytes({lim});", ind)
                else:
                    self.emit(f"const {v} = r.scalars(_K.{e.scalar.name}, {lim});", ind)
            elif e.kind == "struct":
                s = self.model.decls[e.ref]
                assert isinstance(s, Struct)
                self.emit(f"const {v} = S_{e.ref}.decodeArray(r, r.count({lim}, {s.size}));", ind)
            elif e.kind == "string":
                self.emit(f"const {v} = new Array(r.count({lim}, 1));", ind)
                self.emit(f"for (let i = 0; i < {v}.length; i++) {v}[i] = r.string(r.ctx.maxString);", ind)
            else:
                elem = self.model.decls[e.ref]
                minsize = 1 if isinstance(elem, Table) and elem.live_fields else 0
                self.emit(f"const {v} = new Array(r.count({lim}, {minsize}));", ind)
                self.emit(f"for (let i = 0; i < {v}.length; i++) {v}[i] = dec_{e.ref}(r);", ind)
        else:
            raise AssertionError(k)


# ----------------------------------------------------------------------------------------
# TypeScript declarations


class _Dts:
    def __init__(self, model: Model, runtime: str):
        self.model = model
        self.runtime = runtime
        self.lines: list[str] = []

    def emit(self, line: str = "", indent: int = 0) -> None:
        self.lines.append("  " * indent + line if line else "")

    def doc(self, text: str, indent: int = 0) -> None:
        if text:
            safe = text.replace("*/", "* /")
            if "\n" in safe:
                self.emit("/**", indent)
                for line in safe.split("\n"):
                    self.emit(f" * {line}", indent)
                self.emit(" */", indent)
            else:
                self.emit(f"/** {safe} */", indent)

    def check_names(self) -> None:
        """The declarations' TypeScript names must not meet the names derived from them."""
        derived: dict[str, str] = {"AnyMessage": "the union of all messages", "AnyMessageInput": "its input"}
        for d in self.model.decls.values():
            if isinstance(d, (Table, Union)):
                derived[f"{d.name}Input"] = f"the input type of '{d.name}'"
            elif isinstance(d, Struct):
                for suffix in ("Input", "Array", "ArrayInput"):
                    derived[f"{d.name}{suffix}"] = f"a type derived from struct '{d.name}'"
        for d in self.model.decls.values():
            if d.name in derived:
                raise SchemaError(d.pos, f"'{d.name}' is also the name of {derived[d.name]} in TypeScript; rename one")

    def run(self) -> str:
        m = self.model
        self.check_names()
        self.lines.append(header(m, "//").rstrip("\n"))
        self.emit(f"// Types for the {m.name} schema's codec; codecs/js/README.md maps schema types to values.")
        self.emit()
        self.emit(
            "import type { MessageCodec, Payload, Reader, StructArrayCodec, TableCodec, Writer } "
            f"from {json.dumps(self.runtime.removesuffix('.js') + '.js')};"
        )
        self.emit()
        self.emit(f"export declare const SCHEMA_NAME: {json.dumps(m.name)};")
        self.emit("export declare const SCHEMA_HASH: string;")
        for d in m.decls.values():
            self.emit()
            if isinstance(d, Enum):
                self.enum(d)
            elif isinstance(d, Union):
                self.doc(d.doc)
                self.emit(f"export type {d.name} = {' | '.join(d.members)};")
                inputs = " | ".join(f'({x}Input & {{ $type: "{x}" }})' for x in d.members)
                self.emit(f"export type {d.name}Input = {inputs};")
            elif isinstance(d, Struct):
                self.struct(d)
            else:
                self.table(d)
        self.emit()
        msgs = m.messages
        self.emit("/** Every message of this schema, as decoded. */")
        self.emit(f"export type AnyMessage = {' | '.join(t.name for t in msgs) or 'never'};")
        self.emit("/** Every message of this schema, as given to Codebook.encode(). */")
        inputs = " | ".join(f'({t.name}Input & {{ $type: "{t.name}" }})' for t in msgs)
        self.emit(f"export type AnyMessageInput = {inputs or 'never'};")
        self.emit()
        self.emit("export declare const MESSAGES: readonly MessageCodec[];")
        self.emit("export declare const TYPES: {")
        for d in m.decls.values():
            if isinstance(d, Table):
                self.emit(f"readonly {d.name}: TableCodec<{d.name}, {d.name}Input>;", 1)
            elif isinstance(d, Struct):
                self.emit(f"readonly {d.name}: StructArrayCodec<{d.name}, {d.name}Array, {d.name}Input>;", 1)
        self.emit("};")
        return "\n".join(self.lines) + "\n"

    def enum(self, e: Enum) -> None:
        big = e.scalar.bits == 64
        self.doc(e.doc)
        self.emit(f"export declare const {e.name}: {{")
        for n, v in e.values.items():
            self.emit(f"readonly {n}: {v}{'n' if big else ''};", 1)
        self.emit("};")
        if e.bit_flags:
            self.emit(f"/** A combination of {e.name}'s bits. */")
            self.emit(f"export type {e.name} = {'bigint' if big else 'number'};")
        else:
            values = " | ".join(f"{v}{'n' if big else ''}" for v in dict.fromkeys(e.values.values()))
            self.emit(f"export type {e.name} = {values};")

    # value types: decoded (out) and accepted by encoders (in)
    def scalar_type(self, ft: FieldType, quant: bool, inp: bool) -> str:
        sc = ft.scalar
        assert sc is not None
        if ft.kind == "enum":
            # Decoders do not check that an enum value is declared, so the wire may carry
            # any value of the underlying type.
            base = ft.ref if not inp else ("bigint | number" if sc.bits == 64 else "number")
            return f"{base} | {'bigint' if sc.bits == 64 else 'number'}" if not inp else base
        if sc.name == "bool":
            return "boolean"
        if sc.bits == 64 and not sc.is_float and not quant:
            return "bigint | number" if inp else "bigint"
        return "number"

    def field_type(self, f: Field, inp: bool) -> str:
        t = f.type
        if t.kind == "payload":
            return "Payload" if f.payload == "channel" else "Payload | null"
        if t.kind in ("scalar", "enum"):
            return self.scalar_type(t, f.quant is not None, inp)
        if t.kind == "string":
            return "string"
        if t.kind == "struct":
            return f"{t.ref}Input" if inp else t.ref
        if t.kind == "table":
            return f"{t.ref}Input | null" if inp else f"{t.ref} | null"
        if t.kind == "union":
            return f"{t.ref}Input | null" if inp else f"{t.ref} | null"
        assert t.kind == "vector" and t.elem is not None
        e = t.elem
        if e.kind in ("scalar", "enum") and e.scalar:
            if f.quant:
                arr = "Float64Array" if e.scalar.bits == 64 else "Float32Array"
                return "ArrayLike<number>" if inp else arr
            if e.scalar.name == "bool":
                return "ArrayLike<boolean | number>" if inp else "boolean[]"
            if e.scalar.name == "uint8":
                return "Uint8Array | ArrayBuffer | ArrayLike<number>" if inp else "Uint8Array"
            typed = _TYPED[e.scalar.name]
            if inp:
                return "ArrayLike<bigint | number>" if e.scalar.bits == 64 else "ArrayLike<number>"
            return typed
        if e.kind == "struct":
            return f"{e.ref}Input[] | {e.ref}ArrayInput" if inp else f"{e.ref}Array"
        if e.kind == "string":
            return "string[]"
        return f"{e.ref}Input[]" if inp else f"{e.ref}[]"

    def struct(self, s: Struct) -> None:
        self.doc(s.doc)
        self.emit(f"export interface {s.name} {{")
        for f in s.fields:
            self.doc(f.doc, 1)
            self.emit(f"{f.name}: {self.struct_field(f, 'one')};", 1)
        self.emit("}")
        self.emit(f"/** Encoder input for one {s.name}. */")
        self.emit(f"export interface {s.name}Input {{")
        for f in s.fields:
            self.emit(f"{f.name}: {self.struct_field(f, 'in')};", 1)
        self.emit("}")
        self.emit(f"/** An array of {s.name} as decoded: one typed array per field. */")
        self.emit(f"export interface {s.name}Array {{")
        for f in s.fields:
            self.emit(f"{f.name}: {self.struct_field(f, 'array')};", 1)
        self.emit("}")
        self.emit(f"/** An array of {s.name} given to an encoder as one array per field. */")
        self.emit(f"export interface {s.name}ArrayInput {{")
        for f in s.fields:
            self.emit(f"{f.name}: {self.struct_field(f, 'arrayin')};", 1)
        self.emit("}")

    def struct_field(self, f: Field, mode: str) -> str:
        t = f.type
        if t.kind == "struct":
            return {"one": t.ref, "in": f"{t.ref}Input", "array": f"{t.ref}Array", "arrayin": f"{t.ref}ArrayInput"}[mode]
        sc = t.scalar
        assert sc is not None
        big = sc.bits == 64 and not sc.is_float and f.quant is None
        if mode == "one":
            if sc.name == "bool":
                return "boolean"
            return "bigint" if big else ("number" if t.kind != "enum" else f"{t.ref} | number")
        if mode == "in":
            if sc.name == "bool":
                return "boolean | number"
            return "bigint | number" if big else "number"
        if mode == "array":
            if sc.name == "bool":
                return "boolean[]"
            if f.quant is not None:
                return "Float64Array" if sc.name == "float64" else "Float32Array"
            return _TYPED[sc.name]
        if sc.name == "bool":
            return "ArrayLike<boolean | number>"
        return "ArrayLike<bigint | number>" if big else "ArrayLike<number>"

    def table(self, t: Table) -> None:
        self.doc(t.doc)
        self.emit(f"export interface {t.name} {{")
        self.emit(f'$type: "{t.name}";', 1)
        for f in t.live_fields:
            self.doc(f.doc, 1)
            self.emit(f"{f.name}: {self.field_type(f, False)};", 1)
        self.emit("}")
        self.emit(f"/** Encoder input for {t.name}: a missing field takes its default. */")
        self.emit(f"export interface {t.name}Input {{")
        self.emit(f'$type?: "{t.name}";', 1)
        for f in t.live_fields:
            required = f.type.kind == "struct" or f.payload == "channel"
            self.emit(f"{f.name}{'' if required else '?'}: {self.field_type(f, True)};", 1)
        self.emit("}")


def generate_js(model: Model, runtime: str = DEFAULT_RUNTIME) -> str:
    """The source of the ES module for a model; it imports the runtime from `runtime`."""
    return _Gen(model, runtime).run()


def generate_dts(model: Model, runtime: str = DEFAULT_RUNTIME) -> str:
    """The TypeScript declarations of the module generate_js() writes."""
    return _Dts(model, runtime).run()
