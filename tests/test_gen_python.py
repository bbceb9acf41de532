"""The Python generator: golden output, and the shape of the generated module."""

from __future__ import annotations

import os

import pytest

from engine.schema.gen_python import generate_python, header
from engine.schema.model import load

from codec_values import EVERYTHING, GOLDEN, PROTOCOL, ROOT, check_golden, everything


def test_everything_matches_golden():
    check_golden(os.path.join(GOLDEN, "everything.py"), generate_python(load(EVERYTHING)))


def test_protocol_module_is_fresh():
    with open(os.path.join(ROOT, "engine", "_generated", "protocol.py"), encoding="utf-8") as fh:
        assert fh.read() == generate_python(load(PROTOCOL)), "run `make schemas`"


def test_header_says_generated_and_hash():
    model = load(EVERYTHING)
    text = generate_python(model)
    assert text.startswith(header(model, "#"))
    assert "Do not edit." in text.splitlines()[0]
    assert model.hash in text.splitlines()[1]


def test_module_api():
    model, mod = everything()
    assert mod.SCHEMA_NAME == "everything"
    assert mod.SCHEMA_HASH == model.hash
    assert sorted(mod.MESSAGES) == [64, 65, 66, 67, 68, 69, 70, 99, 300]
    cls, enc, dec = mod.MESSAGES[66]
    assert cls is mod.Composite and cls.TYPE_ID == 66
    assert callable(enc) and callable(dec)
    for name in ("Numbers", "Scalars", "Packed", "Mood", "Status", "Leaf"):
        assert name in mod.TYPES
    # Records: slots, match args, defaults from the schema, deprecated fields gone.
    c = mod.Composite()
    assert c.__slots__ == c.__match_args__
    assert "old" not in c.__slots__ and "gone" not in c.__slots__
    n = mod.Numbers()
    assert (n.b, n.i8, n.u8, n.i32, n.f32, n.mood, n.status) == (True, -1, 200, -100000, 0.5, 3, 2)
    assert mod.Status.Hidden == 1 << 9
    assert mod.Packed.SIZE == 5 and mod.Straddle.SIZE == 8


def test_match_dispatch():
    _, mod = everything()
    match mod.Leaf("x", 3):
        case mod.Leaf(name, value):
            assert (name, value) == ("x", 3)
        case _:
            pytest.fail("no match")


def test_python_keywords_become_names_with_underscore(tmp_path):
    path = tmp_path / "kw.fbs"
    path.write_text('attribute "msgid";\ntable K (msgid: 64) { class: int; pos: uint; self: bool; }\n')
    text = generate_python(load(str(path)))
    assert "self.class_ = class_" in text and "self.pos = pos" in text and "self.self_ = self_" in text
    compile(text, "kw.py", "exec")
