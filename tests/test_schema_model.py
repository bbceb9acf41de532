"""Stage 2 of the schema compiler: the checked model, its errors, its hash, and flatc.

Every schema this compiler accepts must be one that flatc accepts too (the FlatBuffers
codec and native clients compile the same files); a bad schema gets one error that names
the file, line and column, and says what is wrong.
"""

from __future__ import annotations

import glob
import os
import subprocess

import pytest

from engine.schema.model import Struct, Table, build, combine_hashes, load
from engine.schema.parse import SchemaError, parse

from codec_values import EVERYTHING, PROTOCOL, ROOT
from conftest import require_tool

A = (
    'attribute "msgid"; attribute "range"; attribute "precision"; attribute "bits"; '
    'attribute "maxlen"; attribute "payload";\n'
)

# (what, schema text, line:col, message, whether flatc refuses it too)
BAD = [
    ('unknown type', A + "table T {\n  a: Vec3;\n}\n", '3:6',
     "unknown type 'Vec3'", True),
    ('duplicate id', A + "table T {\n  a: int (id: 0);\n  b: int (id: 0);\n}\n", '4:11',
     "duplicate id 0 (also at bad.fbs:3:11)", True),
    ('id out of range', A + "table T {\n  a: int (id: 70000);\n}\n", '3:11',
     "'id' is 70000, out of range 0..65535", True),
    ('ids with a gap', A + "table T {\n  a: int (id: 0);\n  b: int (id: 2);\n}\n", '2:7',
     "field ids must run 0..1 without gaps; 1 is missing", True),
    ('some ids missing', A + "table T {\n  a: int (id: 0);\n  b: int;\n}\n", '4:3',
     "either every field of a table has an id or none has", True),
    ('union id 0', A + "table X {}\nunion U { X }\ntable T {\n  u: U (id: 0);\n}\n", '5:9',
     "union field 'u' takes two ids, id - 1 for its type, so its id must be at least 1", True),
    ('union id clash', A + "table X {}\nunion U { X }\ntable T {\n  a: int (id: 0);\n  u: U (id: 1);\n}\n", '6:9',
     "duplicate id 0 (also at bad.fbs:5:11)", True),
    ('duplicate msgid', A + "table T (msgid: 64) {}\ntable U (msgid: 64) {}\n", '3:7',
     "duplicate message id 64 (also 'T' at bad.fbs:2:7)", False),
    ('msgid out of range (app)', A + "table T (msgid: 5) {}\n", '2:10',
     "'msgid' is 5, out of range 64..16383", False),
    ('msgid out of range (protocol)', A + "namespace tickwire.protocol;\ntable T (msgid: 64) {}\n", '3:10',
     "'msgid' is 64, out of range 1..63", False),
    ('quantisation cannot fit bits', A + "struct S {\n  x: float (range: \"0 100\", precision: \"0.01\", bits: 8);\n}\n", '3:48',
     "range 0..100 at precision 0.01 needs 14 bits, more than the 8 given", False),
    ('quantisation over 53 bits', A + "table T {\n  x: double (range: \"0 1\", bits: 60);\n}\n", '3:28',
     "'bits' is 60, out of range 1..53", False),
    ('quantised without range', A + "table T {\n  x: float (bits: 8);\n}\n", '3:13',
     "quantised field 'x' needs range: \"MIN MAX\"", False),
    ('quantised without precision or bits', A + "table T {\n  x: float (range: \"0 1\");\n}\n", '3:13',
     "quantised field 'x' needs precision or bits", False),
    ('range min >= max', A + "table T {\n  x: float (range: \"5 1\", bits: 8);\n}\n", '3:13',
     "range \"5 1\" must have MIN < MAX", False),
    ('range not numbers', A + "table T {\n  x: float (range: \"a b\", bits: 8);\n}\n", '3:13',
     "range is two numbers in quotes: \"MIN MAX\"", False),
    ('precision not a number', A + "table T {\n  x: float (range: \"0 1\", precision: \"fine\");\n}\n", '3:27',
     "precision is a positive number, e.g. precision: \"0.05\"", False),
    ('quantised int', A + "table T {\n  x: int (range: \"0 1\", bits: 8);\n}\n", '3:11',
     "quantisation applies to float fields; 'x' is int32", False),
    ('bits on a table int', A + "table T {\n  x: int (bits: 8);\n}\n", '3:11',
     "bits on an integer field applies inside structs only", False),
    ('bits wider than the type', A + "struct S {\n  x: ubyte (bits: 9);\n}\n", '3:13',
     "'bits' is 9, out of range 1..8", False),
    ('maxlen on an int', A + "table T {\n  x: int (maxlen: 3);\n}\n", '3:11',
     "maxlen applies to strings and vectors", False),
    ('payload not [ubyte]', A + "table T {\n  x: string (payload);\n}\n", '3:14',
     "a payload field must be declared as [ubyte]", False),
    ('payload kind', A + "table T {\n  x: [ubyte] (payload: \"some\");\n}\n", '3:15',
     "payload is \"any\" or \"channel\"", False),
    ('undeclared attribute', "table T {\n  x: int (speed: 3);\n}\n", '2:11',
     "attribute 'speed' is not declared: add `attribute \"speed\";`", True),
    ('declared flatbuffers attribute', "attribute \"id\";\ntable T {}\n", '1:11',
     "'id' is a FlatBuffers attribute and needs no declaration", False),
    ('enum without 0 needs a default', A + "enum E : byte { A = 1, B }\ntable T {\n  e: E;\n}\n", '4:3',
     "enum 'E' has no value 0, so field 'e' needs a default, e.g. = A", True),
    ('enum default not a value', A + "enum E : byte { A, B }\ntable T {\n  e: E = C;\n}\n", '4:3',
     "'C' is not a value of enum 'E'", True),
    ('enum values descending', A + "enum E : byte { A = 2, B = 1 }\n", '2:24',
     "enum values must be ascending; 'B' = 1", False),
    ('enum value does not fit', A + "enum E : ubyte { A = 256 }\n", '2:18',
     "value 256 of 'A' does not fit in uint8", True),
    ('enum of floats', A + "enum E : float { A }\n", '2:10',
     "enum 'E' needs an integer type, not 'float'", True),
    ('struct field default', A + "struct S {\n  a: int = 3;\n}\n", '3:3',
     "struct fields cannot have default values (every struct field is always sent)", True),
    ('struct holds a string', A + "struct S {\n  a: string;\n}\n", '3:6',
     "a struct cannot hold a string", True),
    ('struct holds a vector', A + "struct S {\n  a: [int];\n}\n", '3:6',
     "a struct cannot hold a vector", True),
    ('struct holds a table', A + "table X {}\nstruct S {\n  a: X;\n}\n", '4:6',
     "a struct can only hold scalars, enums and structs, not 'X'", True),
    ('struct contains itself', A + "struct S {\n  a: S;\n}\n", '2:8',
     "struct 'S' contains itself", True),
    ('bit-packed struct over 64 bits', A + "struct S {\n  a: ulong (bits: 60);\n  b: uint (bits: 10);\n}\n", '2:8',
     "struct 'S' packs 70 bits; a struct with sub-byte fields holds at most 64", False),
    ('bit-packed struct holds a struct', A + "struct P { x: int; }\nstruct S {\n  a: ubyte (bits: 3);\n  p: P;\n}\n", '3:8',
     "struct 'S' packs bits, so it cannot hold another struct", False),
    ('union member not a table', A + "struct S { a: int; }\nunion U { S }\n", '3:11',
     "union member 'S' must be a table", False),
    ('vector of unions', A + "table X {}\nunion U { X }\ntable T {\n  u: [U];\n}\n", '5:6',
     "vectors of unions are not supported", False),
    ('duplicate field', A + "table T {\n  a: int;\n  a: uint;\n}\n", '4:3',
     "field 'a' is declared twice (first at bad.fbs:3:3)", True),
    ('duplicate declaration', A + "table T {}\ntable T {}\n", '3:7',
     "'T' is declared twice (first at bad.fbs:2:7)", True),
    ('short names clash across namespaces', A + "namespace a;\ntable T {}\nnamespace b;\ntable T {}\n", '5:7',
     "'T' is also declared at bad.fbs:3:7; generated code uses short names, so names must be unique across namespaces", False),
    ('root_type not a table', A + "struct S { a: int; }\nroot_type S;\n", '3:11',
     "root_type 'S' must be a table", True),
    ('default out of range', A + "table T {\n  a: ubyte = 300;\n}\n", '3:3',
     "default 300 does not fit in uint8", True),
    ('deprecated struct field', A + "struct S {\n  a: int (deprecated);\n}\n", '3:3',
     "struct fields cannot be deprecated", True),
    ('empty struct', A + "struct S {}\n", '2:8',
     "struct 'S' has no fields", True),
    ('empty enum', A + "enum E : int {}\n", '2:6',
     "enum 'E' has no values", False),
    ('msgid on a struct', A + "struct S (msgid: 64) { a: int; }\n", '2:11',
     "only tables can be messages", False),]


