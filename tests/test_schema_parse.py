"""Stage 1 of the schema compiler: text to syntax tree, and errors that say where."""

from __future__ import annotations

import pytest

from engine.schema.parse import EnumNode, ObjectNode, SchemaError, parse

from codec_values import PROTOCOL


def test_protocol_parses():
    with open(PROTOCOL, encoding="utf-8") as fh:
        node = parse(fh.read(), "protocol.fbs")
    names = [d.name for d in node.decls]
    assert names[:3] == ["Handshake", "Json", "Bytes"]
    assert ("msgid", node.attributes[0][1]) == node.attributes[0]
    assert node.root_type is not None and node.root_type[0] == "Handshake"
    hs = node.decls[0]
    assert isinstance(hs, ObjectNode) and hs.kind == "table"
    assert hs.attrs[0].name == "msgid" and hs.attrs[0].value == 1
    assert hs.namespace == "tickwire.protocol"


def test_values_defaults_docs_and_metadata():
    node = parse(
        'include "a.fbs";\n'
        "namespace x.y;\n"
        "/// A doc\n"
        "/// on two lines\n"
        "enum E : ubyte (bit_flags) { A, B = 4 }\n"
        "union U { T }\n"
        "table T {\n"
        "  a: int = -0x10 (id: 0);\n"
        "  b: float = 1.5e3 (range: \"0 1\", precision: \"0.1\", deprecated);\n"
        "  c: bool = true;\n"
        "  d: E = B;\n"
        "  e: [x.y.T];\n"
        "  f: double = -inf;\n"
        "}\n"
        "root_type T;\n"
        'file_identifier "TICK";\n',
        "t.fbs",
    )
    assert node.includes[0][0] == "a.fbs"
    e, u, t = node.decls
    assert isinstance(e, EnumNode) and e.doc == "A doc\non two lines"
    assert [(v.name, v.value) for v in e.values] == [("A", None), ("B", 4)]
    assert isinstance(u, EnumNode) and u.kind == "union"
    assert isinstance(t, ObjectNode)
    a, b, c, d, ev, f = t.fields
    assert a.default == -16 and a.attrs[0].value == 0
    assert b.default == 1500.0 and [x.name for x in b.attrs] == ["range", "precision", "deprecated"]
    assert b.attrs[1].value == "0.1" and b.attrs[2].value is None
    assert c.default is True and d.default == "B"
    assert ev.type.vector and ev.type.name == "x.y.T"
    assert f.default == float("-inf")


@pytest.mark.parametrize(
    "text, where, message",
    [
        ("table T { a: int }", "1:18", "expected ';' but found '}'"),
        ("table T { a: [int:3]; }", "1:14", "fixed-length arrays are not supported"),
        ("rpc_service S {}", "1:1", "rpc_service is not supported"),
        ('table T {}\ninclude "x.fbs";', "2:1", "includes must come before any declaration"),
        ("table T {}\n/* never closed", "2:1", "comment is not closed"),
        ('table T { a: "x; }', "1:14", "string is not closed"),
        ('table T { a: string = "x"; }', "1:23", "only scalar fields can have a default value"),
        ("table T {}\n\n  @", "3:3", "unexpected character '@'"),
        ("enum E : int { A = 1.5 }", "1:20", "an enum value must be an integer"),
        ("table", "1:6", "expected a table name but found the end of the file"),
        ("tabel T {}", "1:1", "unknown declaration 'tabel'"),
        ("union U { A: B }", "1:11", "aliased union members are not supported"),
        ("table T { a: int (x: [1]); }", "1:22", "attribute 'x' needs a number or a quoted string"),
    ],
)
def test_errors_say_where(text, where, message):
    with pytest.raises(SchemaError) as info:
        parse(text, "bad.fbs")
    assert str(info.value).startswith(f"bad.fbs:{where}: error: {message}")
