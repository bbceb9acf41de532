"""Stage 1 of the schema compiler: FlatBuffers schema text to a syntax tree.

The accepted language is the subset of the FlatBuffers schema language that Tickwire
encodes (see codecs/WIRE.md): namespace, include, attribute, enum, union, struct, table,
root_type, file_identifier, file_extension, comments, default values and field metadata.
Everything here is pure: text in, nodes out, or a SchemaError that names the file, line
and column. Resolving names and checking meaning is the model's job (model.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = [
    "SchemaError",
    "Pos",
    "Attr",
    "TypeExpr",
    "FieldNode",
    "EnumValNode",
    "EnumNode",
    "ObjectNode",
    "FileNode",
    "parse",
]


@dataclass(frozen=True)
class Pos:
    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


class SchemaError(Exception):
    """A schema a person has to fix; printed as `file:line:col: error: message`."""

    def __init__(self, pos: Pos | None, message: str):
        super().__init__(message)
        self.pos = pos
        self.message = message

    def __str__(self) -> str:
        where = f"{self.pos}: " if self.pos else ""
        return f"{where}error: {self.message}"


@dataclass(frozen=True)
class Attr:
    name: str
    value: str | int | float | None
    pos: Pos


@dataclass(frozen=True)
class TypeExpr:
    name: str  # a scalar keyword, "string", or a (possibly dotted) type name
    vector: bool
    pos: Pos


@dataclass(frozen=True)
class FieldNode:
    name: str
    type: TypeExpr
    default: str | int | float | bool | None
    attrs: tuple[Attr, ...]
    pos: Pos
    doc: str = ""


@dataclass(frozen=True)
class EnumValNode:
    name: str
    value: int | None
    pos: Pos


@dataclass(frozen=True)
class EnumNode:
    kind: str  # "enum" or "union"
    name: str
    namespace: str
    underlying: TypeExpr | None
    values: tuple[EnumValNode, ...]
    attrs: tuple[Attr, ...]
    pos: Pos
    doc: str = ""


@dataclass(frozen=True)
class ObjectNode:
    kind: str  # "table" or "struct"
    name: str
    namespace: str
    fields: tuple[FieldNode, ...]
    attrs: tuple[Attr, ...]
    pos: Pos
    doc: str = ""


@dataclass
class FileNode:
    path: str
    includes: list[tuple[str, Pos]] = field(default_factory=list)
    attributes: list[tuple[str, Pos]] = field(default_factory=list)
    decls: list[EnumNode | ObjectNode] = field(default_factory=list)
    root_type: tuple[str, str, Pos] | None = None  # (name, namespace, pos)


_TOKEN = re.compile(
    r"""
    (?P<ws>[ \t\r\n]+)
  | (?P<doc>///[^\n]*)
  | (?P<comment>//[^\n]*|/\*.*?\*/)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<number>[-+]?(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)|[-+]?(?:nan|inf|infinity)\b)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[{}()\[\]:;=,.])
    """,
    re.VERBOSE | re.DOTALL,
)

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "/": "/", "0": "\0"}


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    pos: Pos


def _tokenize(text: str, path: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    line, line_start, i = 1, 0, 0
    while i < len(text):
        m = _TOKEN.match(text, i)
        if m is None:
            if text.startswith("/*", i):
                raise SchemaError(Pos(path, line, i - line_start + 1), "comment is not closed")
            if text[i] == '"':
                raise SchemaError(Pos(path, line, i - line_start + 1), "string is not closed")
            raise SchemaError(Pos(path, line, i - line_start + 1), f"unexpected character {text[i]!r}")
        kind = m.lastgroup or ""
        if kind not in ("ws", "comment"):
            tokens.append(_Tok(kind, m.group(), Pos(path, line, i - line_start + 1)))
        newlines = m.group().count("\n")
        if newlines:
            line += newlines
            line_start = i + m.group().rindex("\n") + 1
        i = m.end()
    tokens.append(_Tok("eof", "", Pos(path, line, i - line_start + 1)))
    return tokens


def _unquote(token: _Tok) -> str:
    body, out, i = token.text[1:-1], [], 0
    while i < len(body):
        c = body[i]
        if c == "\\":
            nxt = body[i + 1]
            if nxt not in _ESCAPES:
                raise SchemaError(token.pos, f"unknown escape \\{nxt} in string")
            out.append(_ESCAPES[nxt])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _number(text: str) -> int | float:
    lowered = text.lower().lstrip("+")
    if lowered.lstrip("-") in ("nan", "inf", "infinity"):
        return float(lowered)
    if "x" in lowered:
        return int(lowered, 16)
    if any(c in lowered for c in ".e"):
        return float(lowered)
    return int(lowered)


class _Parser:
    def __init__(self, text: str, path: str):
        self.tokens = _tokenize(text, path)
        self.i = 0
        self.namespace = ""
        self.file = FileNode(path)

    # -- token helpers ------------------------------------------------------------------
    def peek(self) -> _Tok:
        return self.tokens[self.i]

    def next(self) -> _Tok:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def doc(self) -> str:
        lines = []
        while self.peek().kind == "doc":
            lines.append(self.next().text[3:].strip())
        return "\n".join(lines)

    def expect(self, text: str) -> _Tok:
        tok = self.next()
        if tok.text != text or tok.kind == "string":
            raise SchemaError(tok.pos, f"expected '{text}' but found {self.describe(tok)}")
        return tok

    def accept(self, text: str) -> bool:
        if self.peek().text == text and self.peek().kind in ("punct", "ident"):
            self.i += 1
            return True
        return False

    def ident(self, what: str) -> _Tok:
        tok = self.next()
        if tok.kind != "ident":
            raise SchemaError(tok.pos, f"expected {what} but found {self.describe(tok)}")
        return tok

    def dotted(self, what: str) -> tuple[str, Pos]:
        first = self.ident(what)
        parts = [first.text]
        while self.accept("."):
            parts.append(self.ident(what).text)
        return ".".join(parts), first.pos

    @staticmethod
    def describe(tok: _Tok) -> str:
        return "the end of the file" if tok.kind == "eof" else f"'{tok.text}'"

    # -- grammar ------------------------------------------------------------------------
    def parse(self) -> FileNode:
        while True:
            doc = self.doc()
            tok = self.peek()
            if tok.kind == "eof":
                return self.file
            if tok.kind != "ident":
                raise SchemaError(tok.pos, f"expected a declaration but found {self.describe(tok)}")
            keyword = tok.text
            if keyword == "include":
                self.next()
                path = self.next()
                if path.kind != "string":
                    raise SchemaError(path.pos, "include needs a quoted file name")
                if self.file.decls:
                    raise SchemaError(tok.pos, "includes must come before any declaration")
                self.file.includes.append((_unquote(path), path.pos))
                self.expect(";")
            elif keyword == "namespace":
                self.next()
                self.namespace, _ = self.dotted("a namespace name")
                self.expect(";")
            elif keyword == "attribute":
                self.next()
                name = self.next()
                if name.kind == "string":
                    self.file.attributes.append((_unquote(name), name.pos))
                elif name.kind == "ident":
                    self.file.attributes.append((name.text, name.pos))
                else:
                    raise SchemaError(name.pos, "attribute needs a name")
                self.expect(";")
            elif keyword in ("table", "struct"):
                self.next()
                self.file.decls.append(self.object(keyword, tok.pos, doc))
            elif keyword in ("enum", "union"):
                self.next()
                self.file.decls.append(self.enum(keyword, tok.pos, doc))
            elif keyword == "root_type":
                self.next()
                name, pos = self.dotted("a type name")
                self.file.root_type = (name, self.namespace, pos)
                self.expect(";")
            elif keyword in ("file_identifier", "file_extension"):
                self.next()
                value = self.next()
                if value.kind != "string":
                    raise SchemaError(value.pos, f"{keyword} needs a quoted value")
                self.expect(";")
            elif keyword == "rpc_service":
                raise SchemaError(tok.pos, "rpc_service is not supported: declare procedures in the server's code")
            else:
                raise SchemaError(tok.pos, f"unknown declaration '{keyword}'")

    def metadata(self) -> tuple[Attr, ...]:
        attrs: list[Attr] = []
        if not self.accept("("):
            return ()
        if self.accept(")"):
            return ()
        while True:
            name = self.ident("an attribute name")
            value: str | int | float | None = None
            if self.accept(":"):
                tok = self.next()
                if tok.kind == "string":
                    value = _unquote(tok)
                elif tok.kind == "number":
                    value = _number(tok.text)
                elif tok.kind == "ident" and tok.text in ("true", "false"):
                    value = 1 if tok.text == "true" else 0
                else:
                    raise SchemaError(tok.pos, f"attribute '{name.text}' needs a number or a quoted string")
            attrs.append(Attr(name.text, value, name.pos))
            if self.accept(")"):
                return tuple(attrs)
            self.expect(",")

    def type_expr(self) -> TypeExpr:
        tok = self.peek()
        if self.accept("["):
            name, _ = self.dotted("a type name")
            if self.accept(":"):
                raise SchemaError(tok.pos, "fixed-length arrays are not supported")
            self.expect("]")
            return TypeExpr(name, True, tok.pos)
        name, pos = self.dotted("a type name")
        return TypeExpr(name, False, pos)

    def object(self, kind: str, pos: Pos, doc: str) -> ObjectNode:
        name = self.ident(f"a {kind} name")
        attrs = self.metadata()
        self.expect("{")
        fields: list[FieldNode] = []
        while not self.accept("}"):
            fdoc = self.doc()
            if self.peek().text == "}":
                continue
            fname = self.ident("a field name")
            self.expect(":")
            ftype = self.type_expr()
            default: str | int | float | bool | None = None
            if self.accept("="):
                tok = self.next()
                if tok.kind == "number":
                    default = _number(tok.text)
                elif tok.kind == "ident" and tok.text in ("true", "false"):
                    default = tok.text == "true"
                elif tok.kind == "ident":
                    default = tok.text  # an enum value name, resolved by the model
                elif tok.kind == "string":
                    raise SchemaError(tok.pos, "only scalar fields can have a default value")
                else:
                    raise SchemaError(tok.pos, f"expected a default value but found {self.describe(tok)}")
            fattrs = self.metadata()
            self.expect(";")
            fields.append(FieldNode(fname.text, ftype, default, fattrs, fname.pos, fdoc))
        return ObjectNode(kind, name.text, self.namespace, tuple(fields), attrs, name.pos, doc)

    def enum(self, kind: str, pos: Pos, doc: str) -> EnumNode:
        name = self.ident(f"an {kind} name")
        underlying = None
        if kind == "enum":
            self.expect(":")
            underlying = self.type_expr()
        attrs = self.metadata()
        self.expect("{")
        values: list[EnumValNode] = []
        while not self.accept("}"):
            self.doc()
            if self.peek().text == "}":
                continue
            vname, vpos = self.dotted("a value name")
            if kind == "union" and self.accept(":"):
                raise SchemaError(vpos, "aliased union members are not supported")
            value = None
            if self.accept("="):
                tok = self.next()
                if tok.kind != "number" or not isinstance(_number(tok.text), int):
                    raise SchemaError(tok.pos, "an enum value must be an integer")
                value = int(_number(tok.text))
            self.metadata()
            values.append(EnumValNode(vname, value, vpos))
            if not self.accept(","):
                self.expect("}")
                break
        return EnumNode(kind, name.text, self.namespace, underlying, tuple(values), attrs, name.pos, doc)


def parse(text: str, path: str = "<schema>") -> FileNode:
    """Parse one schema file's text. Includes are recorded, not followed."""
    return _Parser(text, path).parse()