@pytest.mark.parametrize("what, text, where, message, flatc_refuses", BAD, ids=[b[0] for b in BAD])
def test_bad_schema_says_where_and_what(what, text, where, message, flatc_refuses):
    with pytest.raises(SchemaError) as info:
        build([parse(text, "bad.fbs")], "bad", "bad.fbs")
    assert str(info.value) == f"bad.fbs:{where}: error: {message}"


def test_flatc_refuses_what_it_should(tmp_path):
    # The errors that are FlatBuffers errors are flatc's errors too, so the two compilers
    # agree on the language; the others are Tickwire's own rules on top of it.
    flatc = require_tool("flatc")
    for what, text, _, _, flatc_refuses in BAD:
        path = tmp_path / "bad.fbs"
        path.write_text(text)
        result = subprocess.run([flatc, "-b", "--schema", "-o", str(tmp_path), str(path)], capture_output=True)
        assert (result.returncode != 0) == flatc_refuses, what


def repository_schemas() -> list[str]:
    skip = (os.sep + ".venv" + os.sep, os.sep + "node_modules" + os.sep)
    found = glob.glob(os.path.join(ROOT, "**", "*.fbs"), recursive=True)
    return sorted(p for p in found if not any(s in p for s in skip))


def test_every_repository_schema_is_accepted_by_flatc_and_by_us(tmp_path):
    flatc = require_tool("flatc")
    schemas = repository_schemas()
    assert PROTOCOL in schemas and EVERYTHING in schemas
    for path in schemas:
        load(path)
        result = subprocess.run(
            [flatc, "-b", "--schema", "-o", str(tmp_path), path], capture_output=True, text=True
        )
        assert result.returncode == 0, f"flatc refuses {os.path.relpath(path, ROOT)}:\n{result.stderr}"


