"""The JavaScript generator: golden output, and the JavaScript test suite under node.

The generated JavaScript's behaviour is tested from both sides: codecs/js/test/*.test.mjs
(run here through `node --test`) and tests/test_vectors.py, which drives a node peer.
"""

from __future__ import annotations

import os
import subprocess

from engine.schema.gen_js import DEFAULT_RUNTIME, generate_dts, generate_js
from engine.schema.gen_python import header
from engine.schema.model import load

from codec_values import EVERYTHING, GOLDEN, PROTOCOL, ROOT, check_golden
from conftest import require_tool

# The golden module imports the runtime from where it lies, so the node tests load it.
GOLDEN_RUNTIME = "../../codecs/js/packed.js"


def test_everything_matches_golden():
    model = load(EVERYTHING)
    check_golden(os.path.join(GOLDEN, "everything.js"), generate_js(model, GOLDEN_RUNTIME))
    check_golden(os.path.join(GOLDEN, "everything.d.ts"), generate_dts(model, GOLDEN_RUNTIME))


def test_protocol_module_is_fresh():
    model = load(PROTOCOL)
    out = os.path.join(ROOT, "codecs", "js", "generated")
    for name, text in (("protocol.js", generate_js(model)), ("protocol.d.ts", generate_dts(model))):
        with open(os.path.join(out, name), encoding="utf-8") as fh:
            assert fh.read() == text, f"codecs/js/generated/{name} is stale: run `make schemas`"


def test_header_and_runtime_import():
    model = load(PROTOCOL)
    js = generate_js(model)
    assert js.startswith(header(model, "//"))
    assert f'from "{DEFAULT_RUNTIME}";' in js
    assert generate_dts(model).startswith(header(model, "//"))
    assert 'from "/static/packed.js";' in generate_js(model, "/static/packed.js")


# The codec's files in codecs/js/test/; tests/test_js_client.py runs the client's, and
# checks that every file there is run by one of the two.
CODEC_NODE_TESTS = ["generated.test.mjs", "runtime.test.mjs", "vectors.test.mjs"]


def test_node_suite():
    node = require_tool("node")
    result = subprocess.run(
        [node, "--test", *(f"codecs/js/test/{name}" for name in CODEC_NODE_TESTS)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]


TS_CHECK = """
import { Codebook } from "%(root)s/codecs/js/packed.js";
import * as protocol from "%(root)s/codecs/js/generated/protocol.js";
import * as E from "%(root)s/tests/golden/everything.js";
const cb = new Codebook(protocol, E);
const input: E.AnyMessageInput = { $type: "Numbers", i64: 5n, mood: E.Mood.Happy };
const frame = cb.encodeFrame([input, { $type: "Ping" }]);
for (const msg of cb.decodeFrame(frame, cb.context({ maxDepth: 8 }))) { const t: string = msg.$type; }
const n = E.TYPES.Numbers.decode(null as any);
const i: number = n.i32, l: bigint = n.i64;
const v = E.TYPES.Vectors.decode(null as any);
const x: Float32Array = v.placed.pos.x, on: boolean[] = v.packed.on, q: Float32Array = v.qs;
const shape: E.Shape | null = E.TYPES.Reordered.decode(null as any).shape;
const ping: protocol.AnyMessage = { $type: "Ping" };
"""


def test_typescript_declarations_compile(tmp_path):
    # typescript is pinned in tests/package.json: missing, this skips (fails in CI).
    from conftest import require_node_bin

    tsc = require_node_bin("tsc")
    check = tmp_path / "check.ts"
    check.write_text(TS_CHECK % {"root": ROOT})
    files = [str(check), "codecs/js/packed.d.ts", "codecs/js/generated/protocol.d.ts", "tests/golden/everything.d.ts"]
    result = subprocess.run(
        [tsc, "--noEmit", "--strict", "--target", "es2022", "--module", "es2022", "--moduleResolution", "node", *files],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_typescript_name_collisions_are_schema_errors(tmp_path):
    import pytest

    from engine.schema.parse import SchemaError

    path = tmp_path / "c.fbs"
    path.write_text("table Foo {}\ntable FooInput {}\n")
    with pytest.raises(SchemaError, match="2:7: error: 'FooInput' is also the name of the input type of 'Foo'"):
        generate_dts(load(str(path)))
