"""The compiler's command line (`tickwire schema compile`): writing, --check, and errors
that a person reads (one line, file:line:col, never a traceback)."""

from __future__ import annotations

import os
import shutil

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.schema.compile import main
from engine.schema.model import load
from engine.schema.parse import SchemaError

from codec_values import EVERYTHING, PROTOCOL, SCHEMAS


def test_compile_writes_then_check_passes(tmp_path, capsys):
    out = tmp_path / "gen"
    assert main([PROTOCOL, "--out", str(out), "--lang", "py,js"]) == 0
    assert sorted(os.listdir(out)) == ["protocol.d.ts", "protocol.js", "protocol.py"]
    assert "wrote" in capsys.readouterr().out
    assert main([PROTOCOL, "--out", str(out), "--check"]) == 0
    # nothing changed, nothing written
    assert main([PROTOCOL, "--out", str(out)]) == 0
    assert capsys.readouterr().out == ""


def test_check_fails_when_stale_or_missing(tmp_path, capsys):
    out = tmp_path / "gen"
    assert main([PROTOCOL, "--out", str(out)]) == 0
    (out / "protocol.js").write_text((out / "protocol.js").read_text() + "// edited\n")
    (out / "protocol.d.ts").unlink()
    capsys.readouterr()
    assert main([PROTOCOL, "--out", str(out), "--check"]) == 1
    err = capsys.readouterr().err
    assert f"stale: {out / 'protocol.js'}" in err and f"stale: {out / 'protocol.d.ts'}" in err
    assert "protocol.py" not in err
    # --check never writes
    assert not (out / "protocol.d.ts").exists()


def test_includes_and_several_schemas(tmp_path):
    shutil.copy(EVERYTHING, tmp_path)
    shutil.copy(os.path.join(SCHEMAS, "common.fbs"), tmp_path)
    assert main([str(tmp_path / "everything.fbs"), PROTOCOL, "--out", str(tmp_path / "gen"), "--lang", "py"]) == 0
    assert sorted(os.listdir(tmp_path / "gen")) == ["everything.py", "protocol.py"]


def test_js_runtime_option(tmp_path):
    assert main([PROTOCOL, "--out", str(tmp_path), "--lang", "js", "--js-runtime", "/tickwire/packed.js"]) == 0
    assert 'from "/tickwire/packed.js";' in (tmp_path / "protocol.js").read_text()


@pytest.mark.parametrize(
    "text, expected",
    [
        ("table T { a: Vec3; }\n", "bad.fbs:1:14: error: unknown type 'Vec3'"),
        ('attribute "msgid";\ntable T (msgid: 64) { a: int (id: 0); b: int (id: 0); }\n', "bad.fbs:2:47: error: duplicate id 0 (also at bad.fbs:2:31)"),
        ("table T { a: int }\n", "bad.fbs:1:18: error: expected ';' but found '}'"),
    ],
)
def test_bad_schema_is_one_line_on_stderr(tmp_path, capsys, monkeypatch, text, expected):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.fbs").write_text(text)
    assert main(["bad.fbs", "--out", "gen"]) == 1
    out = capsys.readouterr()
    assert out.err.startswith(expected)
    assert out.err.count("\n") == 1 and "Traceback" not in out.err
    assert not (tmp_path / "gen").exists()


def test_cyclic_include_through_the_cli(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.fbs").write_text('include "b.fbs";\n')
    (tmp_path / "b.fbs").write_text('include "a.fbs";\n')
    assert main(["a.fbs", "--out", "gen"]) == 1
    assert capsys.readouterr().err == "b.fbs:1:9: error: cyclic include: a.fbs -> b.fbs -> a.fbs\n"


def test_missing_schema_file(tmp_path, capsys):
    assert main([str(tmp_path / "nope.fbs"), "--out", str(tmp_path)]) == 1
    assert "error: cannot read" in capsys.readouterr().err


def test_unknown_language(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main([PROTOCOL, "--out", str(tmp_path), "--lang", "rust"])
    assert info.value.code == 2
    assert "unknown language 'rust'" in capsys.readouterr().err


# Mutations of a valid schema: whatever the text, the compiler answers with a SchemaError
# (one line, with a place) or a model, never another exception.
with open(EVERYTHING, encoding="utf-8") as _fh:
    _SOURCE = _fh.read()
_PIECES = ["{", "}", ";", ":", "(", ")", "[", "]", ",", "=", '"', "table", "struct", "enum", "union", "int",
           "float", "Node", "bits: 70", "id: 1", "range: \"1 0\"", "/*", "//", "\n", " ", "0x", "-", "."]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(_SOURCE)), st.integers(0, 8), st.sampled_from(_PIECES) | st.text(max_size=3)), min_size=1, max_size=4))
def test_mangled_schemas_never_raise_anything_but_schema_error(tmp_path_factory, edits):
    text = _SOURCE
    for at, cut, piece in edits:
        at = min(at, len(text))
        text = text[:at] + piece + text[at + cut :]
    folder = tmp_path_factory.mktemp("mangled")
    shutil.copy(os.path.join(SCHEMAS, "common.fbs"), folder)
    (folder / "everything.fbs").write_text(text)
    try:
        load(str(folder / "everything.fbs"))
    except SchemaError as exc:
        line = str(exc)
        assert "\n" not in line and ": error: " in line
        assert exc.pos is not None, line


def test_the_engines_generated_files_are_fresh():
    """What the engine imports and serves is what its schemas compile to (`make schemas`)."""
    import os

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    schemas = [os.path.join(root, "schemas", n) for n in ("protocol.fbs", "cluster.fbs")]
    assert main([*schemas, "--out", os.path.join(root, "engine", "_generated"), "--lang", "py", "--check"]) == 0
    assert main([schemas[0], "--out", os.path.join(root, "codecs", "js", "generated"), "--lang", "js", "--check"]) == 0