def write(tmp_path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)


def test_cyclic_include(tmp_path):
    write(tmp_path, {"a.fbs": 'include "b.fbs";\ntable A {}\n', "b.fbs": 'include "a.fbs";\ntable B {}\n'})
    with pytest.raises(SchemaError) as info:
        load(str(tmp_path / "a.fbs"))
    assert str(info.value) == f"{tmp_path / 'b.fbs'}:1:9: error: cyclic include: a.fbs -> b.fbs -> a.fbs"


def test_missing_include_and_search_path(tmp_path):
    write(tmp_path, {"a.fbs": 'include "lib/c.fbs";\ntable A { c: C; }\n'})
    with pytest.raises(SchemaError) as info:
        load(str(tmp_path / "a.fbs"))
    assert str(info.value) == f"{tmp_path / 'a.fbs'}:1:9: error: included file 'lib/c.fbs' not found"
    (tmp_path / "inc" / "lib").mkdir(parents=True)
    (tmp_path / "inc" / "lib" / "c.fbs").write_text("table C {}\n")
    model = load(str(tmp_path / "a.fbs"), [str(tmp_path / "inc")])
    assert list(model.decls) == ["C", "A"]


def test_include_diamond_is_read_once(tmp_path):
    write(
        tmp_path,
        {
            "base.fbs": "table Base {}\n",
            "l.fbs": 'include "base.fbs";\ntable L { b: Base; }\n',
            "r.fbs": 'include "base.fbs";\ntable R { b: Base; }\n',
            "top.fbs": 'include "l.fbs";\ninclude "r.fbs";\ntable Top { l: L; r: R; }\n',
        },
    )
    assert list(load(str(tmp_path / "top.fbs")).decls) == ["Base", "L", "R", "Top"]


def test_everything_model():
    m = load(EVERYTHING)
    assert [t.name for t in m.messages] == ["Numbers", "Vectors", "Composite", "Reordered", "Carry", "Delivery", "Empty", "Tag", "Far"]
    packed = m.decls["Packed"]
    assert isinstance(packed, Struct) and packed.bitpacked and packed.bits == 40
    assert [(f.name, f.offset, f.width) for f in packed.fields] == [
        ("id", 0, 12), ("x", 12, 11), ("y", 23, 11), ("neg", 34, 3), ("on", 37, 1), ("mood", 38, 2),
    ]
    y = packed.fields[2].quant
    assert y is not None and (y.bits, y.step) == (11, 0.05)
    reordered = m.decls["Reordered"]
    assert isinstance(reordered, Table)
    assert [f.name for f in reordered.fields] == ["a", "shape", "c", "d"]
    composite = m.decls["Composite"]
    assert isinstance(composite, Table)
    assert [f.name for f in composite.fields if f.deprecated] == ["old", "gone"]
    assert m.recursive_tables() == {"Node"}
    assert m.decls["Status"].values == {"Moving": 1, "Firing": 2, "Hidden": 512}
    assert m.decls["Mood"].values == {"Angry": -2, "Sad": -1, "Calm": 0, "Happy": 3}


def test_hash_ignores_comments_and_layout_but_not_meaning(tmp_path):
    a = A + "table T (msgid: 64) {\n  x: int;\n  y: string;\n}\n"
    b = A + "// a comment\ntable   T(msgid:64){ x:int; /* y */ y:string; }\n"
    c = A + "table T (msgid: 64) {\n  x: uint;\n  y: string;\n}\n"
    d = A + "table T (msgid: 65) {\n  x: int;\n  y: string;\n}\n"
    hashes = [build([parse(t, "s.fbs")], "s", "s.fbs").hash for t in (a, b, c, d)]
    assert hashes[0] == hashes[1]
    assert len(set(hashes)) == 3
    assert all(len(h) == 16 and int(h, 16) >= 0 for h in hashes)


def test_combined_hash():
    import hashlib

    assert combine_hashes(["aa", "bb"]) == hashlib.sha256(b"aa,bb").hexdigest()[:16]
    assert combine_hashes(["aa", "bb"]) != combine_hashes(["bb", "aa"])


def test_quoted_and_bare_precision_agree():
    bare = build([parse(A + 'struct S { x: float (range: "0 10", precision: 1); }', "s.fbs")], "s", "s.fbs")
    quoted = build([parse(A + 'struct S { x: float (range: "0 10", precision: "1"); }', "s.fbs")], "s", "s.fbs")
    assert bare.hash == quoted.hash
    assert bare.decls["S"].fields[0].quant.bits == 4
